"""Print the pip requirements of keras-dynfilt for CI and `make`.

Reads `pyproject.toml` (the single source of the dependency list) and prints
the core dependencies plus the requested extras, one per line. With
`--tensorflow-cpu`, the `tensorflow` requirement becomes `tensorflow-cpu` with
the same version specifier: the same TensorFlow release without the CUDA
kernels, so CI installs 274 MB instead of 572 MB. With `--no-tensorflow`, it is
left out (the JAX environment).
"""

import argparse
import pathlib
import re

import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SELF = "keras-dynfilt"


def requirements(extras, tensorflow):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    reqs, todo, seen = list(project["dependencies"]), list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in optional[extra]:
            match = re.fullmatch(rf"{SELF}\[(.+)\]", req)
            if match:
                todo.extend(e.strip() for e in match.group(1).split(","))
            else:
                reqs.append(req)
    out = []
    for req in reqs:
        name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()
        if name == "tensorflow":
            if tensorflow == "none":
                continue
            if tensorflow == "cpu":
                req = "tensorflow-cpu" + req[len(name) :]
        out.append(req)
    return sorted(set(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("extras", nargs="*", default=[])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--tensorflow-cpu", action="store_true")
    group.add_argument("--no-tensorflow", action="store_true")
    args = parser.parse_args()
    tensorflow = (
        "cpu"
        if args.tensorflow_cpu
        else "none"
        if args.no_tensorflow
        else "gpu"
    )
    print("\n".join(requirements(args.extras, tensorflow)))


if __name__ == "__main__":
    main()
