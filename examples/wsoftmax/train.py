"""W-Softmax vs softmax on Fashion-MNIST: a small CNN, two heads.

Trains the same CNN (four 3x3 convolutions with batch normalisation, then
a linear fully connected feature layer of `--fc-width` units) with either

* `--head softmax`: `keras.layers.Dense(K)` + softmax cross-entropy, or
* `--head wsoftmax --alpha A`: `keras_dynfilt.layers.WSoftmaxHead(K, A)`,
  the weights-biased softmax loss. With `--softmax-epochs N` the first `N`
  epochs use `alpha = 0` (softmax on normalised weights) and the rest refine
  with `alpha = A`, the paper's practice.

and records the test accuracy and the paper's mean-angle measure (eq. 14:
the angle between each feature and its class's weight vector, averaged per
class, on the test set and on 10,000 training images) in `results.json`.

    python examples/wsoftmax/train.py --head softmax
    python examples/wsoftmax/train.py --head wsoftmax --alpha 1.5 \\
        --softmax-epochs 1 --fc-multiple 2
    sh examples/wsoftmax/sweep.sh   # the runs in docs/layers/wsoftmax_head.md
"""

import types

import keras
import numpy as np

from keras_dynfilt import training
from keras_dynfilt.layers import WSoftmaxHead


class PositiveTargetWSoftmaxHead(WSoftmaxHead):
    """Experiment, not the paper's loss: bias negatives by `α·max(z_y, 0)`.

    `z̃_j = (z_j + α max(z_y, 0)) / ||ŵ_j + α ŵ_y||`: identical to W-Softmax
    where the true class scores `z_y > 0` (the case the paper's margin
    argument covers), while for `z_y <= 0` the negatives are only rescaled,
    which removes the label-independent minimum at all-negative logits.
    """

    def _biasing_logit(self, positive):
        return keras.ops.relu(positive)


