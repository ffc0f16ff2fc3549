"""tensorflow-model-optimization's schedules drive SoftFilterPruning.

The run happens in a subprocess (`tfmot_interop_run.py`): importing tfmot
sets `TF_USE_LEGACY_KERAS=1` process-wide. Without tfmot the test skips,
except where `CI=1` or `KERAS_DYNFILT_REQUIRE_TFMOT=1` is set: there a
missing tfmot is an error, so that CI cannot skip it silently. Install:
`pip install --no-deps tensorflow-model-optimization tf_keras dm-tree`.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
SCRIPT = os.path.join(os.path.dirname(__file__), "tfmot_interop_run.py")


def _tfmot_required():
    return "1" in (os.environ.get("CI"),
                   os.environ.get("KERAS_DYNFILT_REQUIRE_TFMOT"))


@pytest.fixture(scope="module")
def report():
    missing = [
        name for name in ("tensorflow_model_optimization", "tf_keras")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        message = (
            f"tfmot interop needs {', '.join(missing)}: pip install "
            "--no-deps tensorflow-model-optimization tf_keras dm-tree"
        )
        if _tfmot_required():
            pytest.fail(message + " (required: CI=1 or "
                        "KERAS_DYNFILT_REQUIRE_TFMOT=1 is set)")
        pytest.skip(message)
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env.pop("TF_USE_LEGACY_KERAS", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    done = subprocess.run(
        [sys.executable, SCRIPT], env=env, capture_output=True, text=True,
        timeout=600, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


@pytest.mark.tensorflow
def test_tfmot_stays_in_its_subprocess(report):
    assert report["TF_USE_LEGACY_KERAS"] == "1"  # what tfmot does
    assert "TF_USE_LEGACY_KERAS" not in os.environ  # not here


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", ["constant", "polynomial"])
def test_tfmot_schedule_gives_the_same_masks_at_the_same_steps(report, case):
    run = report["cases"][case]
    assert run["tfmot"] == run["ours"]
    steps = [s for s, _, _ in run["ours"]["steps"]]
    assert steps == list(range(1, 9))  # 2 epochs of 4 steps
    # A mask lands at the due steps only: the zeroed filters regrow after
    # one soft step, so a step ends with zeros exactly when it masked.
    masked = [s for s, a, _ in run["ours"]["steps"] if a]
    if case == "constant":  # begin 1, end 7, every 3 steps; 0.7 of 10
        assert masked == [1, 4, 7]
        counts = {len(a) for s, a, _ in run["ours"]["steps"] if a}
        assert counts == {7}
        assert [len(z) for z in run["ours"]["final"]] == [7, 4]
    else:  # begin 2, end 8, every 2 steps, 0.1 -> 0.5 (power 3)
        assert masked == [2, 4, 6, 8]
        counts = [len(a) for s, a, _ in run["ours"]["steps"] if a]
        assert counts == sorted(counts) and counts[0] == 1 and \
            counts[-1] == 5
        assert [len(z) for z in run["ours"]["final"]] == [5, 3]


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", ["constant", "polynomial"])
def test_tfmot_config_builds_the_same_schedule(report, case):
    run = report["cases"][case]
    assert run["config_from_tfmot"] == run["tfmot_config"]["config"] | \
        run["config_from_tfmot"]
    for step, should, sparsity, our_should, our_sparsity in \
            run["schedule_values"]:
        assert our_should == should, step
        assert our_sparsity == pytest.approx(sparsity, abs=1e-6), step
