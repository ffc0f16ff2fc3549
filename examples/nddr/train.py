"""NDDR-CNN on rotated Fashion-MNIST: garment class + rotation, two tasks.

Every image is rotated by one of `--rotation-bins` angles (multiples of
360 / bins degrees, bilinear, zero fill); task 1 predicts the garment class,
task 2 the rotation bin. The angle of an image is a pseudo-random function
of its pixels (a hash), so each split is a fixed data set and the test
rotations are the same in every run. Five networks of identical stages
differ only in how the two task branches are fused
(`keras_dynfilt.models.nddr_network`):

- `single`: no fusion, two single-task networks (one loss each);
- `shared`: shared trunk, split before the last stage (multi-task baseline);
- `cross_stitch`: a cross-stitch unit after every stage;
- `nddr`: an NDDR layer after every stage (NDDR-CNN);
- `nddr_shortcut`: NDDR-CNN-Shortcut.

NDDR, cross-stitch and shortcut variables train at `--fusion-lr-multiplier`
times the base learning rate (`keras_dynfilt.optimizers.
LearningRateMultiplier`), 100x by default as in the paper; the base rate
follows the reference code's "poly" schedule (power 0.9, down to 0).

    python examples/nddr/train.py --method nddr --epochs 3 \
        --output-dir runs/nddr/nddr
    python examples/nddr/train.py --method nddr --alpha 0.5 --beta 0.5
    python examples/nddr/train.py --method nddr --fusion-lr-multiplier 1
    python examples/nddr/train.py --method nddr --optimizer adam \
        --learning-rate 1e-3
    examples/nddr/run_all.sh     # the runs behind docs/layers/nddr.md
"""

import hashlib
import math

import keras
import numpy as np

import keras_dynfilt
from keras_dynfilt import training

METHODS = {
    "single": {"fusion": "none"},
    "shared": {"fusion": "shared"},
    "cross_stitch": {"fusion": "cross_stitch"},
    "nddr": {"fusion": "nddr"},
    "nddr_shortcut": {"fusion": "nddr", "shortcut": True},
}


def rotate(image, angle):
    """Rotates an (H, W, C) image by `angle` radians about its centre."""
    import tensorflow as tf

    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    # Output pixel (x, y) reads input (cos*x' - sin*y' + cx, sin*x' + cos*y'
    # + cy) with x' = x - cx, y' = y - cy.
    transform = tf.stack([
        cos, -sin, cx - cos * cx + sin * cy,
        sin, cos, cy - sin * cx - cos * cy,
        0.0, 0.0,
    ])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform[None],
        output_shape=tf.shape(image)[:2], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT",
    )
    return out[0]


def rotation_transforms(angles, height, width):
    """The rows of `rotate`'s projective transform, one per angle (NumPy)."""
    cos, sin = np.cos(angles), np.sin(angles)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    zeros = np.zeros_like(angles)
    return np.stack([
        cos, -sin, cx - cos * cx + sin * cy,
        sin, cos, cy - sin * cx - cos * cy,
        zeros, zeros,
    ], axis=1).astype("float32")


def make_batch_map_fn(bins, seed):
    """`make_map_fn` for NumPy batches (the backends without tf.data).

    The same construction with a different hash (BLAKE2 of the pixels and
    the seed), so the rotation of an image is again a fixed function of
    its pixels, but not the same one as on TensorFlow.
    """
    def map_fn(images, labels):
        salt = str(seed).encode()
        rotation = np.array([
            int.from_bytes(hashlib.blake2b(
                image.tobytes(), digest_size=8, salt=salt[:16]).digest(),
                "little") % bins
            for image in images
        ], "int32")
        transforms = rotation_transforms(
            rotation * (2 * np.pi / bins), *images.shape[1:3])
        rotated = keras.ops.image.affine_transform(
            images, transforms, interpolation="bilinear",
            fill_mode="constant", fill_value=0.0,
            data_format="channels_last")
        return keras.ops.convert_to_numpy(rotated), {
            "label": labels, "rotation": rotation}

    return map_fn


def make_map_fn(bins, seed):
    """Per-example map of the training pipeline: (rotated image, targets)."""
    if keras.backend.backend() != "tensorflow":
        return make_batch_map_fn(bins, seed)
    import tensorflow as tf

    def map_fn(image, label):
        digest = tf.strings.to_hash_bucket_fast(
            tf.io.serialize_tensor(image), 2**31 - 1)
        rotation = tf.random.stateless_uniform(
            (), seed=tf.stack([digest, tf.cast(seed, tf.int64)]),
            minval=0, maxval=bins, dtype=tf.int32)
        angle = tf.cast(rotation, tf.float32) * (2 * math.pi / bins)
        return rotate(image, angle), {"label": label, "rotation": rotation}

    return map_fn


