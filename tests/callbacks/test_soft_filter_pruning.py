"""Tests of the Soft Filter Pruning callback and the pruning schedules."""

import math

import keras
import numpy as np
import pytest

import keras_dynfilt
from keras_dynfilt.callbacks import (
    ConstantSparsity,
    PolynomialDecay,
    SoftFilterPruning,
)
from keras_dynfilt.callbacks.soft_filter_pruning import pruned_count
from keras_dynfilt.pruning import compact, filter_groups, model_cost

L = keras.layers


def residual_model(name="residual"):
    """`a` (10 filters, BN) and `b` (10) meet in an Add: one coupled group;
    `c` (6 filters) feeds global pooling and the head: a group of its own."""
    inputs = keras.Input((6, 6, 3))
    a = L.Conv2D(10, 3, padding="same", name="a")(inputs)
    a = L.BatchNormalization(name="bn_a")(a)
    b = L.Conv2D(10, 1, name="b")(inputs)
    x = L.ReLU(name="relu")(L.Add(name="add")([a, b]))
    c = L.Conv2D(6, 3, padding="same", name="c")(x)
    c = L.BatchNormalization(name="bn_c")(c)
    x = L.GlobalAveragePooling2D(name="gap")(L.ReLU(name="relu_c")(c))
    return keras.Model(inputs, L.Dense(4, name="head")(x), name=name)


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6, 6, 3)).astype("float32")
    y = rng.integers(0, 4, size=(n,)).astype("int32")
    return x, y


def compiled(model, learning_rate=0.05, momentum=0.0, **kwargs):
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        **kwargs,
    )
    return model


def shifted(model, seed=0):
    """Positive biases and BN shifts, as in a trained network (at
    initialisation they are 0, and a zeroed filter then feeds a ReLU exactly
    0, which passes no gradient: the reference code behaves the same)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for name in ("bias", "beta"):
            weight = getattr(layer, name, None)
            if weight is not None:
                weight.assign(
                    rng.uniform(0.2, 0.5, weight.shape).astype("float32")
                )
    return model


def zero_filters(model, layer):
    """Indices of the layer's filters whose kernel slice is all zero."""
    kernel = keras.ops.convert_to_numpy(model.get_layer(layer).kernel)
    flat = np.moveaxis(kernel, -1, 0).reshape(kernel.shape[-1], -1)
    return np.flatnonzero(~np.any(flat != 0, axis=1))


