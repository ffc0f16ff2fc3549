"""Builds the bundle that travels to the GPU machine (at most 64 MiB).

The GPU machine has Python 3.12 with JAX and PyTorch, and no TensorFlow, no
Keras and no network. The bundle holds what it lacks:

- `wheels/`: Keras and the pure-Python (or manylinux) packages it and the
  tests need, downloaded for `--python-version` with
  `pip download --only-binary=:all: --no-deps` (pinned to the versions the
  JAX environment here is tested with);
- `project.tar.gz`: `git archive` of the project (library, tests,
  examples, benchmarks; no docs);
- `fashion-mnist/`: the four gzipped IDX files (~30 MB).

    python benchmarks/gpu/pack.py                  # -> build/gpu
    python benchmarks/gpu/pack.py --python-version 3.11 --output /tmp/b

Then, on the GPU machine: `bash benchmarks/gpu/run.sh build/gpu` (see
docs/training.md, "Backends").
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
LIMIT = 64 * 2**20
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
# Keras 3.15.1 and its dependencies that JAX and PyTorch do not bring,
# pytest for the layer tests. Versions: those of the JAX environment here.
WHEELS = [
    "keras==3.15.1",
    "absl-py==2.5.1",
    "namex==0.1.0",
    "optree==0.20.0",
    "h5py==3.16.0",
    "rich==15.0.0",
    "markdown-it-py==4.3.0",
    "mdurl==0.1.2",
    "pygments==2.21.0",
    "packaging==26.4",
    "typing-extensions==4.16.0",
    "pytest==9.2.0",
    "pluggy==1.7.0",
    "iniconfig==2.3.1",
    "pytest-timeout==2.4.0",
]
PROJECT_PATHS = ["keras_dynfilt", "tests", "examples", "benchmarks",
                 "pyproject.toml"]


def download_wheels(dest, python_version):
    abi = "cp" + python_version.replace(".", "")
    command = [
        sys.executable, "-m", "pip", "download", "--quiet",
        "--disable-pip-version-check", "--dest", str(dest),
        "--only-binary=:all:", "--no-deps",
        "--python-version", python_version, "--implementation", "cp",
        "--abi", abi, "--abi", "abi3", "--abi", "none",
        "--platform", "manylinux_2_28_x86_64",
        "--platform", "manylinux_2_17_x86_64",
        "--platform", "manylinux2014_x86_64", "--platform", "any",
        *WHEELS,
    ]
    subprocess.run(command, check=True)


def archive_project(path):
    # The committed tree plus uncommitted changes of tracked files: a stash
    # commit when the tree is dirty, else HEAD.
    ref = subprocess.run(
        ["git", "stash", "create"], cwd=ROOT, check=True,
        capture_output=True, text=True,
    ).stdout.strip() or "HEAD"
    subprocess.run(
        ["git", "archive", "--format=tar.gz", "-o", str(path), ref,
         *PROJECT_PATHS],
        cwd=ROOT, check=True,
    )


def size_of(path):
    return sum(p.stat().st_size for p in pathlib.Path(path).rglob("*")
               if p.is_file())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "build" / "gpu"))
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--data-dir", default=FASHION_MNIST)
    parser.add_argument(
        "--no-data", action="store_true",
        help="leave the IDX files out (tiny CPU checks use digits)",
    )
    args = parser.parse_args(argv)
    out = pathlib.Path(args.output)
    if out.exists():
        shutil.rmtree(out)
    (out / "wheels").mkdir(parents=True)
    download_wheels(out / "wheels", args.python_version)
    archive_project(out / "project.tar.gz")
    if not args.no_data:
        (out / "fashion-mnist").mkdir()
        for name in sorted(os.listdir(args.data_dir)):
            shutil.copy(os.path.join(args.data_dir, name),
                        out / "fashion-mnist" / name)
    (out / "PYTHON_VERSION").write_text(args.python_version + "\n")
    parts = {p.name: size_of(p) if p.is_dir() else p.stat().st_size
             for p in sorted(out.iterdir())}
    total = sum(parts.values())
    for name, size in parts.items():
        print(f"{size / 2**20:8.2f} MiB  {name}")
    print(f"{total / 2**20:8.2f} MiB  total (limit {LIMIT / 2**20:.0f} MiB)")
    if total > LIMIT:
        raise SystemExit(f"The bundle is {total} bytes, over {LIMIT}.")
    return total


if __name__ == "__main__":
    main()
