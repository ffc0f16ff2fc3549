"""Trains a primary network on Fashion-MNIST for the cross-task examples.

The primary network (a small VGG whose large dense layer plays VGG-Face's
role, or a reduced-width LightCNN-9 for the MFM row) learns Fashion-MNIST's
ten classes; `transfer.py` and `prune.py` then reuse its filters for tasks
it was not trained for. Writes `primary.keras` and `results.json`.

    python examples/cross_task/train_primary.py --arch vgg \
        --limit-train 20000 --epochs 3 --output-dir runs/cross_task/vgg
    python examples/cross_task/train_primary.py --arch light_cnn \
        --width-multiplier 0.5 --output-dir runs/cross_task/light_cnn
"""

import os
import sys

import keras

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

from keras_dynfilt import training  # noqa: E402


def main(argv=None):
    parser = training.example_argument_parser(
        __doc__.splitlines()[0], dataset="fashion_mnist", epochs=3,
        batch_size=128, output_dir="runs/cross_task/vgg")
    parser.add_argument("--arch", default="vgg", choices=common.ARCHS)
    parser.add_argument("--width-multiplier", type=float, default=0.5,
                        help="LightCNN width")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    args = parser.parse_args(argv)

    run = training.ExperimentRun.from_args(args)
    data = run.load_data()
    print(f"dataset {data.name} ({data.source}): {data.num_train} train / "
          f"{data.num_test} test")
    with run.strategy.scope():
        model = common.build_primary(
            args.arch, data.input_shape, data.num_classes,
            width_multiplier=args.width_multiplier)
        run.compile(
            model, optimizer=keras.optimizers.Adam(args.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"])
    history = model.fit(
        data.train, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        shuffle=False,  # the pipeline shuffles; Keras would warn
        validation_data=data.test, callbacks=run.callbacks(),
        verbose=args.verbose)
    metrics = model.evaluate(data.test, return_dict=True, verbose=0)
    path = os.path.join(args.output_dir, "primary.keras")
    model.save(path)
    results = run.finish(history, metrics, extra={
        "arch": args.arch, "params": model.count_params(), "model": path})
    print(f"{args.arch}: test accuracy {metrics['accuracy']:.4f} "
          f"({results['wall_seconds']:.0f}s) -> {path}")
    return results


if __name__ == "__main__":
    main()
