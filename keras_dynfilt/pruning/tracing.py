"""Tracing: custom layers and subclassed models as functional graphs.

The engine reasons about functional graphs. A layer subclass whose `call`
is written with Keras layers and `keras.ops` (a residual block, an
attention block, a keras-hub `ConvBnActBlock`), or a `keras.Model`
subclass with a hand-written `call`, shows the engine one opaque node.
Tracing runs that `call` on symbolic inputs (`keras.Input`s of the shapes
the node receives): every sublayer call and every `keras.ops` call inside
becomes a node of a small functional model, named after the block, whose
layers are the block's own sublayers (the same objects, so the same
variables: a mask applied through the traced graph acts on the original
model). The engine then walks, masks, prices and compacts that graph like
any nested functional model; `compact` returns an ordinary functional model
in which each traced block is a functional model of its (smaller) parts.

What cannot be traced is refused with a `TypeError` naming the layer and
the construct (for a block inside a graph the block stays a barrier whose
reason is that message):

- Python control flow on tensor values (`if ops.mean(x) > 0:`): a symbolic
  tensor has no value;
- backend-native ops (`tf.*`, `jnp.*`, NumPy) on the tensors: they are
  not Keras operations, so they cannot be nodes;
- state updated in `call` (`self.v.assign(...)`): a graph of the call
  would drop the update;
- the layer's own variables used directly in `call` (`x * self.gamma`),
  not through a sublayer: the engine could not slice them;
- a size read from a symbolic dimension used as a number
  (`ops.arange(seq_len)`), except `ops.reshape` by the batch size
  (`(ops.shape(x)[0], -1, c)`), which is written with `-1` as it runs.

Python branches on non-tensor arguments are fixed at trace time; `call` is
traced with `training` left at its default (`None`), so the Keras layers
inside (Dropout, BatchNormalization) still follow the training flag, but
a Python `if training:` in the block's own code takes its `None` branch.
Layers of Keras itself are never traced (they have channel rules or are
barriers), except `Lambda`, whose function is plain `keras.ops`.
"""

import collections
import os
import sys
import traceback
import weakref

import keras
import numpy as np

from keras_dynfilt._keras_private import (
    Functional,
    graph_nodes,
    graph_structures,
    op_class,
    producing_operation,
    run_graph,
)
from keras_dynfilt.pruning.graph import _graph_base, graph_of
from keras_dynfilt.pruning.rules.base import get_channel_rule

TracedBlock = collections.namedtuple("TracedBlock", ["path", "class_name"])
TracedBlock.__doc__ = """A layer or model whose `call` was traced: its path
(`"outer/block"`) and class name."""

# model -> (traced functional model, [TracedBlock])
_CACHE = weakref.WeakKeyDictionary()
# id(layer) -> why its `call` could not be traced
_REFUSED = {}


def _graph(model):
    return graph_of(model)  # an unbuilt Sequential model: a ValueError


def _nodes(graph):
    """The graph's operation nodes, inputs first."""
    return graph_nodes(graph)


def is_traceable(layer):
    """Whether the engine traces `layer`'s `call` instead of treating the
    layer as a barrier: a layer (or model) without a channel rule, that is
    not a functional or Sequential graph, and is not one of Keras's own
    layers (except `Lambda`)."""
    if not isinstance(layer, keras.layers.Layer) or isinstance(
        layer, keras.layers.InputLayer
    ):
        return False
    if _graph_base(layer) is not None or get_channel_rule(layer) is not None:
        return False
    if type(layer) is keras.layers.Lambda:
        return True
    module = type(layer).__module__ or ""
    return not (module == "keras" or module.startswith("keras."))


def _unserializable_identity(layer):
    """A `keras.layers.Identity` whose config cannot be written (keras-hub
    passes a `DTypePolicy` object to it, which Keras's automatic config
    refuses): the traced graph skips it, it computes nothing."""
    if type(layer) is not keras.layers.Identity:
        return False
    try:
        layer.get_config()
    except NotImplementedError:
        return True
    return False


def refusal(layer):
    """Why `layer`'s `call` could not be traced, or `None`."""
    return _REFUSED.get(id(layer))


def _needs_trace(model, seen=None):
    seen = set() if seen is None else seen
    if id(model) in seen:
        return False
    seen.add(id(model))
    for node in _nodes(_graph(model)):
        op = node.operation
        if _graph_base(op) is not None:
            if _needs_trace(op, seen):
                return True
        elif is_traceable(op) or _unserializable_identity(op):
            return True
    return False


