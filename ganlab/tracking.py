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
from safetensors.torch import load_file, save_file
from torch import nn

from ganlab import checkpoint
from ganlab import health
from ganlab.errors import GanlabError, TrainingFailed, TrainingInterrupted, first_line
from ganlab.metric_writer import STEP_METRIC_NAMES
from ganlab.models import build_generator

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"  # relative to the working directory
UI_ADDRESS = "http://127.0.0.1:5000"  # where `make ui` serves the MLflow UI
HEARTBEAT_TAG = "ganlab.heartbeat"  # unix seconds, refreshed by the process writing the run
HEARTBEAT_EVERY_SECONDS = 30
DEFAULT_STALE_AFTER_SECONDS = 600  # a RUNNING run silent this long is lost ($GANLAB_STALE_AFTER_S)
ENDING_TAGS = ("ganlab.error", "ganlab.failure", "ganlab.failure_step", "ganlab.stop_reason", "ganlab.stopped_early")

logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
# The store's own traceback would break the one-line-error rule: ganlab reports every store error itself.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
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
        raise GanlabError(f"tracking store {tracking_uri} is not usable: {first_line(error)}") from error
    return client


@contextlib.contextmanager
def store_errors(doing: str):
    """Turn the store's own exceptions into one GanlabError line that says what ganlab was doing."""
    try:
        yield
    except MlflowException as error:
        raise GanlabError(f"tracking store failed while {doing}: {first_line(error)}") from error


def run_exists(client: MlflowClient, run_id: str) -> bool:
    """Whether this store holds the run: a study begun on another machine names a parent run this store never had."""
    with store_errors(f"looking for run {run_id}"):
        try:
            client.get_run(run_id)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return False
    return True


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    """The experiment's id; new experiments open in the UI's model-training view."""
    with store_errors(f"opening experiment {name!r}"):
        return _get_or_create_experiment(client, name)


def derived_experiment(client: MlflowClient, name: str | None, source_run) -> str:
    """Where an analysis of a run logs: the experiment named by --experiment (created if new), else the run's own."""
    return get_or_create_experiment(client, name) if name else source_run.info.experiment_id


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
    try:
        return client.create_experiment(name, artifact_location=artifact_location,
                                        tags={"mlflow.experimentKind": "custom_model_development"})
    except MlflowException:
        # Workers started together (tuning workers sharing a store) look the name up at the same instant and
        # both create it; the one that loses takes the one that won.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def git_commit() -> str | None:
    """The commit of the ganlab checkout, when it is one."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def run_url(experiment_id: str, run_id: str, tracking_uri: str | None = None) -> str:
    """The run in the MLflow UI's model-training view (MLflow 3 opens the GenAI view otherwise): on the tracking
    server itself when the store is one, else where `make ui` serves the local store."""
    ui_address = tracking_uri.rstrip("/") if is_server(tracking_uri) else UI_ADDRESS
    return f"{ui_address}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def ui_hint(experiment_id: str, run_id: str, tracking_uri: str | None) -> str:
    """How to open a run, for a script's summary: the server's own page, or `make ui` for a local store."""
    url = run_url(experiment_id, run_id, tracking_uri)
    return f"MLflow UI: {url}" if is_server(tracking_uri) else f"MLflow UI: `make ui`, then {url}"


def closing_lines(headline: str, experiment_id: str, run_id: str, tracking_uri: str | None,
                  out: Path | None = None, details: tuple[str, ...] = ()) -> str:
    """A script's last lines: its headline (which names the run), details, the --out folder and how to open the UI."""
    return "\n".join([headline, *(f"  {detail}" for detail in details),
                      *([f"  files: {out}"] if out else []), f"  {ui_hint(experiment_id, run_id, tracking_uri)}"])


