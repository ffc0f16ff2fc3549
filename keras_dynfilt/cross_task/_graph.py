"""Where a layer's filters are probed: its activation point in the graph.

A producer's (a convolution's) feature is read after the layers that act on
each of its channels on their own: BatchNormalization, activations and MFM
(paper 001 probes VGG after the ReLU and LightCNN after the MFM). The walk
stops at the first layer that is not one of those, or where the tensor is
read by more than one layer (a residual branch point). Which layers are
producers and which act pointwise is read from their channel rules
(`ChannelRule.is_producer`, `ChannelRule.is_pointwise`). Only the top level
of a functional model is walked, with the engine's graph walk
(`keras_dynfilt._keras_private.graph_nodes`).
"""

import collections

import keras

from keras_dynfilt._keras_private import graph_nodes
from keras_dynfilt.pruning.graph import graph_of
from keras_dynfilt.pruning.rules.base import get_channel_rule

L = keras.layers

Probe = collections.namedtuple("Probe", ["layer", "point", "tensor"])
Probe.__doc__ = """A probe: the named `layer`, the `point` layer whose output
is read, and that output (a symbolic tensor of the model)."""


def _is_elementwise(layer):
    """Whether the layer maps each position on its own (its rule says)."""
    rule = get_channel_rule(layer)
    return rule is not None and rule.is_pointwise(layer)


def is_producer(layer):
    rule = get_channel_rule(layer)
    return rule is not None and rule.is_producer


def probe_points(model, layers=None):
    """`{name: Probe}` for the named layers, or every spatial producer.

    Raises:
        ValueError: a name that is not a layer of the model, a shared layer,
            or a layer whose output has no channel axis.
    """
    graph = graph_of(model)
    nodes = list(graph_nodes(graph))
    node_of, readers = {}, collections.defaultdict(list)
    for node in nodes:
        node_of.setdefault(node.operation.name, []).append(node)
        for tensor in node.input_tensors:
            readers[id(tensor)].append(node)
    outputs = {id(t) for t in graph.outputs}
    if layers is None:
        names = [
            node.operation.name for node in nodes
            if is_producer(node.operation)
            and len(node.output_tensors[0].shape) >= 3
        ]
    else:
        if isinstance(layers, str):
            layers = [layers]
        names = list(layers)
        for name in names:
            if name not in node_of:
                raise ValueError(
                    f"`layers` names {name!r}, which is not a layer of model "
                    f"{model.name!r}. Layers: {sorted(node_of)}"
                )
    probes = collections.OrderedDict()
    for name in names:
        if len(node_of[name]) != 1:
            raise ValueError(
                f"Layer {name!r} is called {len(node_of[name])} times in the "
                "model; a probe needs a layer called once."
            )
        node = node_of[name][0]
        tensor, point = node.output_tensors[0], name
        if is_producer(node.operation):
            while id(tensor) not in outputs:
                followers = readers.get(id(tensor), [])
                if len(followers) != 1 or len(followers[0].input_tensors) != 1:
                    break
                follower = followers[0]
                if not _is_elementwise(follower.operation):
                    break
                tensor = follower.output_tensors[0]
                point = follower.operation.name
        shape = tuple(tensor.shape)
        if len(shape) < 2 or not shape[-1]:
            raise ValueError(
                f"Layer {name!r} has no channels to probe: its output (at "
                f"{point!r}) has shape {shape}; a probe needs (batch, ..., "
                "channels)."
            )
        probes[name] = Probe(name, point, tensor)
    return probes


def pooled(tensor, name):
    """Global average pooling over every axis between batch and channels."""
    rank = len(tensor.shape)
    if rank == 2:
        return tensor
    pool = {
        3: L.GlobalAveragePooling1D,
        4: L.GlobalAveragePooling2D,
        5: L.GlobalAveragePooling3D,
    }.get(rank)
    if pool is None:
        raise ValueError(
            f"Cannot pool a tensor of shape {tuple(tensor.shape)} at {name!r}."
        )
    return pool(name=name)(tensor)


def unique_name(model, base):
    names = {layer.name for layer in model.layers}
    name, i = base, 1
    while name in names:
        i += 1
        name = f"{base}_{i}"
    return name
