"""The private Keras symbols keras-dynfilt uses, in one place.

Keras has no public name for these. Every use of `keras.src` or of a
private attribute of a Keras object (`model._functional`,
`node._keras_history`, ...) in keras-dynfilt goes through this module
(`tests/test_private_keras.py` fails on one anywhere else). Each has a
fallback built on public API, or, where there is none, raises an error
naming the installed Keras version, so a Keras release that moves them
degrades instead of breaking `import keras_dynfilt`.
"""

import warnings

import keras


def _moved(what, fix=""):
    """The error raised when a private Keras symbol is gone."""
    return RuntimeError(
        f"keras-dynfilt needs {what}, which Keras {keras.version()} does not "
        f"have (it is private Keras API, read only in "
        f"keras_dynfilt/_keras_private.py). {fix}".rstrip()
    )


# -- model graphs ------------------------------------------------------------
try:  # The class of functional models (graph analysis in pruning).
    from keras.src.models.functional import Functional
except ImportError:  # pragma: no cover - exercised only on a moved Keras
    _input = keras.Input((1,))
    Functional = type(keras.Model(_input, keras.layers.Identity()(_input)))
    del _input


def sequential_graph(model):
    """The `Functional` graph of a built Sequential model, or `None` when
    the model is not built (`Sequential._functional`)."""
    if not hasattr(model, "_functional"):  # pragma: no cover - moved Keras
        raise _moved("`Sequential._functional` (the graph of a Sequential)")
    return model._functional


def graph_nodes(graph):
    """The nodes of a `Functional` graph that call an operation, in
    topological order (inputs first).

    The one walk of a functional graph that the pruning engine, its cost
    accounting and cross-task probing share: Keras's own `clone_model`
    reads `Functional._nodes_by_depth` the same way.
    """
    by_depth = getattr(graph, "_nodes_by_depth", None)
    if by_depth is None:  # pragma: no cover - exercised only on a moved Keras
        raise _moved("`Functional._nodes_by_depth` (the graph's nodes)")
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if node.is_input or node.operation is None:
                continue
            yield node


def graph_operations(graph):
    """The operations (layers and op nodes, `InputLayer`s included) of a
    `Functional` graph in graph order, as its config lists them."""
    operations = getattr(graph, "_operations", None)
    if operations is None:  # pragma: no cover - public fallback
        operations = graph.operations
    return list(operations)


def graph_structures(model):
    """The input and output structures a functional model was built with
    (nested lists / dicts of tensors), as `keras.Model(inputs, outputs)`
    takes them back."""
    try:
        return model._inputs_struct, model._outputs_struct
    except AttributeError:  # pragma: no cover - public fallback
        return model.input, model.output


def run_graph(graph, inputs, call_fn):
    """Runs a `Functional` graph on `inputs` (symbolic tensors), calling
    `call_fn(operation, *args, **kwargs)` at each node
    (`Functional._run_through_graph`, as `clone_model(call_function=...)`
    does): how tracing rebuilds a graph with some layers replaced."""
    run = getattr(graph, "_run_through_graph", None)
    if run is None:  # pragma: no cover - exercised only on a moved Keras
        raise _moved("`Functional._run_through_graph` (rebuilding a graph)")
    return run(inputs, call_fn=call_fn)


