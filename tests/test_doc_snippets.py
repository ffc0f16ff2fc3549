"""Every Python block of README.md and docs/ runs as pasted.

A ```` ```python ```` block is either complete (it makes its own small
data and runs in seconds) or marked as a fragment by the HTML comment
`<!-- fragment -->` (optionally `<!-- fragment: why -->`) on the line
before its fence; mkdocs renders the comment as nothing. Fragments must
still compile. The complete blocks of one page run in page order in one
fresh namespace, in a temporary working directory (what they save lands
there): a later block may use the names of an earlier complete block of
the same page, never those of another page or of a fragment.
docs/development.md states the convention for writers.
"""

import pathlib
import re

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"^```python\s*$")
_FRAGMENT = re.compile(r"^<!-- fragment(:[^>]*)? -->\s*$")


def _pages():
    return [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def _blocks(page):
    """`(line, source, is_fragment)` for each Python block of `page`."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if _FENCE.match(lines[i]):
            start = i + 1
            end = start
            while not lines[end].startswith("```"):
                end += 1
            fragment = i > 0 and bool(_FRAGMENT.match(lines[i - 1]))
            blocks.append((start + 1, "\n".join(lines[start:end]), fragment))
            i = end
        i += 1
    return blocks


def _name(page):
    return str(page.relative_to(ROOT))


_PAGES = [page for page in _pages() if _blocks(page)]
# Pages whose blocks train (a short fit or a tuner search): `slow`.
_SLOW = {"docs/callbacks/soft_filter_pruning.md", "docs/tuning.md"}


def _params():
    return [
        pytest.param(
            page,
            id=_name(page),
            marks=[pytest.mark.slow] if _name(page) in _SLOW else [],
        )
        for page in _PAGES
    ]


def test_slow_pages_exist():
    assert _SLOW <= {_name(page) for page in _PAGES}


def test_fragment_markers_precede_python_blocks():
    # A marker anywhere else (a typo, a block moved away) would mark nothing.
    for page in _pages():
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith("<!-- fragment"):
                assert _FRAGMENT.match(line), f"{_name(page)}:{i + 1}"
                following = lines[i + 1] if i + 1 < len(lines) else ""
                assert _FENCE.match(following), (
                    f"{_name(page)}:{i + 1}: a fragment marker must be the "
                    "line right before a ```python fence"
                )


def test_most_blocks_are_complete():
    blocks = [block for page in _PAGES for block in _blocks(page)]
    complete = [block for block in blocks if not block[2]]
    # README and the docs home show runnable code, and fragments stay the
    # exception.
    assert len(complete) >= 2 * (len(blocks) - len(complete)), (
        len(complete),
        len(blocks),
    )
    for page in (ROOT / "README.md", ROOT / "docs" / "index.md"):
        assert any(not fragment for _, _, fragment in _blocks(page)), page


@pytest.mark.parametrize("page", _params())
def test_page_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__doc_snippet__"}
    for line, source, fragment in _blocks(page):
        # The line numbers of a traceback are those of the page.
        code = compile(
            "\n" * (line - 1) + source, f"{_name(page)}", "exec"
        )
        if fragment:
            continue
        keras.utils.set_random_seed(0)
        exec(code, namespace)
