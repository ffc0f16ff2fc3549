"""The PyTorch + Torch-Pruning side of `torch_side_by_side.py`.

Run by the driver with the interpreter of `.venv-torch` (`make
venv-sidebyside`); imports neither Keras nor TensorFlow. One thread
(`torch.set_num_threads(1)`), as the Keras side.
"""

import argparse
import copy
import os
import pathlib
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side_common as common  # noqa: E402

LIBRARY = "torch"


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm; option-B projection shortcut."""

    def __init__(self, in_channels, channels, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, channels, 3, stride, 1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1),
            )
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x):
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu2(self.shortcut(x) + y)


class ResNetCifar(nn.Module):
    """The PyTorch twin of `keras_dynfilt.models.resnet_cifar(shortcut="B")`.

    Same layers, widths, strides, shortcut projections and initialisers
    (He-normal truncated at two standard deviations for convolutions,
    Glorot-uniform for the classifier, BatchNorm momentum 0.9 in Keras's
    convention, epsilon 1e-5). PyTorch pads a stride-2 3x3 convolution
    symmetrically where Keras's "same" pads bottom/right: same shapes,
    same costs.
    """

    def __init__(self, depth=20, num_classes=10, in_channels=1):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"`depth` must be 6n + 2. Received: {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16, eps=1e-5, momentum=0.1)
        self.relu1 = nn.ReLU()
        layers, channels = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(channels, width, stride))
                channels = width
        self.blocks = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                std = (2.0 / fan_in) ** 0.5
                nn.init.trunc_normal_(
                    module.weight, std=std, a=-2 * std, b=2 * std
                )
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.blocks(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def to_nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def decayed(model):
    """Conv and linear weights (Keras's kernels): the decayed parameters."""
    return [p for p in model.parameters() if p.ndim > 1]


def train(model, x, y, seed, epochs, base_lr, epoch_offset=0, fraction=1.0):
    """The recipe of `common.RECIPE`, one epoch order per epoch."""
    batch = common.RECIPE["batch_size"]
    wd = common.RECIPE["weight_decay"]
    optimizer = torch.optim.SGD(
        model.parameters(), lr=base_lr, momentum=0.9, nesterov=True
    )
    slices = common.epoch_batches(len(x), batch, fraction)
    total, step, times = epochs * len(slices), 0, []
    decay = decayed(model)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        start, order, seen, loss_sum = time.perf_counter(), None, 0, 0.0
        order = common.epoch_order(seed, epoch_offset + epoch, len(x))
        for s in slices:
            idx = order[s]
            xb, yb = to_nchw(x[idx]), torch.from_numpy(y[idx])
            lr = common.cosine_lr(base_lr, step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.no_grad():
                for p in decay:
                    p.mul_(1.0 - lr * wd)
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
        times.append(time.perf_counter() - start)
        common.log(
            f"torch epoch {epoch + 1}/{epochs} loss {loss_sum / seen:.4f} "
            f"{times[-1]:.0f}s"
        )
    return times


@torch.inference_mode()
def accuracy(model, x, y):
    model.eval()
    correct = 0
    for s in common.batch_slices(len(x), 1000):
        correct += int((model(to_nchw(x[s])).argmax(1).numpy() == y[s]).sum())
    return correct / len(x)


def counts(model, image_shape):
    """Torch-Pruning's own counter: MACs per sample and parameters."""
    import torch_pruning as tp

    example = torch.zeros((1, image_shape[2]) + tuple(image_shape[:2]))
    macs, params = tp.utils.count_ops_and_params(model, example)
    return {"macs": int(macs), "params": int(params)}


def latency(model, image_shape, repeats):
    model.eval()
    out = {}
    for batch in (1, 64):
        x = torch.randn((batch, image_shape[2]) + tuple(image_shape[:2]))

        def call(x=x):
            with torch.inference_mode():
                model(x)

        out[f"batch_{batch}"] = common.time_calls(
            call, repeats[batch]
        )
    return out


def export_onnx(model, path, image_shape):
    model.eval()
    x = torch.zeros((1, image_shape[2]) + tuple(image_shape[:2]))
    kwargs = dict(
        input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
    )
    try:
        torch.onnx.export(model, (x,), str(path), dynamo=False, **kwargs)
    except TypeError:
        torch.onnx.export(model, (x,), str(path), **kwargs)
    return str(path)


def onnx_measures(model, path, image_shape, repeats):
    export_onnx(model, path, image_shape)
    nchw = (image_shape[2],) + tuple(image_shape[:2])
    x = np.random.default_rng(1).standard_normal((8,) + nchw)
    x = x.astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    return {
        "max_abs_diff_vs_torch": common.onnx_difference(
            str(path), x, expected
        ),
        "cost": common.onnx_cost(str(path)),
        "latency": {
            f"batch_{b}": common.onnx_latency(str(path), b, nchw, repeats[b])
            for b in (1, 64)
        },
    }


def build_pruner(model, method, ratio, example, ignored):
    """A Torch-Pruning 1.6.1 pruner for one of `common.METHODS`."""
    import torch_pruning as tp

    if method == "taylor":
        importance = tp.importance.GroupTaylorImportance()
    else:
        importance = tp.importance.GroupMagnitudeImportance(p=2)
    return tp.pruner.BasePruner(
        model,
        example,
        importance=importance,
        global_pruning=method == "l2_global",
        pruning_ratio=ratio,
        ignored_layers=ignored,
    )


def taylor_gradients(model, xt, yt):
    """Accumulates the loss gradient of the Taylor batches in `.grad`."""
    model.eval()
    model.zero_grad()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    batch = common.RECIPE["batch_size"]
    for s in common.batch_slices(len(xt), batch):
        loss_fn(model(to_nchw(xt[s])), torch.from_numpy(yt[s])).backward()
    for p in model.parameters():
        if p.grad is not None:
            p.grad /= len(xt)


def prune_once(model, method, ratio, image_shape, taylor_data, grads=None):
    """Prunes `model` in place at `ratio`; returns the seconds it took.

    The time covers what a user's call costs: building the pruner (the
    dependency graph), the Taylor gradients for `"taylor"`, and `step()`.
    `grads` (the search's trials) reuses gradients computed once instead.
    """
    example = torch.zeros((1, image_shape[2]) + tuple(image_shape[:2]))
    start = time.perf_counter()
    pruner = build_pruner(model, method, ratio, example, [model.fc])
    if method == "taylor":
        if grads is None:
            taylor_gradients(model, *taylor_data)
        else:
            for p, g in zip(model.parameters(), grads):
                p.grad = None if g is None else g.clone()
    pruner.step()
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return seconds


def find_ratio(base, method, image_shape, taylor_data, target=0.5, tol=0.01):
    """Bisects Torch-Pruning's `pruning_ratio` until MACs are ~`target`.

    Torch-Pruning takes a channel ratio, not a MACs target: the ratio that
    halves MACs differs between local and global ranking, so it is searched
    (on copies) and the search's time is reported apart from the call's.
    """
    full = counts(base, image_shape)["macs"]
    grads = None
    if method == "taylor":
        probe = copy.deepcopy(base)
        taylor_gradients(probe, *taylor_data)
        grads = [p.grad for p in probe.parameters()]
    lo, hi, best = 0.0, 0.9, None
    for _ in range(14):
        mid = (lo + hi) / 2
        trial = copy.deepcopy(base)
        prune_once(trial, method, mid, image_shape, taylor_data, grads)
        fraction = counts(trial, image_shape)["macs"] / full
        if best is None or abs(fraction - target) < abs(best[1] - target):
            best = (mid, fraction)
        if abs(fraction - target) <= tol * target:
            break
        if fraction > target:
            lo = mid
        else:
            hi = mid
    return best


REPEATS = {1: 30, 64: 5}


def stage_base(args, data):
    x, y, xt, yt = data
    torch.manual_seed(args.seed)
    model = ResNetCifar(args.depth)
    start = time.perf_counter()
    times = train(
        model, x, y, args.seed, args.epochs, common.RECIPE["lr"],
        fraction=args.epoch_fraction,
    )
    torch.save(model, args.ckpt / "base.pt")
    result = {
        "library": LIBRARY,
        "torch": torch.__version__,
        "epochs": args.epochs,
        "epoch_fraction": args.epoch_fraction,
        "epoch_seconds": times,
        "train_seconds": time.perf_counter() - start,
        "accuracy": accuracy(model, xt, yt),
        "cost": counts(model, args.image_shape),
        "latency": latency(model, args.image_shape, REPEATS),
        "onnx": onnx_measures(
            model, args.ckpt / "base.onnx", args.image_shape, REPEATS
        ),
    }
    common.write_json(args.parts / "base.json", result)
    common.log("torch base", result["accuracy"])


def load(path):
    return torch.load(path, weights_only=False)


def stage_prune(args, data):
    x, y, xt, yt = data
    base = load(args.ckpt / "base.pt")
    taylor = common.taylor_batches(
        x, y, args.seed, common.RECIPE["batch_size"],
        common.RECIPE["taylor_batches"],
    )
    reference = common.read_json(args.parts / "base.json")
    for method in args.methods:
        part = args.parts / f"prune_{method}.json"
        if part.exists():
            continue
        common.log(f"torch prune {method}")
        torch.manual_seed(args.seed)
        search_start = time.perf_counter()
        ratio, _ = find_ratio(base, method, args.image_shape, taylor)
        search = time.perf_counter() - search_start
        model = copy.deepcopy(base)
        seconds = prune_once(model, method, ratio, args.image_shape, taylor)
        pruned_acc = accuracy(model, xt, yt)
        ft = train(
            model, x, y, args.seed, args.finetune_epochs,
            common.RECIPE["finetune_lr"], epoch_offset=1000,
            fraction=args.epoch_fraction,
        )
        torch.save(model, args.ckpt / f"{method}.pt")
        cost = counts(model, args.image_shape)
        result = {
            "pruning_ratio": ratio,
            "prune_seconds": seconds,
            "search_seconds": search,
            "accuracy_pruned": pruned_acc,
            "finetune_epoch_seconds": ft,
            "accuracy_finetuned": accuracy(model, xt, yt),
            "cost": cost,
            "macs_fraction": cost["macs"] / reference["cost"]["macs"],
            "params_fraction": cost["params"] / reference["cost"]["params"],
            "latency": latency(model, args.image_shape, REPEATS),
            "onnx": onnx_measures(
                model, args.ckpt / f"{method}.onnx", args.image_shape,
                REPEATS,
            ),
        }
        common.write_json(part, result)
        common.log("torch", method, result["accuracy_finetuned"])


def stage_latency(args, data):
    """Times every saved model again, one after another (quieter moment)."""
    out = {"loadavg_before": os.getloadavg()}
    nchw = (args.image_shape[2],) + tuple(args.image_shape[:2])
    for name in ["base", *common.METHODS]:
        path = args.ckpt / f"{name}.pt"
        if not path.exists():
            continue
        model = load(path)
        out[name] = {
            "latency": latency(model, args.image_shape, REPEATS),
            "onnx_latency": {
                f"batch_{b}": common.onnx_latency(
                    str(args.ckpt / f"{name}.onnx"), b, nchw, REPEATS[b]
                )
                for b in (1, 64)
            },
        }
        common.log("torch latency", name)
    out["loadavg_after"] = os.getloadavg()
    common.write_json(args.parts / "latency.json", out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--stage", choices=("base", "prune", "latency"), required=True
    )
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--epoch-fraction", type=float, default=1.0)
    parser.add_argument("--work", required=True)
    parser.add_argument("--methods", default=",".join(common.METHODS))
    parser.add_argument("--limit", type=int, default=0,
                        help="use the first N training images (smoke runs)")
    args = parser.parse_args(argv)
    args.methods = args.methods.split(",")
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    args.image_shape = (28, 28, 1)
    args.ckpt = pathlib.Path(args.work) / "torch" / f"seed_{args.seed}"
    args.parts = args.ckpt
    args.ckpt.mkdir(parents=True, exist_ok=True)
    x, y, xt, yt = common.load_fashion_mnist()
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
        xt, yt = xt[: args.limit], yt[: args.limit]
    stages = {
        "base": stage_base, "prune": stage_prune, "latency": stage_latency,
    }
    stages[args.stage](args, (x, y, xt, yt))


if __name__ == "__main__":
    main()
