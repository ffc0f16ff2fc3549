"""HyperModel for the filter-generation network (Shen & Liu)."""

import keras

from keras_dynfilt._validation import check_image_shape, check_num_classes
from keras_dynfilt.models.filter_generation import filter_generation_network
from keras_dynfilt.tuning._data import (
    check_unit_range,
    map_training_data,
    map_validation_data,
)
from keras_dynfilt.tuning.search_space import PaperHyperModel, kt


class FilterGenerationHyperModel(PaperHyperModel):
    """Tunes `keras_dynfilt.models.filter_generation_network`.

    Searches the paper's grid (tables 1 and 2): encoder width `n_ae` in
    {5, 10, 20} (`encoder_filters`), repository size `s` in {2, 5, 10}
    (`repository_size`), and the Adam learning rate on a log scale in
    [1e-4, 1e-2]. The defaults are the paper's best setting, `n_ae = 20`,
    `s = 5`; the paper gives no learning rate, the default 1e-3 is the
    library's filter-generation example's (Adam).

    `fit` takes ordinary classification data, images in [0, 1] and integer
    labels, and builds the network's two targets itself: the labels for
    the `"logits"` output and the images for the `"reconstruction"` output
    (the loss is `BCE(reconstruction, image) + CE(logits, label)`). The
    objective is `val_logits_accuracy` (maximised).

    Reference:
    - [Shen & Liu, Learning to generate filters for convolutional neural
      networks](https://arxiv.org/abs/1812.01894)

    Args:
        input_shape: Tuple `(height, width, channels)`.
        num_classes: Integer >= 2.
        filters: Prediction-network widths, passed to the builder (the
            paper: `(5, 5)`).
        kernel_size: Kernel size of every convolution (the paper: 5).
        space: Optional dict of range overrides (see `PaperHyperModel`).
        fixed: Optional dict of pinned values.
        name: Optional name; defaults to `"filter_generation"`.

    Examples:

    >>> import keras_tuner
    >>> hypermodel = keras_dynfilt.tuning.FilterGenerationHyperModel(
    ...     (8, 8, 1), 3, filters=(4,), kernel_size=3,
    ...     fixed={"repository_size": 2})
    >>> hp = keras_tuner.HyperParameters()
    >>> model = hypermodel.build(hp)
    >>> hp.values
    {'encoder_filters': 20, 'repository_size': 2, 'learning_rate': 0.001}
    >>> model.get_layer("conv1").repository_size, sorted(model.output)
    (2, ['logits', 'reconstruction'])

    A search with it: `keras_dynfilt.tuning.make_tuner`.
    """

    SEARCH_SPACE = {
        "encoder_filters": ("Choice", {"values": [5, 10, 20], "default": 20}),
        "repository_size": ("Choice", {"values": [2, 5, 10], "default": 5}),
        "learning_rate": (
            "Float",
            {
                "min_value": 1e-4,
                "max_value": 1e-2,
                "sampling": "log",
                "default": 1e-3,
            },
        ),
    }

    def __init__(
        self,
        input_shape,
        num_classes,
        filters=(5, 5),
        kernel_size=5,
        space=None,
        fixed=None,
        name="filter_generation",
    ):
        super().__init__(space=space, fixed=fixed, name=name)
        self.input_shape = check_image_shape(input_shape)
        self.num_classes = check_num_classes(num_classes)
        self.filters = tuple(filters)
        self.kernel_size = kernel_size
        self.objective = kt.Objective("val_logits_accuracy", "max")

    def build(self, hp):
        values = self.declare(hp)
        model = filter_generation_network(
            self.input_shape,
            self.num_classes,
            encoder_filters=values["encoder_filters"],
            repository_size=values["repository_size"],
            filters=self.filters,
            kernel_size=self.kernel_size,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(values["learning_rate"]),
            loss={
                "reconstruction": keras.losses.BinaryCrossentropy(),
                "logits": keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True
                ),
            },
            metrics={"logits": ["accuracy"]},
        )
        return model

    @staticmethod
    def _targets(images, labels):
        return images, {"logits": labels, "reconstruction": images}

    def fit(self, hp, model, x=None, y=None, validation_data=None, **kwargs):
        owner = type(self).__name__
        x, y = map_training_data(x, y, self._targets, owner)
        check_unit_range(x, owner)
        validation_data = map_validation_data(
            validation_data, self._targets, owner
        )
        return model.fit(x, y, validation_data=validation_data, **kwargs)