def is_server(tracking_uri: str | None) -> bool:
    """Whether the store is a tracking server (http or https) rather than a local database or folder."""
    return bool(tracking_uri) and urlparse(tracking_uri).scheme in ("http", "https")


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
            generator = build_generator(config["arch"], config["latent_dim"])
            generator.load_state_dict(weights)
        except Exception as error:  # MLflow, the file system, JSON, safetensors and torch each raise their own types
            raise GanlabError(f"run {run_id} has no readable generator (model/config.json and "
                              f"model/generator.safetensors); if it was interrupted, finish it with "
                              f"`python experiments/train.py --resume {run_id}`") from error
    return generator.to(device).eval()


def log_evaluation(client: MlflowClient, run_id: str, evaluation, step: int,
                   artifact_file: str = "eval/evaluate.json") -> None:
    """An evaluation's metrics at `step`, its protocol as tags, and all of it as `artifact_file`."""
    with store_errors(f"logging the evaluation to run {run_id}"):
        client.log_batch(run_id, metrics=[Metric(name, value, _now_ms(), step) for name, value in evaluation.metrics.items()],
                         tags=[RunTag(name, value) for name, value in evaluation.protocol.items()])
        client.log_text(run_id, json.dumps(dataclasses.asdict(evaluation), indent=2), artifact_file)


@dataclasses.dataclass
class DerivedRun:
    """A run of results read from other runs, while its block runs: where to write its files, its headline metrics."""

    run_id: str
    experiment_id: str
    folder: Path  # everything written here becomes the run's artifacts
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)


def source_tags(source_run) -> dict[str, str]:
    """Tags that trace an analysis back to the run it studies (the UI filters on them)."""
    return {"ganlab.source_run_id": source_run.info.run_id, "ganlab.arch": source_run.data.tags.get("ganlab.arch", "")}


@contextlib.contextmanager
def derived_run(client: MlflowClient, experiment_id: str, kind: str, script: str, params: dict[str, object], *,
                run_name: str, tags: dict[str, str] | None = None, out: Path | None = None):
    """An analysis, comparison or replay as one run (through `run_lifecycle`): tagged `ganlab.kind`, its params
    logged, and a folder (`out`, else a temporary one) whose files are logged as its artifacts, with the headline
    `metrics` the block set, when the block ends well; FAILED when it does not."""
    with run_lifecycle(client, experiment_id, run_name=run_name, tags={
            "ganlab.kind": kind, "mlflow.source.name": script, **(tags or {})}) as run, \
            tempfile.TemporaryDirectory() as scratch:
        with store_errors("logging the analysis run's params"):
            client.log_batch(run.info.run_id, params=[mlflow_param(name, value) for name, value in params.items()])
        result = DerivedRun(run.info.run_id, experiment_id, out or Path(scratch))
        result.folder.mkdir(parents=True, exist_ok=True)
        yield result
        with store_errors(f"logging the results to run {run.info.run_id}"):
            client.log_artifacts(run.info.run_id, str(result.folder))
            client.log_batch(run.info.run_id, metrics=[Metric(name, value, _now_ms(), 0)
                                                       for name, value in result.metrics.items()])


