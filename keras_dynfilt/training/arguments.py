"""`example_argument_parser`: the command line every example script shares."""

import argparse
import os

from keras_dynfilt.training.datasets import DATASETS
from keras_dynfilt.training.strategies import STRATEGIES


def example_argument_parser(
    description, dataset="auto", epochs=10, batch_size=128, output_dir=None
):
    """An `argparse.ArgumentParser` with the flags every example shares.

    `--dataset`, `--data-dir`, `--epochs`, `--batch-size` (global, split
    across replicas), `--seed`, `--strategy {auto,default,mirrored,
    multi_worker}`, `--cpu-replicas N` (split the CPU into N logical devices,
    for trying MirroredStrategy without GPUs), `--jit-compile
    {auto,true,false}`, `--mixed-precision`, `--deterministic`,
    `--output-dir`, `--steps-per-epoch` and `--limit-train` (for smoke runs)
    and `--verbose`. Scripts add their own flags to the returned parser.
    """
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        default=dataset,
        choices=list(DATASETS) + ["auto"],
        help="'auto': Fashion-MNIST from Debian's package when installed, "
        "else scikit-learn's digits",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with the dataset's files (offline); default: Debian's "
        "Fashion-MNIST folder when present, else tensorflow-datasets online",
    )
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        help="global batch size (all replicas together)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", default="auto", choices=STRATEGIES)
    parser.add_argument(
        "--cpu-replicas",
        type=int,
        default=0,
        help="split the CPU into this many logical devices (0: leave as is; "
        "on JAX only before JAX starts its runtime)",
    )
    parser.add_argument(
        "--jit-compile",
        default="auto",
        choices=("auto", "true", "false"),
        help="XLA; 'auto' resolves as Keras does (off on CPU)",
    )
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic ops (TensorFlow: enable_op_determinism; "
        "PyTorch: use_deterministic_algorithms; JAX on GPU: "
        "--xla_gpu_deterministic_ops)",
    )
    parser.add_argument(
        "--output-dir", default=output_dir or os.path.join("runs", "latest")
    )
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="limit each epoch (smoke runs)",
    )
    parser.add_argument(
        "--limit-train",
        type=int,
        default=None,
        help="use only this many training examples (smoke runs)",
    )
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    return parser
