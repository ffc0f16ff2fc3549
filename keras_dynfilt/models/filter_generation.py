import keras
import numpy as np

from keras_dynfilt._validation import (
    check_bool,
    check_float,
    check_image_shape,
    check_name,
    check_num_classes,
    check_positive_int,
)
from keras_dynfilt.layers.dimension_reduction import DimensionReduction
from keras_dynfilt.layers.filter_generator import FilterGenerator


def _prediction_depth(get_layer):
    depth = 0
    while True:
        try:
            get_layer(f"conv{depth + 1}")
        except (KeyError, ValueError):
            return depth
        depth += 1


def _encoder_features(get_layer, image, depth):
    """The pre-activation (conv+BN) maps of the encoder layers."""
    features, x = [], image
    for level in range(1, depth + 1):
        x = get_layer(f"enc{level}_conv")(x)
        x = get_layer(f"enc{level}_bn")(x)
        features.append(x)
        x = get_layer(f"enc{level}_lrelu")(x)
    return features, x


def _feature_vectors(get_layer, image, depth):
    """The vectors `z_l` and the encoder output."""
    features, encoded = _encoder_features(get_layer, image, depth)
    vectors = [
        get_layer(f"reduce{level}")(feature)
        for level, feature in enumerate(features, start=1)
    ]
    return vectors, encoded


def _logits(get_layer, image, vectors, depth):
    """The prediction network on `image`; `vectors=None`: static convs."""
    x = image
    for level in range(1, depth + 1):
        conv = get_layer(f"conv{level}")
        x = conv(x) if vectors is None else conv([x, vectors[level - 1]])
        x = get_layer(f"relu{level}")(x)
        x = get_layer(f"pool{level}")(x)
    x = get_layer("flatten")(x)
    return get_layer("logits")(x)


