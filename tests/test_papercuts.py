"""Small things a new user meets in the first hour: help texts, links, captions."""

import os
import re
import subprocess
import sys

import pytest

from ganlab import tracking
from ganlab.report import latent_source

SCRIPTS = ["experiments/train.py", "experiments/tune.py", "experiments/evaluate.py", "experiments/benchmark.py",
           "experiments/compare_settings.py", "analysis/latent_effects.py", "analysis/compare_runs.py",
           "analysis/report.py", "analysis/replay_pruners.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_gives_each_flag_one_real_default(repo_root, script):
    result = subprocess.run([sys.executable, script, "--help"], cwd=repo_root, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "COLUMNS": "400"})
    assert result.returncode == 0, result.stderr
    options = result.stdout.split("options:", 1)[1]
    for entry in re.split(r"\n  (?=-)", options):
        assert entry.count("(default") <= 1, entry
        assert "(default: None)" not in entry, entry


def test_the_ui_link_points_at_the_tracking_server_when_there_is_one():
    served = tracking.ui_hint("3", "abc", "http://127.0.0.1:5077/")
    assert served == "MLflow UI: http://127.0.0.1:5077/#/experiments/3/runs/abc?workflowType=machine_learning"
    local = tracking.ui_hint("3", "abc", "sqlite:///mlruns/mlflow.db")
    assert local == "MLflow UI: `make ui`, then http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=" \
                    "machine_learning"


def test_the_eight_images_caption_says_where_z_came_from():
    assert "--z-seed 1" in latent_source({"z_file": "None", "z_seed": "1"}) and "None" not in latent_source(
        {"z_file": "None", "z_seed": "1"})
    assert "z.npy" in latent_source({"z_file": "/data/z.npy", "z_seed": "0"})
