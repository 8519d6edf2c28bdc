"""The GPU campaign's plumbing on the CPU: its steps run as real subprocesses, every outcome (ok, failed, out of
time) lands in campaign.json and table.md, and pytest's JUnit XML is read back."""

import json
import subprocess
import sys

import pytest
import torch

from ganlab import gpu_campaign
from helpers import run_script


def run_gpu_check(repo_root, data_dir, tmp_path, *arguments: str):
    return run_script([sys.executable, "experiments/gpu_check.py", "--out", str(tmp_path / "campaign"),
                       "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", *arguments], cwd=repo_root,
                      env={"GANLAB_DATA_DIR": str(data_dir)})


def test_the_quick_campaign_on_the_cpu_records_the_machine_and_a_benchmark(repo_root, data_dir, tmp_path):
    result = run_gpu_check(repo_root, data_dir, tmp_path, "--device", "cpu", "--quick")
    assert result.returncode == 0, result.stderr
    assert "2 of 2 steps ok" in result.stdout
    record = json.loads((tmp_path / "campaign" / "campaign.json").read_text())
    machine, benchmark = record["steps"]
    assert machine["status"] == "ok" and machine["result"]["torch"] == torch.__version__
    assert benchmark["name"] == "benchmark mlp-small b64 fp32" and benchmark["status"] == "ok"
    assert benchmark["result"]["speedup"] > 0 and benchmark["result"]["device_type"] == "cpu"
    table = (tmp_path / "campaign" / "table.md").read_text()
    assert f"torch {torch.__version__}" in table and "| mlp-small | 64 | fp32 |" in table

    again = run_gpu_check(repo_root, data_dir, tmp_path, "--device", "cpu", "--quick")
    assert again.returncode == 2 and "already holds a campaign; pass --overwrite" in again.stderr
    assert (tmp_path / "campaign" / "table.md").read_text() == table


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a machine without CUDA records")
def test_failed_steps_are_recorded_and_the_rest_still_runs(repo_root, data_dir, tmp_path):
    result = run_gpu_check(repo_root, data_dir, tmp_path, "--device", "cuda", "--quick")
    assert result.returncode == 1
    record = json.loads((tmp_path / "campaign" / "campaign.json").read_text())
    assert [step["status"] for step in record["steps"]] == ["failed (exit 1)", "failed (exit 2)"]
    assert "CUDA" in record["steps"][1]["error_tail"]  # benchmark.py's one-line error, kept
    assert "| mlp-small | 64 | fp32 | | | | | | | failed (exit 2) |" in (tmp_path / "campaign" / "table.md").read_text()


def test_steps_past_the_budget_are_skipped_not_started(repo_root, data_dir, tmp_path):
    result = run_gpu_check(repo_root, data_dir, tmp_path, "--device", "cpu", "--quick", "--budget-s", "5")
    assert result.returncode == 1 and "0 of 2 steps ok" in result.stdout
    record = json.loads((tmp_path / "campaign" / "campaign.json").read_text())
    assert {step["status"] for step in record["steps"]} == {"skipped (no time left)"}


def test_pytests_junit_xml_is_summarized(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "def test_passes(): pass\n"
        "def test_fails(): assert False\n"
        "@pytest.mark.skip(reason='no')\n"
        "def test_skipped(): pass\n")
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                    f"--junitxml={tmp_path / 'out.xml'}", str(tmp_path / "test_sample.py")], cwd=tmp_path,
                   capture_output=True)
    assert gpu_campaign.junit_summary(tmp_path / "out.xml") == {
        "passed": 1, "failed": ["test_sample.test_fails"], "skipped": 1}
    assert gpu_campaign.junit_summary(tmp_path / "missing.xml") == {}


def test_the_full_grid_times_each_architecture_at_both_batches_and_precisions(tmp_path):
    steps = gpu_campaign.campaign_steps("cuda", quick=False, out=tmp_path, tracking_uri=None)
    assert [step.name for step in steps[:2]] == ["machine", "gpu tests"]
    assert {"tests/test_gpu.py", "tests/test_precision.py"} <= set(steps[1].command) and \
        "tests/test_metrics.py" not in steps[1].command  # it imports prdc, which a GPU machine may not have
    benchmarks = [step for step in steps if step.name.startswith("benchmark")]
    assert len(benchmarks) == 8 and sum(step.timeout_s for step in steps) <= 60 + 240 + 8 * 90
    evaluated = [step.name for step in benchmarks if step.command[step.command.index("--eval-samples") + 1] != "0"]
    assert evaluated == ["benchmark mlp b64 fp32", "benchmark cnn b64 fp32"]
