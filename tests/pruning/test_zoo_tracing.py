"""Tracing: custom layers and subclassed models are pruned through."""

import warnings

import keras
import numpy as np
import pytest

from keras_dynfilt.pruning import compact, filter_groups, trace
from tests.pruning import zoo

L = keras.layers


def quiet_compact(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compact(model)


def test_residual_blocks_are_traced_and_pruned(tmp_path):
    model = zoo.residual_blocks_model()
    groups = filter_groups(model, warn=False)
    assert not groups.barriers
    assert [b.path for b in groups.traced] == ["block1", "block2"]
    # The residual chain couples the stem with both blocks' second
    # convolutions; each block's first convolution is a group of its own.
    blocks = [sorted(p.split("/")[0] for p in g.layers) for g in groups]
    assert blocks == [["block1", "block2", "stem"], ["block1"], ["block2"]]
    assert [g.size for g in groups] == [8, 8, 8]
    with pytest.warns(UserWarning, match="block1.*ResidualBlock"):
        compact(model)
    zoo.check_four(model, tmp_path)


def test_nested_custom_blocks_are_traced_recursively(tmp_path):
    model = zoo.inverted_residual_model()
    groups = filter_groups(model, warn=False)
    assert not groups.barriers
    traced = [(b.path.split("/")[0], b.class_name) for b in groups.traced]
    assert traced == [("stage", "Stage")] + [("stage", "InvertedResidual")] * 2
    # Expansions (24) of each block are groups; the residual chain (8).
    assert sorted(g.size for g in groups) == [8, 16, 24, 24]
    small = zoo.check_four(model, tmp_path)
    # The traced block is a functional model of its smaller parts.
    stage = small.get_layer("stage")
    assert isinstance(stage, keras.Model)
    assert type(stage) is not zoo.Stage


def test_attention_block_written_with_ops(tmp_path):
    model = zoo.attention_model()
    groups = filter_groups(model, warn=False)
    # q, k, v feed matmuls over channels (held); the MLP's hidden layer
    # is prunable through the traced block.
    (group,) = groups
    assert group.layers[0].startswith("attn/") and group.size == 16
    zoo.check_four(model, tmp_path)


def test_subclassed_model_with_handwritten_call(tmp_path):
    model = zoo.subclassed_model()
    groups = filter_groups(model, warn=False)
    assert groups.traced[0].class_name == "SubclassedNet"
    small = zoo.check_four(model, tmp_path)
    assert type(small) is not zoo.SubclassedNet
    assert small.name == "subclassed"


def test_masks_act_on_the_original_variables():
    model = zoo.residual_blocks_model()
    traced = trace(model)
    assert traced is trace(model)  # cached: one graph for every function
    original = {id(v) for v in model.weights}
    assert {id(v) for v in traced.weights} == original


def test_untraceable_subclass_is_refused_with_the_construct():
    model = zoo.ControlFlowNet(name="branchy")
    model.build((None, 6, 6, 3))
    model(np.zeros((1, 6, 6, 3), "float32"))  # runs eagerly
    with pytest.raises(TypeError, match=(
        r"'branchy' \(ControlFlowNet\).*Python control flow on a tensor "
        r"value \(`if ops.mean\(x\) > 0:`"
    )):
        filter_groups(model, warn=False)
    with pytest.raises(TypeError, match="Python control flow"):
        compact(model)


def test_unbuilt_subclass_is_refused():
    with pytest.raises(TypeError, match="no recorded input shape"):
        filter_groups(zoo.SubclassedNet(), warn=False)


def test_own_variable_in_call_stays_a_barrier_naming_it():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, name="conv")(inputs)
    x = zoo.OwnWeightScale(name="scale")(x)
    x = L.Conv2D(4, 3, name="conv2")(x)
    model = keras.Model(inputs, L.GlobalAveragePooling2D()(x))
    groups = filter_groups(model, warn=False)
    (barrier,) = groups.barriers
    assert barrier.layer == "scale"
    assert "gamma" in barrier.reason and "not through a sublayer" in (
        barrier.reason
    )
    assert "conv" not in {p for g in groups for p in g.layers}
    # Nothing prunable there: compact keeps the layer as it is.
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")
    small = quiet_compact(model)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x)),
        keras.ops.convert_to_numpy(small(x)), rtol=1e-6,
    )


