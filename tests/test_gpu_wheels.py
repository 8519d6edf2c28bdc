"""The wheels folder for the GPU machine: what is carried is ganlab's requirement closure, as this venv has it, less
what the target has; worked out from the installed packages' metadata, offline."""

import importlib.metadata
import sys

import pytest

from ganlab import gpu_wheels
from ganlab.errors import GanlabError
from helpers import assert_one_line_error, run_script


def test_the_h200_image_is_carried_what_it_lacks_at_this_venvs_versions():
    have = gpu_wheels.read_have(gpu_wheels.IMAGE_PACKAGES)
    assert {"torch", "torchvision", "numpy", "safetensors", "torchmetrics", "matplotlib"} <= have
    carried = gpu_wheels.carried("3.12", have)
    # MLflow's client and SQLite store, Optuna and their needs; not the full MLflow (its UI), not the image's own.
    assert {"mlflow-skinny", "sqlalchemy", "alembic", "optuna", "flask"} <= set(carried)
    assert not {"mlflow", "torch", "numpy", "ganlab", "gunicorn"} & set(carried)
    for name, version in carried.items():
        assert importlib.metadata.version(name) == version, name


def test_a_bare_target_is_carried_everything_and_markers_are_read_for_its_python():
    everything = gpu_wheels.carried("3.12", have=set())
    assert {"torch", "numpy", "mlflow-skinny", "optuna"} <= set(everything)
    # Below 3.11 some packages ask for backports (tomli, …) that this 3.11 venv never installed: the markers are
    # evaluated for the target's Python, not this one's.
    with pytest.raises(GanlabError, match="is needed on Python 3.10 but not installed here"):
        gpu_wheels.requirement_closure("3.10")


def test_have_files_take_pip_freeze_lines_and_comments(tmp_path):
    have = tmp_path / "have.txt"
    have.write_text("# a comment\nTorch==2.11.0\nnvidia_ml_py @ file:///x\nzipp\n\n")
    assert gpu_wheels.read_have(have) == {"torch", "nvidia-ml-py", "zipp"}


def test_a_folder_with_other_wheels_is_refused_before_anything_is_downloaded(tmp_path):
    (tmp_path / "mlflow_skinny-0.1-py3-none-any.whl").write_bytes(b"")
    with pytest.raises(GanlabError, match="mlflow_skinny-0.1-py3-none-any.whl; remove them"):
        gpu_wheels.download({"mlflow-skinny": "3.0.0"}, tmp_path, "3.12")


@pytest.mark.parametrize("arguments, fragment", [
    (["--python", "3"], "--python takes major.minor"),
    (["--have", "/nonexistent/have.txt"], "cannot read --have /nonexistent/have.txt"),
])
def test_bad_input_is_a_one_line_error(repo_root, arguments, fragment):
    assert_one_line_error(run_script([sys.executable, "-m", "ganlab.gpu_wheels", *arguments], cwd=repo_root),
                          fragment)


def test_list_prints_the_pinned_wheels(repo_root):
    listed = run_script([sys.executable, "-m", "ganlab.gpu_wheels", "--list"], cwd=repo_root)
    assert listed.returncode == 0, listed.stderr
    pins = dict(line.split("==") for line in listed.stdout.split())
    assert pins["optuna"] == importlib.metadata.version("optuna")
