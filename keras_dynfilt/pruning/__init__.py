"""Structured pruning: coupled filter groups, masking, compaction, cost."""

from keras_dynfilt.pruning import (
    criteria,  # noqa: F401 - public module
    rules,  # noqa: F401 - registers rules
)
from keras_dynfilt.pruning.compaction import compact
from keras_dynfilt.pruning.compaction_difference import CompactionDifference
from keras_dynfilt.pruning.cost import (
    LayerCost,
    ModelCost,
    macs_reduction,
    model_cost,
    print_cost,
    register_layer_cost,
)
from keras_dynfilt.pruning.graph import (
    ChannelGraph,
    FilterGroup,
    FilterGroups,
    HeldFixed,
    analyze,
    filter_groups,
)
from keras_dynfilt.pruning.latency import inference_latency
from keras_dynfilt.pruning.masking import apply_group_mask, apply_group_masks
from keras_dynfilt.pruning.pruner import Pruner, prune
from keras_dynfilt.pruning.pruning_report import GroupChange, PruningReport
from keras_dynfilt.pruning.rules.base import (
    ChannelRule,
    Registration,
    TensorSlots,
    WeightAxis,
    get_channel_rule,
    get_layer_cost,
    register_channel_rule,
)
from keras_dynfilt.pruning.rules.context import RuleContext
from keras_dynfilt.pruning.tracing import TracedBlock, trace, traced_blocks

__all__ = [
    "ChannelGraph",
    "LayerCost",
    "ModelCost",
    "ChannelRule",
    "CompactionDifference",
    "FilterGroup",
    "FilterGroups",
    "GroupChange",
    "HeldFixed",
    "Registration",
    "RuleContext",
    "TensorSlots",
    "WeightAxis",
    "analyze",
    "apply_group_mask",
    "apply_group_masks",
    "compact",
    "criteria",
    "filter_groups",
    "inference_latency",
    "macs_reduction",
    "get_channel_rule",
    "get_layer_cost",
    "model_cost",
    "print_cost",
    "prune",
    "Pruner",
    "PruningReport",
    "register_channel_rule",
    "register_layer_cost",
    "trace",
    "traced_blocks",
    "TracedBlock",
]
