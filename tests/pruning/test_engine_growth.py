"""The engine's cost grows linearly with the model, not quadratically.

Not a timing test: each stage's time on a stack of `4 * N` residual blocks
is compared with its time on `N` blocks, in the same process (CPU time of
this process, so that other processes on the machine weigh little; the
two timed one after the other in each of a few rounds, the median of the
rounds' ratios). Linear stages give a ratio near 4; a stage that
does per-layer work over the whole model (searching every slot for every
layer, a pass over all layers for every group) gives near 16. The bound, 6,
sits between. On the engine before its speed fixes (issue 27) this test
fails: `apply_group_mask` grew x7.0 (a pass over every layer for every
group); after them every stage grows x3.6-x4.5.
`benchmarks/engine_scale.py` measures the absolute speed, as ratios to
`keras.models.clone_model`, on keras.applications.

Masking every group at once (`apply_group_masks`) is checked apart on a
DenseNet-like stack, where one BatchNormalization after the concatenation
holds channels of every earlier group: a group's weights grow with the
stack, so masking group by group is quadratic there by nature (each call
rewrites every weight its group touches); the batched call must stay
linear (one assignment per weight): x4.2-x4.9 from 32 to 128 layers on
this machine, where a call per group instead grew x17.7 (0.56 s to 9.9
s) and fails the test.

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
BLOCKS = 32  # N; the large model has 4 * N blocks
WIDTH = 32
REPEATS = 5
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


def dense_stack(layers, growth=2):
    """A DenseNet block of `layers` layers on vectors: each reads (BN,
    ReLU) the concatenation of all earlier outputs. Narrow, so that the
    weights (whose size grows with the square of the length, as in a
    DenseNet block) weigh little next to the work per weight."""
    inputs = keras.Input((WIDTH,))
    x = L.Dense(growth)(inputs)
    for _ in range(layers):
        h = L.BatchNormalization()(x)
        h = L.ReLU()(h)
        h = L.Dense(growth)(h)
        x = L.Concatenate()([x, h])
    x = L.BatchNormalization()(x)
    return keras.Model(inputs, L.Dense(4)(x))


def mask_every_group_time(model):
    """The least CPU time of `REPEATS` `apply_group_masks` calls on every
    group of `model` (a fresh analysis each: the targets are computed
    anew), the cyclic collector paused while timing."""
    best = None
    for _ in range(REPEATS):
        groups = pruning.filter_groups(model, warn=False)
        masks = {g: np.arange(g.size) != 0 for g in groups}
        gc.collect()
        gc.disable()
        try:
            start = time.process_time()
            pruning.apply_group_masks(masks)
            seconds = time.process_time() - start
        finally:
            gc.enable()
        best = seconds if best is None else min(best, seconds)
    return best


# On JAX each of the large stack's ~500 weight shapes compiles its own
# `where` once (minutes); the engine's work per weight is the same there.
@pytest.mark.tensorflow
@pytest.mark.slow
def test_masking_every_group_grows_linearly_on_a_concatenation_stack():
    layers = 2 * BLOCKS
    small, large = dense_stack(layers), dense_stack(4 * layers)
    mask_every_group_time(small)  # warm-up: first calls trace and compile
    base = mask_every_group_time(small)
    grown = mask_every_group_time(large)
    assert grown / base < MAX_RATIO, (
        "apply_group_masks on every group grows faster than linearly from "
        f"{layers} to {4 * layers} concatenated layers: {base:.3f}s -> "
        f"{grown:.3f}s (x{grown / base:.1f})"
    )


def interleaved_ratios(small, large, rebuild):
    """Each stage's time on `large` over its time on `small`, timed one
    after the other in each of `REPEATS` rounds (so both see the same
    load), the median over the rounds; and the median times. At these
    sizes a stage takes 10-100 ms, where the least of separate repeats
    still moved a ratio from 2 to 6 between runs of one process (JAX's
    dispatch threads count in its CPU time)."""
    rounds = []
    for _ in range(REPEATS):
        gc.collect()
        gc.disable()
        try:
            rounds.append((stage_times(small, rebuild),
                           stage_times(large, rebuild)))
        finally:
            gc.enable()
    stages = rounds[0][0]
    ratios = {s: float(np.median([g[s] / b[s] for b, g in rounds]))
              for s in stages}
    base = {s: float(np.median([b[s] for b, _ in rounds])) for s in stages}
    grown = {s: float(np.median([g[s] for _, g in rounds])) for s in stages}
    return ratios, base, grown


@pytest.mark.slow
def test_engine_stages_grow_linearly_with_the_model(monkeypatch):
    rebuild = _KerasRebuildTimer(monkeypatch)
    small, large = stacked(BLOCKS), stacked(4 * BLOCKS)
    # Warm-up: first calls trace and compile (JAX: once per weight shape).
    stage_times(small, rebuild)
    stage_times(large, rebuild)
    ratios, base, grown = interleaved_ratios(small, large, rebuild)
    report = ", ".join(
        f"{stage}: {base[stage]:.3f}s -> {grown[stage]:.3f}s "
        f"(x{ratios[stage]:.1f})"
        for stage in base
    )
    assert max(ratios.values()) < MAX_RATIO, (
        f"An engine stage grows faster than linearly from {BLOCKS} to "
        f"{4 * BLOCKS} blocks: {report}"
    )