class StoppedEarly(Exception):
    """Raised inside `run_lifecycle` to end the run KILLED on purpose (a pruned trial), with the reason as a tag."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@contextlib.contextmanager
def run_lifecycle(client: MlflowClient, experiment_id: str | None = None, *, run_name: str | None = None,
                  tags: dict[str, str] | None = None, reopen_run_id: str | None = None):
    """Create a run (or reopen `reopen_run_id`) and end it by how the block ends, for every kind of run.

    Normal exit → FINISHED. An interrupt (Ctrl-C, SIGTERM) or a `StoppedEarly` → KILLED, with tag
    `ganlab.stopped_early` for the latter. Any other exception → FAILED with the error's first line as tag
    `ganlab.error` (and `ganlab.failure`, `ganlab.failure_step` when training stopped learning). Yields the run.
    """
    with store_errors("opening the run"):
        if reopen_run_id is None:
            run = client.create_run(experiment_id, run_name=run_name,
                                    tags={**(tags or {}), HEARTBEAT_TAG: str(int(time.time()))})
        else:
            client.update_run(reopen_run_id, status="RUNNING")
            client.set_tag(reopen_run_id, HEARTBEAT_TAG, str(int(time.time())))
            earlier_tags = client.get_run(reopen_run_id).data.tags
            for tag in ENDING_TAGS:  # why it ended before: no longer true once it runs again
                if tag in earlier_tags:
                    client.delete_tag(reopen_run_id, tag)
            run = client.get_run(reopen_run_id)
    run_id = run.info.run_id
    try:
        yield run
    except StoppedEarly as stop:
        _end_run(client, run_id, "KILLED", {"ganlab.stopped_early": stop.reason})
        raise
    except (KeyboardInterrupt, TrainingInterrupted):
        _end_run(client, run_id, "KILLED", {})
        raise
    except BaseException as error:
        failure_tags = {"ganlab.error": first_line(error)}
        if isinstance(error, TrainingFailed):
            failure_tags.update({"ganlab.failure": error.kind, "ganlab.failure_step": str(error.step)})
        _end_run(client, run_id, "FAILED", failure_tags)
        raise
    _end_run(client, run_id, "FINISHED", {}, strict=True)


def _end_run(client: MlflowClient, run_id: str, status: str, tags: dict[str, str], strict: bool = False) -> None:
    """Tag and end a run; on the way out of an error the store's own failure must not hide that error."""
    try:
        with store_errors(f"marking run {run_id} {status}"):
            if tags:
                client.log_batch(run_id, tags=[RunTag(name, value) for name, value in tags.items()])
            client.set_terminated(run_id, status=status)
    except GanlabError:
        if strict:
            raise


def stale_after_seconds() -> float:
    """How long a RUNNING run may go without a heartbeat before it counts as lost."""
    value = os.environ.get("GANLAB_STALE_AFTER_S", str(DEFAULT_STALE_AFTER_SECONDS))
    try:
        return float(value)
    except ValueError as error:
        raise GanlabError(f"GANLAB_STALE_AFTER_S must be a number of seconds, got {value!r}") from error


def close_lost_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED (tag `ganlab.stop_reason=lost`) every RUNNING run of the experiment whose process stopped
    refreshing its heartbeat (SIGKILL, a lost machine), so the UI does not fill with ghosts; `--resume` still
    continues them. Returns their ids."""
    now, stale_after = time.time(), stale_after_seconds()
    lost = []
    with store_errors("looking for lost runs"):
        for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
            last_sign_of_life = _heartbeat_seconds(run)
            if now - last_sign_of_life > stale_after:
                client.set_tag(run.info.run_id, "ganlab.stop_reason", "lost")
                client.set_terminated(run.info.run_id, "KILLED")
                lost.append(run.info.run_id)
    return lost


@contextlib.contextmanager
def heartbeat(client: MlflowClient, run_id: str, every_seconds: float = HEARTBEAT_EVERY_SECONDS):
    """Refresh a run's heartbeat from a thread for the block: for runs that last while other runs do the work (a
    study's parent run while its trials train)."""
    stopped = threading.Event()

    def beat() -> None:
        while not stopped.wait(every_seconds):
            with contextlib.suppress(MlflowException, OSError):  # a missed beat is retried; the store may blink
                client.set_tag(run_id, HEARTBEAT_TAG, str(int(time.time())))

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        thread.join(timeout=10)


def status_in_words(run) -> str:
    """A run's status with why it ended there: `KILLED (lost)`, `FAILED (saturated at step 101)`, `FINISHED`, …"""
    tags = run.data.tags
    if tags.get("ganlab.failure"):
        return f"{run.info.status} ({tags['ganlab.failure']} at step {tags.get('ganlab.failure_step', '?')})"
    reason = ("lost" if tags.get("ganlab.stop_reason") == "lost" and run.info.status == "KILLED"
              else "stopped early" if tags.get("ganlab.stopped_early") else "")
    return f"{run.info.status} ({reason})" if reason else run.info.status


