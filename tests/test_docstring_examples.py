"""Every `Examples:` block in the public API runs and prints what it shows.

The examples are doctests (`>>>` lines with their expected output), run
with the standard library's `doctest` on each backend the suite runs on.
Only whitespace is normalised; no `ELLIPSIS`. The examples of
`keras_dynfilt.training` (tf.data, tf.distribute) run only on TensorFlow;
those of `cross_task` (scikit-learn) and `tuning` (KerasTuner, in both test
environments) on every backend the suite runs on.
"""

import doctest
import importlib
import inspect
import re

import keras
import numpy as np
import pytest

import keras_dynfilt

_PACKAGES = [
    "callbacks",
    "cross_task",
    "layers",
    "models",
    "optimizers",
    "pruning",
    "tuning",
]
if keras.backend.backend() == "tensorflow":
    _PACKAGES.append("training")


def _public_objects():
    """`(qualified name, object)` for every public class and function."""
    for package_name in _PACKAGES:
        package = importlib.import_module(f"keras_dynfilt.{package_name}")
        for name in package.__all__:
            obj = getattr(package, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"keras_dynfilt.{package_name}.{name}", obj


def _docstrings():
    """A `DocTest` for every docstring of the public API (and its methods)."""
    finder = doctest.DocTestFinder(recurse=True, exclude_empty=False)
    tests = []
    for qualified_name, obj in _public_objects():
        for test in finder.find(obj, qualified_name, globs={}):
            # Methods inherited from Keras carry Keras's own examples.
            if not test.filename or "keras_dynfilt" not in test.filename:
                continue
            tests.append(test)
    return sorted(tests, key=lambda test: test.name)


_DOCSTRINGS = _docstrings()
_TESTS = [test for test in _DOCSTRINGS if test.examples]


def test_every_examples_section_is_a_doctest():
    # griffe (mkdocstrings' google style) reads `Examples:` followed by an
    # indented block as a section; `Example:` would be an admonition and
    # `>>>` lines in it a nested blockquote. Each section must run here.
    for test in _DOCSTRINGS:
        text = test.docstring or ""
        assert not re.search(r"^\s*Example:\s*$", text, re.M), test.name
        if re.search(r"^\s*Examples:\s*$", text, re.M):
            assert test.examples, f"{test.name}: `Examples:` without `>>>`"


def test_examples_are_collected():
    # Each public layer, model builder and pruning entry point shows one.
    names = {test.name for test in _TESTS}
    for expected in [
        "keras_dynfilt.layers.WSoftmaxHead",
        "keras_dynfilt.layers.FilterGenerator",
        "keras_dynfilt.models.nddr_network",
        "keras_dynfilt.pruning.compact",
        "keras_dynfilt.pruning.filter_groups",
        "keras_dynfilt.callbacks.SoftFilterPruning",
        "keras_dynfilt.optimizers.LearningRateMultiplier",
        "keras_dynfilt.cross_task.prune_for_task",
        "keras_dynfilt.tuning.make_tuner",
    ]:
        assert expected in names, sorted(names)


@pytest.mark.parametrize("test", _TESTS, ids=lambda test: test.name)
def test_docstring_example(test):
    test.globs = {"keras": keras, "keras_dynfilt": keras_dynfilt, "np": np}
    runner = doctest.DocTestRunner(
        optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    output = []
    runner.run(test, out=output.append, clear_globs=True)
    failures = "".join(output)
    assert runner.failures == 0, f"{test.name} ({test.filename}):\n{failures}"