def filter_generation_network(
    input_shape,
    num_classes,
    encoder_filters=20,
    repository_size=5,
    filters=(5, 5),
    kernel_size=5,
    filter_generation=True,
    negative_slope=0.01,
    batch_norm_momentum=0.9,
    name=None,
):
    """Builds the paper's MNIST network, with or without filter generation.

    With `filter_generation=True` (the paper's figure 1 and appendix A.1.1):

    - an autoencoder: `len(filters)` Conv5x5+BN+LeakyReLU encoder layers of
      `encoder_filters` channels (stride 1, then stride 2), a decoder that
      upsamples back (Conv+BN+LeakyReLU between upsamplings) and ends with a
      Conv5x5 to the input channels and a sigmoid: output
      `"reconstruction"`;
    - for each encoder layer `l`, a `DimensionReduction` of its
      pre-activation (conv+BN) map to a vector `z_l` of `encoder_filters`
      values;
    - the prediction network: for each `l`, a 5x5 `"valid"` convolution with
      `filters[l]` outputs whose kernels a `FilterGenerator` (repository of
      `repository_size` base filters) generates from `z_l`, ReLU and 2x2
      max-pooling; then a dense layer to `num_classes` logits: output
      `"logits"`.

    Train it with `L = BCE(reconstruction, image) + CE(logits, label)`:
    `loss={"reconstruction": "binary_crossentropy", "logits":
    SparseCategoricalCrossentropy(from_logits=True)}` and the image as the
    reconstruction target.

    With `filter_generation=False` it builds the baseline of the paper's
    table 4: the same prediction network with static `Conv2D` layers and a
    single output, `"logits"`.

    Reference:
        - [Shen & Liu, Learning to generate filters for convolutional neural
          networks](https://arxiv.org/abs/1812.01894)

    Args:
        input_shape: Tuple `(height, width, channels)`; the sizes must leave
            a non-empty map after the prediction convolutions and pools.
        num_classes: Integer >= 2, the logits width.
        encoder_filters: Positive integer, the autoencoder width `n_ae`
            (also the length of each `z_l`).
        repository_size: Positive integer, the repository size `s` of each
            `FilterGenerator`.
        filters: Tuple of positive integers, the output channels of the
            prediction convolutions (and the number of encoder layers).
        kernel_size: Positive integer, the kernel size of every
            convolution of the autoencoder and the prediction network.
        filter_generation: Boolean; `False` builds the static baseline.
        negative_slope: Float >= 0, the LeakyReLU slope.
        batch_norm_momentum: Float in [0, 1), the momentum of every batch
            normalization (0.9 is PyTorch's default, 0.1 in its convention).
        name: Optional model name.

    Returns:
        A `keras.Model` from images to the dict
        `{"reconstruction": ..., "logits": ...}`, or to the logits alone for
        the baseline.

    Examples:
        >>> model = keras_dynfilt.models.filter_generation_network(
        ...     (28, 28, 1), 10)
        >>> {k: tuple(v.shape) for k, v in sorted(model.output.items())}
        {'logits': (None, 10), 'reconstruction': (None, 28, 28, 1)}
    """
    input_shape = check_image_shape(input_shape)
    num_classes = check_num_classes(num_classes)
    check_positive_int(encoder_filters, "encoder_filters")
    check_positive_int(repository_size, "repository_size")
    check_positive_int(kernel_size, "kernel_size")
    check_bool(filter_generation, "filter_generation")
    check_float(negative_slope, "negative_slope", 0.0)
    check_float(
        batch_norm_momentum, "batch_norm_momentum", 0.0, 1.0, max_open=True
    )
    check_name(name)
    filters = tuple(filters) if isinstance(filters, (list, tuple)) else filters
    if not isinstance(filters, tuple) or not filters or any(
        isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in filters
    ):
        raise ValueError(
            "`filters` must be a non-empty tuple of positive integers. "
            f"Received: filters={filters!r}"
        )
    height, width, channels = input_shape
    for _ in filters:
        height, width = (height - kernel_size + 1) // 2, (
            width - kernel_size + 1
        ) // 2
    if height < 1 or width < 1:
        raise ValueError(
            f"`input_shape` {input_shape!r} is too small for "
            f"{len(filters)} valid {kernel_size}x{kernel_size} convolutions "
            "each followed by a 2x2 max-pooling."
        )
    depth = len(filters)
    layers = {}
    for level, n in enumerate(filters, start=1):
        if filter_generation:
            layers[f"conv{level}"] = FilterGenerator(
                n, kernel_size, repository_size, name=f"conv{level}"
            )
        else:
            layers[f"conv{level}"] = keras.layers.Conv2D(
                n, kernel_size, name=f"conv{level}"
            )
        layers[f"relu{level}"] = keras.layers.ReLU(name=f"relu{level}")
        layers[f"pool{level}"] = keras.layers.MaxPooling2D(
            2, name=f"pool{level}"
        )
    layers["flatten"] = keras.layers.Flatten(name="flatten")
    layers["logits"] = keras.layers.Dense(
        num_classes, name="logits", dtype="float32"
    )
    image = keras.Input(shape=input_shape, name="image")
    if not filter_generation:
        logits = _logits(layers.__getitem__, image, None, depth)
        return keras.Model(image, logits, name=name or "filter_gen_baseline")

    for level in range(1, depth + 1):
        layers[f"enc{level}_conv"] = keras.layers.Conv2D(
            encoder_filters,
            kernel_size,
            strides=1 if level == 1 else 2,
            padding="same",
            name=f"enc{level}_conv",
        )
        layers[f"enc{level}_bn"] = keras.layers.BatchNormalization(
            momentum=batch_norm_momentum, name=f"enc{level}_bn"
        )
        layers[f"enc{level}_lrelu"] = keras.layers.LeakyReLU(
            negative_slope, name=f"enc{level}_lrelu"
        )
        layers[f"reduce{level}"] = DimensionReduction(
            encoder_filters,
            negative_slope=negative_slope,
            momentum=batch_norm_momentum,
            name=f"reduce{level}",
        )
    vectors, x = _feature_vectors(layers.__getitem__, image, depth)
    logits = _logits(layers.__getitem__, image, vectors, depth)

    # Decoder: undo the stride-2 encoder layers, then back to the image.
    for level in range(1, depth):
        x = keras.layers.UpSampling2D(2, name=f"dec{level}_upsample")(x)
        if level < depth - 1:
            x = keras.layers.Conv2D(
                encoder_filters,
                kernel_size,
                padding="same",
                name=f"dec{level}_conv",
            )(x)
            x = keras.layers.BatchNormalization(
                momentum=batch_norm_momentum, name=f"dec{level}_bn"
            )(x)
            x = keras.layers.LeakyReLU(
                negative_slope, name=f"dec{level}_lrelu"
            )(x)
    x = keras.layers.Conv2D(
        channels, kernel_size, padding="same", name="decoder_output"
    )(x)
    extra_h, extra_w = x.shape[1] - input_shape[0], x.shape[2] - input_shape[1]
    if extra_h or extra_w:  # odd sizes: the stride-2 layers rounded up
        x = keras.layers.Cropping2D(
            ((0, extra_h), (0, extra_w)), name="decoder_crop"
        )(x)
    reconstruction = keras.layers.Activation(
        "sigmoid", name="reconstruction", dtype="float32"
    )(x)
    return keras.Model(
        image,
        {"reconstruction": reconstruction, "logits": logits},
        name=name or "filter_generation_network",
    )


