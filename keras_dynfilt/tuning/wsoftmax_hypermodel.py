"""HyperModel for a CNN with the weights-biased softmax head (W-Softmax)."""

import keras

from keras_dynfilt._validation import (
    check_image_shape,
    check_num_classes,
    check_positive_int,
)
from keras_dynfilt.layers.wsoftmax_head import WSoftmaxHead
from keras_dynfilt.tuning._data import map_training_data, map_validation_data
from keras_dynfilt.tuning.search_space import PaperHyperModel, kt


class WSoftmaxHyperModel(PaperHyperModel):
    """Tunes a CNN classified by `keras_dynfilt.layers.WSoftmaxHead`.

    The network: four 3x3 convolutions (`channels`, `channels`,
    `2·channels`, `2·channels`) with batch normalization and ReLU, 2x2
    max-pooling after the second and fourth, a linear fully connected
    feature layer `"fc"`, and the W-Softmax head `"head"`. Searched:

    - `alpha` in {0, 0.5, 1, 1.5} (0 is softmax on normalised weights);
      default 1.5, the setting of the paper's best MNIST figure;
    - `fc_multiple` in {1, 2, 10}: the feature width as a multiple of
      `K - 1`, the paper's minimum width for `K` classes; default 1;
    - `softmax_first` (boolean): train the first half of the epochs
      (`epochs // 2`) with `alpha = 0`, then refine with `alpha`, the
      paper's practice; default on. The objective (`val_accuracy`,
      maximised) and the best-epoch checkpoint are taken from the
      refinement epochs.

    The model takes `{"images": x, "labels": y}` (the head needs the labels
    while training); `fit` builds that input from ordinary `(x, y)` data.
    At inference the labels are not used: predict with
    `model.predict({"images": x, "labels": None})` or use
    `WSoftmaxHyperModel.inference_model(model)`, which maps images to
    logits with the same weights.

    Reference:
    - [Li et al., Learning Discriminative Features Via Weights-biased
      Softmax Loss](https://arxiv.org/abs/1904.11138)

    Args:
        input_shape: Tuple `(height, width, channels)`.
        num_classes: Integer >= 2, `K`.
        channels: Positive integer, width of the first convolutions.
        learning_rate: Adam learning rate (not tuned).
        space: Optional dict of range overrides (see `PaperHyperModel`).
        fixed: Optional dict of pinned values.
        name: Optional name; defaults to `"wsoftmax"`.

    Examples:

    >>> import keras_tuner
    >>> hypermodel = keras_dynfilt.tuning.WSoftmaxHyperModel(
    ...     (8, 8, 1), 3, channels=4)
    >>> hypermodel.paper_defaults()
    {'alpha': 1.5, 'fc_multiple': 1, 'softmax_first': True}
    >>> model = hypermodel.build(keras_tuner.HyperParameters())
    >>> sorted(model.input), model.get_layer("fc").units
    (['images', 'labels'], 2)
    >>> logits = keras_dynfilt.tuning.WSoftmaxHyperModel.inference_model(model)
    >>> logits.predict(np.zeros((5, 8, 8, 1)), verbose=0).shape
    (5, 3)

    A search with it: `keras_dynfilt.tuning.make_tuner`.
    """

    SEARCH_SPACE = {
        "alpha": ("Choice", {"values": [0.0, 0.5, 1.0, 1.5], "default": 1.5}),
        "fc_multiple": ("Choice", {"values": [1, 2, 10], "default": 1}),
        "softmax_first": ("Boolean", {"default": True}),
    }

    def __init__(
        self,
        input_shape,
        num_classes,
        channels=8,
        learning_rate=1e-3,
        space=None,
        fixed=None,
        name="wsoftmax",
    ):
        super().__init__(space=space, fixed=fixed, name=name)
        self.input_shape = check_image_shape(input_shape)
        self.num_classes = check_num_classes(num_classes)
        self.channels = check_positive_int(channels, "channels")
        self.learning_rate = learning_rate
        self.objective = kt.Objective("val_accuracy", "max")

    def build(self, hp):
        values = self.declare(hp)
        fc_width = max(
            1,
            round(
                values["fc_multiple"]
                * WSoftmaxHead.min_feature_dim(self.num_classes)
            ),
        )
        images = keras.Input(self.input_shape, name="images")
        labels = keras.Input((), dtype="int32", name="labels", optional=True)
        x = images
        widths = (self.channels,) * 2 + (2 * self.channels,) * 2
        for i, width in enumerate(widths):
            x = keras.layers.Conv2D(
                width, 3, padding="same", use_bias=False, name=f"conv{i + 1}"
            )(x)
            x = keras.layers.BatchNormalization(
                momentum=0.9, name=f"bn{i + 1}"
            )(x)
            x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
            if i % 2:
                x = keras.layers.MaxPooling2D(name=f"pool{i // 2 + 1}")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        features = keras.layers.Dense(fc_width, name="fc")(x)
        alpha = 0.0 if values["softmax_first"] else values["alpha"]
        head = WSoftmaxHead(self.num_classes, alpha=alpha, name="head")
        model = keras.Model(
            {"images": images, "labels": labels},
            head(features, labels=labels),
            name="wsoftmax_cnn",
        )
        model.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return model

    @staticmethod
    def inference_model(model):
        """Images -> logits, sharing the weights of a trained `model`."""
        images = model.input["images"]
        features = model.get_layer("fc").output
        return keras.Model(
            images, model.get_layer("head")(features), name="wsoftmax_infer"
        )

    @staticmethod
    def _inputs(images, labels):
        return {"images": images, "labels": labels}, labels

    def fit(self, hp, model, x=None, y=None, validation_data=None, **kwargs):
        owner = type(self).__name__
        x, y = map_training_data(x, y, self._inputs, owner)
        validation_data = map_validation_data(
            validation_data, self._inputs, owner
        )
        epochs = kwargs.pop("epochs", 1)
        initial_epoch = kwargs.pop("initial_epoch", 0)
        head = model.get_layer("head")
        switch = epochs // 2 if hp.get("softmax_first") else 0
        if initial_epoch < switch:
            # Plain softmax first, without the tuner's callbacks: the
            # objective and the checkpoint come from the refinement.
            head.alpha = 0.0
            model.make_train_function(force=True)
            model.fit(
                x,
                y,
                epochs=switch,
                initial_epoch=initial_epoch,
                **{
                    k: v
                    for k, v in kwargs.items()
                    if k not in ("callbacks", "verbose")
                },
                verbose=0,
            )
            initial_epoch = switch
        head.alpha = float(hp.get("alpha"))
        model.make_train_function(force=True)  # alpha is traced in
        return model.fit(
            x,
            y,
            validation_data=validation_data,
            epochs=epochs,
            initial_epoch=initial_epoch,
            **kwargs,
        )
