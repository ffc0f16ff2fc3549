"""SoftFilterPruning's two masks: the soft (kernels only) and the final one.

Where a filter's kernel entries lie is the channel rule's answer
(`ChannelRule.filter_kernel_positions`), the same the engine's criteria
and masks use: an NDDR filter is a column of one task's kernel, a
FilterGenerator filter owns `repository_size` coefficient columns.
"""

import numpy as np

from keras_dynfilt.pruning import criteria
from keras_dynfilt.pruning.graph import _variables, get_channel_rule


def soft_targets(group):
    """`(variable, axis, unit_index)` of the producers' kernels only.

    The soft mask zeroes the filter weights and nothing else, as the SFP
    reference code does (it masks the convolution weights): biases and
    BatchNormalization parameters stay, so that the zeroed filters still get
    gradients (a channel made exactly zero before a ReLU gets none).
    """
    targets = []
    for path in group.layers:
        layer = group.graph.layers[path]
        unit_of_filter = {
            index: u
            for u, unit in enumerate(group.units)
            for unit_path, index in unit
            if unit_path == path
        }
        variables = _variables(layer)
        rule = get_channel_rule(layer)
        for key, axis, owner in rule.filter_kernel_positions(layer):
            units = np.array(
                [unit_of_filter.get(int(f), -1) for f in owner], np.int64
            )
            targets.append((variables[key], axis, units))
    return targets


def rank(groups, counts, criterion, seed=0):
    """Keep masks removing each group's `counts` lowest-scored units."""
    ranked = [(g, n) for g, n in zip(groups, counts) if n]
    scores = iter(criteria.score_groups([g for g, _ in ranked], criterion,
                                        seed=seed))
    return [
        criteria.lowest(next(scores), n) if n else np.ones(g.size, bool)
        for g, n in zip(groups, counts)
    ]


def zeroed_units(groups, counts):
    """The masks the model's zero kernels give, if they match `counts`.

    Returns None unless every group has exactly `counts` units whose
    filter weights are all zero.
    """
    masks = []
    for group, n in zip(groups, counts):
        keep = np.any(group.filter_weights() != 0, axis=1)
        if int((~keep).sum()) != n:
            return None
        masks.append(keep)
    return masks
