"""Runs SoftFilterPruning with tfmot's schedules and with the library's own.

Started by `test_tfmot_interop.py` in a subprocess of its own: importing
tensorflow_model_optimization sets `TF_USE_LEGACY_KERAS=1` for the whole
process, which must not leak into the rest of the test suite. Prints one
JSON object: for every schedule case, the zeroed filters after every
training step with tfmot's schedule and with the library's, and the
library schedule built from tfmot's `get_config()`.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

from keras_dynfilt.callbacks import (  # noqa: E402
    ConstantSparsity,
    PolynomialDecay,
    SoftFilterPruning,
)

L = keras.layers
CASES = {
    # 0.7 is 0.699999988 in float32 (tfmot's dtype): floor(10 * 0.7)
    # must still be 7.
    "constant": ("ConstantSparsity",
                 {"target_sparsity": 0.7, "begin_step": 1, "end_step": 7,
                  "frequency": 3}),
    # 0.1 comes out of tfmot's float32 arithmetic as 0.099999994.
    "polynomial": ("PolynomialDecay",
                   {"initial_sparsity": 0.1, "final_sparsity": 0.5,
                    "begin_step": 2, "end_step": 8, "power": 3,
                    "frequency": 2}),
}
OURS = {"ConstantSparsity": ConstantSparsity,
        "PolynomialDecay": PolynomialDecay}


def residual_model():
    inputs = keras.Input((6, 6, 3))
    a = L.Conv2D(10, 3, padding="same", name="a")(inputs)
    a = L.BatchNormalization(name="bn_a")(a)
    b = L.Conv2D(10, 1, name="b")(inputs)
    x = L.ReLU()(L.Add()([a, b]))
    c = L.Conv2D(6, 3, padding="same", name="c")(x)
    x = L.GlobalAveragePooling2D()(L.ReLU()(c))
    return keras.Model(inputs, L.Dense(4, name="head")(x))


def zero_filters(model, name):
    kernel = keras.ops.convert_to_numpy(model.get_layer(name).kernel)
    flat = np.moveaxis(kernel, -1, 0).reshape(kernel.shape[-1], -1)
    return np.flatnonzero(~np.any(flat != 0, axis=1)).tolist()


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.steps.append(
            [step, zero_filters(self.model, "a"), zero_filters(self.model, "c")]
        )


def run(schedule, weights, x, y):
    model = residual_model()
    model.set_weights(weights)
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    recorder = Recorder()
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
              callbacks=[SoftFilterPruning(schedule=schedule), recorder])
    final = [zero_filters(model, "a"), zero_filters(model, "c")]
    return {"steps": recorder.steps, "final": final}


def main():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6, 6, 3)).astype("float32")
    y = rng.integers(0, 4, size=(32,)).astype("int32")
    model = residual_model()
    for w in model.weights:  # positive shifts: zeroed filters regrow
        if w.name in ("bias", "beta"):
            w.assign(rng.uniform(0.2, 0.5, w.shape).astype("float32"))
    weights = model.get_weights()
    report = {"TF_USE_LEGACY_KERAS": os.environ.get("TF_USE_LEGACY_KERAS"),
              "tfmot": tfmot.__version__, "cases": {}}
    for key, (cls, kwargs) in CASES.items():
        theirs = getattr(tfmot.sparsity.keras, cls)(**kwargs)
        config = theirs.get_config()
        from_config = OURS[cls].from_config(config["config"])
        report["cases"][key] = {
            "tfmot_config": config,
            "config_from_tfmot": from_config.get_config(),
            "tfmot": run(theirs, weights, x, y),
            "ours": run(OURS[cls](**kwargs), weights, x, y),
            "schedule_values": [
                [s, bool(theirs(s)[0].numpy()), float(theirs(s)[1].numpy()),
                 *from_config(s)]
                for s in range(0, 12)
            ],
        }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