class Recorder(keras.callbacks.Callback):
    """Records the zeroed filters of some layers at chosen hooks."""

    def __init__(self, layers=("a", "b", "c"), batches=False):
        super().__init__()
        self.layers = layers
        self.batches = batches
        self.events = []

    def _record(self, when):
        self.events.append(
            (when, {n: zero_filters(self.model, n) for n in self.layers})
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._record(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self._record(("epoch_end", epoch))

    def on_train_batch_end(self, batch, logs=None):
        if self.batches:
            self._record(("batch_end", batch))


def fit(model, callbacks, epochs=1, batch_size=8, n=32, **kwargs):
    x, y = data(n)
    return model.fit(
        x, y, epochs=epochs, batch_size=batch_size, shuffle=False,
        callbacks=callbacks, verbose=0, **kwargs,
    )


# -- rounding, coupling, criteria -------------------------------------------
@pytest.mark.parametrize(
    "size, rate, expected",
    [(10, 0.3, 3), (6, 0.3, 1), (16, 0.3, 4), (16, 0.4, 6), (64, 0.4, 25),
     (100, 0.29, 29), (10, 0.0, 0), (3, 0.99, 2), (1, 0.5, 0),
     # float32 sparsities, as tfmot's schedules return them
     (10, float(np.float32(0.7)), 7), (10, 0.099999994, 1),
     (2048, float(np.float32(0.3)), 614), (64, 0.3999, 25)],
)
def test_pruned_count_is_floor(size, rate, expected):
    assert pruned_count(size, rate) == expected


@pytest.mark.parametrize("rate", [0.3, 0.5, 0.15])
def test_floor_rounding_per_group(rate):
    model = compiled(residual_model())
    fit(model, [SoftFilterPruning(rate)])
    assert len(zero_filters(model, "a")) == math.floor(10 * rate)
    assert len(zero_filters(model, "c")) == math.floor(6 * rate)


def test_coupled_group_shares_one_mask():
    model = compiled(residual_model())
    sfp = SoftFilterPruning(0.3)
    fit(model, [sfp])
    zeroed = zero_filters(model, "a")
    assert len(zeroed) == 3
    # The residual add couples a and b: one mask for both ...
    np.testing.assert_array_equal(zero_filters(model, "b"), zeroed)
    # ... and the final mask also zeroes BN gamma/beta of those channels.
    bn = model.get_layer("bn_a")
    for weight in (bn.gamma, bn.beta):
        value = keras.ops.convert_to_numpy(weight)
        assert np.all(value[zeroed] == 0)
        assert np.all(value[np.setdiff1d(np.arange(10), zeroed)] != 0)
    names = sorted(g.name for g, _ in sfp.groups)
    assert names == ["a (+1 coupled)", "c"]


def _expected_lowest(model, criterion, n):
    group = filter_groups(model, warn=False)[0]
    w = group.filter_weights().astype("float64")
    if criterion == "l2":
        scores = np.linalg.norm(w, axis=1)
    elif criterion == "l1":
        scores = np.abs(w).sum(axis=1)
    else:  # geometric median: sum of distances to every other filter
        scores = np.array(
            [np.linalg.norm(w - w[i], axis=1).sum() for i in range(len(w))]
        )
    return np.sort(np.argsort(scores, kind="stable")[:n])


@pytest.mark.parametrize("criterion", ["l2", "l1", "fpgm"])
def test_criteria_zero_the_expected_filters(criterion):
    model = compiled(residual_model())
    # Filters of very different scales so that the criteria disagree.
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        layer = model.get_layer(name)
        kernel = rng.normal(size=layer.kernel.shape)
        kernel *= rng.uniform(0.1, 3.0, size=kernel.shape[-1])
        kernel[..., 0] = np.sign(kernel[..., 0]) * 0.3  # flat: small L2
        layer.kernel.assign(kernel.astype("float32"))
    expected = _expected_lowest(model, criterion, 3)
    recorder = Recorder()
    fit(model, [SoftFilterPruning(0.3, criterion=criterion), recorder])
    first = recorder.events[0]
    assert first[0] == ("epoch_begin", 0)
    np.testing.assert_array_equal(first[1]["a"], expected)
    np.testing.assert_array_equal(first[1]["b"], expected)


def test_criteria_differ_on_this_model():
    model = residual_model()
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        layer = model.get_layer(name)
        kernel = rng.normal(size=layer.kernel.shape)
        kernel *= rng.uniform(0.1, 3.0, size=kernel.shape[-1])
        kernel[..., 0] = np.sign(kernel[..., 0]) * 0.3
        layer.kernel.assign(kernel.astype("float32"))
    picks = {c: tuple(_expected_lowest(model, c, 3)) for c in
             ("l2", "l1", "fpgm")}
    assert len(set(picks.values())) >= 2, picks


def test_callable_criterion():
    model = compiled(residual_model())
    recorder = Recorder()
    # Score = -index: the last filters have the lowest scores.
    sfp = SoftFilterPruning(
        0.3, criterion=lambda w: -np.arange(len(w), dtype="float64")
    )
    fit(model, [sfp, recorder])
    np.testing.assert_array_equal(recorder.events[0][1]["a"], [7, 8, 9])
    np.testing.assert_array_equal(recorder.events[0][1]["c"], [5])


# -- soft: zeroed filters keep training --------------------------------------
def test_soft_regrowth_between_epochs():
    model = compiled(shifted(residual_model()), learning_rate=0.1)
    recorder = Recorder()
    # frequency=2: masks at the start and after epoch 2 (the last) only.
    fit(model, [SoftFilterPruning(0.3, frequency=2), recorder], epochs=2)
    events = dict(recorder.events)
    assert len(events[("epoch_begin", 0)]["a"]) == 3
    assert len(events[("epoch_begin", 0)]["c"]) == 1
    # No mask after epoch 1: the zeroed filters have grown back (plain SGD,
    # no momentum: the gradient itself reaches them).
    assert len(events[("epoch_end", 0)]["a"]) == 0
    assert len(events[("epoch_end", 0)]["b"]) == 0
    assert len(events[("epoch_end", 0)]["c"]) == 0
    # Re-ranked and zeroed again after the last epoch.
    assert len(zero_filters(model, "a")) == 3
    assert len(zero_filters(model, "c")) == 1


def test_soft_regrowth_within_an_epoch():
    model = compiled(shifted(residual_model()), learning_rate=0.1)
    recorder = Recorder(batches=True)
    fit(model, [SoftFilterPruning(0.3), recorder], epochs=1)
    events = dict(recorder.events)
    masked = events[("epoch_begin", 0)]["a"]
    assert len(masked) == 3
    # One SGD step later the masked filters are non-zero again.
    assert len(np.intersect1d(events[("batch_end", 0)]["a"], masked)) == 0


def test_soft_mask_zeroes_filters_only_final_mask_everything():
    model = compiled(shifted(residual_model()), learning_rate=0.0)
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            bn = self.model.get_layer("bn_a")
            seen.append({
                "a": zero_filters(self.model, "a"),
                "bias": keras.ops.convert_to_numpy(
                    self.model.get_layer("a").bias),
                "gamma": keras.ops.convert_to_numpy(bn.gamma),
                "beta": keras.ops.convert_to_numpy(bn.beta),
            })

    fit(model, [SoftFilterPruning(0.3), Probe()], n=8)
    soft = seen[0]
    assert len(soft["a"]) == 3
    for name in ("bias", "gamma", "beta"):
        assert np.all(soft[name] != 0)
    final = zero_filters(model, "a")
    np.testing.assert_array_equal(final, soft["a"])  # learning rate 0
    for weight in (model.get_layer("a").bias, model.get_layer("bn_a").gamma,
                   model.get_layer("bn_a").beta):
        value = keras.ops.convert_to_numpy(weight)
        assert np.all(value[final] == 0)
        assert np.sum(value == 0) == 3


# -- compaction --------------------------------------------------------------
def test_masked_equals_compacted_predictions():
    model = compiled(residual_model(), momentum=0.9)
    sfp = SoftFilterPruning(0.3)
    fit(model, [sfp], epochs=2)
    x = data(16, seed=5)[0]
    expected = model.predict(x, verbose=0)
    for small in (sfp.compact_model(), compact(model)):
        assert small.get_layer("a").filters == 7
        assert small.get_layer("b").filters == 7
        assert small.get_layer("c").filters == 5
        assert small.count_params() < model.count_params()
        np.testing.assert_allclose(
            small.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5
        )


def test_logs_have_sparsity_and_flops_fraction():
    model = compiled(residual_model())
    history = fit(model, [SoftFilterPruning(0.3)], epochs=2)
    # 3 of 10 units of the a+b group (2 filters each) and 1 of 6 of c.
    assert history.history["sparsity"] == pytest.approx([7 / 26] * 2)
    full = model_cost(model).macs
    small = model_cost(compact(model)).macs
    assert history.history["flops_fraction"] == pytest.approx(
        [small / full] * 2
    )


def test_compact_model_needs_a_fit():
    with pytest.raises(ValueError, match="needs the masks of a `fit`"):
        SoftFilterPruning().compact_model()


def test_early_stop_still_masks_the_final_model():
    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    model = compiled(residual_model())
    # frequency=5 would mask after epoch 5 only; training stops after 1.
    fit(model, [SoftFilterPruning(0.3, frequency=5), Stop()], epochs=10)
    assert len(zero_filters(model, "a")) == 3
    gamma = keras.ops.convert_to_numpy(model.get_layer("bn_a").gamma)
    assert np.sum(gamma == 0) == 3  # the full (final) mask


# -- layer selection ---------------------------------------------------------
def test_per_layer_rates():
    model = compiled(residual_model())
    fit(model, [SoftFilterPruning({"b": 0.5, "c": 0.34})])
    assert len(zero_filters(model, "a")) == 5  # coupled with b
    assert len(zero_filters(model, "c")) == 2


def test_per_layer_rates_leave_unnamed_groups_alone():
    model = compiled(residual_model())
    fit(model, [SoftFilterPruning({"c": 0.5})])
    assert len(zero_filters(model, "a")) == 0
    assert len(zero_filters(model, "c")) == 3


def test_layers_and_exclude():
    model = compiled(residual_model())
    fit(model, [SoftFilterPruning(0.5, layers=["c"])])
    assert len(zero_filters(model, "a")) == 0
    assert len(zero_filters(model, "c")) == 3
    model = compiled(residual_model())
    fit(model, [SoftFilterPruning(0.5, exclude="b")])
    assert len(zero_filters(model, "a")) == 0
    assert len(zero_filters(model, "c")) == 3


def test_nested_model_layer_paths():
    inner = residual_model("inner")
    inputs = keras.Input((6, 6, 3))
    model = compiled(keras.Model(inputs, inner(inputs), name="outer"))
    fit(model, [SoftFilterPruning(0.5, layers=["inner/c"])])
    assert len(zero_filters(inner, "c")) == 3
    assert len(zero_filters(inner, "a")) == 0


# -- schedules ---------------------------------------------------------------
def test_constant_sparsity_schedule_protocol():
    schedule = ConstantSparsity(0.3, begin_step=10, end_step=50, frequency=20)
    assert schedule(0) == (False, 0.3)
    assert schedule(10) == (True, 0.3)
    assert schedule(20) == (False, 0.3)
    assert schedule(30) == (True, 0.3)
    assert schedule(70) == (False, 0.3)
    assert schedule(keras.ops.convert_to_tensor(50)) == (True, 0.3)
    assert ConstantSparsity(0.2, frequency=1)(10**6) == (True, 0.2)
    assert ConstantSparsity.from_config(schedule.get_config()).get_config() \
        == schedule.get_config()


def test_polynomial_decay_schedule_matches_formula():
    schedule = PolynomialDecay(0.1, 0.5, begin_step=4, end_step=20,
                               power=3, frequency=4)
    for step in range(0, 30):
        should, sparsity = schedule(step)
        p = min(1.0, max(0.0, (step - 4) / 16))
        assert sparsity == pytest.approx(0.5 + (0.1 - 0.5) * (1 - p) ** 3)
        assert should == (4 <= step <= 20 and (step - 4) % 4 == 0)
    assert PolynomialDecay.from_config(schedule.get_config()).get_config() \
        == schedule.get_config()


def test_schedule_drives_the_masks_per_step():
    model = compiled(residual_model())
    recorder = Recorder(batches=True)
    schedule = PolynomialDecay(0.0, 0.5, begin_step=0, end_step=4,
                               power=1, frequency=1)
    sfp = SoftFilterPruning(schedule=schedule)
    fit(model, [sfp, recorder], epochs=1)  # 4 steps of 8
    counts = [len(z["a"]) for when, z in recorder.events
              if when[0] == "batch_end"]
    # Step s (after s optimizer steps) prunes floor(10 * 0.5 * s / 4).
    assert counts == [1, 2, 3, 5]
    assert len(zero_filters(model, "c")) == 3


def test_schedule_with_tf_tensors_like_tfmot():
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tfmot schedules return TensorFlow tensors")

    def tfmot_like(step):  # tfmot's schedules return tf tensors
        step = tf.convert_to_tensor(step, tf.int64)
        return tf.equal(step % 2, 0), tf.constant(0.3, tf.float32)

    model = compiled(residual_model())
    fit(model, [SoftFilterPruning(schedule=tfmot_like)])
    assert len(zero_filters(model, "a")) == 3


# tfmot's own schedules: tests/callbacks/test_tfmot_interop.py (subprocess).


# -- the shipped model is the validated model --------------------------------
def _evaluate(model, x, y):
    compiled(model, metrics=["accuracy"])
    return model.evaluate(x, y, verbose=0, return_dict=True)


@pytest.mark.parametrize("finetune_epochs", [0, 1])
def test_last_validation_is_the_returned_and_the_compacted_model(
    finetune_epochs,
):
    # Shifted biases and BN betas: the final mask's zeroing of gamma/beta
    # changes the outputs, so validating before it would report another
    # model.
    model = compiled(shifted(residual_model()), momentum=0.9,
                     metrics=["accuracy"])
    sfp = SoftFilterPruning(0.3, finetune_epochs=finetune_epochs)
    xv, yv = data(16, seed=3)
    history = fit(model, [sfp], epochs=2, validation_data=(xv, yv))
    returned = model.evaluate(xv, yv, verbose=0, return_dict=True)
    small = _evaluate(sfp.compact_model(), xv, yv)
    assert history.history["val_loss"][-1] == pytest.approx(
        returned["loss"], rel=1e-5)
    assert small["loss"] == pytest.approx(returned["loss"], rel=1e-5)
    assert history.history["val_accuracy"][-1] == returned["accuracy"] \
        == small["accuracy"]


def test_soft_masked_model_differs_from_the_final_one():
    # The reason for the test above: on this model the soft mask (kernels
    # only) and the final mask (also BN gamma/beta) give different outputs.
    model = compiled(shifted(residual_model()), learning_rate=0.0)
    soft = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            soft.append(self.model.predict(data(8, seed=4)[0], verbose=0))

    fit(model, [SoftFilterPruning(0.3), Probe()], n=8)
    final = model.predict(data(8, seed=4)[0], verbose=0)
    assert np.abs(final - soft[0]).max() > 1e-3


def test_finetune_holds_the_final_mask():
    model = compiled(shifted(residual_model()), momentum=0.9)
    start = []

    class Watch(keras.callbacks.Callback):
        """After SFP: the state every hook leaves behind."""

        def __init__(self):
            super().__init__()
            self.events = []

        def _record(self, when):
            bn = self.model.get_layer("bn_a")
            self.events.append((when, {
                "a": zero_filters(self.model, "a"),
                "c": zero_filters(self.model, "c"),
                "beta_zeros": int(np.sum(
                    keras.ops.convert_to_numpy(bn.beta) == 0)),
                "kernel": keras.ops.convert_to_numpy(
                    self.model.get_layer("a").kernel).copy(),
            }))

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                start.append(zero_filters(self.model, "a"))
            self._record(("epoch_begin", epoch))

        def on_train_batch_end(self, batch, logs=None):
            self._record(("batch_end", batch))

    watch = Watch()
    sfp = SoftFilterPruning(0.3, finetune_epochs=2)
    fit(model, [sfp, watch], epochs=3)
    finetune = watch.events[watch.events.index(
        next(e for e in watch.events if e[0] == ("epoch_begin", 1))):]
    assert len(finetune) == 2 * (1 + 4)  # 2 epochs of 4 steps
    for _, z in finetune:
        np.testing.assert_array_equal(z["a"], start[0])
        assert len(z["a"]) == 3 and len(z["c"]) == 1
        assert z["beta_zeros"] == 3  # the full mask, held
    # The kept filters did train during the fine-tuning.
    kept = np.setdiff1d(np.arange(10), start[0])
    assert np.abs(finetune[-1][1]["kernel"][..., kept]
                  - finetune[0][1]["kernel"][..., kept]).max() > 0
    np.testing.assert_array_equal(zero_filters(model, "a"), start[0])


def test_resume_inside_finetune_keeps_the_held_mask():
    # A criterion that does not rank zero filters lowest (as FPGM may not;
    # this one zeroes the largest): a run resumed inside the fine-tuning
    # phase must hold the adopted final mask, not re-rank.
    def largest(w):
        return -np.linalg.norm(w, axis=1)

    model = compiled(residual_model())
    fit(model, [SoftFilterPruning(0.3, finetune_epochs=2)], epochs=3)
    before = {n: zero_filters(model, n) for n in ("a", "c")}
    assert len(before["a"]) == 3
    compiled(model, learning_rate=0.0)
    sfp = SoftFilterPruning(0.3, criterion=largest, finetune_epochs=2)
    fit(model, [sfp], epochs=3, initial_epoch=2)  # as BackupAndRestore does
    for name in ("a", "c"):
        np.testing.assert_array_equal(zero_filters(model, name), before[name])


def test_finetune_epochs_must_leave_a_soft_epoch():
    model = compiled(residual_model())
    with pytest.raises(ValueError, match="`finetune_epochs` must be smaller "
                                         "than the `epochs`.*epochs=2"):
        fit(model, [SoftFilterPruning(0.3, finetune_epochs=2)], epochs=2)
    with pytest.raises(ValueError, match="`finetune_epochs` must be an "
                                         "integer >= 0.*-1"):
        SoftFilterPruning(finetune_epochs=-1)


# Keras's PyTorch trainer refuses steps_per_execution > 1 ("must be 1 with the
# PyTorch backend"), so there is nothing to test there.
needs_steps_per_execution = pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="Keras's PyTorch backend has no steps_per_execution > 1",
)


@needs_steps_per_execution
@pytest.mark.parametrize("steps_per_execution", [2, 4])
def test_schedule_with_steps_per_execution(steps_per_execution):
    # Due steps 0, 3, 6 (frequency 3): with 2 steps per execution, the
    # callback sees steps 2, 4, 6, 8 only and must mask for step 3 at 4.
    model = compiled(shifted(residual_model()),
                     steps_per_execution=steps_per_execution)
    recorder = Recorder(batches=True)
    schedule = PolynomialDecay(0.0, 0.5, begin_step=0, end_step=8,
                               power=1, frequency=3)
    fit(model, [SoftFilterPruning(schedule=schedule), recorder], n=64)
    at_step = {when[1] + 1: len(z["a"]) for when, z in recorder.events
               if when[0] == "batch_end"}
    assert sorted(at_step) == list(
        range(steps_per_execution, 9, steps_per_execution))
    # floor(10 * 0.5 * s / 8) at due step s: 1 at s=3, 3 at s=6; the mask
    # lands at the end of the execution holding the due step.
    expected = {2: {4: 1, 6: 3}, 4: {4: 1, 8: 3}}
    for step, count in expected[steps_per_execution].items():
        assert at_step[step] == count, at_step
    assert len(zero_filters(model, "a")) == 5  # final: sparsity 0.5


@needs_steps_per_execution
def test_epoch_masks_with_steps_per_execution():
    model = compiled(shifted(residual_model()), momentum=0.9,
                     steps_per_execution=3)
    xv, yv = data(16, seed=3)
    sfp = SoftFilterPruning(0.3, finetune_epochs=1)
    history = fit(model, [sfp], epochs=2, validation_data=(xv, yv))
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate(xv, yv, verbose=0), rel=1e-5)
    assert len(zero_filters(model, "a")) == 3


