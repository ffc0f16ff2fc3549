import keras

from keras_dynfilt._validation import (
    check_float,
    check_image_shape,
    check_name,
    check_num_classes,
    check_positive_int,
)
from keras_dynfilt.layers.class_token import ClassToken
from keras_dynfilt.layers.position_embedding import PositionEmbedding

L = keras.layers


def vit(
    input_shape,
    num_classes,
    patch_size=7,
    dim=64,
    depth=4,
    num_heads=4,
    mlp_dim=128,
    dropout=0.0,
    name=None,
):
    """Builds a Vision Transformer (ViT) as a functional model.

    Patch embedding (a `Conv2D` with stride `patch_size`), a class token, a
    learned position embedding, `depth` pre-norm encoder blocks
    (`LayerNormalization`, `MultiHeadAttention`, residual add;
    `LayerNormalization`, a GELU MLP, residual add), a final
    `LayerNormalization`, and a linear classifier on the class token that
    returns logits. Every layer is a public Keras layer, except the class
    token and the position embedding (`keras_dynfilt.layers.ClassToken`,
    `keras_dynfilt.layers.PositionEmbedding`), so the model saves and loads
    with `safe_mode=True` and the pruning engine follows all of it: heads
    and MLP widths are prunable exactly, the residual width in the
    explicit inexact mode (`filter_groups(model, exact=False)`).

    Reference:
        - [Dosovitskiy et al., An Image is Worth 16x16 Words: Transformers
          for Image Recognition at Scale](https://arxiv.org/abs/2010.11929)

    Args:
        input_shape: Tuple `(height, width, channels)`; height and width
            must be multiples of `patch_size`.
        num_classes: Integer, the number of classes (logits width).
        patch_size: Positive integer, the side of a square patch.
        dim: Positive integer, the width of the residual stream; a multiple
            of `num_heads`.
        depth: Positive integer, the number of encoder blocks.
        num_heads: Positive integer, attention heads per block (each of
            width `dim // num_heads`).
        mlp_dim: Positive integer, the hidden width of each block's MLP.
        dropout: Float in [0, 1), dropout inside attention and the MLP.
        name: Optional model name.

    Returns:
        A `keras.Model` from images to logits.

    Examples:
        >>> model = keras_dynfilt.models.vit((28, 28, 1), 10, depth=1)
        >>> model.output_shape
        (None, 10)
    """
    input_shape = check_image_shape(input_shape)
    num_classes = check_num_classes(num_classes)
    patch_size = check_positive_int(patch_size, "patch_size")
    dim = check_positive_int(dim, "dim")
    depth = check_positive_int(depth, "depth")
    num_heads = check_positive_int(num_heads, "num_heads")
    mlp_dim = check_positive_int(mlp_dim, "mlp_dim")
    dropout = check_float(dropout, "dropout", 0.0, 1.0, max_open=True)
    check_name(name)
    height, width = input_shape[0], input_shape[1]
    if height % patch_size or width % patch_size:
        raise ValueError(
            "`input_shape` height and width must be multiples of "
            f"`patch_size`. Received: input_shape={input_shape}, "
            f"patch_size={patch_size}"
        )
    if dim % num_heads:
        raise ValueError(
            "`dim` must be a multiple of `num_heads`. "
            f"Received: dim={dim}, num_heads={num_heads}"
        )
    patches = (height // patch_size) * (width // patch_size)

    inputs = keras.Input(input_shape)
    x = L.Conv2D(dim, patch_size, strides=patch_size, name="patch_embed")(
        inputs
    )
    x = L.Reshape((patches, dim), name="patch_tokens")(x)
    x = ClassToken(name="class_token")(x)
    x = PositionEmbedding(name="position_embedding")(x)
    for i in range(depth):
        prefix = f"block{i + 1}"
        h = L.LayerNormalization(epsilon=1e-6, name=f"{prefix}_norm1")(x)
        h = L.MultiHeadAttention(
            num_heads,
            key_dim=dim // num_heads,
            dropout=dropout,
            name=f"{prefix}_attention",
        )(h, h)
        x = L.Add(name=f"{prefix}_add1")([x, h])
        h = L.LayerNormalization(epsilon=1e-6, name=f"{prefix}_norm2")(x)
        h = L.Dense(mlp_dim, activation="gelu", name=f"{prefix}_mlp1")(h)
        if dropout:
            h = L.Dropout(dropout, name=f"{prefix}_drop1")(h)
        h = L.Dense(dim, name=f"{prefix}_mlp2")(h)
        if dropout:
            h = L.Dropout(dropout, name=f"{prefix}_drop2")(h)
        x = L.Add(name=f"{prefix}_add2")([x, h])
    x = L.LayerNormalization(epsilon=1e-6, name="norm")(x)
    # The class token's final state: cropping keeps it and nothing else.
    x = L.Cropping1D((0, patches), name="class_state")(x)
    x = L.Flatten(name="flatten")(x)
    outputs = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or "vit")