def producing_operation(tensor):
    """The operation (layer) that produced a symbolic tensor
    (`KerasTensor._keras_history`)."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:  # pragma: no cover - exercised only on a moved Keras
        raise _moved("`KerasTensor._keras_history` (a tensor's producer)")
    return history.operation


def sublayers(layer):
    """The layers `layer` tracks directly (`Layer._flatten_layers` without
    recursion), in tracking order: how a layer's variables are keyed by
    the sublayers that own them, not by their path strings."""
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:  # pragma: no cover - public fallback
        return [
            v for v in vars(layer).values()
            if isinstance(v, keras.layers.Layer)
        ]
    return list(flatten(include_self=False, recursive=False))


# -- Keras ops applied to tensors (operation nodes) ---------------------------
# What `keras.ops.<function>` records in a functional graph; the pruning
# engine registers channel rules for these classes.
_OP_PROBES = {
    "Concatenate": lambda x: keras.ops.concatenate([x, x], axis=-1),
    "Split": lambda x: keras.ops.split(x, 2, axis=-1)[0],
    "Pad": lambda x: keras.ops.pad(x, [[0, 0], [1, 1]]),
    "Reshape": lambda x: keras.ops.reshape(x, (-1, 4)),
    "Cast": lambda x: keras.ops.cast(x, "float16"),
    "Matmul": lambda x: keras.ops.matmul(x, keras.KerasTensor((4, 3))),
    "Clip": lambda x: keras.ops.clip(x, 0.0, 1.0),
    "Power": lambda x: keras.ops.power(x, 2.0),
    "Threshold": lambda x: keras.ops.threshold(x, 0.0, 0.0),
    "Divide": lambda x: keras.ops.divide(x, x),
    "GetItem": lambda x: x[:, :2],
    "ConvertToTensor": lambda x: keras.ops.convert_to_tensor(x),
    "Resize": lambda x: keras.ops.image.resize(
        keras.ops.reshape(x, (2, 2, 2, 1)), (4, 4)
    ),
    "TrueDivide": lambda x: keras.ops.true_divide(x, x),
}


def _snake(name):
    out = ""
    for i, c in enumerate(name):
        if c.isupper() and i and not name[i - 1].isupper() and (
            not name[i - 1].isdigit()
        ):
            out += "_"
        out += c.lower()
    return out


def _probe_op_class(name):
    """The class `keras.ops` records for op `name`, found by applying the
    public function to a symbolic tensor (no private import)."""
    probe = _OP_PROBES.get(name)
    if probe is None:
        fn = getattr(keras.ops, _snake(name), None)
        if fn is None:
            return None
        binary = {"Add", "Subtract", "Maximum", "Minimum", "Multiply"}

        def probe(x):
            return fn(x, x) if name in binary else fn(x)

    try:
        out = probe(keras.KerasTensor((2, 4)))
        operation = producing_operation(out)
    except Exception:  # noqa: BLE001 - no such op in this Keras
        return None
    cls = type(operation)
    return cls if cls.__name__ == name else None


def activation_op_class(name):
    """The operation class `keras.activations.<name>` records when applied
    to a symbolic tensor (`keras.activations.relu` is an operation of its
    own, not `keras.ops.relu`), or `None`."""
    fn = getattr(keras.activations, name, None)
    if fn is None:
        return None
    try:
        return type(producing_operation(fn(keras.KerasTensor((2, 4)))))
    except Exception:  # noqa: BLE001 - not an operation in this Keras
        return None


def op_class(module, name):
    """The class of the Keras op `name` (`"Add"`, `"Relu"`) of
    `keras.src.ops.<module>` (`"numpy"`, `"nn"`, `"core"`), or `None` when
    this Keras has no such op.

    Falls back on applying the public `keras.ops` function to a symbolic
    tensor when Keras moves its op modules.
    """
    try:
        if module == "nn":
            from keras.src.ops import nn as found
        elif module == "numpy":
            from keras.src.ops import numpy as found
        elif module == "image":
            from keras.src.ops import image as found
        else:
            from keras.src.ops import core as found
    except ImportError:  # pragma: no cover - exercised only on a moved Keras
        return _probe_op_class(name)
    cls = getattr(found, name, None)
    return cls if isinstance(cls, type) else None


# -- keras.applications' own layers -------------------------------------------
def application_layer(module, name):
    """A layer class that a keras.applications model defines for itself
    (`application_layer("convnext", "LayerScale")`), or `None` (with a
    warning naming the Keras version) when this Keras has moved it: its
    layers are then barriers to the pruning engine."""
    try:
        import importlib

        found = importlib.import_module(f"keras.src.applications.{module}")
        return getattr(found, name)
    except (ImportError, AttributeError):  # pragma: no cover - moved Keras
        warnings.warn(
            f"keras-dynfilt: Keras {keras.version()} has no "
            f"keras.src.applications.{module}.{name}; the pruning engine "
            "treats that layer as a barrier.",
            UserWarning,
            stacklevel=2,
        )
        return None


# -- training ---------------------------------------------------------------
def call_has_training_arg(model):
    """Whether `model.call` takes a `training` argument."""
    found = getattr(model, "_call_has_training_arg", None)
    if found is None:  # pragma: no cover - public fallback
        import inspect

        return "training" in inspect.signature(model.call).parameters
    return found


def compute_loss(model, x, y, y_pred, sample_weight, training):
    """The model's loss as `fit` computes it (`Model._compute_loss`, which
    also covers models overriding `compute_loss` with the old signature)."""
    fn = getattr(model, "_compute_loss", None)
    if fn is None:  # pragma: no cover - public fallback
        fn = model.compute_loss
    return fn(
        x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
        training=training,
    )


def loss_tracker(model):
    """The metric averaging the loss for the logs (`Model._loss_tracker`)."""
    tracker = getattr(model, "_loss_tracker", None)
    if tracker is None:  # pragma: no cover - exercised only on a moved Keras
        raise _moved("`Model._loss_tracker` (the loss shown in the logs)")
    return tracker


def symbolic_build(model, data_batch):
    """Keras's pre-`fit` symbolic build of a model from one batch."""
    if not hasattr(model, "_symbolic_build"):  # pragma: no cover
        raise _moved("`Model._symbolic_build` (building from a batch)")
    model._symbolic_build(data_batch=data_batch)