# -- distribution, XLA, JAX --------------------------------------------------
def _replica_zero_filters(variable):
    components = getattr(variable.value, "values", None)
    assert components is not None and len(components) == 2
    zero_sets = []
    for component in components:
        kernel = component.numpy()
        flat = np.moveaxis(kernel, -1, 0).reshape(kernel.shape[-1], -1)
        zero_sets.append(np.flatnonzero(~np.any(flat != 0, axis=1)))
    return zero_sets


@pytest.mark.tensorflow
@pytest.mark.parametrize("jit", [False, True])
def test_mirrored_strategy_masks_every_replica(jit):
    from keras_dynfilt.training import compile_replica_jit
    from tests.harness import mirrored_strategy

    strategy = mirrored_strategy()
    with strategy.scope():
        model = shifted(residual_model())
        compile_replica_jit(
            model,
            optimizer=keras.optimizers.SGD(0.05),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
    sfp = SoftFilterPruning(0.3)
    recorder = Recorder(batches=True)
    history = fit(model, [sfp, recorder], epochs=2, batch_size=16)
    assert bool(getattr(model, "_replica_jit", False)) is jit
    assert np.all(np.isfinite(history.history["loss"]))
    # Both replicas' copies carry the same zeros, the ones of the mask.
    for name, n in (("a", 3), ("b", 3), ("c", 1)):
        first, second = _replica_zero_filters(model.get_layer(name).kernel)
        np.testing.assert_array_equal(first, second)
        assert len(first) == n
    # Soft: after one step the replicas have trained the zeroed filters.
    assert len(dict(recorder.events)[("batch_end", 0)]["a"]) == 0
    # Masked == compacted. Compared on one device: Keras leaves each
    # replica's BatchNormalization moving statistics to drift apart
    # (aggregation NONE), whatever the callback does.
    masked = residual_model()
    masked.set_weights(model.get_weights())
    x = data(8, seed=2)[0]
    np.testing.assert_allclose(
        sfp.compact_model().predict(x, verbose=0),
        masked.predict(x, verbose=0), rtol=1e-5, atol=1e-5,
    )


# -- resume after interruption ----------------------------------------------
class Crash(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize(
    "sfp_first, frequency", [(True, 1), (False, 1), (False, 2)]
)
def test_resume_after_interruption(tmp_path, sfp_first, frequency):
    # Killed after epoch 2; a mask is due there in every case (frequency 2:
    # masks after epochs 2 and 4), from a backup taken after it (SFP first)
    # or before it (SFP second).
    epochs = 4
    model = residual_model()
    weights = model.get_weights()
    compiled(model, momentum=0.9)
    history = fit(model, [SoftFilterPruning(0.3, frequency=frequency)],
                  epochs=epochs, n=16)
    expected = model.get_weights()

    def run(crash_at):
        keras.utils.set_random_seed(7)  # a fresh start elsewhere
        model = residual_model()
        model.set_weights(weights)
        compiled(model, momentum=0.9)
        sfp = SoftFilterPruning(0.3, frequency=frequency)
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        callbacks = [sfp, backup] if sfp_first else [backup, sfp]
        if crash_at is not None:
            callbacks.append(Crash(crash_at))
        return model, fit(model, callbacks, epochs=epochs, n=16)

    with pytest.raises(RuntimeError, match="simulated crash"):
        run(crash_at=1)
    resumed, resumed_history = run(crash_at=None)
    assert resumed_history.epoch == [2, 3]  # epochs 3 and 4 only
    for got, want in zip(resumed.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert resumed_history.history["sparsity"] == history.history[
        "sparsity"][2:]


def test_resume_from_masked_backup_adopts_the_zeros():
    # FPGM does not rank zero filters lowest: resuming must keep the masked
    # filters rather than re-rank (state rebuilt from the variables).
    model = compiled(residual_model())
    sfp = SoftFilterPruning(0.3, criterion="fpgm")
    fit(model, [sfp])
    before = {n: zero_filters(model, n) for n in ("a", "c")}
    recorder = Recorder()
    compiled(model, learning_rate=0.0)
    fit(model, [SoftFilterPruning(0.3, criterion="fpgm"), recorder])
    for name in ("a", "c"):
        np.testing.assert_array_equal(recorder.events[0][1][name],
                                      before[name])


# -- errors ----------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"pruning_rate": 1.0}, ValueError,
         r"`pruning_rate` must be a float in \[0, 1\).*pruning_rate=1.0"),
        ({"pruning_rate": -0.1}, ValueError, r"pruning_rate=-0.1"),
        ({"pruning_rate": True}, ValueError, r"pruning_rate=True"),
        ({"pruning_rate": "0.3"}, ValueError, r"pruning_rate='0.3'"),
        ({"pruning_rate": {"a": 1.5}}, ValueError,
         r"`pruning_rate\['a'\]` must be a float.*1.5"),
        ({"pruning_rate": {}}, ValueError, r"must not be an empty dict"),
        ({"pruning_rate": {3: 0.3}}, TypeError, r"keys must be layer names"),
        ({"criterion": "l3"}, ValueError,
         r"`criterion` must be one of \('l1', 'l2', 'fpgm', 'random', "
         r"'bn_scale', 'lamp'\).*'l3'"),
        ({"frequency": 0}, ValueError, r"`frequency` must be a positive.*0"),
        ({"frequency": 1.5}, ValueError, r"frequency=1.5"),
        ({"layers": [3]}, TypeError, r"`layers` must be a list of layer"),
        ({"schedule": 0.3}, TypeError, r"`schedule` must be a callable"),
        ({"pruning_rate": {"a": 0.3}, "schedule": ConstantSparsity(0.3)},
         ValueError, r"either a per-layer `pruning_rate` dict or a"),
    ],
)
def test_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        SoftFilterPruning(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layers": ["nope"]},
         r"`layers` names 'nope', which is not a layer of model 'residual'"),
        ({"exclude": ["nope"]}, r"`exclude` names 'nope', which is not"),
        ({"pruning_rate": {"nope": 0.3}}, r"`pruning_rate` names 'nope'"),
        ({"layers": ["bn_a"]},
         r"`layers` names 'bn_a', which has no prunable filters"),
        ({"exclude": ["a", "c"]}, r"no filter group left to prune"),
        ({"pruning_rate": {"a": 0.3, "b": 0.5}},
         r"different rates to coupled layers of group 'a \(\+1 coupled\)'"),
    ],
)
def test_model_errors(kwargs, match):
    model = compiled(residual_model())
    with pytest.raises(ValueError, match=match):
        fit(model, [SoftFilterPruning(**kwargs)])