def _package_dirs():
    dirs = []
    for name in ("keras", "tensorflow", "jax", "jaxlib", "numpy", "torch",
                 "keras_dynfilt", "optree"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            dirs.append(os.path.dirname(module.__file__) + os.sep)
    return tuple(dirs)


def _user_frame(tb):
    """The innermost frame of the traceback in code outside Keras, the
    backends and this library (the block's own code), and the next frame."""
    frames = traceback.extract_tb(tb)
    dirs = _package_dirs()
    for i in range(len(frames) - 1, -1, -1):
        if not frames[i].filename.startswith(dirs):
            after = frames[i + 1] if i + 1 < len(frames) else None
            return frames[i], after
    return None, None


def _construct(error):
    """What the traced `call` did that a graph cannot hold."""
    frame, after = _user_frame(error.__traceback__)
    text = str(error)
    where = ""
    if frame is not None:
        line = (frame.line or "").strip()
        where = f" (`{line}` at {os.path.basename(frame.filename)}:"
        where += f"{frame.lineno})"
    after_name = after.name if after is not None else ""
    after_file = after.filename if after is not None else ""
    if "cannot be used as a boolean" in text:
        return "Python control flow on a tensor value" + where
    if after_name.startswith("assign") or (
        after_name in ("assign", "assign_add", "assign_sub")
    ):
        return "a state update in `call` (`Variable.assign`)" + where
    native = ("tensorflow", "jax", "numpy", "torch")
    if any(f"{os.sep}{n}{os.sep}" in after_file for n in native) or any(
        s in text for s in (
            "TensorFlow function", "JAX function", "NumPy array",
            "__jax_array__", "torch",
        )
    ):
        return "a backend-native op (tf.*, jnp.*, np.*, torch.*)" + where
    first = text.split("\n")[0]
    if len(first) > 200:
        first = first[:200] + "..."
    return f"a construct that fails on symbolic tensors{where}: " + (
        f"{type(error).__name__}: {first}"
    )


def _refuse(layer, construct):
    return TypeError(
        f"Cannot trace layer {layer.name!r} ({type(layer).__name__}) for "
        f"pruning: its `call` uses {construct}. The engine traces a `call` "
        "written with Keras layers and `keras.ops` only; write that part "
        "with `keras.ops`, move it into a layer with a registered channel "
        "rule (`keras_dynfilt.pruning.register_channel_rule`), or build the "
        "model functionally."
    )


def _snapshot(layer):
    return [
        (v, np.array(keras.ops.convert_to_numpy(v.value)))
        for v in layer.non_trainable_variables
    ]


def _check_state(layer, before):
    for variable, value in before:
        now = keras.ops.convert_to_numpy(variable.value)
        if not np.array_equal(now, value, equal_nan=True):
            variable.assign(value)
            return _refuse(
                layer,
                f"a state update in `call` (variable {variable.path!r} "
                "changed while tracing)",
            )
    return None


def _check_variables(layer, sub):
    """A variable used directly in `call` ends up a constant argument of
    an op node: the engine could not slice it."""
    for node in _nodes(sub):
        flat = keras.tree.flatten(
            (list(node.arguments.args), dict(node.arguments.kwargs))
        )
        for value in flat:
            if isinstance(value, keras.Variable):
                return _refuse(
                    layer,
                    f"its variable {value.path!r} directly in "
                    f"`{node.operation.name}` (not through a sublayer)",
                )
    return None


def _input_like(tensor):
    return keras.Input(batch_shape=tuple(tensor.shape), dtype=tensor.dtype)


def _symbolic_call(layer, args, kwargs, shapes=None):
    """Runs `layer.call` on fresh `keras.Input`s shaped like the tensors of
    `(args, kwargs)` (or of `shapes`): the functional model of the call and
    its inputs' tensors in `args` / `kwargs` order."""
    tensors = _tensors(args, kwargs)
    if not tensors:
        raise _refuse(layer, "no tensor inputs")
    if shapes is None or len(shapes) != len(tensors):
        shapes = [tuple(t.shape) for t in tensors]
    inputs = [
        keras.Input(batch_shape=shape, dtype=t.dtype)
        for shape, t in zip(shapes, tensors)
    ]
    by_id = {id(t): x for t, x in zip(tensors, inputs)}
    new_args, new_kwargs = keras.tree.map_structure(
        lambda v: by_id.get(id(v), v) if isinstance(v, keras.KerasTensor)
        else v,
        (list(args), dict(kwargs)),
    )
    before = _snapshot(layer)
    try:
        outputs = layer.call(*new_args, **new_kwargs)
    except Exception as e:  # noqa: BLE001 - classified and re-raised
        error = _check_state(layer, before)
        raise (error or _refuse(layer, _construct(e))) from e
    error = _check_state(layer, before)
    if error is not None:
        raise error
    flat = keras.tree.flatten(outputs)
    if not flat or not all(isinstance(o, keras.KerasTensor) for o in flat):
        raise _refuse(layer, "an output that is not a tensor of its inputs")
    if not all(any(o is x for x in inputs) for o in flat):
        # Some outputs computed, some passed through: those get a node.
        outputs = _distinct_outputs(outputs, inputs)
    try:
        sub = keras.Model(
            inputs[0] if len(inputs) == 1 else inputs, outputs,
            name=layer.name,
        )
    except Exception as e:  # noqa: BLE001 - classified and re-raised
        raise _refuse(layer, _construct(e)) from e
    error = _check_variables(layer, sub)
    if error is not None:
        raise error
    reshape = op_class("numpy", "Reshape")
    if reshape is not None and any(
        type(n.operation) is reshape and _reads_none(n.operation)
        for n in _nodes(sub)
    ):
        # Run again, each such reshape fixed on its input's inferred shape.
        def call(op, *args, **kwargs):
            if type(op) is reshape and _reads_none(op):
                # A new op: its config (what `compact` rebuilds) is its own.
                return keras.ops.reshape(args[0], _batch_free_reshape(
                    layer, op, tuple(args[0].shape)
                ))
            return op(*args, **kwargs)

        fresh = [_input_like(x) for x in sub.inputs]
        outputs = run_graph(sub, fresh, call)
        sub = keras.Model(
            fresh[0] if len(fresh) == 1 else fresh, outputs, name=layer.name
        )
    return sub, tensors


def _reads_none(op):
    shape = op.newshape
    return isinstance(shape, (list, tuple)) and any(d is None for d in shape)


def _batch_free_reshape(layer, op, in_shape):
    """The shape for `ops.reshape(x, (B, ...))` whose `B` was read from
    the symbolic batch size (`ops.shape(x)[0]`, `None`): `(-1, ...)`, as
    at run time; a `-1` already there (`(B, -1, C)`) gets its value from
    the input's static shape. Refuses a shape it cannot write so."""
    shape = list(op.newshape)
    known = [d for d in shape if d is not None and d != -1]
    if shape.count(None) == 1 and -1 not in shape:
        shape[shape.index(None)] = -1
    elif (
        shape.count(None) == 1 and shape.count(-1) == 1
        and shape[0] is None and in_shape[0] is None
        and all(d is not None for d in in_shape[1:])
        and _size(in_shape[1:]) % max(_size(known), 1) == 0
    ):
        shape[shape.index(-1)] = _size(in_shape[1:]) // _size(known)
        shape[0] = -1
    else:
        raise _refuse(
            layer,
            f"`ops.reshape` of a {in_shape} tensor to {tuple(shape)}, a "
            "shape read from symbolic dimensions (`None`) that no single "
            "`-1` can stand for",
        )
    return tuple(shape)


def _size(dims):
    return int(np.prod([int(d) for d in dims], dtype=np.int64))


def _passed_through(sub, tensors):
    """The call's own tensors when the traced block returns its inputs
    unchanged (keras-hub's `DropPath` at rate 0 or outside training),
    else `None`. Such a block is left out of the graph: called as a model,
    Keras hands back the very input tensor as the output and records the
    call on it, so a second call of the block closes a cycle."""
    position = {id(x): i for i, x in enumerate(sub.inputs)}
    outputs = graph_structures(sub)[1]
    if not all(id(o) in position for o in keras.tree.flatten(outputs)):
        return None
    return keras.tree.map_structure(
        lambda o: tensors[position[id(o)]], outputs
    )


def _distinct_outputs(outputs, inputs):
    """`outputs` with each one that is also an input passed through an
    `Identity` layer: a model whose output is its input is returned as
    the caller's own tensor by Keras (see `_passed_through`)."""
    ids = {id(x) for x in inputs}
    return keras.tree.map_structure(
        lambda o: keras.layers.Identity()(o) if id(o) in ids else o,
        outputs,
    )


def _tensors(args, kwargs):
    """The distinct symbolic tensors of a call's arguments, in order."""
    tensors = []
    for value in keras.tree.flatten((list(args), dict(kwargs))):
        if isinstance(value, keras.KerasTensor) and all(
            value is not t for t in tensors
        ):
            tensors.append(value)
    return tensors


def _merged_shapes(calls):
    """One input shape per tensor that fits every call of a shared layer:
    the dimensions that differ between calls (pyramid levels) are `None`."""
    first = calls[0]
    if any(len(c) != len(first) for c in calls):
        return None
    merged = []
    for shapes in zip(*calls):
        if len({len(s) for s in shapes}) != 1:
            return None
        merged.append(tuple(
            dims[0] if len(set(dims)) == 1 else None for dims in zip(*shapes)
        ))
    return merged


class _Tracer:
    def __init__(self):
        self.blocks = []
        self.subs = {}  # id(layer) -> traced model
        self.shapes = {}  # id(layer) -> input shapes fitting all its calls

    def graph(self, model, prefix):
        """`model` (a graph model) with its traceable layers traced, or
        `model` itself when it has none."""
        if not _needs_trace(model):
            return model
        graph = _graph(model)
        calls = {}
        for node in _nodes(graph):
            if is_traceable(node.operation):
                args = node.arguments
                calls.setdefault(id(node.operation), []).append(
                    [tuple(t.shape) for t in _tensors(args.args, args.kwargs)]
                )
        for key, found in calls.items():
            self.shapes[key] = _merged_shapes(found)
        inputs = [
            keras.Input(
                batch_shape=tuple(t.shape), dtype=t.dtype,
                name=producing_operation(t).name,
            )
            for t in graph.inputs
        ]

        def call(op, *args, **kwargs):
            path = prefix + (op.name,)
            if _unserializable_identity(op) and len(args) == 1:
                return args[0]  # `training=` and the like change nothing
            if _graph_base(op) is not None:
                return self.graph(op, path)(*args, **kwargs)
            if is_traceable(op):
                try:
                    sub, tensors = self.block(op, args, kwargs, path)
                except TypeError as e:
                    _REFUSED[id(op)] = str(e)
                    return op(*args, **kwargs)
                passed = _passed_through(sub, tensors)
                if passed is not None:
                    return passed
                return sub(tensors[0] if len(tensors) == 1 else tensors)
            return op(*args, **kwargs)

        outputs = run_graph(graph, inputs, call)
        return keras.Model(
            inputs[0] if len(inputs) == 1 else inputs, outputs,
            name=model.name, trainable=model.trainable,
        )

    def block(self, layer, args, kwargs, path):
        """The traced functional model of `layer`'s calls: one graph for a
        layer called several times (its inputs' shapes fit every call)."""
        sub = self.subs.get(id(layer))
        if sub is not None:
            return sub, _tensors(args, kwargs)
        sub, tensors = _symbolic_call(
            layer, args, kwargs, self.shapes.get(id(layer))
        )
        _REFUSED.pop(id(layer), None)
        self.blocks.append(
            TracedBlock("/".join(path), type(layer).__name__)
        )
        sub = self.graph(sub, path)
        self.subs[id(layer)] = sub
        return sub, tensors


def _subclass_inputs(model):
    if isinstance(model, Functional):  # a graph subclass overriding `call`
        return [_input_like(t) for t in model.inputs]
    config = model.get_build_config() if model.built else None
    shape = (config or {}).get("input_shape")
    if shape is None:
        raise TypeError(
            f"Cannot trace model {model.name!r} ({type(model).__name__}): it "
            "has no recorded input shape (it is not built, or Keras could "
            "not build it symbolically). Call `model.build(input_shape)` "
            "first."
        )
    shapes = shape if shape and isinstance(shape[0], (list, tuple)) else [
        shape
    ]
    # The batch size of the first call is no part of the model.
    return [keras.Input(batch_shape=(None,) + tuple(s)[1:]) for s in shapes]


def trace(model):
    """A functional model computing what `model` computes, its custom
    layers traced into their parts.

    Functional and Sequential models (and `keras.Model` subclasses that
    keep `Model.call`) are returned as they are when none of their layers
    needs tracing. Otherwise every layer without a channel rule that is not
    one of Keras's own (a `keras.layers.Layer` subclass with its own
    `call`) is replaced by a functional model of its `call`, named after
    it, whose layers are the layer's own sublayers (same objects, same
    variables). A `keras.Model` subclass with a hand-written `call` becomes
    the functional model of that `call` (it must be built).

    The result is cached per model: the engine's functions
    (`filter_groups`, `compact`, `model_cost`, masking) all work on the
    same traced graph.

    Args:
        model: A Keras model.

    Returns:
        A functional `keras.Model` (`model` itself when nothing was traced);
        `traced_blocks(model)` lists the layers that were traced.

    Raises:
        TypeError: `model` is a subclass whose `call` cannot be traced
            (the message names the construct), or it is not built.
    """
    return _traced(model)[0]


def traced_blocks(model):
    """The `TracedBlock`s of `trace(model)`: the layers whose `call` was
    traced, as `(path, class_name)`."""
    return list(_traced(model)[1])


def _traced(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a Keras model. Received: model of type "
            f"{type(model).__name__}"
        )
    cached = _CACHE.get(model)
    if cached is not None:
        return cached
    tracer = _Tracer()
    if _graph_base(model) is not None:
        if not _needs_trace(model):
            return model, []
        traced = tracer.graph(model, ())
    else:
        inputs = _subclass_inputs(model)
        sub, _ = _symbolic_call(
            model, [inputs[0] if len(inputs) == 1 else inputs], {}
        )
        tracer.blocks.append(TracedBlock(model.name, type(model).__name__))
        traced = tracer.graph(sub, ())
    result = (traced, tuple(tracer.blocks))
    _CACHE[model] = result
    return result
