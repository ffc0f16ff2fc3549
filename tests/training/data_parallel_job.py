"""Trains one small model with `--strategy default` and `mirrored` on JAX.

Run as a subprocess: the two host devices (XLA_FLAGS
--xla_force_host_platform_device_count=2) must be configured before JAX
starts. Writes `{"default": losses, "mirrored": losses, ...}` as JSON to
argv[1].
"""

import json
import sys

import keras

from keras_dynfilt import training


def train(strategy):
    parser = training.example_argument_parser("t", dataset="digits")
    args = parser.parse_args([
        "--strategy", strategy, "--epochs", "3", "--batch-size", "64",
        "--limit-train", "512", "--seed", "5", "--output-dir", sys.argv[2],
    ])
    run = training.ExperimentRun.from_args(args)
    data = run.load_data()
    with run.strategy.scope():
        inputs = keras.Input(data.input_shape)
        x = keras.layers.Conv2D(8, 3, use_bias=False)(inputs)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.Dropout(0.2)(x)
        x = keras.layers.Flatten()(x)
        model = keras.Model(inputs, keras.layers.Dense(10)(x))
        run.compile(
            model,
            optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    history = model.fit(
        data.train, epochs=args.epochs, validation_data=data.test, verbose=0
    )
    results = run.finish(history, plot=False)
    kernel = model.layers[1].kernel
    return {
        "loss": results["history"]["loss"],
        "val_loss": results["history"]["val_loss"],
        "num_replicas": results["num_replicas"],
        "strategy": results["strategy"],
        "kernel_sharding": str(getattr(kernel.value, "sharding", None)),
    }


if __name__ == "__main__":
    out = {name: train(name) for name in ("default", "mirrored")}
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
