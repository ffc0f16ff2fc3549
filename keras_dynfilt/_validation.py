"""Argument checks shared by the model builders and layers."""

import keras
import numpy as np

# Every float argument ends up in float32 maths (weights, learning rates,
# logits): a value beyond float32's range would become inf there.
FLOAT32_MAX = float(np.finfo("float32").max)
# Tensor dimensions are int32 on TensorFlow.
MAX_SIZE = 2**31 - 1


def _is_int(value):
    return not isinstance(value, bool) and isinstance(
        value, (int, np.integer)
    )


def check_positive_int(value, name):
    """Raises unless `value` is an integer in [1, 2**31 - 1]; returns int."""
    if not _is_int(value) or value < 1 or value > MAX_SIZE:
        raise ValueError(
            f"`{name}` must be a positive integer (at most {MAX_SIZE}). "
            f"Received: {name}={value!r}"
        )
    return int(value)


def check_num_classes(num_classes):
    """Raises unless `num_classes` is an integer >= 2; returns it as int."""
    if not _is_int(num_classes) or not 2 <= num_classes <= MAX_SIZE:
        raise ValueError(
            f"`num_classes` must be an integer >= 2 (at most {MAX_SIZE}). "
            f"Received: num_classes={num_classes!r}"
        )
    return int(num_classes)


def check_image_shape(input_shape):
    """Raises unless `input_shape` is (height, width, channels) of ints."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if (
        shape is None
        or len(shape) != 3
        or any(not _is_int(d) or not 1 <= d <= MAX_SIZE for d in shape)
    ):
        raise ValueError(
            "`input_shape` must be (height, width, channels) with positive "
            f"integers. Received: input_shape={input_shape!r}"
        )
    return tuple(int(d) for d in shape)




def _is_number(value):
    return not isinstance(value, (bool, np.bool_)) and isinstance(
        value, (int, float, np.integer, np.floating)
    )


def check_bool(value, name):
    """Raises `TypeError` unless `value` is a boolean; returns it as bool.

    Strings such as `"False"` or `"no"` are truthy, so they are refused
    rather than silently read as `True`.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"`{name}` must be a boolean (True or False). Received: "
            f"{name}={value!r} of type {type(value).__name__}"
        )
    return bool(value)


def check_int(value, name, minimum=None, maximum=MAX_SIZE, allow_none=False):
    """Raises unless `value` is an integer in `[minimum, maximum]`."""
    if value is None and allow_none:
        return None
    if (
        not _is_int(value)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        if minimum is not None and maximum is not None:
            what = f"an integer in [{minimum}, {maximum}]"
        elif minimum is not None:
            what = f"an integer >= {minimum}"
        else:
            what = "an integer"
        if allow_none:
            what = f"None or {what}"
        raise ValueError(
            f"`{name}` must be {what}. Received: {name}={value!r}"
        )
    return int(value)


def check_float(
    value,
    name,
    minimum=None,
    maximum=FLOAT32_MAX,
    min_open=False,
    max_open=False,
    allow_none=False,
):
    """Raises unless `value` is a finite real number in the given range.

    `minimum`/`maximum` bound the range (`None`: unbounded, but never
    beyond float32's finite range); `min_open`/`max_open` exclude the bound.
    Booleans, strings, `None`, `inf` and `nan` are refused. Returns a float.
    """
    if value is None and allow_none:
        return None
    if maximum is None:
        maximum = FLOAT32_MAX
    ok = _is_number(value) and np.isfinite(value)
    if ok:
        value_f = float(value)
        ok = abs(value_f) <= FLOAT32_MAX
        if minimum is not None:
            ok = ok and (value_f > minimum if min_open else value_f >= minimum)
        ok = ok and (value_f < maximum if max_open else value_f <= maximum)
    if not ok:
        low = "-inf" if minimum is None else f"{minimum:g}"
        high = f"{maximum:g}"
        interval = (
            ("(" if min_open or minimum is None else "[")
            + f"{low}, {high}"
            + (")" if max_open else "]")
        )
        if minimum == 0 and maximum == FLOAT32_MAX:
            what = "a finite " + (
                "positive" if min_open else "non-negative"
            ) + " number"
        else:
            what = f"a finite number in {interval}"
        if allow_none:
            what = f"None or {what}"
        raise ValueError(
            f"`{name}` must be {what}. Received: {name}={value!r}"
        )
    return value_f


def _get(module, kind, identifier, name):
    try:
        return module.get(identifier)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"`{name}` must be a Keras {kind} (a name such as "
            f"{_EXAMPLES[kind]!r}, a config dict or an instance), or None. "
            f"Received: {name}={identifier!r} ({error})"
        ) from None


