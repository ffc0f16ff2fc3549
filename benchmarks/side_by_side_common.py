"""What both sides of `torch_side_by_side.py` share: data, recipe, costs.

Imports NumPy only (plus `onnx` inside `onnx_cost`), so that the PyTorch
worker never imports Keras or TensorFlow and the Keras worker never imports
PyTorch. Both workers read the same IDX files into the same arrays and draw
the same batch order from the same seeded NumPy generator, so the two
libraries train on identical batches in identical order.
"""

import gzip
import json
import os
import pathlib
import time

import numpy as np

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Fashion-MNIST training-set mean and standard deviation of the pixels.
MEAN, STD = 0.2860, 0.3530

# The recipe both libraries train with (the JSON records it).
RECIPE = {
    "optimizer": "SGD, momentum 0.9, Nesterov",
    "batch_size": 128,
    "lr": 0.1,
    "finetune_lr": 0.01,
    "schedule": "cosine to 0 per step over the run's epochs",
    "weight_decay": 5e-4,
    "weight_decay_on": "conv and dense kernels, decoupled: w -= lr * wd * w "
    "before each step (Keras's optimizer weight_decay; done by hand in "
    "PyTorch)",
    "augmentation": "none",
    "normalisation": f"(x / 255 - {MEAN}) / {STD}",
    "taylor_batches": 8,
}
METHODS = ("l2_local", "l2_global", "taylor")


def read_idx(path):
    """One IDX file of unsigned bytes (`.gz` or not) as a NumPy array."""
    path = str(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path!r} is not an IDX file of unsigned bytes.")
    ndim = raw[3]
    shape = tuple(
        int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)
    )
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(data_dir, stem):
    for name in (stem, stem + ".gz"):
        path = pathlib.Path(data_dir) / name
        if path.exists():
            return path
    raise FileNotFoundError(f"No {stem}[.gz] in {data_dir!r}.")


def load_fashion_mnist(data_dir=FASHION_MNIST, reader=read_idx):
    """Full Fashion-MNIST, normalised, NHWC float32: x/y train, x/y test.

    `reader` reads one IDX file (the Keras worker passes the library's
    `keras_dynfilt.training.datasets.read_idx`).
    """
    arrays = []
    for split in ("train", "test"):
        images, labels = (reader(_find(data_dir, s)) for s in IDX_FILES[split])
        x = (images.astype(np.float32) / 255.0 - MEAN) / STD
        arrays += [x[..., None], labels.astype(np.int64)]
    return tuple(arrays)


def epoch_order(seed, epoch, n):
    """The sample order of one epoch: the same in both libraries."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_slices(n, batch_size):
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def epoch_batches(n, batch_size, fraction=1.0):
    """The batches of one training "epoch": the first `fraction` of them.

    With `fraction < 1` an epoch is the first `round(fraction * N)` batches
    of that epoch's shuffled order of the full training set (the whole
    60k are drawn from; a CPU-starved run takes fewer steps).
    """
    slices = batch_slices(n, batch_size)
    return slices[: max(1, round(fraction * len(slices)))]


def cosine_lr(base_lr, step, total_steps):
    """The learning rate at `step` (cosine from `base_lr` to 0)."""
    step = min(step, total_steps)
    return 0.5 * base_lr * (1.0 + np.cos(np.pi * step / total_steps))


def taylor_batches(x, y, seed, batch_size, count):
    """The batches Taylor importance is computed on (first of epoch 0)."""
    order = epoch_order(seed, 0, len(x))[: batch_size * count]
    return x[order], y[order]


def time_calls(fn, repeats, warmup=2, budget_s=30.0):
    """Median and spread (min, max) of `fn()` in milliseconds.

    Stops early when `budget_s` is spent (contended machines), recording
    the number of calls actually timed.
    """
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats:
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
        if time.perf_counter() - start > budget_s and len(times) >= 3:
            break
    return {
        "median_ms": float(np.median(times)),
        "min_ms": float(np.min(times)),
        "max_ms": float(np.max(times)),
        "calls": len(times),
    }


def onnx_cost(path):
    """MACs and parameters of an ONNX model, counted from its graph.

    The common count of both libraries' exports: convolutions
    (`out_h * out_w * k_h * k_w * c_in / groups * c_out`) and matrix
    products (`Gemm`, `MatMul`: `m * k * n`), per sample; parameters are the
    initializers' elements (BatchNormalization folded or not, as each
    exporter leaves it: reported, not compared).
    """
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(path))
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    shapes = {}
    for value in list(graph.value_info) + list(graph.output) + list(
        graph.input
    ):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value or None for d in dims]
    for name, array in inits.items():
        shapes[name] = list(array.shape)
    macs = 0
    for node in graph.node:
        if node.op_type == "Conv":
            out = shapes[node.output[0]]
            w = shapes[node.input[1]]
            # w: (c_out, c_in / groups, k_h, k_w); out: (n, c_out, h, w)
            macs += int(np.prod(out[2:])) * int(np.prod(w))
        elif node.op_type in ("Gemm", "MatMul"):
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            transb = any(
                at.name == "transB" and at.i for at in node.attribute
            )
            k = a[-1]
            n = b[0] if transb else b[-1]
            macs += int(k) * int(n)
    params = int(sum(a.size for a in inits.values() if a.ndim >= 1))
    return {"macs": int(macs), "params_initializers": params}


def onnx_latency(path, batch, image_shape, repeats):
    """ONNX Runtime latency on one CPU thread for one batch size."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        path, options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal(
        (batch,) + tuple(image_shape)
    ).astype(np.float32)
    return time_calls(lambda: session.run(None, {name: x}), repeats)


def onnx_difference(path, x, expected):
    """Largest |ORT output - the library's output| on the batch `x`."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    got = session.run(None, {name: x.astype(np.float32)})[0]
    return float(np.max(np.abs(got - np.asarray(expected))))


def write_json(path, data):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")
    os.replace(tmp, path)


def read_json(path):
    path = pathlib.Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def log(*parts):
    print(time.strftime("%H:%M:%S"), *parts, flush=True)
