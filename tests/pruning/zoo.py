"""Models of the zoo tests: written the way the Keras guides teach (blocks
as `Layer` subclasses with their own `call`, subclassed models) and the
layers other libraries use. Tiny, so that every test is fast."""

import warnings

import keras
import numpy as np
from keras import ops

from keras_dynfilt.pruning import (
    apply_group_masks,
    compact,
    filter_groups,
    model_cost,
)
from tests.pruning.builders import (  # noqa: F401 - re-exported
    max_relative_difference,
    randomize,
    zero_random_units,
)

L = keras.layers


class ResidualBlock(L.Layer):
    """conv-BN-relu-conv-BN plus the input, then relu."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = L.Conv2D(filters, 3, padding="same", use_bias=False)
        self.bn1 = L.BatchNormalization()
        self.conv2 = L.Conv2D(filters, 3, padding="same", use_bias=False)
        self.bn2 = L.BatchNormalization()

    def call(self, x, training=None):
        y = ops.relu(self.bn1(self.conv1(x), training=training))
        y = self.bn2(self.conv2(y), training=training)
        return ops.relu(x + y)


class InvertedResidual(L.Layer):
    """MobileNetV2's block: expand, depthwise, project, plus the input."""

    def __init__(self, channels, expand=3, **kwargs):
        super().__init__(**kwargs)
        self.expand = L.Conv2D(channels * expand, 1, use_bias=False)
        self.bn1 = L.BatchNormalization()
        self.depthwise = L.DepthwiseConv2D(3, padding="same", use_bias=False)
        self.bn2 = L.BatchNormalization()
        self.project = L.Conv2D(channels, 1, use_bias=False)
        self.bn3 = L.BatchNormalization()

    def call(self, x):
        y = ops.relu6(self.bn1(self.expand(x)))
        y = ops.relu6(self.bn2(self.depthwise(y)))
        return x + self.bn3(self.project(y))


class AttentionBlock(L.Layer):
    """Single-head self-attention written with keras.ops, then an MLP."""

    def __init__(self, dim, hidden, **kwargs):
        super().__init__(**kwargs)
        self.q = L.Dense(dim)
        self.k = L.Dense(dim)
        self.v = L.Dense(dim)
        self.norm = L.LayerNormalization()
        self.fc1 = L.Dense(hidden, activation="gelu")
        self.fc2 = L.Dense(dim)
        self.scale = 1.0 / float(np.sqrt(dim))

    def call(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        scores = ops.matmul(q, ops.transpose(k, (0, 2, 1))) * self.scale
        x = x + ops.matmul(ops.softmax(scores, axis=-1), v)
        return x + self.fc2(self.fc1(self.norm(x)))


class Stage(L.Layer):
    """A block of blocks: tracing recurses into custom sublayers."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.first = InvertedResidual(channels)
        self.second = InvertedResidual(channels)

    def call(self, x):
        return self.second(self.first(x))


def residual_blocks_model():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = ResidualBlock(8, name="block1")(x)
    x = ResidualBlock(8, name="block2")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x), name="resblocks")


def inverted_residual_model():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = Stage(8, name="stage")(x)
    x = L.Conv2D(16, 1, name="top")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x), name="mbv2ish")


def attention_model():
    inputs = keras.Input((6, 5))
    x = L.Dense(8, name="embed")(inputs)
    x = AttentionBlock(8, 16, name="attn")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x), name="attention")


class SubclassedNet(keras.Model):
    """A `keras.Model` subclass with a hand-written `call`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stem = L.Conv2D(8, 3, padding="same")
        self.block = ResidualBlock(8)
        self.pool = L.GlobalAveragePooling2D()
        self.fc = L.Dense(16, activation="relu")
        self.head = L.Dense(3)

    def call(self, x):
        x = self.block(ops.relu(self.stem(x)))
        return self.head(self.fc(self.pool(x)))


def subclassed_model():
    model = SubclassedNet(name="subclassed")
    model(np.zeros((1, 8, 8, 3), "float32"))
    return model


class ControlFlowNet(keras.Model):
    """Branches in Python on a tensor's value: cannot be traced."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(4, 3)
        self.head = L.Dense(2)

    def call(self, x):
        x = self.conv(x)
        if ops.mean(x) > 0:
            x = -x
        return self.head(ops.mean(x, axis=(1, 2)))


@keras.saving.register_keras_serializable(package="zoo_tests")
class OwnWeightScale(L.Layer):
    """Multiplies by a weight of its own (not a sublayer's)."""

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=(input_shape[-1],), name="gamma")

    def call(self, x):
        return x * self.gamma


def inputs_like(model, batch=3, seed=1):
    """Random inputs for a model (functional or built subclass)."""
    rng = np.random.default_rng(seed)
    if getattr(model, "inputs", None):
        shapes = [tuple(x.shape[1:]) for x in model.inputs]
    else:
        shapes = [tuple(model.get_build_config()["input_shape"][1:])]
    arrays = [
        rng.normal(size=(batch,) + s).astype("float32") for s in shapes
    ]
    return arrays[0] if len(arrays) == 1 else arrays


def run(model, x, training=False):
    """Every output, flattened and concatenated (one array)."""
    outputs = keras.tree.flatten(model(x, training=training))
    return np.concatenate(
        [keras.ops.convert_to_numpy(o).reshape(-1) for o in outputs]
    )


def mask_and_compact(model, x, keeps):
    """Masks the model (`keeps`: `{group: keep}`), checks that the masks
    changed its output on `x` and that the compacted model's output equals
    the masked one. Returns `(small, masked output)`."""
    before = keras.ops.convert_to_numpy(model(x))
    apply_group_masks(keeps)
    masked = keras.ops.convert_to_numpy(model(x))
    assert np.abs(masked - before).max() > 1e-3  # the masks did something
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = compact(model)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(small(x)), masked, rtol=1e-5, atol=1e-5
    )
    return small, masked


def check_four(model, tmp_path, seed=3, min_groups=1, tolerance=1e-5):
    """The four checks: groups found, masked == compacted, fewer MACs and
    params, safe_mode reload. Returns the compacted model."""
    groups = filter_groups(model, warn=False)
    assert len(groups) >= min_groups, [g.name for g in groups]
    randomize(model, seed=seed)
    zero_random_units(model, seed=seed)
    x = inputs_like(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        small = compact(model)
    # compact says which blocks it traced, exactly when it traced some.
    said = [w for w in caught if "compact traced" in str(w.message)]
    expected = 1 if groups.traced else 0
    assert len(said) == expected, [str(w.message) for w in said]
    for w in caught:
        if w not in said:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    assert max_relative_difference(run(model, x), run(small, x)) <= tolerance
    full, pruned = model_cost(model, warn=False), model_cost(small, warn=False)
    assert pruned.macs < full.macs
    assert small.count_params() < full.params
    priced = model_cost(model, compacted=True, warn=False)
    assert priced.macs == pruned.macs
    path = str(tmp_path / "small.keras")
    small.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert max_relative_difference(run(small, x), run(loaded, x)) <= 1e-6
    return small
