"""analysis/inception_table.py as a real subprocess: the paper's rows, the floor and a tracked run in one table."""

import csv
import json
import sys

import pytest
from mlflow import MlflowClient

from ganlab.metrics import inception
from helpers import assert_one_line_error, only_run, require_inception_weights, run_script, run_train


def run_table(repo_root, data_dir, *arguments: str):
    return run_script([sys.executable, "analysis/inception_table.py", "--data-dir", str(data_dir), "--no-progress",
                       *arguments], cwd=repo_root, timeout=600)


def test_the_table_holds_the_papers_rows_the_floor_and_the_run_and_reuses_finished_rows(repo_root, data_dir, tmp_path):
    require_inception_weights()
    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    trained = run_train(repo_root, store_uri, data_dir, "--arch", "mlp-small", "--train-images", "640",
                        "--max-steps", "20", "--epochs", "2", "--eval-every", "0")
    assert trained.returncode == 0, trained.stderr
    run_id = only_run(MlflowClient(store_uri)).info.run_id
    out_dir = tmp_path / "inception-fid"
    arguments = ("--tracking-uri", store_uri, "--run", f"small={run_id}", "--samples", "8", "--reference-images", "8",
                 "--out", str(out_dir))

    first = run_table(repo_root, data_dir, *arguments)
    assert first.returncode == 0, first.stderr
    table = json.loads((out_dir / "table.json").read_text())
    floor, small = table["rows"]
    assert (floor["label"], floor["run_id"], small["label"], small["run_id"]) == (
        "real train vs test (floor)", None, "small", run_id)
    assert small["epochs"] == 2 and small["inception_protocol"] == inception.protocol(8, "fashion-mnist-test-first-8")
    assert small["fmnist_protocol"]["eval.feature_space"] == "fmnist-cnn-v1"
    assert floor["fid_inception"] < small["fid_inception"]  # 20 steps of training make blobs, not clothes
    assert table["lucic_2018"]["WGAN"] == 21.5 and "analysis/inception_table.py" in table["measured"]["command"]
    assert floor["measured"] == small["measured"] == table["measured"]

    markdown = (out_dir / "table.md").read_text()
    assert "| Lucic et al. 2018: WGAN | – | 21.5 |" in markdown and f"({run_id[:8]})" in markdown
    assert "Where ganlab's differs" in markdown and "not below the best of Lucic et al.'s search (WGAN, 21.5)" in markdown
    with open(out_dir / "table.csv", newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert [row["source"] for row in csv_rows] == ["lucic2018"] * 7 + ["ganlab"] * 2
    client = MlflowClient(store_uri)
    (logged,) = client.get_metric_history(run_id, "fid_inception")
    assert logged.value == pytest.approx(small["fid_inception"])
    assert client.get_run(run_id).data.tags["eval.inception.samples"] == "8"

    again = run_table(repo_root, data_dir, *arguments)
    assert again.returncode == 0, again.stderr
    assert json.loads((out_dir / "table.json").read_text())["rows"] == table["rows"]  # reused, seconds included

    # Another row later, by another command: the table grows and keeps the rows it already held, each with its command.
    grown = run_table(repo_root, data_dir, *arguments[:2], "--run", f"later={run_id}", *arguments[4:])
    assert grown.returncode == 0, grown.stderr
    assert "1 kept from the earlier table" in grown.stdout
    grown_rows = json.loads((out_dir / "table.json").read_text())["rows"]
    assert grown_rows[:2] == table["rows"] and grown_rows[2]["label"] == "later"
    assert "--run later=" in grown_rows[2]["measured"]["command"] and "--run small=" in small["measured"]["command"]
    grown_markdown = (out_dir / "table.md").read_text()
    assert "| ganlab: small |" in grown_markdown and "| ganlab: later |" in grown_markdown
    assert grown_markdown.count("seconds per row") == 2


@pytest.mark.parametrize("arguments, fragment", [
    (("--run", "cnn"), "--run takes LABEL=RUN_ID"),
    (("--run", "cnn=feedface"), "no run 'feedface'"),
    (("--floor-only", "--run", "cnn=feedface"), "exclude each other"),
])
def test_bad_runs_are_one_line_errors_before_any_slow_work(repo_root, data_dir, tmp_path, arguments, fragment):
    result = run_table(repo_root, data_dir, "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--out",
                       str(tmp_path / "out"), *arguments)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "out").exists()