def build_model(input_shape, num_classes, fc_width, head, alpha, channels):
    """(train_model, features_model, head_layer).

    The train model takes `{"images", "labels"}` for the W-Softmax head and
    just the images for the softmax head; `features_model` maps images to
    the feature vectors the head classifies.
    """
    images = keras.Input(input_shape, name="images")
    x = images
    for i, width in enumerate((channels, channels, 2 * channels, 2 * channels)):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                                name=f"conv{i + 1}")(x)
        # Momentum 0.9: short runs still get usable moving statistics.
        x = keras.layers.BatchNormalization(momentum=0.9,
                                            name=f"bn{i + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
        if i % 2:
            x = keras.layers.MaxPooling2D(name=f"pool{i // 2 + 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    features = keras.layers.Dense(fc_width, name="fc")(x)
    features_model = keras.Model(images, features, name="features")
    if head == "softmax":
        head_layer = keras.layers.Dense(num_classes, name="head")
        return (
            keras.Model(images, head_layer(features), name="softmax_cnn"),
            features_model,
            head_layer,
        )
    labels = keras.Input((), dtype="int32", name="labels")
    head_cls = (
        PositiveTargetWSoftmaxHead if head == "wsoftmax_positive"
        else WSoftmaxHead
    )
    head_layer = head_cls(num_classes, alpha=alpha, name="head")
    train_model = keras.Model(
        {"images": images, "labels": labels},
        head_layer(features, labels=labels),
        name="wsoftmax_cnn",
    )
    return train_model, features_model, head_layer


def mean_angles(features_model, head_layer, dataset, num_classes, limit=None):
    """Eq. 14: per-class mean angle (degrees) between x_i and w_{y_i}."""
    kernel = keras.ops.convert_to_numpy(head_layer.kernel).astype(np.float64)
    weights = kernel / np.linalg.norm(kernel, axis=0, keepdims=True)
    sums = np.zeros(num_classes)
    counts = np.zeros(num_classes)
    seen = 0
    for inputs, labels in dataset:
        images = inputs["images"] if isinstance(inputs, dict) else inputs
        x = features_model(images, training=False)
        x = keras.ops.convert_to_numpy(x).astype(np.float64)
        y = keras.ops.convert_to_numpy(labels).astype(int)
        cosine = np.sum(x * weights[:, y].T, axis=1) / np.maximum(
            np.linalg.norm(x, axis=1), 1e-12
        )
        angles = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
        np.add.at(sums, y, angles)
        np.add.at(counts, y, 1)
        seen += len(y)
        if limit and seen >= limit:
            break
    per_class = sums / np.maximum(counts, 1)
    return {"mean": float(per_class.mean()), "per_class": per_class.tolist()}


def main(argv=None):
    parser = training.example_argument_parser(
        __doc__.splitlines()[0],
        dataset="fashion_mnist",
        epochs=4,
        batch_size=128,
        output_dir="runs/wsoftmax",
    )
    parser.add_argument(
        "--head", choices=("softmax", "wsoftmax", "wsoftmax_positive"),
        default="wsoftmax",
        help="wsoftmax_positive: an experiment, negatives biased by "
        "alpha*max(z_y, 0) (see PositiveTargetWSoftmaxHead)",
    )
    parser.add_argument("--alpha", type=float, default=1.0,
                        help="W-Softmax alpha (after --softmax-epochs)")
    parser.add_argument(
        "--softmax-epochs", type=int, default=0,
        help="W-Softmax head: train this many of the --epochs with alpha=0 "
        "first, then refine with --alpha (the paper's practice)",
    )
    parser.add_argument(
        "--fc-multiple", type=float, default=10.0,
        help="feature (FC) width as a multiple of K-1, the paper's minimum",
    )
    parser.add_argument("--fc-width", type=int, default=None,
                        help="feature width; overrides --fc-multiple")
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args(argv)
    if not 0 <= args.softmax_epochs < args.epochs:
        parser.error(
            "--softmax-epochs must be in [0, --epochs). "
            f"Received: {args.softmax_epochs} with --epochs {args.epochs}"
        )

    run = training.ExperimentRun.from_args(args)
    if args.head != "softmax":
        map_fn = lambda image, label: (  # noqa: E731
            {"images": image, "labels": label}, label)
    else:
        map_fn = None
    data = run.load_data(map_fn=map_fn)
    k = data.num_classes
    min_width = WSoftmaxHead.min_feature_dim(k)
    fc_width = args.fc_width or max(1, round(args.fc_multiple * min_width))
    print(
        f"dataset {data.name} ({data.source}): {data.num_train} train / "
        f"{data.num_test} test; head {args.head}"
        + (f" alpha {args.alpha}" if args.head != "softmax" else "")
        + f"; FC width {fc_width} (K-1 = {min_width})"
    )

    def compile_model(model):
        run.compile(
            model,
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    with run.strategy.scope():
        first_alpha = 0.0 if args.softmax_epochs else args.alpha
        model, features_model, head = build_model(
            data.input_shape, k, fc_width, args.head, first_alpha,
            args.channels,
        )
        optimizer = keras.optimizers.Adam(args.learning_rate)
        compile_model(model)

    phases = [(args.epochs, first_alpha)]
    if args.head != "softmax" and args.softmax_epochs:
        phases = [(args.softmax_epochs, 0.0), (args.epochs, args.alpha)]
    # With --steps-per-epoch, epochs are slices of one endless stream (a
    # plain dataset would run dry after one pass and stop the fit).
    train = data.train.repeat() if args.steps_per_epoch else data.train
    history = {}
    done = 0
    for until, alpha in phases:
        if args.head != "softmax" and head.alpha != alpha:
            head.alpha = alpha  # the next compiled step picks it up
            with run.strategy.scope():
                compile_model(model)
        fitted = model.fit(
            train,
            shuffle=False,  # the pipeline shuffles; Keras would warn
            epochs=until,
            initial_epoch=done,
            steps_per_epoch=args.steps_per_epoch,
            validation_data=data.test,
            callbacks=run.callbacks(),
            verbose=args.verbose,
        )
        for key, values in fitted.history.items():
            history.setdefault(key, []).extend(values)
        done = until
    metrics = model.evaluate(data.test, return_dict=True, verbose=0)
    angles = {
        "test": mean_angles(features_model, head, data.test, k),
        "train": mean_angles(features_model, head, data.train, k, 10000),
    }
    results = run.finish(
        types.SimpleNamespace(history=history),
        metrics,
        extra={
            "fc_width": fc_width,
            "min_feature_dim": min_width,
            "mean_angle_degrees": angles,
            "params": model.count_params(),
        },
    )
    print(
        f"test accuracy {metrics['accuracy']:.4f}, mean angle "
        f"{angles['test']['mean']:.1f} deg (test) "
        f"{angles['train']['mean']:.1f} deg (train), "
        f"{results['wall_seconds']:.0f}s -> {args.output_dir}/results.json"
    )
    return results


if __name__ == "__main__":
    main()
