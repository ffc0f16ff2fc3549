"""LightCNN-9 (Max-Feature-Map) on Fashion-MNIST — the library's demo.

Trains a width-scaled LightCNN-9 built from `keras_dynfilt.layers.MFM` on
Fashion-MNIST read from local files (Debian's `dataset-fashion-mnist`;
scikit-learn's 8x8 digits when that package is absent) and prints the test
accuracy.

    python examples/lightcnn/train.py                # -> runs/lightcnn
    python examples/lightcnn/train.py --dataset fashion_mnist \
        --data-dir /usr/share/datasets/fashion-mnist --epochs 5
    python examples/lightcnn/train.py --strategy mirrored --cpu-replicas 2 \
        --jit-compile true                           # MirroredStrategy + XLA
"""

import keras

import keras_dynfilt
from keras_dynfilt import training


def main(argv=None):
    parser = training.example_argument_parser(
        __doc__.splitlines()[0],
        dataset="auto",
        epochs=3,
        batch_size=128,
        output_dir="runs/lightcnn",
    )
    parser.add_argument("--width-multiplier", type=float, default=0.25)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    args = parser.parse_args(argv)

    run = training.ExperimentRun.from_args(args)
    data = run.load_data()
    print(
        f"dataset {data.name} ({data.source}): {data.num_train} train / "
        f"{data.num_test} test, {run.num_replicas} replica(s)"
    )
    with run.strategy.scope():
        model = keras_dynfilt.models.light_cnn(
            data.input_shape,
            data.num_classes,
            width_multiplier=args.width_multiplier,
            dropout=args.dropout,
        )
        run.compile(
            model,
            optimizer=keras.optimizers.Adam(args.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    history = model.fit(
        data.train,
        shuffle=False,  # the pipeline shuffles; Keras would warn
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        validation_data=data.test,
        callbacks=run.callbacks(),
        verbose=args.verbose,
    )
    metrics = model.evaluate(data.test, return_dict=True, verbose=0)
    results = run.finish(
        history, metrics, extra={"params": model.count_params()}
    )
    print(
        f"test accuracy: {metrics['accuracy']:.4f} "
        f"({data.name}, {args.epochs} epochs, seed {args.seed}, "
        f"{results['wall_seconds']:.0f}s) -> {args.output_dir}/results.json"
    )
    return results


if __name__ == "__main__":
    main()