def test_no_prunable_layers():
    inputs = keras.Input((5,))
    model = compiled(keras.Model(inputs, L.Dense(4)(inputs), name="linear"))
    with pytest.raises(ValueError, match="found no prunable filters in model "
                                         "'linear'"):
        model.fit(np.zeros((4, 5)), np.zeros(4), verbose=0,
                  callbacks=[SoftFilterPruning()])


def test_subclassed_model_is_traced_once_built():
    # A hand-written `call` is traced (issue 24) once the model knows its
    # input shape; SFP then zeroes whole filters of the traced conv.
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = L.Conv2D(4, 3)
            self.head = L.Dense(4)

        def call(self, x):
            return self.head(keras.ops.mean(self.conv(x), axis=(1, 2)))

    model = compiled(Net())
    model(data(2)[0])
    fit(model, [SoftFilterPruning(0.5)])
    kernel = keras.ops.convert_to_numpy(model.conv.kernel)
    zeroed = np.abs(kernel).sum(axis=(0, 1, 2)) == 0
    assert zeroed.sum() == 2, zeroed


def test_schedule_sparsity_out_of_range():
    model = compiled(residual_model())
    with pytest.raises(ValueError, match=r"sparsity in \[0, 1\).*1.5"):
        fit(model, [SoftFilterPruning(schedule=lambda step: (True, 1.5))])


