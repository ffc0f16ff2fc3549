"""`LearningRateMultiplier` with every optimizer `keras.optimizers` exports.

Each row of the table on the NDDR docs page
(`docs/results/lr_multiplier/optimizers.json`, written by
`examples/optimizers/lr_multiplier_table.py`) is measured again here, on
the backend the suite runs on.
"""

import json

import keras
import pytest

from tests.scripts import ROOT, load_script

TABLE = load_script("examples/optimizers/lr_multiplier_table.py")
_JSON = json.loads(
    (ROOT / "docs/results/lr_multiplier/optimizers.json").read_text()
)
DOCUMENTED = {row["optimizer"]: row for row in _JSON["rows"]}
# The figures are those of the Keras version that wrote the table; other
# versions are checked for the properties the docs state, not the figures.
SAME_KERAS = keras.__version__ == _JSON["keras"]
# Steps proportional to the learning rate: `multiplier` times as long.
PROPORTIONAL = {"Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "Lion",
                "Muon", "Nadam", "RMSprop", "SGD", "ScheduleFreeAdamW"}
RATIOS = ["kernel_ratio_1", "kernel_ratio_n", "bias_ratio_1", "bias_ratio_n"]


def test_every_builtin_optimizer_is_documented():
    # A new Keras optimizer fails here until it is measured and listed
    # (older Keras versions lack some of the documented ones).
    assert set(TABLE.builtin_optimizers()) <= set(DOCUMENTED)
    if SAME_KERAS:
        assert set(TABLE.builtin_optimizers()) == set(DOCUMENTED)


@pytest.mark.parametrize("name", sorted(TABLE.builtin_optimizers()))
def test_builtin_optimizer_matches_the_documented_row(name):
    documented = DOCUMENTED.get(name)
    if documented is None:
        pytest.fail(f"{name} is not in the documented table")
    row = TABLE.measure(name, documented.get("multiplier", 100.0),
                        documented.get("steps", 10))
    if "rejected" in documented:
        assert row.get("rejected") == documented["rejected"]
        return
    assert "rejected" not in row, row
    # Exactly the same optimizer at `multiplier * lr` for the tagged
    # variable, and the bare optimizer for the untagged one.
    assert row["vs_scaled_lr"] < 1e-5, row
    assert row["vs_base_lr"] < 1e-5, row
    for key in RATIOS:
        if SAME_KERAS:
            assert row[key] == pytest.approx(documented[key], rel=1e-3), key
        if name in PROPORTIONAL:
            assert row[key] == pytest.approx(row["multiplier"], rel=2e-3)
        elif key.endswith("_n"):
            # Adafactor, Lamb: not `multiplier` times, as the docs say.
            assert abs(row[key] / row["multiplier"] - 1) > 0.1, key


def test_multi_optimizer_is_rejected_and_works_wrapped_inside():
    from keras_dynfilt.optimizers import (
        LearningRateMultiplier,
        set_lr_multiplier,
    )

    with pytest.raises(ValueError, match="cannot be a MultiOptimizer"):
        LearningRateMultiplier(keras.optimizers.MultiOptimizer(
            keras.optimizers.OptimizerMap(keras.optimizers.SGD())))
    tagged = keras.Variable(keras.ops.zeros((2, 2)))
    plain = keras.Variable(keras.ops.zeros((2, 2)))
    set_lr_multiplier(tagged, 100.0)
    optimizer = keras.optimizers.MultiOptimizer(keras.optimizers.OptimizerMap(
        LearningRateMultiplier(keras.optimizers.SGD(0.01))))
    ones = keras.ops.ones((2, 2))
    optimizer.apply([ones, ones], [tagged, plain])
    moved_tagged = -float(keras.ops.convert_to_numpy(tagged)[0, 0])
    moved_plain = -float(keras.ops.convert_to_numpy(plain)[0, 0])
    assert moved_tagged == pytest.approx(1.0, rel=1e-6)
    assert moved_plain == pytest.approx(0.01, rel=1e-6)
