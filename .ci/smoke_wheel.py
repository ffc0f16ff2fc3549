"""Smoke check of an installed keras-dynfilt wheel (run outside the clone).

Imports the installed package, builds one functional model with every public
layer, saves it as `.keras`, loads it back with `safe_mode=True` and checks
equal outputs; then compacts a pruned copy. A packaging mistake (a module
left out of the wheel, a missing registration, a file not shipped) fails
here instead of on a user's machine.
"""

import importlib.metadata
import pathlib
import sys
import tempfile

import keras
import numpy as np

import keras_dynfilt as kd

here = pathlib.Path(kd.__file__).resolve()
if (here.parents[1] / ".ci").is_dir():
    sys.exit(f"imported keras_dynfilt from a clone ({here}), not the wheel")
dist = importlib.metadata.distribution("keras-dynfilt")
shipped = {str(f) for f in dist.files}
for name in ("keras_dynfilt/py.typed",):
    if name not in shipped:
        sys.exit(f"{name} is not in the installed wheel")
if not any(f.endswith("LICENSE") for f in shipped):
    sys.exit("LICENSE is not in the installed wheel")

images = keras.Input((16, 16, 3), name="images")
labels = keras.Input((), dtype="int32", name="labels")
x = keras.layers.Conv2D(8, 3, padding="same")(images)
x = kd.MFM()(x)  # 8 -> 4 channels
x = kd.ChannelPadding((2, 2))(x)  # 4 -> 8
code = kd.DimensionReduction(6)(x)
x = kd.FilterGenerator(8, 3, repository_size=3, padding="same")([x, code])
a, b = kd.NDDR()([x, x])
a, b = kd.CrossStitch()([a, b])
x = keras.layers.Add()([a, b])
# The transformer layers on the same features seen as 16 * 16 tokens.
tokens = keras.layers.Reshape((256, 8))(x)
tokens = kd.layers.PositionEmbedding()(kd.layers.ClassToken()(tokens))
features = keras.layers.Concatenate()([
    keras.layers.GlobalAveragePooling2D()(x),
    keras.layers.GlobalAveragePooling1D()(tokens),
])
head = kd.WSoftmaxHead(5, alpha=1.0)
train_model = keras.Model([images, labels], head(features, labels))
model = keras.Model(images, head(features))

rng = np.random.default_rng(0)
batch = rng.normal(size=(4, 16, 16, 3)).astype("float32")
train_model.compile(optimizer="adam", loss=None)
expected = model.predict(batch, verbose=0)

with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / "every_layer.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
got = loaded.predict(batch, verbose=0)
np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

layer_classes = {type(layer).__name__ for layer in loaded.layers}
for name in kd.layers.__all__:
    if name not in layer_classes:
        sys.exit(f"public layer {name} is missing from the smoke model")

# The engine on a plain CNN: compaction gives a smaller, equal model.
inputs = keras.Input((16, 16, 3))
y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(y)
outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(y))
cnn = keras.Model(inputs, outputs)
keep = np.ones(8, bool)
keep[::2] = False
small = kd.pruning.compact(cnn, masks={cnn.layers[1].name: keep})
if small.layers[1].filters != 4:
    sys.exit(f"compact kept {small.layers[1].filters} of 8 filters, not 4")
cost = kd.pruning.model_cost(small)
if cost.params >= kd.pruning.model_cost(cnn).params:
    sys.exit("the compacted model is not smaller")
print(
    f"wheel smoke check passed: keras-dynfilt {kd.__version__} from "
    f"{here.parent} on Keras {keras.__version__} ({keras.backend.backend()}), "
    f"{len(kd.layers.__all__)} public layers round-tripped"
)
