"""One worker of the two-process MultiWorkerMirroredStrategy test.

Run with TF_CONFIG set; trains a tiny model through ExperimentRun for a few
steps and saves its final weights to `<output>/weights-<task>.npz`.
"""

import os
import sys

import keras
import numpy as np

from keras_dynfilt import training


def main(output):
    parser = training.example_argument_parser("multi-worker job")
    args = parser.parse_args(
        [
            "--dataset",
            "digits",
            "--strategy",
            "multi_worker",
            "--epochs",
            "2",
            "--steps-per-epoch",
            "3",
            "--batch-size",
            "32",
            "--seed",
            "7",
            "--output-dir",
            output,
            "--verbose",
            "0",
        ]
    )
    run = training.ExperimentRun.from_args(args)
    data = run.load_data()
    with run.strategy.scope():
        inputs = keras.Input(data.input_shape)
        x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
        x = keras.layers.Flatten()(x)
        model = keras.Model(inputs, keras.layers.Dense(data.num_classes)(x))
        run.compile(
            model,
            optimizer=keras.optimizers.SGD(0.05),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    initial = np.concatenate([w.ravel() for w in model.get_weights()])
    history = model.fit(
        data.train,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        verbose=0,
    )
    task = os.environ["KERAS_DYNFILT_TASK"]
    np.savez(
        os.path.join(output, f"weights-{task}.npz"),
        *model.get_weights(),
        loss=np.array(history.history["loss"]),
        initial=initial,
        replicas=np.array(run.num_replicas),
    )


if __name__ == "__main__":
    main(sys.argv[1])
