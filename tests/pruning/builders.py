"""Small branching models and helpers shared by the pruning tests."""

import keras
import numpy as np

from keras_dynfilt.layers import MFM
from keras_dynfilt.models import resnet_cifar
from keras_dynfilt.pruning import apply_group_mask, filter_groups
from tests.random_weights import randomize  # noqa: F401 (re-exported)

L = keras.layers


def zero_random_units(model, seed=0, fraction=0.4):
    """Masks a random `fraction` of every group (at least one unit kept)."""
    rng = np.random.default_rng(seed)
    groups = filter_groups(model, warn=False)
    masks = {}
    for group in groups:
        keep = np.ones(group.size, bool)
        n = min(group.size - 1, max(1, int(group.size * fraction)))
        keep[rng.permutation(group.size)[:n]] = False
        apply_group_mask(group, keep)
        masks[group.name] = keep
    return masks


def max_relative_difference(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(a).max(), 1e-12)


def residual_model():
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, padding="same", name="a")(inputs)
    a = L.BatchNormalization(name="bn_a")(a)
    b = L.Conv2D(8, 1, name="b")(inputs)
    x = L.ReLU(name="relu")(L.Add(name="add")([a, b]))
    c = L.Conv2D(6, 3, padding="same", name="c")(x)
    x = L.GlobalAveragePooling2D(name="gap")(c)
    return keras.Model(inputs, L.Dense(4, name="head")(x), name="residual")


def concat_model():
    inputs = keras.Input((6, 6, 2))
    p = L.Conv2D(4, 1, name="p")(inputs)
    q = L.Conv2D(6, 1, name="q")(inputs)
    x = L.Concatenate(name="cat")([p, q])
    r = L.Conv2D(3, 1, name="r")(L.ReLU(name="relu")(x))
    x = L.Flatten(name="flatten")(r)
    return keras.Model(inputs, L.Dense(2, name="head")(x), name="concat")


def mfm_model():
    inputs = keras.Input((5, 5, 2))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = MFM(name="mfm")(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(6, name="fc")(x)
    x = MFM(name="fc_mfm")(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x), name="mfm")


def depthwise_model():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 1, name="expand")(inputs)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.SeparableConv2D(6, 3, padding="same", name="sep")(x)
    x = L.Conv2D(6, 1, groups=2, name="grouped")(x)
    x = L.Conv2D(4, 1, groups=4, name="dw_as_grouped")(
        L.Conv2D(4, 1, name="pre_dw")(x)
    )
    x = L.GlobalMaxPooling2D(name="gmp")(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x), name="depthwise")


def nested_model():
    inner_in = keras.Input((4, 4, 6), name="inner_in")
    y = L.Conv2D(5, 1, name="inner_conv")(inner_in)
    y = L.BatchNormalization(name="inner_bn")(y)
    inner = keras.Model(inner_in, L.ReLU(name="inner_relu")(y), name="inner")
    block = keras.Sequential(
        [keras.Input((4, 4, 5)), L.Conv2D(3, 1, name="seq_conv"),
         L.ReLU(name="seq_relu")],
        name="block",
    )
    inputs = keras.Input((4, 4, 2))
    x = L.Conv2D(6, 3, padding="same", name="outer_conv")(inputs)
    x = block(inner(x))
    x = L.Flatten(name="flatten")(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x), name="nested")


def dense_model():
    inputs = keras.Input((7,))
    x = L.Dense(6, activation="relu", name="d1")(inputs)
    x = L.Dropout(0.5, name="drop")(x)
    x = L.Dense(5, name="d2")(x)
    x = L.LayerNormalization(name="ln")(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x), name="dense")


def sequential_model():
    return keras.Sequential(
        [keras.Input((6, 6, 1)), L.Conv2D(4, 3, name="s1"),
         L.BatchNormalization(name="sbn"), L.ReLU(name="srelu"),
         L.Conv2D(3, 3, name="s2"), L.Flatten(name="sflat"),
         L.Dense(2, name="shead")],
        name="sequential",
    )


def shared_layer_model():
    left, right = keras.Input((5, 5, 2)), keras.Input((5, 5, 2))
    shared = L.Conv2D(4, 3, padding="same", name="shared")
    x = L.Maximum(name="max")([shared(left), shared(right)])
    x = L.Conv2D(3, 1, name="after")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model([left, right], L.Dense(2, name="head")(x), name="shr")


def dense_block_model(layers=4, growth=3):
    """A DenseNet block: every layer reads (BN, ReLU) the concatenation of
    all earlier outputs, so one BatchNormalization's gamma and beta hold
    channels of many groups."""
    inputs = keras.Input((6, 6, 2))
    x = L.Conv2D(4, 3, padding="same", name="stem")(inputs)
    for i in range(layers):
        h = L.BatchNormalization(name=f"bn{i}")(x)
        h = L.ReLU(name=f"relu{i}")(h)
        h = L.Conv2D(growth, 3, padding="same", name=f"conv{i}")(h)
        x = L.Concatenate(name=f"cat{i}")([x, h])
    x = L.BatchNormalization(name="bn_out")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x), name="dense_block")


def option_a_resnet():
    return resnet_cifar(8, num_classes=3, input_shape=(8, 8, 3))


BUILDERS = {
    "residual": residual_model,
    "concat": concat_model,
    "mfm": mfm_model,
    "depthwise": depthwise_model,
    "nested": nested_model,
    "dense": dense_model,
    "sequential": sequential_model,
    "shared": shared_layer_model,
    "resnet_a": option_a_resnet,
    "dense_block": dense_block_model,
}


def random_inputs(model, batch=3, seed=1):
    """One array per model input (a bare array for one input)."""
    rng = np.random.default_rng(seed)
    arrays = [
        rng.normal(size=(batch,) + tuple(x.shape[1:])).astype("float32")
        for x in model.inputs
    ]
    return arrays[0] if len(arrays) == 1 else arrays


def run(model, x, training=False):
    """An eager call (no per-model compilation, cheap on JAX)."""
    return keras.ops.convert_to_numpy(model(x, training=training))