def test_backend_native_op_is_refused():
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        native_tanh = tf.math.tanh
    else:
        import jax.numpy as jnp

        native_tanh = jnp.tanh

    class Native(L.Layer):
        def call(self, x):
            return native_tanh(x)

    inputs = keras.Input((4,))
    model = keras.Model(inputs, Native(name="native")(L.Dense(3)(inputs)))
    (barrier,) = filter_groups(model, warn=False).barriers
    assert "backend-native op" in barrier.reason
    assert "native_tanh(x)" in barrier.reason


def test_state_update_is_refused():
    class Counter(L.Layer):
        def build(self, input_shape):
            self.calls = self.add_weight(
                shape=(), initializer="zeros", trainable=False, name="calls"
            )

        def call(self, x):
            self.calls.assign_add(1.0)
            return x

    inputs = keras.Input((4,))
    model = keras.Model(inputs, Counter(name="counter")(L.Dense(3)(inputs)))
    (barrier,) = filter_groups(model, warn=False).barriers
    assert "state update" in barrier.reason


def test_lambda_layers_are_traced_and_reload_safely(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="a")(inputs)
    x = L.Lambda(lambda t: keras.ops.relu(t) * 2.0, name="double_relu")(x)
    x = L.Conv2D(4, 3, name="b")(x)
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    groups = filter_groups(model, warn=False)
    assert [b.class_name for b in groups.traced] == ["Lambda"]
    # The compacted model has no Lambda left: it loads with safe_mode.
    small = zoo.check_four(model, tmp_path)
    assert not any(isinstance(la, L.Lambda) for la in small.layers)


def test_traced_blocks_match_in_training_mode():
    model = zoo.residual_blocks_model()
    zoo.randomize(model, seed=5)
    zoo.zero_random_units(model, seed=5)
    x = zoo.inputs_like(model, batch=4)
    small = quiet_compact(model)
    assert zoo.max_relative_difference(
        zoo.run(model, x, training=True), zoo.run(small, x, training=True)
    ) <= 1e-5


class SharedHead(L.Layer):
    """One head applied to every pyramid level (RetinaNet's layout)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(8, 3, padding="same")
        self.out = L.Conv2D(8, 1)
        self.act = keras.activations.get("relu")  # an op of its own

    def call(self, x):
        return self.out(self.act(self.conv(x)))


def test_a_block_shared_across_pyramid_levels_is_traced_once(tmp_path):
    inputs = keras.Input((8, 8, 3))
    p3 = L.Conv2D(6, 3, padding="same", name="p3")(inputs)
    p4 = L.Conv2D(6, 3, strides=2, padding="same", name="p4")(p3)
    head = SharedHead(name="head")
    a = L.GlobalAveragePooling2D()(head(p3))
    b = L.GlobalAveragePooling2D()(head(p4))
    model = keras.Model(inputs, L.Add()([a, b]), name="pyramid")
    groups = filter_groups(model, warn=False)
    assert [b.path for b in groups.traced] == ["head"]  # one graph
    assert not groups.barriers
    # p3 and p4 feed the same head convolution: coupled.
    assert any({"p3", "p4"} <= set(g.layers) for g in groups)
    zoo.check_four(model, tmp_path)


def test_soft_filter_pruning_through_traced_blocks():
    from keras_dynfilt.callbacks import SoftFilterPruning

    model = zoo.residual_blocks_model()
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    y = np.arange(32) % 3
    model.fit(x, y, epochs=2, batch_size=16, verbose=0,
              callbacks=[SoftFilterPruning(0.5)])
    small = quiet_compact(model)
    # Half of every group's filters, inside the blocks too.
    assert small.get_layer("stem").filters == 4
    assert [la.filters for la in small.get_layer("block1").layers
            if isinstance(la, L.Conv2D)] == [4, 4]
    assert zoo.max_relative_difference(
        zoo.run(model, x), zoo.run(small, x)
    ) <= 1e-5