def swapped_filter_model(model):
    """The sample-specificity model of the paper's section 4.4.2.

    Rewires the layers of a `filter_generation_network` (shared weights, no
    copy) into a model with two image inputs: it classifies the first image
    with the filters generated from the second one.

    Args:
        model: A model built by `filter_generation_network` with
            `filter_generation=True` (possibly trained, saved and reloaded).

    Returns:
        A `keras.Model` from `[image, filter_image]` to logits.

    Raises:
        TypeError: if `model` is not a `keras.Model`.
        ValueError: if it is not a filter-generation network.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model` must be a keras.Model built by "
            "filter_generation_network(filter_generation=True). "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    try:
        model.get_layer("reduce1")
    except ValueError:
        raise ValueError(
            "`model` must be built by filter_generation_network with "
            f"filter_generation=True. Received: model={model.name!r}, which "
            "has no layer 'reduce1'."
        ) from None
    depth = _prediction_depth(model.get_layer)
    shape = model.inputs[0].shape[1:]
    image = keras.Input(shape=shape, name="image")
    filter_image = keras.Input(shape=shape, name="filter_image")
    vectors, _ = _feature_vectors(model.get_layer, filter_image, depth)
    logits = _logits(model.get_layer, image, vectors, depth)
    return keras.Model([image, filter_image], logits, name="swapped_filters")


def sample_specificity(model, images, labels, seed=0, batch_size=256):
    """Accuracy with each image's own filters and with another image's.

    The check of the paper's section 4.4.2: every test image `A` is classified
    with the filters generated from a different image `B` (a random
    derangement of the set). If the generated filters are sample-specific,
    the accuracy collapses towards chance.

    Args:
        model: A `filter_generation_network` with filter generation.
        images: Array `(n, height, width, channels)` in [0, 1].
        labels: Integer array `(n,)`.
        seed: Seed of the random pairing.
        batch_size: Prediction batch size.

    Returns:
        A dict with `accuracy` (own filters), `swapped_accuracy` (filters
        from `B`, scored against `A`'s label), `swapped_accuracy_vs_b_label`
        (the same predictions scored against `B`'s label) and
        `same_label_pairs` (the fraction of pairs where `A` and `B` share a
        label).
    """
    swapped = swapped_filter_model(model)
    images = np.asarray(images, "float32")
    labels = np.asarray(labels).reshape(-1)
    if len(images) != len(labels) or len(images) < 2:
        raise ValueError(
            "`images` and `labels` must have the same length >= 2. "
            f"Received: {len(images)} images and {len(labels)} labels"
        )
    order = np.random.default_rng(seed).permutation(len(images))
    source = np.empty_like(order)
    source[order] = np.roll(order, -1)  # image order[i] gets order[i + 1]
    own = swapped.predict([images, images], batch_size=batch_size, verbose=0)
    other = swapped.predict(
        [images, images[source]], batch_size=batch_size, verbose=0
    )
    own, other = own.argmax(-1), other.argmax(-1)
    return {
        "accuracy": float(np.mean(own == labels)),
        "swapped_accuracy": float(np.mean(other == labels)),
        "swapped_accuracy_vs_b_label": float(
            np.mean(other == labels[source])
        ),
        "same_label_pairs": float(np.mean(labels == labels[source])),
    }