def test_criterion_returning_wrong_shape():
    model = compiled(residual_model())
    sfp = SoftFilterPruning(criterion=lambda w: np.zeros(3))
    with pytest.raises(ValueError, match="one score per filter"):
        fit(model, [sfp])


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (ConstantSparsity, {"target_sparsity": 1.0},
         r"`target_sparsity` must be a float in \[0, 1\)"),
        (ConstantSparsity, {"target_sparsity": 0.3, "frequency": 0},
         r"`frequency` must be an integer >= 1"),
        (ConstantSparsity, {"target_sparsity": 0.3, "begin_step": 5,
                            "end_step": 2}, r"`end_step` must be >="),
        (ConstantSparsity, {"target_sparsity": 0.3, "begin_step": -1},
         r"`begin_step` must be an integer >= 0"),
        (PolynomialDecay, {"initial_sparsity": 0.0, "final_sparsity": 0.5,
                           "begin_step": 3, "end_step": 3},
         r"`end_step` must be > `begin_step`"),
        (PolynomialDecay, {"initial_sparsity": 0.0, "final_sparsity": 1.2,
                           "begin_step": 0, "end_step": 3},
         r"`final_sparsity` must be a float"),
        (PolynomialDecay, {"initial_sparsity": 0.0, "final_sparsity": 0.5,
                           "begin_step": 0, "end_step": 3, "power": 0},
         r"`power` must be a finite positive number"),
    ],
)
def test_schedule_errors(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_exports():
    assert keras_dynfilt.callbacks.SoftFilterPruning is SoftFilterPruning
    assert keras_dynfilt.callbacks.PolynomialDecay is PolynomialDecay


@pytest.mark.parametrize(
    "schedule",
    [ConstantSparsity(0.3, begin_step=2, end_step=20, frequency=3),
     PolynomialDecay(0.1, 0.6, begin_step=1, end_step=9, power=2,
                     frequency=2)],
    ids=["constant", "polynomial"],
)
def test_schedules_are_keras_serializable(schedule):
    name = type(schedule).__name__
    assert keras.saving.get_registered_name(type(schedule)) == \
        f"keras_dynfilt>{name}"
    config = keras.saving.serialize_keras_object(schedule)
    assert config["registered_name"] == f"keras_dynfilt>{name}"
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    for step in range(25):
        assert restored(step) == schedule(step)
    again = type(schedule).from_config(schedule.get_config())
    assert again.get_config() == schedule.get_config()
