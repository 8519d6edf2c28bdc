"""Training runs read back from MLflow and compared: overlaid curves, the last sample grids, one table.

Every training run logs the same keys whatever its architecture (`loss_g`, `loss_d`, `d_real`, `d_fake` per
step; `epoch_*`, `fid`, … per epoch), so runs compare directly here and in the MLflow UI's own compare view.
"""

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Run
from PIL import Image

from ganlab import plots, tracking
from ganlab.errors import GanlabError
from ganlab.metrics.classifier import FEATURE_SPACE

# The columns of the comparison table: what a run was told, then how it ended.
TABLE_PARAMS = ("arch", "epochs", "batch_size", "lr_g", "lr_d", "beta1", "beta2", "seed", "label_smoothing",
                "instance_noise", "d_update_every", "world_size")
TABLE_METRICS = ("fid", "kid", "precision", "recall", "coverage", "class_entropy", "epoch_loss_g", "epoch_loss_d",
                 "epoch_d_real", "epoch_d_fake", "epoch_d_gap", "epoch_seconds")
QUALITY_METRICS = ("fid", "kid", "precision", "recall", "coverage", "class_entropy")


@dataclass
class RunHistory:
    """What the comparison needs of one run: its curves and its samples."""

    run: Run
    step_curves: dict[str, tuple[np.ndarray, np.ndarray]]  # per-step metric → (steps, values)
    epoch_curves: dict[str, tuple[np.ndarray, np.ndarray]]  # per-epoch metric → (epochs, values)
    last_sample_grid: np.ndarray | None
    last_epoch: int

    @property
    def name(self) -> str:
        return self.run.info.run_name

    @property
    def label(self) -> str:
        """How figures name the run: its name and the start of its id."""
        return f"{self.run.info.run_name} ({self.run.info.run_id[:8]})"


def training_runs(client: MlflowClient, experiment: str | None = None,
                  run_ids: list[str] | None = None) -> list[Run]:
    """The runs to compare: the given ids, or every finished top-level training run of the experiment."""
    if run_ids:
        runs = [tracking.get_run(client, run_id) for run_id in run_ids]
        for run in runs:
            if run.data.tags.get("ganlab.kind") != "train":
                raise GanlabError(f"run {run.info.run_id} is not a ganlab training run "
                                  f"(ganlab.kind={run.data.tags.get('ganlab.kind')!r})")
        return runs
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise GanlabError(f"no MLflow experiment named {experiment!r} in {client.tracking_uri}")
    runs = [run for run in client.search_runs(
                [found.experiment_id], "tags.`ganlab.kind` = 'train' and attributes.status = 'FINISHED'",
                max_results=1000)
            if "mlflow.parentRunId" not in run.data.tags]  # tuning trials are compared inside their study
    if not runs:
        raise GanlabError(f"experiment {experiment!r} has no finished training runs: train one with "
                          "experiments/train.py first")
    return sorted(runs, key=lambda run: (run.info.run_name or "", run.info.start_time))


def read_history(client: MlflowClient, run: Run) -> RunHistory:
    """A run's per-step and per-epoch curves and its first and last sample grids, from the store."""
    run_id = run.info.run_id
    step_curves = {name: metric_curve(client, run_id, name) for name in tracking.STEP_METRIC_NAMES}
    epoch_curves = {name: metric_curve(client, run_id, name)
                    for name in ("epoch_loss_g", "epoch_loss_d", "epoch_d_gap", *QUALITY_METRICS)}
    epochs = epoch_curves["epoch_loss_g"][0]
    final_epoch = int(epochs[-1]) if len(epochs) else 0
    return RunHistory(run, step_curves, epoch_curves,
                      last_sample_grid=read_image_artifact(client, run_id, f"samples/epoch_{final_epoch:03d}.png"),
                      last_epoch=final_epoch)


def read_image_artifact(client: MlflowClient, run_id: str, path: str) -> np.ndarray | None:
    """A grayscale PNG artifact (a sample grid) as an array, or None when the run does not have it."""
    png_bytes = tracking.artifact_bytes(client, run_id, path)
    if png_bytes is None:
        return None
    with Image.open(io.BytesIO(png_bytes)) as image:
        return np.asarray(image.convert("L"))