def build_model(args, input_shape, num_classes):
    widths = [int(w) for w in args.widths.split(",")]
    stages = [
        keras_dynfilt.models.conv_stage(
            w, batch_norm_momentum=args.batch_norm_momentum,
            name=f"stage{s + 1}")
        for s, w in enumerate(widths)
    ]
    heads = [
        keras.Sequential([keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(n)], name=f"head_{task}")
        for task, n in (("label", num_classes),
                        ("rotation", args.rotation_bins))
    ]
    init = args.init
    fusion_kwargs = {"lr_multiplier": args.fusion_lr_multiplier}
    return keras_dynfilt.models.nddr_network(
        input_shape, stages, heads,
        nddr_kwargs={**fusion_kwargs, "init": init, "alpha": args.alpha,
                     "beta": args.beta},
        cross_stitch_kwargs={**fusion_kwargs, "alpha": args.alpha,
                             "beta": args.beta},
        task_names=["label", "rotation"],
        name=args.method,
        **METHODS[args.method],
    )


def main(argv=None):
    parser = training.example_argument_parser(
        __doc__.splitlines()[0], dataset="fashion_mnist", epochs=3,
        batch_size=128, output_dir="runs/nddr",
    )
    parser.add_argument("--method", default="nddr", choices=list(METHODS))
    parser.add_argument("--rotation-bins", type=int, default=8)
    parser.add_argument("--widths", default="16,32,64",
                        help="stage widths (one conv-BN-ReLU-pool each)")
    parser.add_argument(
        "--batch-norm-momentum", type=float, default=0.9,
        help="of the stages' BN (short runs: 0.99 leaves the moving "
        "variance far from the batch variance)")
    parser.add_argument("--init", default="diagonal",
                        choices=("diagonal", "xavier"))
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--fusion-lr-multiplier", type=float, default=100.0)
    parser.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"))
    parser.add_argument("--learning-rate", type=float, default=0.02)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--validation-freq", type=int, default=1,
                        help="evaluate on the test split every N epochs")
    args = parser.parse_args(argv)

    run = training.ExperimentRun.from_args(args)
    data = run.load_data(map_fn=make_map_fn(args.rotation_bins, 1234))
    print(f"dataset {data.name} ({data.source}): {data.num_train} train / "
          f"{data.num_test} test, method {args.method}")
    with run.strategy.scope():
        model = build_model(args, data.input_shape, data.num_classes)
        steps = args.steps_per_epoch or math.ceil(
            data.num_train / args.batch_size)
        # The reference's "poly" schedule: lr * (1 - step / total) ** 0.9.
        learning_rate = keras.optimizers.schedules.PolynomialDecay(
            args.learning_rate, decay_steps=args.epochs * steps,
            end_learning_rate=0.0, power=0.9)
        inner = (
            keras.optimizers.SGD(learning_rate, momentum=args.momentum)
            if args.optimizer == "sgd"
            else keras.optimizers.Adam(learning_rate)
        )
        run.compile(
            model,
            optimizer=keras_dynfilt.optimizers.LearningRateMultiplier(inner),
            loss={
                task: keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True)
                for task in ("label", "rotation")
            },
            metrics={"label": ["accuracy"], "rotation": ["accuracy"]},
        )
    history = model.fit(
        data.train, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        shuffle=False,  # the pipeline shuffles; Keras would warn
        validation_data=data.test, validation_freq=args.validation_freq,
        callbacks=run.callbacks(),
        verbose=args.verbose,
    )
    metrics = model.evaluate(data.test, return_dict=True, verbose=0)
    fusion_params = sum(
        w.numpy().size for layer in model.layers
        if layer.name.startswith(("nddr", "cross_stitch", "shortcut"))
        for w in layer.trainable_weights
    )
    # training.plot_history needs one validation point per epoch.
    results = run.finish(history, metrics, extra={
        "params": model.count_params(), "fusion_params": int(fusion_params)},
        plot=args.validation_freq == 1)
    print(f"{args.method}: class accuracy {metrics['label_accuracy']:.4f}, "
          f"rotation accuracy {metrics['rotation_accuracy']:.4f} "
          f"({results['wall_seconds']:.0f}s) -> {args.output_dir}")
    return results


if __name__ == "__main__":
    main()
