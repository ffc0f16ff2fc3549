"""The zoo's layers: reshapes that split channels, recurrent layers,
TimeDistributed, resizing, slicing and GroupNormalization."""

import keras
import numpy as np
from keras import ops

from keras_dynfilt.pruning import compact, filter_groups, model_cost
from tests.pruning import zoo

L = keras.layers


def layers_of(groups):
    return [set(g.layers) for g in groups]


def anchor_head_model():
    """RetinaNet's layout: Conv2D(anchors * 4) -> Reshape((-1, 4)); and a
    reshape that keeps channels whole (last axis a multiple of them)."""
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    boxes = L.Reshape((-1, 4), name="boxes")(L.Conv2D(36, 1, name="box")(x))
    y = L.Conv2D(6, 1, activation="relu", name="side")(x)
    y = L.Reshape((4, 24), name="rows")(y)  # 24 = 4 positions * 6 channels
    y = L.Dense(5, name="mix")(y)
    return keras.Model(inputs, [boxes, y], name="anchors")


def test_reshape_splitting_channels_is_never_rewritten(tmp_path):
    model = anchor_head_model()
    groups = filter_groups(model, warn=False)
    # The box convolution's 36 channels are held (4 values of 9 anchors);
    # the stem and the side convolution (channels kept whole) are not.
    assert layers_of(groups) == [{"stem"}, {"side"}]
    x = np.zeros((2, 4, 4, 3), "float32")
    small = zoo.check_four(model, tmp_path)
    assert tuple(small(x)[0].shape) == (2, 144, 4)
    assert small.get_layer("boxes").target_shape == (-1, 4)


def test_reshape_unpruned_keeps_its_target_shape():
    # Nothing pruned: compact must be the identity (it wrote (-1, 36)).
    inputs = keras.Input((4, 4, 3))
    x = L.Reshape((-1, 4))(L.Conv2D(36, 1)(inputs))
    model = keras.Model(inputs, x)
    small = compact(model)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    assert tuple(small(x).shape) == (2, 144, 4)
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(x)), ops.convert_to_numpy(small(x)),
        rtol=1e-6,
    )


def test_reshape_op_and_layer_share_one_rule():
    from keras_dynfilt._keras_private import op_class
    from keras_dynfilt.pruning import get_channel_rule

    op = op_class("numpy", "Reshape")((-1, 4))
    assert type(get_channel_rule(op)) is type(
        get_channel_rule(L.Reshape((-1, 4)))
    )


def test_compact_does_not_crash_on_rnn_layers_with_nothing_pruned():
    inputs = keras.Input((6, 4))
    x = L.SimpleRNN(3, return_sequences=True)(inputs)
    x = L.GRU(3, return_sequences=True)(x)
    model = keras.Model(inputs, L.LSTM(2)(x))
    small = compact(model)  # AttributeError: 'kernel_initializer' setter
    x = np.random.default_rng(0).normal(size=(2, 6, 4)).astype("float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(x)), ops.convert_to_numpy(small(x)),
        rtol=1e-5,
    )
    assert small.layers[-1].get_config() == model.layers[-1].get_config()


def conv1d_lstm_model():
    inputs = keras.Input((10, 3))
    x = L.Conv1D(8, 3, activation="relu", name="conv")(inputs)
    x = L.Conv1D(6, 3, activation="relu", name="conv2")(x)
    x = L.LSTM(5, return_sequences=True, name="lstm")(x)
    x = L.SimpleRNN(4, name="rnn")(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x), name="c1lstm")


def test_conv1d_into_lstm(tmp_path):
    model = conv1d_lstm_model()
    groups = filter_groups(model, warn=False)
    assert not groups.barriers
    assert layers_of(groups) == [{"conv"}, {"conv2"}]
    small = zoo.check_four(model, tmp_path)
    kept = small.get_layer("conv2").filters
    assert small.get_layer("lstm").cell.kernel.shape == (kept, 20)


def bidirectional_model():
    inputs = keras.Input((4, 5, 3))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv")(
        inputs
    )
    x = L.Reshape((4, 30), name="rows")(x)  # each row a time step
    x = L.Bidirectional(L.GRU(4), name="bigru")(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x), name="crnn")


