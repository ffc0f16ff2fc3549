import keras

from keras_dynfilt._validation import (
    check_float,
    check_image_shape,
    check_name,
    check_num_classes,
)
from keras_dynfilt.layers.channel_padding import ChannelPadding


def _conv(filters, strides, name, weight_decay):
    return keras.layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=(
            keras.regularizers.L2(weight_decay) if weight_decay else None
        ),
        name=name,
    )


def _bn(name):
    return keras.layers.BatchNormalization(
        momentum=0.9, epsilon=1e-5, name=name
    )


def resnet_cifar(
    depth=20,
    num_classes=10,
    input_shape=(32, 32, 3),
    shortcut="A",
    weight_decay=None,
    name=None,
):
    """Builds a CIFAR ResNet (He et al.) as a functional model.

    `depth = 6n + 2`: a 3x3 convolution with 16 filters, three stages of `n`
    basic blocks (two 3x3 convolutions with BatchNormalization and ReLU,
    widths 16, 32 and 64, the first block of stages 2 and 3 with stride 2),
    global average pooling and a dense classifier returning logits. These
    are the ResNet-20/32/56/110 of the Soft Filter Pruning paper.

    Shortcuts where the shape changes:
    - `"A"` (the SFP reference code): subsample with a stride-2 1x1
      average pooling and append zero channels (`ChannelPadding`), no
      parameters. Built from ordinary layers and `ChannelPadding`, so the
      model loads with `safe_mode=True`.
    - `"B"`: a strided 1x1 convolution with BatchNormalization.

    Reference:
        - [He et al., Deep Residual Learning for Image
          Recognition](https://arxiv.org/abs/1512.03385)
        - [He et al., Soft Filter Pruning for Accelerating Deep Convolutional
          Neural Networks](https://arxiv.org/abs/1808.06866)

    Args:
        depth: Integer, `6n + 2` (20, 32, 44, 56, 110, ...).
        num_classes: Integer >= 2, the number of logits.
        input_shape: Tuple `(height, width, channels)`.
        shortcut: `"A"` (zero-padding) or `"B"` (1x1 projection).
        weight_decay: Optional float, L2 factor on the convolution kernels.
        name: Optional model name; defaults to `"resnet<depth>_cifar"`.

    Returns:
        A `keras.Model` mapping images to logits.

    Examples:
        >>> model = keras_dynfilt.models.resnet_cifar(20)
        >>> model.output_shape
        (None, 10)
    """
    if (
        isinstance(depth, bool)
        or not isinstance(depth, int)
        or depth < 8
        or depth > 6 * 1000 + 2
        or (depth - 2) % 6
    ):
        raise ValueError(
            "`depth` must be an integer 6n + 2 in [8, 6002] (e.g. 20, 32, 56, "
            "110). "
            f"Received: depth={depth!r}"
        )
    if not isinstance(shortcut, str) or shortcut not in ("A", "B"):
        raise ValueError(
            f"`shortcut` must be 'A' or 'B'. Received: shortcut={shortcut!r}"
        )
    num_classes = check_num_classes(num_classes)
    input_shape = check_image_shape(input_shape)
    weight_decay = check_float(
        weight_decay, "weight_decay", 0.0, allow_none=True
    )
    check_name(name)
    blocks = (depth - 2) // 6
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = _conv(16, 1, "conv1", weight_decay)(inputs)
    x = _bn("bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    channels = 16
    for stage, width in enumerate((16, 32, 64), start=1):
        for block in range(1, blocks + 1):
            prefix = f"stage{stage}_block{block}"
            strides = 2 if stage > 1 and block == 1 else 1
            y = _conv(width, strides, f"{prefix}_conv1", weight_decay)(x)
            y = _bn(f"{prefix}_bn1")(y)
            y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
            y = _conv(width, 1, f"{prefix}_conv2", weight_decay)(y)
            y = _bn(f"{prefix}_bn2")(y)
            if strides != 1 or channels != width:
                if shortcut == "A":
                    x = keras.layers.AveragePooling2D(
                        1, strides=strides, name=f"{prefix}_subsample"
                    )(x)
                    x = ChannelPadding(
                        (0, width - channels), name=f"{prefix}_pad"
                    )(x)
                else:
                    x = keras.layers.Conv2D(
                        width, 1, strides=strides, use_bias=False,
                        kernel_initializer="he_normal",
                        name=f"{prefix}_shortcut_conv",
                    )(x)
                    x = _bn(f"{prefix}_shortcut_bn")(x)
            x = keras.layers.Add(name=f"{prefix}_add")([x, y])
            x = keras.layers.ReLU(name=f"{prefix}_relu2")(x)
            channels = width
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}_cifar")