def last_epoch(client: MlflowClient, run_id: str) -> int:
    """The last epoch a run logged (0 before its first epoch ended)."""
    epochs = metric_curve(client, run_id, "epoch_loss_g")[0]
    return int(epochs[-1]) if len(epochs) else 0


def write_comparison(histories: list[RunHistory], out_dir: Path, smoothing_window: int = 100) -> list[Path]:
    """The comparison's figures and tables in `out_dir`; returns the files written."""
    written = []

    def save(figure, name: str) -> None:
        figure.savefig(out_dir / name, dpi=110)
        written.append(out_dir / name)

    save(plots.run_overlay({"G loss": _curves(histories, "loss_g"), "D loss": _curves(histories, "loss_d")},
                           "step", "Generator and discriminator losses", smoothing_window), "losses.png")
    save(plots.run_overlay({"D(x)": _curves(histories, "d_real"), "D(G(z))": _curves(histories, "d_fake")},
                           "step", "Discriminator outputs on real and generated images", smoothing_window),
         "d_outputs.png")
    fid_curves = {history.label: history.epoch_curves["fid"] for history in histories
                  if len(history.epoch_curves["fid"][0])}
    if fid_curves:
        save(plots.run_overlay({"FID": fid_curves}, "epoch", f"FID by epoch ({FEATURE_SPACE} features, "
                               "lower is better)"), "fid.png")
    grids = {f"{history.label}\nepoch {history.last_epoch}": history.last_sample_grid for history in histories
             if history.last_sample_grid is not None}
    if grids:
        save(plots.grids_side_by_side(grids, "Last epoch's samples from each run's fixed latent batch"),
             "last_samples.png")
    rows = table_rows([history.run for history in histories])
    (out_dir / "table.csv").write_text(table_csv(rows))
    (out_dir / "table.md").write_text(table_markdown(rows))
    return [*written, out_dir / "table.csv", out_dir / "table.md"]


def table_rows(runs: list[Run]) -> list[dict[str, str]]:
    """One row per run: name, id, the TABLE_PARAMS it was given, its last TABLE_METRICS and their protocol."""
    rows = []
    for run in runs:
        row = {"run": run.info.run_name, "run_id": run.info.run_id, "status": tracking.status_in_words(run)}
        row.update({name: run.data.params.get(name, "") for name in TABLE_PARAMS})
        row.update({name: _format_number(run.data.metrics[name]) if name in run.data.metrics else ""
                    for name in TABLE_METRICS})
        row["eval.feature_space"] = run.data.tags.get("eval.feature_space", "")
        row["eval.samples"] = run.data.tags.get("eval.samples", "")
        row["tuned_from"] = run.data.tags.get("ganlab.tuned_from", "")
        rows.append(row)
    return rows


def table_csv(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def table_markdown(rows: list[dict[str, str]]) -> str:
    """The table for people: params that differ between the runs, then the final metrics that any run has."""
    params = [name for name in TABLE_PARAMS if len({row[name] for row in rows}) > 1] or ["arch"]
    metric_names = [name for name in TABLE_METRICS if any(row[name] for row in rows)]
    statuses = ["status"] if any(row["status"] != "FINISHED" for row in rows) else []  # e.g. KILLED (lost)
    columns = ["run", "run_id", *statuses, *params, *metric_names]
    spaces = sorted({row["eval.feature_space"] for row in rows if row["eval.feature_space"]})
    samples = sorted({row["eval.samples"] for row in rows if row["eval.samples"]})
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(row["run_id"][:8] if column == "run_id" else row[column]
                                       for column in columns) + " |")
    note = (f"Quality metrics in the {', '.join(spaces)} feature space, {', '.join(samples)} samples against the "
            "10k test images; loss and D columns are the last epoch's means." if spaces
            else "No run has quality metrics; loss and D columns are the last epoch's means.")
    return "\n".join(lines) + "\n\n" + note + "\n"


def _curves(histories: list[RunHistory], name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {history.label: history.step_curves[name] for history in histories}


def metric_curve(client: MlflowClient, run_id: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A metric's whole history as (steps, values), sorted by step."""
    by_step = {metric.step: metric.value for metric in client.get_metric_history(run_id, name)}
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.array([by_step[step] for step in steps], dtype=np.float64)


def _format_number(value: float) -> str:
    return f"{value:.4g}"
