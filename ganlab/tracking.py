"""Everything MLflow: the store, experiments, one run's logging off the training thread, and reading runs back.

Training never waits on MLflow: `RunLogger` hands every write to one background thread, in order.
Per-step values arrive as device tensors and are turned into numbers on that thread, so the training
loop has no `.item()` and no host sync per step; the thread passes them to a writer process
(`ganlab.metric_writer`), so MLflow's Python never competes with training for the GIL.
"""

import contextlib
import dataclasses
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException
from safetensors.torch import load_file
from torch import nn

from ganlab import checkpoint
from ganlab.errors import GanlabError
from ganlab.metric_writer import STEP_METRIC_NAMES
from ganlab.models import build_generator

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"  # relative to the working directory
UI_ADDRESS = "http://127.0.0.1:5000"  # where `make ui` serves the MLflow UI

for _noisy_logger in ("mlflow.store.db.utils", "alembic.runtime.migration"):
    logging.getLogger(_noisy_logger).setLevel(logging.WARNING)
# MLflow's own download bar would break the one-line-error rule and clutter ganlab's progress bars.
MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.set(False)


def resolve_tracking_uri(cli_value: str | None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else the local SQLite store under mlruns/."""
    return cli_value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def connect(tracking_uri: str) -> MlflowClient:
    """A client for a store that answers, or one clear error: no retries that hang for minutes."""
    scheme = urlparse(tracking_uri).scheme
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(tracking_uri.rstrip("/") + "/health", timeout=5):
                pass
        except (urllib.error.URLError, OSError) as error:
            raise GanlabError(f"tracking server {tracking_uri} is unreachable ({error}); start it or pass "
                              "another --tracking-uri") from error
    elif scheme == "sqlite":
        database_path = _sqlite_path(tracking_uri)
        try:
            database_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise GanlabError(f"cannot create the tracking store folder {database_path.parent}: {error}") from error
    client = MlflowClient(tracking_uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as error:  # MLflow wraps store failures in several types (MlflowException, SQLAlchemy, OSError)
        raise GanlabError(f"tracking store {tracking_uri} is not usable: {_first_line(error)}") from error
    return client


@contextlib.contextmanager
def store_errors(doing: str):
    """Turn the store's own exceptions into one GanlabError line that says what ganlab was doing."""
    try:
        yield
    except MlflowException as error:
        raise GanlabError(f"tracking store failed while {doing}: {_first_line(error)}") from error


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    """The experiment's id; new experiments open in the UI's model-training view."""
    with store_errors(f"opening experiment {name!r}"):
        return _get_or_create_experiment(client, name)


def _get_or_create_experiment(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise GanlabError(f"experiment {name!r} is deleted; restore it in the MLflow UI or pick another --experiment")
        return experiment.experiment_id
    artifact_location = None
    if urlparse(client.tracking_uri).scheme == "sqlite":
        # Keep artifacts beside the database (mlruns/artifacts by default), so one folder holds the store.
        artifact_location = str(_sqlite_path(client.tracking_uri).parent.resolve() / "artifacts")
    return client.create_experiment(name, artifact_location=artifact_location,
                                    tags={"mlflow.experimentKind": "custom_model_development"})


def git_commit() -> str | None:
    """The commit of the ganlab checkout, when it is one."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def run_url(experiment_id: str, run_id: str) -> str:
    """The run in the MLflow UI's model-training view (MLflow 3 opens the GenAI view otherwise)."""
    return f"{UI_ADDRESS}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def local_artifact_dir(client: MlflowClient, run_id: str) -> Path | None:
    """The run's artifact folder when it is on this machine's file system, else None."""
    artifact_uri = client.get_run(run_id).info.artifact_uri
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and artifact_uri.startswith("/"):
        return Path(artifact_uri)
    return None


def get_run(client: MlflowClient, run_id: str):
    """The run, or a clear error for an id the store does not know."""
    try:
        return client.get_run(run_id)
    except MlflowException as error:
        raise GanlabError(f"no run {run_id!r} in {client.tracking_uri}") from error


def last_logged_step(client: MlflowClient, run_id: str, metric_name: str) -> int:
    """The highest step logged for a metric (0 when none): what a resumed run must not log again."""
    history = client.get_metric_history(run_id, metric_name)
    return max((metric.step for metric in history), default=0)


def load_generator(run_id: str, tracking_uri: str | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a run's generator from `model/config.json` + `model/generator.safetensors`, in eval mode."""
    client = connect(resolve_tracking_uri(tracking_uri))
    get_run(client, run_id)
    with tempfile.TemporaryDirectory() as download_dir:
        try:
            model_dir = Path(client.download_artifacts(run_id, "model", download_dir))
            config = json.loads((model_dir / "config.json").read_text())
            weights = load_file(str(model_dir / "generator.safetensors"), device="cpu")
        except (MlflowException, OSError, json.JSONDecodeError) as error:
            raise GanlabError(f"run {run_id} has no readable generator (model/config.json and "
                              f"model/generator.safetensors); if it was interrupted, finish it with "
                              f"`python experiments/train.py --resume {run_id}`") from error
    generator = build_generator(config["arch"], config["latent_dim"])
    generator.load_state_dict(weights)
    return generator.to(device).eval()


def log_evaluation(client: MlflowClient, run_id: str, evaluation, step: int) -> None:
    """An evaluation's metrics at `step`, its protocol as tags, and all of it as eval/evaluate.json."""
    with store_errors(f"logging the evaluation to run {run_id}"):
        client.log_batch(run_id, metrics=[Metric(name, value, _now_ms(), step) for name, value in evaluation.metrics.items()],
                         tags=[RunTag(name, value) for name, value in evaluation.protocol.items()])
        client.log_text(run_id, json.dumps(dataclasses.asdict(evaluation), indent=2), "eval/evaluate.json")


def start_derived_run(client: MlflowClient, source_run, kind: str, script: str, params: dict[str, object],
                      experiment: str | None = None, run_name: str | None = None,
                      tags: dict[str, str] | None = None) -> tuple[str, str]:
    """A new run that analyses `source_run` (same experiment unless named), named KIND-SOURCE (e.g.
    latent-analysis-mlp-s0) unless named, and tagged `ganlab.kind` and `ganlab.source_run_id` (plus `tags`), so the
    UI can filter analyses and trace them back. Returns (run id, experiment id)."""
    experiment_id = (get_or_create_experiment(client, experiment) if experiment
                     else source_run.info.experiment_id)
    with store_errors("creating the analysis run"):
        run = client.create_run(experiment_id, run_name=run_name or f"{kind}-{source_run.info.run_name}", tags={
            "ganlab.kind": kind, "ganlab.source_run_id": source_run.info.run_id,
            "ganlab.arch": source_run.data.tags.get("ganlab.arch", ""), "mlflow.source.name": script, **(tags or {})})
        client.log_batch(run.info.run_id, params=[mlflow_param(name, value) for name, value in params.items()])
    return run.info.run_id, experiment_id


def finish_derived_run(client: MlflowClient, run_id: str, folder: Path, metrics: dict[str, float]) -> None:
    """Upload the folder's files as the run's artifacts, log its headline metrics and mark it FINISHED."""
    with store_errors(f"logging the results to run {run_id}"):
        client.log_artifacts(run_id, str(folder))
        client.log_batch(run_id, metrics=[Metric(name, value, _now_ms(), 0) for name, value in metrics.items()])
        client.set_terminated(run_id, "FINISHED")


class RunLogger:
    """Writes one MLflow run from a background thread, in submission order.

    The first failure stops further writes and is raised, as a GanlabError, by the next call from the
    training thread, so a store that goes away ends training with one clear line.
    """

    def __init__(self, client: MlflowClient, run_id: str, skip_steps_through: int = 0,
                 skip_epochs_through: int = 0):
        self.client = client
        self.run_id = run_id
        self.skip_steps_through = skip_steps_through  # steps already in the store (a resumed run replays them)
        self.skip_epochs_through = skip_epochs_through
        self.latest_step_values: dict[str, float] = {}  # for the progress bar; written by the worker
        self._tasks: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._error: BaseException | None = None
        # Its own session: Ctrl-C reaches training, which flushes through it; it ends when its stdin closes,
        # also when training is killed.
        self._metric_writer = subprocess.Popen(
            [sys.executable, "-m", "ganlab.metric_writer", client.tracking_uri, run_id],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
            start_new_session=True)
        self._worker = threading.Thread(target=self._work, name="mlflow-writer", daemon=True)
        self._worker.start()
        self.submit(self._await_metric_writer)  # so wait() also covers its start-up (imports: a CPU second)

    # Submitting work (training thread).

    def submit(self, task: Callable[[], None]) -> None:
        """Queue one write; raise the first failure of an earlier one."""
        self._raise_pending_error()
        self._tasks.put(task)

    def log_step_values(self, first_step: int, step_values: torch.Tensor) -> None:
        """Rows of (loss_g, loss_d, d_real, d_fake) for consecutive steps; the tensor may live on the GPU."""
        self.submit(lambda: self._write_step_values(first_step, step_values))

    def log_epoch(self, epoch: int, metrics: dict[str, torch.Tensor | float], sample_grid: np.ndarray) -> None:
        """An epoch's sample grid (artifact and step-slider image), then its metrics, unless already logged."""
        if epoch <= self.skip_epochs_through:
            return
        self.submit(lambda: self.client.log_image(self.run_id, sample_grid,
                                                  artifact_file=f"samples/epoch_{epoch:03d}.png"))
        self.submit(lambda: self.client.log_image(self.run_id, sample_grid, key="samples", step=epoch))
        # The metrics go last: their presence in the store tells a resumed run the whole epoch was logged.
        self.submit(lambda: self.client.log_batch(self.run_id, metrics=[
            Metric(name, float(value), _now_ms(), epoch) for name, value in metrics.items()]))

    def log_params(self, params: dict[str, object]) -> None:
        self.submit(lambda: self.client.log_batch(self.run_id, params=[
            mlflow_param(name, value) for name, value in params.items()]))

    def set_tags(self, tags: dict[str, str]) -> None:
        self.submit(lambda: self.client.log_batch(self.run_id, tags=[RunTag(name, value) for name, value in tags.items()]))

    def log_text(self, text: str, artifact_file: str) -> None:
        self.submit(lambda: self.client.log_text(self.run_id, text, artifact_file))

    def log_figure(self, figure, artifact_file: str) -> None:
        self.submit(lambda: self.client.log_figure(self.run_id, figure, artifact_file))

    def log_artifact(self, local_path: Path, artifact_path: str) -> None:
        self.submit(lambda: self.client.log_artifact(self.run_id, str(local_path), artifact_path))

    def wait(self) -> None:
        """Block until every queued write is in the store."""
        self._tasks.join()
        self._raise_pending_error()

    def close(self, status: str) -> None:
        """Finish the queued writes, then mark the run FINISHED, KILLED or FAILED."""
        try:
            self.wait()
        finally:
            self._tasks.put(None)
            self._worker.join(timeout=60)
            with contextlib.suppress(OSError):  # already gone: its error, if any, was raised above
                self._metric_writer.stdin.close()
            self._metric_writer.wait(timeout=60)
            with store_errors(f"marking run {self.run_id} {status}"):
                self.client.set_terminated(self.run_id, status=status)

    # The worker thread.

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            try:
                if task is None:
                    return
                if self._error is None:
                    task()
            except BaseException as error:  # noqa: BLE001 - handed to the training thread, not swallowed
                self._error = error
            finally:
                self._tasks.task_done()

    def _await_metric_writer(self) -> None:
        reply = self._metric_writer.stdout.readline().strip()
        if reply != "ready":
            raise GanlabError(f"the metric writer process did not start (exit {self._metric_writer.wait()})")

    def _write_step_values(self, first_step: int, step_values: torch.Tensor) -> None:
        rows = step_values.cpu().tolist()  # waits for the device here, on this thread only
        already_logged = max(0, min(len(rows), self.skip_steps_through - first_step + 1))
        if len(rows) > already_logged:
            self._metric_writer.stdin.write(json.dumps({"first_step": first_step + already_logged,
                                                        "rows": rows[already_logged:]}) + "\n")
            self._metric_writer.stdin.flush()
            reply = self._metric_writer.stdout.readline().strip()  # an I/O wait: the GIL is free meanwhile
            if reply != "ok":
                raise GanlabError(reply.removeprefix("error: ") if reply else
                                  f"the metric writer process ended (exit {self._metric_writer.poll()})")
        if rows:
            self.latest_step_values = dict(zip(STEP_METRIC_NAMES, rows[-1]))

    def _raise_pending_error(self) -> None:
        if self._error is not None:
            raise GanlabError(f"writing to the tracking store failed: {_first_line(self._error)}") from self._error


class NullRunLogger:
    """RunLogger's interface, writing nothing: for the ranks other than 0 of a torchrun job and for the
    untracked runs a benchmark compares against."""

    latest_step_values: dict[str, float] = {}

    def log_step_values(self, first_step: int, step_values: torch.Tensor) -> None: ...
    def log_epoch(self, epoch: int, metrics: dict, sample_grid: np.ndarray) -> None: ...
    def log_params(self, params: dict[str, object]) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_text(self, text: str, artifact_file: str) -> None: ...
    def log_figure(self, figure, artifact_file: str) -> None: ...
    def log_artifact(self, local_path: Path, artifact_path: str) -> None: ...
    def wait(self) -> None: ...
    def close(self, status: str) -> None: ...


def publish_checkpoint(run_logger: RunLogger, checkpoint_dir: Path, artifact_dir: Path | None) -> None:
    """Make a checkpoint written to a staging folder visible in a remote artifact store (slot, then manifest)."""
    if artifact_dir is not None:
        return  # written in place already
    for path in checkpoint.checkpoint_files(checkpoint_dir):
        run_logger.log_artifact(path, "checkpoint")


def fetch_checkpoint_dir(client: MlflowClient, run_id: str, download_root: Path) -> Path:
    """A local folder holding the run's checkpoint: its own artifact folder, or a fresh download."""
    artifact_dir = local_artifact_dir(client, run_id)
    if artifact_dir is not None:
        return artifact_dir / "checkpoint"
    try:
        return Path(client.download_artifacts(run_id, "checkpoint", str(download_root)))
    except MlflowException as error:
        raise GanlabError(f"run {run_id} has no checkpoint to resume from") from error


def artifact_bytes(client: MlflowClient, run_id: str, path: str) -> bytes | None:
    """The content of one artifact file, or None when the run does not have it."""
    with tempfile.TemporaryDirectory() as download_dir:
        try:
            return Path(client.download_artifacts(run_id, path, download_dir)).read_bytes()
        except (MlflowException, OSError):
            return None


def is_unfinished(status: str) -> bool:
    """Whether a run can be resumed: everything but FINISHED."""
    return status != RunStatus.to_string(RunStatus.FINISHED)


def mlflow_param(name: str, value: object) -> Param:
    """An MLflow param from any value (None is logged as "None")."""
    return Param(name, "None" if value is None else str(value))


def _sqlite_path(tracking_uri: str) -> Path:
    return Path(tracking_uri[len("sqlite:///"):])


def _now_ms() -> int:
    return int(time.time() * 1000)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