def _heartbeat_seconds(run) -> float:
    """When the run's process last said it was alive (its start for runs without a heartbeat tag)."""
    try:
        return float(run.data.tags[HEARTBEAT_TAG])
    except (KeyError, ValueError):
        return run.info.start_time / 1000


class RunLogger:
    """Writes one MLflow run from a background thread, in submission order; a context manager.

    The first failure stops further writes and is raised, as a GanlabError, by the next call from the
    training thread, so a store that goes away ends training with one clear line. Each block of step values is
    also checked for health (`ganlab.health`) on that thread, where the values are host numbers already, and the
    run's heartbeat is refreshed as they are written: a training that hangs stops refreshing it.
    """

    def __init__(self, client: MlflowClient, run_id: str, skip_steps_through: int = 0,
                 skip_epochs_through: int = 0):
        self.client = client
        self.run_id = run_id
        self.skip_steps_through = skip_steps_through  # steps already in the store (a resumed run replays them)
        self.skip_epochs_through = skip_epochs_through
        self.latest_step_values: dict[str, float] = {}  # for the progress bar; written by the worker
        self.health_monitor = health.HealthMonitor()  # fed by the worker; read by the training thread
        self._last_heartbeat = time.monotonic()
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

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        """Finish the queued writes (their failure is raised unless another error is already on its way out)."""
        try:
            if error_type is None:
                self.wait()
            else:
                self._tasks.join()
        finally:
            self._tasks.put(None)
            self._worker.join(timeout=60)
            with contextlib.suppress(OSError):  # already gone: its error, if any, was raised above
                self._metric_writer.stdin.close()
            self._metric_writer.wait(timeout=60)

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

    def log_tensors(self, tensors: dict[str, torch.Tensor], artifact_file: str) -> None:
        """Tensors (CPU, not changed after this call) as one safetensors artifact, staged in a folder that is
        removed once the file is in the store."""
        def write() -> None:
            artifact_path, file_name = artifact_file.rpartition("/")[::2]
            with tempfile.TemporaryDirectory(prefix="ganlab-tensors-") as staging_dir:
                save_file(tensors, str(Path(staging_dir) / file_name))
                self.client.log_artifact(self.run_id, str(Path(staging_dir) / file_name), artifact_path or None)
        self.submit(write)

    def wait(self) -> None:
        """Block until every queued write is in the store."""
        self._tasks.join()
        self._raise_pending_error()

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
        self.health_monitor.check(first_step, rows)
        if self.health_monitor.failure is not None:  # from there on the values are not training but its wreck:
            rows = rows[:max(0, self.health_monitor.failure.step - first_step)]  # a resume logs those steps anew
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
        if time.monotonic() - self._last_heartbeat > HEARTBEAT_EVERY_SECONDS:
            self._last_heartbeat = time.monotonic()
            self.client.set_tag(self.run_id, HEARTBEAT_TAG, str(int(time.time())))

    def _raise_pending_error(self) -> None:
        if self._error is not None:
            raise GanlabError(f"writing to the tracking store failed: {first_line(self._error)}") from self._error


class NullRunLogger:
    """RunLogger's interface, writing nothing: for the ranks other than 0 of a torchrun job and for the
    untracked runs a benchmark compares against."""

    latest_step_values: dict[str, float] = {}
    health_monitor = health.HealthMonitor()  # never fed: no values reach the host, so nothing is checked

    def __enter__(self) -> "NullRunLogger":
        return self

    def __exit__(self, *exception_info) -> None: ...
    def log_step_values(self, first_step: int, step_values: torch.Tensor) -> None: ...
    def log_epoch(self, epoch: int, metrics: dict, sample_grid: np.ndarray) -> None: ...
    def log_params(self, params: dict[str, object]) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_text(self, text: str, artifact_file: str) -> None: ...
    def log_figure(self, figure, artifact_file: str) -> None: ...
    def log_artifact(self, local_path: Path, artifact_path: str) -> None: ...
    def log_tensors(self, tensors: dict[str, torch.Tensor], artifact_file: str) -> None: ...
    def wait(self) -> None: ...


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