_EXAMPLES = {
    "initializer": "glorot_uniform",
    "regularizer": "l2",
    "constraint": "non_neg",
    "activation": "relu",
}


def get_initializer(identifier, name):
    """`keras.initializers.get` with an error that names the argument."""
    return _get(keras.initializers, "initializer", identifier, name)


def get_regularizer(identifier, name):
    """`keras.regularizers.get` with an error that names the argument."""
    return _get(keras.regularizers, "regularizer", identifier, name)


def get_constraint(identifier, name):
    """`keras.constraints.get` with an error that names the argument."""
    return _get(keras.constraints, "constraint", identifier, name)


def get_activation(identifier, name):
    """`keras.activations.get` with an error that names the argument."""
    return _get(keras.activations, "activation", identifier, name)


def check_keep_mask(keep, size, name):
    """Raises unless `keep` is a boolean array of shape `(size,)`.

    `size=None` accepts any length (the caller checks it).

    Integer arrays are refused (`TypeError`): `np.arange(n)` read as
    booleans keeps every unit but the first, which is never what an index
    list meant; float masks are refused for the same reason.
    """
    array = None if isinstance(keep, (str, bytes, dict)) else np.asarray(keep)
    if array is None or array.dtype != bool:
        received = (
            f"{keep!r}"
            if array is None
            else f"an array of dtype {array.dtype} and shape {array.shape}"
        )
        raise TypeError(
            f"`{name}` must be a boolean array"
            + ("" if size is None else f" of shape ({size},)")
            + " (True = keep), not indices or floats. Received: "
            + received
        )
    if array.ndim != 1 or (size is not None and array.shape != (size,)):
        raise ValueError(
            f"`{name}` must be a "
            + ("1-D boolean array" if size is None else
               f"boolean array of shape ({size},)")
            + ". "
            f"Received: an array of shape {array.shape}"
        )
    return array


def check_float_inputs(layer, inputs):
    """Raises `TypeError` unless every input tensor has a float dtype.

    Integer images fed straight into a layer would otherwise fail deep in
    the backend's convolution or multiplication; cast them first (e.g.
    `keras.ops.cast(x, "float32") / 255`).
    """
    for i, x in enumerate(keras.tree.flatten(inputs)):
        dtype = keras.backend.standardize_dtype(x.dtype)
        if "float" not in dtype:
            raise TypeError(
                f"Layer {layer.name!r} ({type(layer).__name__}) expects "
                f"floating-point inputs; cast integer data first, e.g. "
                f"keras.ops.cast(x, 'float32'). Received: input {i} of "
                f"dtype {dtype} and shape {tuple(x.shape)}"
            )


def check_same_batch(layer, inputs):
    """Raises unless all inputs have the same (static) batch size.

    Without this check an input with a batch of 1 broadcasts silently
    against the others.
    """
    shapes = [tuple(x.shape) for x in inputs]
    sizes = {s[0] for s in shapes if s and s[0] is not None}
    if len(sizes) > 1:
        raise ValueError(
            f"All inputs of layer {layer.name!r} ({type(layer).__name__}) "
            "must have the same batch size. Received input shapes "
            + ", ".join(str(s) for s in shapes)
        )


def check_name(value, name="name"):
    """Raises `TypeError` unless `value` is None or a non-empty string."""
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(
            f"`{name}` must be None or a non-empty string. Received: "
            f"{name}={value!r} of type {type(value).__name__}"
        )
    return value


def check_layer_names(value, name):
    """A tuple of layer names from a name or a list of names (`None` stays
    `None`); a `TypeError` for anything else."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple, set)) or not all(
        isinstance(v, str) for v in value
    ):
        raise TypeError(
            f"`{name}` must be a list of layer names. "
            f"Received: {name}={value!r}"
        )
    return tuple(value)