def test_conv_into_bidirectional_gru(tmp_path):
    model = bidirectional_model()
    groups = filter_groups(model, warn=False)
    assert layers_of(groups) == [{"conv"}]
    small = zoo.check_four(model, tmp_path)
    kept = small.get_layer("conv").filters
    bigru = small.get_layer("bigru")
    assert bigru.forward_layer.cell.kernel.shape[0] == 5 * kept
    assert bigru.backward_layer.cell.kernel.shape[0] == 5 * kept


def test_conv_into_convlstm2d(tmp_path):
    inputs = keras.Input((3, 6, 6, 2))
    x = L.TimeDistributed(L.Conv2D(6, 3, activation="relu"), name="td")(
        inputs
    )
    x = L.ConvLSTM2D(3, 3, name="convlstm")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    assert layers_of(filter_groups(model, warn=False)) == [{"td"}]
    zoo.check_four(model, tmp_path)


def video_model():
    inputs = keras.Input((3, 6, 6, 2))
    x = L.TimeDistributed(L.Conv2D(8, 3, activation="relu"), name="td1")(
        inputs
    )
    x = L.TimeDistributed(L.BatchNormalization(), name="tdbn")(x)
    x = L.TimeDistributed(L.Conv2D(6, 3, activation="relu"), name="td2")(x)
    x = L.TimeDistributed(L.GlobalAveragePooling2D(), name="tdpool")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x), name="video")


def test_time_distributed_conv2d(tmp_path):
    model = video_model()
    groups = filter_groups(model, warn=False)
    assert not groups.barriers
    assert layers_of(groups) == [{"td1"}, {"td2"}]
    cost = model_cost(model, warn=False)
    td1 = next(c for c in cost.layers if c.name == "td1")
    # Per step: 4 * 4 positions * 3 * 3 * 2 inputs * 8 filters; 3 steps.
    assert td1.macs == 3 * 16 * 18 * 8
    small = zoo.check_four(model, tmp_path)
    assert small.get_layer("td1").layer.filters < 8


def resize_slice_model():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="a")(inputs)
    x = L.Resizing(12, 12, name="resizing")(x)
    x = L.Conv2D(8, 3, activation="relu", name="b")(x)
    x = ops.image.resize(x, (8, 8))
    x = x[:, ::2, ::2, :]
    x = L.Identity(name="identity")(x)
    x = L.Conv2D(6, 3, padding="same", name="c")(x[:, 1:, 1:])
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x), name="resized")


def test_resizing_image_resize_and_spatial_slicing(tmp_path):
    model = resize_slice_model()
    groups = filter_groups(model, warn=False)
    assert not groups.barriers
    assert layers_of(groups) == [{"a"}, {"b"}, {"c"}]
    zoo.check_four(model, tmp_path)


def test_slicing_the_channel_axis_stays_a_barrier():
    inputs = keras.Input((4, 4, 6))
    x = L.Conv2D(6, 1, name="a")(inputs)
    model = keras.Model(inputs, L.Conv2D(2, 1)(x[..., :3]))
    groups = filter_groups(model, warn=False)
    assert "indexes the channel axis" in groups.barriers[0].reason
    assert not groups


def group_norm_resnet():
    inputs = keras.Input((8, 8, 3))
    stem = L.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = L.GroupNormalization(4, name="gn0")(stem)
    x = L.ReLU()(x)
    y = L.Conv2D(12, 3, padding="same", name="conv1")(x)
    y = L.GroupNormalization(3, name="gn1")(y)
    y = L.ReLU()(y)
    y = L.Conv2D(8, 3, padding="same", name="conv2")(y)
    y = L.GroupNormalization(4, name="gn2")(y)
    x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x), name="gnresnet")


def test_group_norm_resnet_prunes_whole_groups(tmp_path):
    model = group_norm_resnet()
    groups = filter_groups(model, warn=False)
    assert not groups.barriers
    by_layers = {tuple(sorted(g.layers)): g for g in groups}
    # 4 groups of 2 channels on the residual stream, 3 groups of 4 inside.
    assert by_layers[("conv2", "stem")].size == 4
    assert len(by_layers[("conv2", "stem")].units[0]) == 4
    assert by_layers[("conv1",)].size == 3
    small = zoo.check_four(model, tmp_path, tolerance=1e-4)
    kept = small.get_layer("conv1").filters
    assert small.get_layer("gn1").groups == kept // 4
    assert small.get_layer("gn1").groups < 3
