"""Print the pip requirements of keras-dynfilt for CI and `make`.

Reads `pyproject.toml` (the single source of the dependency list) and prints
the core dependencies plus the requested extras (self-references such as
`keras-dynfilt[tuner,plot]` resolved), one per line:

    python .ci/requirements.py tensorflow-cpu all dev docs
"""

import argparse
import pathlib
import re

import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SELF = "keras-dynfilt"


def requirements(extras):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    reqs, todo, seen = list(project["dependencies"]), list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(
                f"unknown extra {extra!r}; pyproject.toml has "
                f"{sorted(optional)}"
            )
        seen.add(extra)
        for req in optional[extra]:
            match = re.fullmatch(rf"{SELF}\[(.+)\]", req)
            if match:
                todo.extend(e.strip() for e in match.group(1).split(","))
            else:
                reqs.append(req)
    return sorted(set(reqs))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("extras", nargs="*", default=[])
    args = parser.parse_args()
    print("\n".join(requirements(args.extras)))


if __name__ == "__main__":
    main()
