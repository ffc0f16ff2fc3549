"""Property test: random functional models from the supported vocabulary
compact exactly.

Hypothesis draws a small network block by block (convolutions with
activations, depthwise convolutions, BatchNormalization with every flag,
Add / Multiply / Concatenate as layers or as ops on tensors, MFM,
squeeze-and-excitation gates, pooling, spatial and channel padding, channel
splits, elementwise ops with constants, Flatten -> Dense or global pooling
heads). Each model gets random BN statistics and biases, 40% of every group
zeroed, and must give: masked == compacted (inference and training mode),
`model_cost(compacted=True)` equal to the compacted model's counts.
Bounded and seeded (`derandomize=True`), so every run draws the same models.
"""

import keras
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from keras import ops

from keras_dynfilt.layers import MFM
from keras_dynfilt.pruning import compact, filter_groups, model_cost
from tests.pruning.builders import (
    max_relative_difference,
    random_inputs,
    randomize,
    run,
    zero_random_units,
)

L = keras.layers
BLOCKS = ["conv", "depthwise", "residual", "concat", "mfm", "se", "pool",
          "unary", "split", "pad"]
ACTIVATIONS = [None, "relu", "tanh", "swish", "sigmoid", "softplus"]


class Builder:
    def __init__(self, draw):
        self.draw = draw
        self.count = 0

    def name(self, kind):
        self.count += 1
        return f"{kind}_{self.count}"

    def width(self):
        return self.draw(st.integers(2, 6))

    def bn(self, x):
        if not self.draw(st.booleans()):
            return x
        return L.BatchNormalization(
            scale=self.draw(st.booleans()), center=self.draw(st.booleans()),
            name=self.name("bn"),
        )(x)

    def conv(self, x, filters=None, kernel=None):
        filters = filters or self.width()
        kernel = kernel or self.draw(st.sampled_from([1, 3]))
        x = L.Conv2D(
            filters, kernel, padding="same", name=self.name("conv"),
            activation=self.draw(st.sampled_from(ACTIVATIONS)),
            use_bias=self.draw(st.booleans()),
        )(x)
        return self.bn(x)

    def block(self, kind, x):
        draw, width = self.draw, x.shape[-1]
        as_op = draw(st.booleans())
        if kind == "conv":
            return self.conv(x)
        if kind == "depthwise":
            x = L.DepthwiseConv2D(
                3, depth_multiplier=draw(st.sampled_from([1, 2])),
                padding="same", name=self.name("dw"),
            )(x)
            return L.ReLU()(self.bn(x))
        if kind == "residual":
            y = self.conv(x, filters=width)
            return x + y if as_op else L.Add()([x, y])
        if kind == "concat":
            a, b = self.conv(x), self.conv(x)
            return (ops.concatenate([a, b], axis=-1) if as_op
                    else L.Concatenate()([a, b]))
        if kind == "mfm":
            return MFM(name=self.name("mfm"))(self.conv(x, 2 * self.width()))
        if kind == "se":
            s = L.GlobalAveragePooling2D(keepdims=True)(x)
            s = L.Conv2D(2, 1, activation="relu", name=self.name("se_r"))(s)
            if draw(st.booleans()):
                s = L.Conv2D(width, 1, activation="sigmoid",
                             name=self.name("se_e"))(s)
            else:  # MobileNetV3's hard sigmoid, written with ops
                s = L.Conv2D(width, 1, name=self.name("se_e"))(s)
                s = ops.relu6(s + 3.0) * (1.0 / 6.0)
            return x * s if as_op else L.Multiply()([x, s])
        if kind == "pool":
            if x.shape[1] < 4:
                return x
            return L.MaxPooling2D(2)(x) if as_op else L.AveragePooling2D(2)(x)
        if kind == "unary":
            fn = draw(st.sampled_from([
                lambda t: t * 2.0, lambda t: t / 3.0, lambda t: -t,
                lambda t: ops.relu(t), lambda t: ops.abs(t),
                lambda t: t + 1.0, lambda t: ops.sigmoid(t),
            ]))
            return fn(x)
        if kind == "split":
            if width < 2:
                return x
            cut = draw(st.integers(1, width - 1))
            a, b = ops.split(x, [cut], axis=-1)
            return ops.concatenate([self.conv(a), b], axis=-1)
        if kind == "pad":
            if draw(st.booleans()):  # spatial zeros, then a valid conv
                x = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
                return L.Conv2D(self.width(), 3, name=self.name("conv"))(x)
            return ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, 2]])
        raise AssertionError(kind)


def build_model(draw):
    # Built in the test body (drawing with `st.data()`), not inside a
    # strategy: Keras layers touch the `random` module when created.
    builder = Builder(draw)
    inputs = keras.Input((6, 6, 3))
    x = builder.conv(inputs)
    for kind in draw(st.lists(st.sampled_from(BLOCKS), min_size=1,
                              max_size=5)):
        x = builder.block(kind, x)
    if draw(st.booleans()):
        x = L.Flatten()(x)
    else:
        x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x))


# JAX runs each eager op of a new model through its own compilation: 15
# examples take minutes there, 5 keep the whole vocabulary drawn.
EXAMPLES = 15 if keras.backend.backend() == "tensorflow" else 5


@settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
    phases=[Phase.explicit, Phase.generate],  # shrinking takes minutes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_random_models_compact_exactly(data, seed):
    keras.utils.set_random_seed(seed)
    model = build_model(data.draw)
    randomize(model, seed=seed)
    groups = filter_groups(model, warn=False)
    assert not groups.barriers
    zero_random_units(model, seed=seed)
    x = random_inputs(model, batch=3, seed=seed)
    small = compact(model)
    assert max_relative_difference(run(model, x), run(small, x)) <= 1e-4
    assert max_relative_difference(
        run(model, x, training=True), run(small, x, training=True)
    ) <= 1e-4
    priced = model_cost(model, compacted=True)
    counted = model_cost(small)
    assert priced.macs == counted.macs
    assert priced.params == small.count_params()
    if any(g.size > 1 for g in groups):
        assert small.count_params() < model.count_params()