def set_symbolic_build(model, fn):
    """Replaces, on this instance only, the hook `fit` calls to build the
    model from the first batch (`Model._maybe_symbolic_build`)."""
    if not hasattr(model, "_maybe_symbolic_build"):  # pragma: no cover
        raise _moved("`Model._maybe_symbolic_build` (the pre-fit build)")
    model._maybe_symbolic_build = fn


def base_symbolic_build(cls, model, iterator, data_batch):
    """Calls the `_maybe_symbolic_build` of `cls`'s base classes."""
    return super(cls, model)._maybe_symbolic_build(iterator, data_batch)


def explicit_distribute_strategy(model):
    """The strategy the model was created under, or `None` when none was
    (`Model._distribute_strategy`; the public `distribute_strategy` gives
    the default strategy instead)."""
    return getattr(model, "_distribute_strategy", None)


# -- optimizers ---------------------------------------------------------------
def variable_index(optimizer, variable):
    """The optimizer's own index of `variable` (it also resolves the
    per-replica copies of distributed variables)."""
    fn = getattr(optimizer, "_get_variable_index", None)
    if fn is None:  # pragma: no cover - exercised only on a moved Keras
        raise _moved(
            "`Optimizer._get_variable_index` (an optimizer's index of a "
            "variable)"
        )
    return fn(variable)


def own_optimizer_variables(optimizer):
    """The variables an optimizer created itself (`Optimizer._variables`:
    iterations, learning rate, slots), without a wrapped optimizer's."""
    found = getattr(optimizer, "_variables", None)
    if found is None:  # pragma: no cover - exercised only on a moved Keras
        raise _moved("`Optimizer._variables` (an optimizer's own variables)")
    return found


def unscale_loss_for_distribution(value):
    """Undoes Keras's division of the loss by the number of replicas.

    `Model.compute_loss` scales the loss by `1 / num_replicas_in_sync` under
    a TensorFlow strategy so that summed gradients are means; the value
    reported in the logs is unscaled again. (The same few lines as
    `keras.src.losses.loss.unscale_loss_for_distribution`, which has no
    public name.)
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            value = keras.ops.multiply(
                value, keras.ops.cast(replicas, value.dtype)
            )
    return value
