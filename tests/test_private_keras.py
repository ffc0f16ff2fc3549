"""Private Keras API is used in one module: keras_dynfilt/_keras_private.py.

The scan reads every other module of the package (its syntax tree) and
fails on:

- an import of `keras.src` (or `keras.src` named in code or a string),
- a known private Keras attribute (`model._functional`,
  `tensor._keras_history`, ...), whatever object it is read on,
- any other `obj._name` whose `_name` keras-dynfilt does not define itself
  (as a function, class, module, module variable or attribute it assigns):
  a private attribute of someone else's object, most likely Keras's.
"""

import ast
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "keras_dynfilt"
SEAM = PACKAGE / "_keras_private.py"

# Private Keras attributes keras-dynfilt has needed (all behind the seam).
KNOWN_PRIVATE = {
    "_nodes_by_depth", "_operations", "_inputs_struct", "_outputs_struct",
    "_functional", "_keras_history", "_compute_loss", "_get_variable_index",
    "_call_has_training_arg", "_loss_tracker", "_symbolic_build",
    "_maybe_symbolic_build", "_distribute_strategy", "_variables",
    "_inbound_nodes", "_outbound_nodes", "_layers", "_tracker",
    "_trainable_variables", "_non_trainable_variables",
}
# Underscore names that are public API of the standard library.
PUBLIC_UNDERSCORE = {"_asdict", "_replace", "_fields", "_make"}


def _modules(root=PACKAGE):
    return sorted(p for p in root.rglob("*.py") if p != SEAM)


def _own_names(paths):
    """Underscore names keras-dynfilt defines itself."""
    names = set()
    for path in paths:
        names.add(path.stem)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
            ):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(
                node.ctx, ast.Store
            ):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(
                node.ctx, ast.Store
            ):
                names.add(node.id)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[0])
    return names


def private_keras_uses(paths, own=None):
    """`(file, line, what)` for every private Keras use in `paths`."""
    own = _own_names(_modules()) if own is None else own
    found = []
    for path in paths:
        text = path.read_text()
        tree = ast.parse(text, str(path))
        for node in ast.walk(tree):
            where = (_shown(path), getattr(node, "lineno", 0))
            if isinstance(node, ast.ImportFrom) and (
                node.module or ""
            ).startswith("keras.src"):
                found.append(where + (f"from {node.module} import",))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("keras.src"):
                        found.append(where + (f"import {alias.name}",))
            elif isinstance(node, ast.Attribute):
                attr = node.attr
                if (
                    attr == "src"
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "keras"
                ):
                    found.append(where + ("keras.src",))
                elif attr in KNOWN_PRIVATE:
                    found.append(where + (f"._{attr[1:]}",))
                elif (
                    attr.startswith("_")
                    and not attr.startswith("__")
                    and attr not in PUBLIC_UNDERSCORE
                    and attr not in own
                ):
                    found.append(where + (f".{attr} (not ours)",))
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and "keras.src" in node.value
                and not _is_docstring(tree, node)
            ):
                found.append(where + ("'keras.src' in a string",))
    return found


def _shown(path):
    try:
        return str(path.relative_to(PACKAGE.parent))
    except ValueError:
        return path.name


def _is_docstring(tree, constant):
    for node in ast.walk(tree):
        if isinstance(
            node,
            (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef),
        ):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and (
                body[0].value is constant
            ):
                return True
    return False


def test_private_keras_is_used_only_in_the_seam():
    found = private_keras_uses(_modules())
    assert not found, (
        "Private Keras API outside keras_dynfilt/_keras_private.py (move it "
        "there, behind a function with a fallback): "
        + "; ".join(f"{f}:{line}: {what}" for f, line, what in found)
    )


@pytest.mark.parametrize(
    "source, what",
    [
        ("from keras.src.ops import nn\n", "from keras.src.ops import"),
        ("import keras.src.applications\n", "import keras.src.applications"),
        ("import keras\nx = keras.src.ops\n", "keras.src"),
        ("def f(model):\n    return model._functional\n", "._functional"),
        ("def f(t):\n    return t._keras_history.operation\n",
         "._keras_history"),
        ("def f(layer):\n    return layer._tracker\n", "._tracker"),
        ("def f(layer):\n    return layer._private_thing\n",
         "._private_thing (not ours)"),
        ("import importlib\nm = importlib.import_module('keras.src.ops')\n",
         "'keras.src' in a string"),
    ],
)
def test_the_scan_fails_on_a_private_use(tmp_path, source, what):
    # The scan of the package with one more module holding a private use.
    bad = tmp_path / "bad.py"
    bad.write_text(source)
    own = _own_names(_modules())
    found = private_keras_uses([bad], own)
    assert [w for _, _, w in found] == [what]


def test_the_scan_accepts_our_own_private_names(tmp_path):
    good = tmp_path / "good.py"
    good.write_text(
        '"""Mentions keras.src in a docstring only."""\n'
        "def f(graph, record):\n"
        "    return graph._atoms, record._asdict(), graph.__class__\n"
    )
    assert private_keras_uses([good], _own_names(_modules())) == []


MOVED_KERAS = textwrap.dedent(
    """
    import sys
    import warnings

    import keras
    import keras.src.applications as apps
    import keras.src.ops as kops

    # A Keras that moved its op modules and the applications' layers.
    for name in ("nn", "numpy", "core"):
        delattr(kops, name)
        sys.modules[f"keras.src.ops.{name}"] = None
    for name in ("convnext", "inception_resnet_v2"):
        if hasattr(apps, name):
            delattr(apps, name)
        sys.modules[f"keras.src.applications.{name}"] = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import keras_dynfilt  # noqa: F401
        from keras_dynfilt.pruning import filter_groups
    moved = [str(w.message) for w in caught if "keras-dynfilt: Keras" in
             str(w.message)]
    inputs = keras.Input((4,))
    a = keras.layers.Dense(3, name="a")(inputs)
    b = keras.layers.Dense(3, name="b")(inputs)
    outputs = keras.layers.Dense(2)(keras.ops.relu(a + b))
    groups = filter_groups(keras.Model(inputs, outputs), warn=False)
    print(len(moved), [(g.name, g.size) for g in groups])
    """
)


def test_import_survives_a_keras_that_moved_its_private_modules():
    # The op classes are then found through the public keras.ops functions
    # (`x + y` and `relu` still follow channels); the applications' layers
    # are barriers, with a warning naming the Keras version.
    env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
    result = subprocess.run(
        [sys.executable, "-c", MOVED_KERAS], capture_output=True, text=True,
        env=env, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == (
        "3 [('a (+1 coupled)', 3)]"
    )
