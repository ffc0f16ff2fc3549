"""The engine's cost grows linearly with the model, not quadratically.

Not a timing test: each stage's time on a stack of `4 * N` residual blocks
is compared with its time on `N` blocks, in the same process (the least of
a few repeats each, CPU time of this process, so that other processes on
the machine weigh little). Linear stages give a ratio near 4; a stage that
does per-layer work over the whole model (searching every slot for every
layer, a pass over all layers for every group) gives near 16. The bound, 6,
sits between. On the engine before its speed fixes (issue 27) this test
fails: `apply_group_mask` grew x7.0 (a pass over every layer for every
group); after them every stage grows x3.6-x4.5.
`benchmarks/engine_scale.py` measures the absolute speed, as ratios to
`keras.models.clone_model`, on keras.applications.

`compact` is timed without Keras's own rebuild of the model (its
`deserialize_keras_object`, linear and as slow as `clone_model`): at test
sizes it would drown a quadratic step of the engine's own.
"""

import gc
import time

import keras
import numpy as np
import pytest

from keras_dynfilt import pruning
from keras_dynfilt.pruning import compaction

L = keras.layers
BLOCKS = 16  # N; the large model has 4 * N blocks
WIDTH = 32
REPEATS = 3
MAX_RATIO = 6.0


def stacked(blocks):
    """Residual blocks, narrow so that Keras's own work per layer stays
    small: every block's first Dense is a group of its own, and the
    residual stream's Dense layers form one more (all blocks coupled)."""
    inputs = keras.Input((WIDTH,))
    x = L.Dense(WIDTH)(inputs)
    for _ in range(blocks):
        h = L.Dense(WIDTH)(x)
        h = L.BatchNormalization()(h)
        h = L.ReLU()(h)
        h = L.Dense(WIDTH)(h)
        h = L.BatchNormalization()(h)
        x = L.Add()([x, h])
    return keras.Model(inputs, L.Dense(4)(x))


class _KerasRebuildTimer:
    """Measures the time `compact` spends in Keras's deserialization."""

    def __init__(self, monkeypatch):
        self.seconds = 0.0
        original = keras.saving.deserialize_keras_object

        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.process_time() - start

        monkeypatch.setattr(compaction.keras.saving,
                            "deserialize_keras_object", timed)


def stage_times(model, rebuild):
    """CPU seconds of each engine stage on `model` (one run)."""
    times = {}
    start = time.process_time()
    groups = pruning.filter_groups(model, warn=False)
    times["filter_groups"] = time.process_time() - start
    keeps = []
    for group in groups:
        keep = np.ones(group.size, bool)
        keep[: group.size // 3] = False
        keeps.append(keep)
    start = time.process_time()
    for group, keep in zip(groups, keeps):
        pruning.apply_group_mask(group, keep)
    times["apply_group_mask"] = time.process_time() - start
    start = time.process_time()
    pruning.model_cost(model, compacted=True, warn=False)
    times["model_cost"] = time.process_time() - start
    rebuild.seconds = 0.0
    start = time.process_time()
    small = pruning.compact(model)
    times["compact"] = time.process_time() - start - rebuild.seconds
    assert small.count_params() < model.count_params()
    return times


def best_times(model, rebuild):
    """The least CPU time of each stage over `REPEATS` runs, with Python's
    cyclic collector paused while timing (its passes over a heap that
    grows with the model would add a superlinear term of their own)."""
    runs = []
    for _ in range(REPEATS):
        gc.collect()
        gc.disable()
        try:
            runs.append(stage_times(model, rebuild))
        finally:
            gc.enable()
    return {stage: min(r[stage] for r in runs) for stage in runs[0]}


@pytest.mark.slow
def test_engine_stages_grow_linearly_with_the_model(monkeypatch):
    rebuild = _KerasRebuildTimer(monkeypatch)
    small, large = stacked(BLOCKS), stacked(4 * BLOCKS)
    stage_times(small, rebuild)  # warm-up: first calls trace and compile
    base = best_times(small, rebuild)
    grown = best_times(large, rebuild)
    ratios = {stage: grown[stage] / base[stage] for stage in base}
    report = ", ".join(
        f"{stage}: {base[stage]:.3f}s -> {grown[stage]:.3f}s "
        f"(x{ratios[stage]:.1f})"
        for stage in base
    )
    assert max(ratios.values()) < MAX_RATIO, (
        f"An engine stage grows faster than linearly from {BLOCKS} to "
        f"{4 * BLOCKS} blocks: {report}"
    )
