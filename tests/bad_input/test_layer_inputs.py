"""Every public layer, built once, then called with each input dimension
changed (rank, channels, sizes it was built for, number of inputs, batch
sizes that disagree, integer dtypes): a ValueError/TypeError naming the
layer or the argument, never a backend trace or a silently wrong result."""

import keras
import numpy as np
import pytest

from keras_dynfilt.layers import (
    MFM,
    NDDR,
    ChannelPadding,
    CrossStitch,
    DimensionReduction,
    FilterGenerator,
    WSoftmaxHead,
)
from tests.bad_input.table import _rejection_problem


def _x(*shape, dtype="float32"):
    return np.ones(shape, dtype)


def _check_calls(layer, bad, good):
    """`bad`: (label, args, kwargs, name); `good`: (label, args, kwargs)."""
    problems = []
    for label, args, kwargs, name in bad:
        problem = _rejection_problem(layer, name, *args, **kwargs)
        if problem:
            problems.append(f"{label}: {problem}")
    for label, args, kwargs in good:
        try:
            layer(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - reported
            problems.append(f"{label} (valid) raised {error!r}")
    assert not problems, "\n".join(problems)
    return len(bad)


def _single_input_cases(layer, shape):
    """Rank +-1 and the channel axis changed, for a layer built on
    `shape`."""
    name = layer.name
    rank_down = shape[:-2] + shape[-1:]
    rank_up = shape[:-1] + (1,) + shape[-1:]
    return [
        ("rank - 1", (_x(*rank_down),), {}, name),
        ("rank + 1", (_x(*rank_up),), {}, name),
        ("channels + 2", (_x(*shape[:-1], shape[-1] + 2),), {}, name),
    ]


def test_mfm():
    layer = MFM(name="bad_mfm")
    layer(_x(2, 4, 4, 6))
    bad = _single_input_cases(layer, (2, 4, 4, 6))
    good = [("spatial size", (_x(1, 3, 5, 6),), {})]
    assert _check_calls(layer, bad, good) == 3


def test_channel_padding():
    layer = ChannelPadding((0, 2), name="bad_pad")
    layer(_x(2, 4, 4, 3))
    bad = _single_input_cases(layer, (2, 4, 4, 3))
    good = [("spatial size", (_x(1, 2, 6, 3),), {})]
    _check_calls(layer, bad, good)


def _task_cases(layer, shapes):
    name = layer.name
    cases = []
    for k, s in enumerate(shapes):
        for label, changed in (
            ("channels + 1", s[:-1] + (s[-1] + 1,)),
            ("rank - 1", s[:-2] + s[-1:]),
            ("rank + 1", s[:-1] + (1,) + s[-1:]),
            ("spatial size", (s[0], s[1] + 1) + s[2:]),
            ("batch of 1", (1,) + s[1:]),
            ("batch + 1", (s[0] + 1,) + s[1:]),
        ):
            inputs = [_x(*t) for t in shapes]
            inputs[k] = _x(*changed)
            cases.append((f"input {k} {label}", (inputs,), {}, name))
        inputs = [_x(*t) for t in shapes]
        inputs[k] = _x(*s, dtype="int32")
        cases.append((f"input {k} int32", (inputs,), {}, name))
    cases.append((
        "one more input", ([_x(*s) for s in shapes + shapes[:1]],), {}, name
    ))
    cases.append(("one input", ([_x(*shapes[0])],), {}, name))
    cases.append(("a tensor, not a list", (_x(*shapes[0]),), {}, name))
    return cases


@pytest.mark.parametrize("per_channel", [False, True])
def test_cross_stitch(per_channel):
    layer = CrossStitch(per_channel=per_channel, name="bad_stitch")
    shapes = [(2, 4, 4, 3), (2, 4, 4, 3)]
    layer([_x(*s) for s in shapes])
    good = [("both spatial sizes", ([_x(1, 5, 3, 3), _x(1, 5, 3, 3)],), {})]
    _check_calls(layer, _task_cases(layer, shapes), good)


def test_nddr():
    layer = NDDR(name="bad_nddr")
    shapes = [(2, 4, 4, 3), (2, 4, 4, 5)]
    layer([_x(*s) for s in shapes])
    good = [("both spatial sizes", ([_x(1, 5, 3, 3), _x(1, 5, 3, 5)],), {})]
    _check_calls(layer, _task_cases(layer, shapes), good)


def test_filter_generator():
    layer = FilterGenerator(2, 3, 2, name="bad_fg")
    x, z = _x(2, 6, 6, 2), _x(2, 4)
    layer([x, z])
    name = layer.name
    bad = [
        ("x channels + 1", ([_x(2, 6, 6, 3), z],), {}, name),
        ("x rank - 1", ([_x(2, 6, 2), z],), {}, name),
        ("x rank + 1", ([_x(2, 6, 6, 1, 2), z],), {}, name),
        ("z features + 1", ([x, _x(2, 5)],), {}, name),
        ("z rank + 1", ([x, _x(2, 4, 1)],), {}, name),
        ("z batch of 1", ([x, _x(1, 4)],), {}, "`z`"),
        ("x batch of 1", ([_x(1, 6, 6, 2), z],), {}, "`z`"),
        ("x smaller than the kernel", ([_x(2, 2, 2, 2), z],), {}, "`x`"),
        ("x int32", ([_x(2, 6, 6, 2, dtype="int32"), z],), {}, name),
        ("z int32", ([x, _x(2, 4, dtype="int32")],), {}, name),
        ("only x", (x,), {}, name),
        ("three inputs", ([x, z, z],), {}, name),
    ]
    good = [("spatial size", ([_x(1, 7, 5, 2), _x(1, 4)],), {})]
    _check_calls(layer, bad, good)


def test_dimension_reduction():
    layer = DimensionReduction(4, name="bad_reduce")
    layer(_x(2, 8, 8, 3))
    name = layer.name
    bad = _single_input_cases(layer, (2, 8, 8, 3)) + [
        # Built on 8x8: a 16x16 map once gave a batch of 18 for 2.
        ("height 16", (_x(2, 16, 8, 3),), {}, name),
        ("width 16", (_x(2, 8, 16, 3),), {}, name),
        ("height 4", (_x(2, 4, 8, 3),), {}, name),
        ("int32", (_x(2, 8, 8, 3, dtype="int32"),), {}, name),
    ]
    good = [("batch of 3", (_x(3, 8, 8, 3),), {})]
    _check_calls(layer, bad, good)


def test_wsoftmax_head():
    layer = WSoftmaxHead(3, name="bad_head")
    features, labels = _x(2, 5), np.array([0, 2], "int32")
    layer(features, labels, training=True)
    name = layer.name
    train = {"training": True}
    bad = [
        ("dim + 1", (_x(2, 6),), {}, name),
        ("rank + 1", (_x(2, 1, 5),), {}, name),
        ("int32 features", (_x(2, 5, dtype="int32"),), {}, name),
        ("labels batch of 1", (features, labels[:1]), train, "`labels`"),
        ("labels batch + 1", (features, np.array([0, 1, 2])), train,
         "`labels`"),
        ("float labels", (features, labels.astype("float32")), train,
         "`labels`"),
        ("label = num_classes", (features, np.array([0, 3])), train,
         "`labels`"),
        ("negative label", (features, np.array([-1, 0])), train, "`labels`"),
        ("labels of rank 2", (features, np.zeros((2, 2), "int32")), train,
         "`labels`"),
    ]
    good = [("batch of 4", (_x(4, 5), np.arange(4) % 3), train)]
    _check_calls(layer, bad, good)


def test_functional_model_rejects_a_wrong_input_too():
    # The specs hold in a functional model: a second model reusing the
    # layers with other channels fails at construction, naming the layer.
    layer = NDDR(name="shared_nddr")
    a, b = keras.Input((4, 4, 3)), keras.Input((4, 4, 3))
    keras.Model([a, b], layer([a, b]))
    c = keras.Input((4, 4, 6))
    problem = _rejection_problem(layer, "shared_nddr", [a, c])
    assert problem is None, problem
