import keras

from keras_dynfilt._validation import (
    MAX_SIZE,
    check_float,
    check_image_shape,
    check_name,
    check_num_classes,
)
from keras_dynfilt.layers.mfm import MFM

# LightCNN-9 stage widths (output channels after MFM) and the positions of
# the max-pooling layers, as in Wu et al.'s `network_9layers`.
_LIGHT_CNN_9 = {
    "conv1": 48,
    "groups": (96, 192, 128, 128),
    "pool_after_group": (True, True, False, True),
    "fc": 256,
}
_VARIANTS = {"9": _LIGHT_CNN_9}


def _mfm_conv(x, filters, kernel_size, name):
    # An MFM convolution produces 2 * filters maps and keeps the maximum of the
    # two halves; the pair (k, k + filters) is one prunable unit.
    x = keras.layers.Conv2D(
        2 * filters, kernel_size, padding="same", name=f"{name}_conv"
    )(x)
    return MFM(name=f"{name}_mfm")(x)


def light_cnn(
    input_shape,
    num_classes,
    variant="9",
    width_multiplier=1.0,
    dropout=0.5,
    name=None,
):
    """Builds a LightCNN (Max-Feature-Map network) as a functional model.

    LightCNN-9: an MFM 5x5 convolution, four MFM groups (an MFM 1x1
    convolution followed by an MFM 3x3 convolution), max-pooling after the
    first, second and fourth group, an MFM fully connected layer, dropout and
    a linear classifier that returns logits. Pooling uses `"same"` padding
    (LightCNN's `ceil_mode=True`), so any input of at least 1x1 keeps a
    non-empty feature map; the flatten size follows from the input size
    instead of the 128x128 face crops the paper uses.

    Reference:
        - [Wu et al., A Light CNN for Deep Face Representation with Noisy
          Labels](https://arxiv.org/abs/1511.02683)

    Args:
        input_shape: Tuple `(height, width, channels)`.
        num_classes: Integer, the number of classes (logits width).
        variant: String, the LightCNN depth. Only `"9"` is available.
        width_multiplier: Positive float scaling every layer width (rounded,
            at least 1 channel), for small inputs and CPU runs.
        dropout: Float in [0, 1), the dropout rate after the MFM fully
            connected layer.
        name: Optional model name; defaults to `"light_cnn_<variant>"`.

    Returns:
        A `keras.Model` mapping images to logits of shape
        `(batch_size, num_classes)`.

    Examples:
        >>> model = keras_dynfilt.models.light_cnn((28, 28, 1), 10,
        ...                                        width_multiplier=0.25)
        >>> model.output_shape
        (None, 10)
    """
    if not isinstance(variant, (str, int)) or isinstance(variant, bool) or (
        str(variant) not in _VARIANTS
    ):
        raise ValueError(
            f"`variant` must be one of {sorted(_VARIANTS)}. "
            f"Received: variant={variant!r}"
        )
    input_shape = check_image_shape(input_shape)
    num_classes = check_num_classes(num_classes)
    width_multiplier = check_float(
        width_multiplier, "width_multiplier", 0.0, min_open=True
    )
    dropout = check_float(dropout, "dropout", 0.0, 1.0, max_open=True)
    check_name(name)
    spec = _VARIANTS[str(variant)]
    widest = 2 * max(spec["fc"], spec["conv1"], *spec["groups"])
    if widest * width_multiplier > MAX_SIZE:
        raise ValueError(
            "`width_multiplier` makes a layer wider than "
            f"{MAX_SIZE} channels. Received: "
            f"width_multiplier={width_multiplier!r}"
        )

    def width(channels):
        return max(1, int(round(channels * width_multiplier)))

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = _mfm_conv(inputs, width(spec["conv1"]), 5, "conv1")
    x = keras.layers.MaxPooling2D(2, padding="same", name="pool1")(x)
    in_channels = width(spec["conv1"])
    for i, (out_channels, pool) in enumerate(
        zip(spec["groups"], spec["pool_after_group"]), start=1
    ):
        x = _mfm_conv(x, in_channels, 1, f"group{i}_a")
        x = _mfm_conv(x, width(out_channels), 3, f"group{i}_b")
        in_channels = width(out_channels)
        if pool:
            x = keras.layers.MaxPooling2D(
                2, padding="same", name=f"pool{i + 1}"
            )(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(2 * width(spec["fc"]), name="fc1_dense")(x)
    x = MFM(name="fc1_mfm")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"light_cnn_{variant}")
