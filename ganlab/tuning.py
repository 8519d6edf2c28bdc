"""Optuna studies that balance a GAN: the search space, the objective, and the MLflow runs of a study.

One parent MLflow run per study (its space, sampler, pruner, plots, a CSV of all trials, the best params) and one
nested child run per trial (a full ganlab training run with `mlflow.parentRunId`, its trial number and state), so
the MLflow UI compares trials directly. The study lives in Optuna's RDB storage: SQLite by default, PostgreSQL to
share one study between workers on many machines. Rerunning with the same study name resumes it.
"""

import collections
import contextlib
import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # Optuna's matplotlib plots use pyplot; no screen here

import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Run, RunTag  # noqa: E402
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from ganlab import devices, model_registry, tracking  # noqa: E402
from ganlab.cli import DATA_DIR_HELP, TRACKING_URI_HELP, config_flags, option  # noqa: E402
from ganlab.errors import GanlabError, TrainingFailed, first_line  # noqa: E402
from ganlab.train import RESUMABLE_OVERRIDES, TrainConfig, train  # noqa: E402

DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"
COLLAPSE_LOSS_D = 0.05  # an epoch whose mean D loss is below this counts as D having won outright

# The search space, declared once: (kind, low, high). Logged to the parent run as search_space.json.
SEARCH_SPACE = {
    "lr_g": ("log_float", 1e-5, 1e-3),
    "lr_d": ("log_float", 1e-5, 1e-3),
    "beta1": ("float", 0.0, 0.9),
    "beta2": ("float", 0.9, 0.9999),
}
# Known remedies for a winning D, searched with --remedies (a two-time-scale lr_d ≠ lr_g is already in the space).
REMEDY_SPACE = {
    "label_smoothing": ("float", 0.0, 0.3),
    "instance_noise": ("float", 0.0, 0.3),
    "d_update_every": ("int", 1, 3),
}
# How a trial that ended without its worker is shown in MLflow.
MLFLOW_STATUS_OF_TRIAL_STATE = {TrialState.FAIL: "FAILED", TrialState.PRUNED: "KILLED",
                                TrialState.COMPLETE: "FINISHED"}
PRUNERS = ("median", "hyperband", "patient", "none")
OBJECTIVES = ("fid", "balance", "both")
OBJECTIVE_NAMES = {"fid": "FID", "balance": "imbalance"}  # what a single objective's value is, in plots and tables
# The reports' settings: enqueued as a study's first trial, so the baseline is measured inside the study.
REPORT_SETTINGS = {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999,
                   "label_smoothing": 0.0, "instance_noise": 0.0, "d_update_every": 1}
TRAINING_IMAGES = 60_000  # Fashion-MNIST's training set, for turning a step budget into epochs
TUNE_SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "tune.py"  # what --jobs starts again


@dataclass
class TuneConfig:
    """Every setting of a study; the command line of experiments/tune.py is derived from it."""

    arch: str = option("cnn", "the architecture to tune")
    trials: int = option(20, "finished (complete or pruned) trials the study should reach, over all workers")
    epochs_per_trial: int = option(3, "epochs each trial trains")
    steps_per_trial: int | None = option(None, "train each trial this many steps instead (a budget that stays "
                                         "comparable across subsets); per-epoch reports still drive pruning (default: use --epochs-per-trial)")
    enqueue_reports: bool = option(True, "make the reports' settings (lr 2e-4, betas 0.5/0.999, no remedies) "
                                   "the study's first trial, so the baseline is part of it")
    study_name: str | None = option(None, "Optuna study name (default: ARCH-OBJECTIVE); reusing a name resumes it")
    storage: str = option(DEFAULT_STORAGE, "Optuna storage URL: sqlite:///… or postgresql://user@host/db")
    objective: str = option("fid", "fid (minimize final FID), balance (minimize the D imbalance) or both (Pareto)",
                            choices=OBJECTIVES)
    pruner: str = option("patient", "stop hopeless trials early (single objective only; patient: chosen by the "
                         "replay in docs/tuning.md)", choices=PRUNERS)
    remedies: bool = option(False, "also search label smoothing, instance noise and the D update interval")
    seed: int = option(0, "seed of the sampler and of every trial's training")
    worker: int = option(0, "this worker's index: offsets the sampler seed; worker 0 also confirms the best")
    jobs: int = option(1, "trials at once on this machine, sharing its device: N-1 more workers start as "
                       "subprocesses (the next worker indices) and finish before this one sums up")
    confirm_seeds: int = option(3, "train the best params with this many seeds (incl. the trial's) and report mean ± std")
    eval_samples: int = option(10_000, "samples per FID evaluation (every epoch of a trial)")
    max_steps: int | None = option(None, "cap each trial's steps, for smoke studies (default: no cap)")
    train_images: int | None = option(None, "train trials on the first N images only, for smoke studies (default: all)")
    results_dir: str | None = option(None, "also write the study's trials, best params, settings, wall time and "
                                     "plots into this folder, e.g. results/cnn-balance/STUDY (default: only to the MLflow run)")
    retrain_best: bool = option(False, "after the study, train the best params for --epochs as a full run")
    epochs: int = option(20, "epochs of the --retrain-best run")
    register_model: str | None = option(None, "register the --retrain-best run's G under this MLflow model name; "
                                        "`champion` moves to it if its FID is the lowest (docs/models.md)")
    device: str = option("auto", "cpu, cuda, cuda:N, mps or auto")
    precision: str = option("auto", "bf16 autocast or fp32 for every trial; auto: bf16 where the hardware has "
                            "native bf16, else fp32", choices=["auto", "fp32", "bf16"])
    data_dir: str | None = option(None, DATA_DIR_HELP)
    experiment: str = option("fashion-mnist-gan", "MLflow experiment of the parent and trial runs")
    tracking_uri: str | None = option(None, TRACKING_URI_HELP)

    @property
    def name(self) -> str:
        return self.study_name or f"{self.arch}-{self.objective}"

    def space(self) -> dict[str, tuple]:
        return {**SEARCH_SPACE, **(REMEDY_SPACE if self.remedies else {})}

    def validate(self) -> None:
        for name in ("trials", "epochs_per_trial", "confirm_seeds", "epochs", "eval_samples", "steps_per_trial",
                     "jobs"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise GanlabError(f"--{name.replace('_', '-')} must be positive, got {value}")
        self.trial_config({name: low for name, (_, low, _) in self.space().items()}, self.seed).validate()
        model_registry.check_model_name(self.register_model)
        if self.register_model and not self.retrain_best:
            raise GanlabError("--register-model registers the --retrain-best run; add --retrain-best")

    def trial_config(self, point: dict, seed: int, run_name: str | None = None) -> TrainConfig:
        """The training settings of one trial: the point in the space, every epoch evaluated."""
        epochs, max_steps = self.epochs_per_trial, self.max_steps
        if self.steps_per_trial is not None:
            steps_per_epoch = (self.train_images or TRAINING_IMAGES) // TrainConfig.batch_size
            epochs = max(1, math.ceil(self.steps_per_trial / max(steps_per_epoch, 1)))
            max_steps = min(self.steps_per_trial, self.max_steps or self.steps_per_trial)
        return TrainConfig(arch=self.arch, epochs=epochs, seed=seed, device=self.device, precision=self.precision,
                           eval_every=1, eval_samples=self.eval_samples, max_steps=max_steps,
                           train_images=self.train_images, data_dir=self.data_dir, experiment=self.experiment,
                           tracking_uri=self.tracking_uri, run_name=run_name, **point)

    @property
    def trial_epochs(self) -> int:
        """Epochs one trial trains (its last is never pruned)."""
        return self.trial_config(self.reports_point(), self.seed).epochs

    def reports_point(self) -> dict[str, float | int]:
        """The reports' settings as a point of this study's space."""
        return {name: REPORT_SETTINGS[name] for name in self.space()}

    @property
    def metric_names(self) -> list[str]:
        """The study's objective(s) by name, as Optuna's plots and the parent run show them."""
        return ["FID", "imbalance"] if self.objective == "both" else [OBJECTIVE_NAMES[self.objective]]


@dataclass
class TuneResult:
    study_name: str
    parent_run_id: str
    experiment_id: str
    finished_trials: int
    best: list[dict]  # one entry per best trial (the Pareto front for `both`)
    confirmation: dict | None
    retrained_run_id: str | None
    registration: model_registry.Registration | None = None  # of the retrained run, with --register-model


def suggest(trial: optuna.Trial, space: dict[str, tuple]) -> dict[str, float | int]:
    """One point of the space."""
    point = {}
    for name, (kind, low, high) in space.items():
        if kind == "int":
            point[name] = trial.suggest_int(name, low, high)
        else:
            point[name] = trial.suggest_float(name, low, high, log=kind == "log_float")
    return point


def imbalance(epoch_metrics: dict[str, float]) -> float:
    """How far D is from losing its edge: mean D(x) − mean D(G(z)), plus 1 if D's loss collapsed below 0.05."""
    collapsed = epoch_metrics["epoch_loss_d"] < COLLAPSE_LOSS_D
    return epoch_metrics["epoch_d_gap"] + (1.0 if collapsed else 0.0)


def run_study(config: TuneConfig, show_progress: bool = True,
              pruner: optuna.pruners.BasePruner | None = None) -> TuneResult:
    """Run (or resume, or join) the study until it has `config.trials` finished trials; then summarize it."""
    config.validate()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # ganlab prints its own summary
    client = tracking.connect(tracking.resolve_tracking_uri(config.tracking_uri))
    experiment_id = tracking.get_or_create_experiment(client, config.experiment)
    tracking.close_lost_runs(client, experiment_id)
    storage = open_storage(config.storage)
    directions = ["minimize", "minimize"] if config.objective == "both" else ["minimize"]
    sampler = optuna.samplers.TPESampler(seed=sampler_seed(config, trials_before=0))
    pruner = pruner or make_pruner(config)
    study, created = _create_or_load_study(storage, config, directions, sampler, pruner)
    if not created:
        # A sampler seeded as when the study began would propose its first points again (TPE's random start-up
        # trials come from that seed): a resumed or joined study seeds it past the trials it already holds.
        study.sampler = sampler = optuna.samplers.TPESampler(seed=sampler_seed(config, len(study.trials)))
    # The study's one parent run: created by the worker that created the study, reopened by every other.
    existing_parent = None if created else _wait_for(lambda: study.user_attrs.get("mlflow_parent_run_id"),
                                                     what="the study's parent run")
    # A study begun on another machine (its storage committed, its MLflow store left there) goes on here under a
    # new parent run in this store, which the study then remembers; the trials' numbers are all in the storage.
    earlier_parent = existing_parent if existing_parent and not tracking.run_exists(client, existing_parent) else None
    tags = {"ganlab.kind": "tune", "ganlab.arch": config.arch, "optuna.study_name": config.name,
            "mlflow.source.name": "experiments/tune.py"}
    if earlier_parent:
        tags["ganlab.earlier_parent_run"] = earlier_parent  # in the store of the machine the study began on
    with tracking.run_lifecycle(client, experiment_id, run_name=f"study-{config.name}", tags=tags,
                                reopen_run_id=None if earlier_parent else existing_parent) as parent_run, \
            tracking.heartbeat(client, parent_run.info.run_id):
        parent_run_id = parent_run.info.run_id
        if created or earlier_parent:
            _describe_parent_run(client, parent_run_id, study, config, sampler, pruner)
        close_dead_trial_runs(client, experiment_id, study, parent_run_id)

        def objective(trial: optuna.Trial):
            return _train_trial(trial, config, client, parent_run_id, show_progress)

        finished_states = (TrialState.COMPLETE, TrialState.PRUNED)
        remaining = config.trials - len(study.get_trials(deepcopy=False, states=finished_states))
        if remaining > 0:
            with helper_workers(config):
                study.optimize(objective, n_trials=remaining, catch=(FloatingPointError,),
                               callbacks=[optuna.study.MaxTrialsCallback(config.trials, states=finished_states)])

        best = _best_trials(study)
        close_dead_trial_runs(client, experiment_id, study, parent_run_id)
        confirmation = _confirm_best(study, config, client, experiment_id, parent_run_id, show_progress) \
            if best and config.worker == 0 and config.objective != "both" and config.confirm_seeds > 1 else None
        _log_study_artifacts(client, parent_run_id, study, config, best, confirmation)
        retrained = _retrain_best(best[0], config, client, experiment_id, show_progress) \
            if best and config.retrain_best else None
        # A reused retrain (a rerun of the command) is registered too; an existing version of it is kept.
        registration = model_registry.register_generator(client, retrained, config.register_model) \
            if retrained and config.register_model else None
        finished = len(study.get_trials(deepcopy=False, states=finished_states))
    return TuneResult(config.name, parent_run_id, experiment_id, finished, best, confirmation, retrained,
                      registration)


@contextlib.contextmanager
def helper_workers(config: TuneConfig) -> Iterator[None]:
    """--jobs N: N-1 more workers of the same study as subprocesses for the block, waited for at its end (their
    trials count in the summary); stopped with SIGTERM if the block fails. Only this worker confirms, retrains and
    writes --results-dir."""
    helpers = []
    for index in range(1, config.jobs):
        helper = dataclasses.replace(config, worker=config.worker + index, jobs=1, retrain_best=False,
                                     register_model=None, results_dir=None)
        helpers.append(subprocess.Popen([sys.executable, str(TUNE_SCRIPT), *config_flags(helper), "--no-progress"],
                                        stdout=subprocess.DEVNULL))
    try:
        yield
    except BaseException:
        for helper in helpers:
            helper.terminate()  # SIGTERM: a helper's running trial is marked failed and its run KILLED
        for helper in helpers:
            helper.wait()
        raise
    exit_codes = {index: helper.wait() for index, helper in enumerate(helpers, start=config.worker + 1)}
    failed = [f"worker {index} (exit {code})" for index, code in exit_codes.items() if code != 0]
    if failed:
        raise GanlabError(f"{', '.join(failed)} of study {config.name!r} failed; its error is above. The study keeps "
                          f"every finished trial: rerun the same command to go on")


def sampler_seed(config: TuneConfig, trials_before: int) -> int:
    """The sampler's seed for a worker that finds `trials_before` trials in the study: each worker and each resume
    draws its own proposals, and the same sequence of runs draws the same ones again."""
    return config.seed + 1000 * config.worker + trials_before


def open_storage(url: str, attempts: int = 3) -> RDBStorage:
    """Optuna's RDB storage with heartbeats, so a trial whose worker died is marked failed and retried once (after
    3 missed beats of $GANLAB_OPTUNA_HEARTBEAT_S, default 60 s).

    Workers that start together on a new database race to create Optuna's tables; the loser's error goes away on a
    second try, so opening is retried before it is reported.
    """
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        heartbeat_seconds = int(os.environ.get("GANLAB_OPTUNA_HEARTBEAT_S", "60"))  # shorter in the fault tests
    except ValueError as error:
        raise GanlabError("GANLAB_OPTUNA_HEARTBEAT_S must be a whole number of seconds") from error
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, heartbeat_interval=heartbeat_seconds, grace_period=3 * heartbeat_seconds,
                                  heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
        except Exception as error:  # SQLAlchemy raises many types: bad URL, missing driver, refused connection
            if attempt + 1 < attempts and "import" not in str(error).lower():
                time.sleep(1 + attempt)
                continue
            raise GanlabError(f"cannot open Optuna storage {url!r}: {first_line(error)}") from error
    raise AssertionError("unreachable")


def make_pruner(config: TuneConfig) -> optuna.pruners.BasePruner:
    """Pruners compare a trial's per-epoch FID with earlier trials at the same epoch; none for `both`."""
    if config.objective == "both" or config.pruner == "none":
        return optuna.pruners.NopPruner()
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.trial_epochs)
    median = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if config.pruner == "patient":  # GAN curves are noisy: prune only if the last 2 epochs are both worse than before
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            return optuna.pruners.PatientPruner(median, patience=1)
    return median


def _create_or_load_study(storage, config, directions, sampler, pruner) -> tuple[optuna.Study, bool]:
    """The study and whether this worker created it; a resumed study must have been made for the same task, in the
    same number format (trials in fp32 and in bf16 are not one sample)."""
    precision = devices.resolve_precision(config.precision, devices.resolve_device(config.device))
    try:
        study = optuna.create_study(storage=storage, study_name=config.name, directions=directions,
                                    sampler=sampler, pruner=pruner)
        study.set_user_attr("ganlab", {"arch": config.arch, "objective": config.objective,
                                       "epochs_per_trial": config.epochs_per_trial,
                                       "steps_per_trial": config.steps_per_trial, "space": config.space(),
                                       "precision": precision})
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(config.metric_names)
        if config.enqueue_reports:
            study.enqueue_trial(config.reports_point(), user_attrs={"ganlab.baseline": "reports"})
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=config.name, storage=storage, sampler=sampler, pruner=pruner)
    described = _wait_for(lambda: study.user_attrs.get("ganlab"), what="the study's description")
    for key in ("arch", "objective", "epochs_per_trial", "steps_per_trial"):
        if described.get(key) != getattr(config, key):
            raise GanlabError(f"study {config.name!r} was started with --{key.replace('_', '-')} {described[key]}, "
                              f"not {getattr(config, key)}; pick another --study-name")
    if described.get("precision", precision) != precision:  # studies made before this was recorded: not checked
        raise GanlabError(f"study {config.name!r} trains its trials in {described['precision']}, this command would "
                          f"train in {precision}; pass --precision {described['precision']} or pick another "
                          f"--study-name")
    if described["space"] != json.loads(json.dumps(config.space())):
        raise GanlabError(f"study {config.name!r} searches another space (--remedies differs); pick another "
                          f"--study-name")
    return study, False


def _describe_parent_run(client: MlflowClient, run_id: str, study: optuna.Study, config: TuneConfig, sampler,
                         pruner) -> None:
    """The new parent run's params (settings, sampler, pruner, space); the study remembers the run for other workers."""
    params = {**{name: value for name, value in dataclasses.asdict(config).items()
                 if name not in ("worker", "tracking_uri")},
              "sampler": type(sampler).__name__, "pruner": type(pruner).__name__,
              "search_space": json.dumps(config.space())}
    with tracking.store_errors("describing the study's parent run"):
        client.log_batch(run_id, params=[tracking.mlflow_param(name, value) for name, value in params.items()])
        client.log_text(run_id, json.dumps(config.space(), indent=2), "search_space.json")
    study.set_user_attr("mlflow_parent_run_id", run_id)


def _wait_for(read, what: str, seconds: float = 60):
    """Another worker is creating the study right now: give it a moment."""
    deadline = time.monotonic() + seconds
    while (value := read()) is None:
        if time.monotonic() > deadline:
            raise GanlabError(f"the study exists but {what} never appeared; is another worker stuck?")
        time.sleep(0.5)
    return value


def _train_trial(trial: optuna.Trial, config: TuneConfig, client: MlflowClient, parent_run_id: str,
                 show_progress: bool):
    """One trial = one nested training run; per-epoch FID (or imbalance) reported for pruning."""
    point = suggest(trial, config.space())
    trial.set_user_attr("ganlab.worker", config.worker)
    # A study's trials may run on several machines in turn (its storage is committed and carried): each says where.
    trial.set_user_attr("ganlab.machine", devices.machine_description(devices.resolve_device(config.device)))
    trial_config = config.trial_config(point, config.seed, f"{config.name}-t{trial.number}")
    last: dict[str, float] = {}

    def after_epoch(epoch: int, epoch_metrics: dict[str, float]) -> str | None:
        last.update(epoch_metrics, imbalance=imbalance(epoch_metrics))
        if config.objective == "both":
            return None  # Optuna cannot prune multi-objective trials
        trial.report(last["fid"] if config.objective == "fid" else last["imbalance"], epoch)
        if epoch < config.trial_epochs and trial.should_prune():  # after the last epoch there is nothing to save
            return f"pruned by {type(trial.study.pruner).__name__} after epoch {epoch}"
        return None

    try:
        result = train(trial_config, show_progress=show_progress, extra_tags={
            "mlflow.parentRunId": parent_run_id, "optuna.study_name": config.name,
            "optuna.trial_number": str(trial.number), "ganlab.role": "trial"}, after_epoch=after_epoch)
    except TrainingFailed as failure:  # diverged or saturated: a result about these settings, not a crash
        trial.set_user_attr("mlflow_run_id", failure.run_id)
        trial.set_user_attr("ganlab.failure", f"{failure.kind} at step {failure.step}: {failure.detail}")
        with tracking.store_errors("tagging the trial run"):
            client.set_tag(failure.run_id, "optuna.trial_state", "PRUNED")
        raise optuna.TrialPruned(f"{failure.kind} at step {failure.step}") from failure
    trial.set_user_attr("mlflow_run_id", result.run_id)
    with tracking.store_errors("tagging the trial run"):
        client.log_metric(result.run_id, "imbalance", last["imbalance"], step=0)
        if result.status == "KILLED":
            client.set_tag(result.run_id, "optuna.trial_state", "PRUNED")
            raise optuna.TrialPruned()
        client.set_tag(result.run_id, "optuna.trial_state", "COMPLETE")
    if any(math.isnan(last[key]) for key in ("fid", "imbalance")):
        raise FloatingPointError(f"trial {trial.number} diverged (NaN)")
    if config.objective == "both":
        return last["fid"], last["imbalance"]
    return last["fid"] if config.objective == "fid" else last["imbalance"]


def _best_trials(study: optuna.Study) -> list[dict]:
    trials = study.best_trials if len(study.directions) > 1 else (
        [study.best_trial] if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else [])
    return [{"number": trial.number, "values": trial.values, "params": trial.params,
             "mlflow_run_id": trial.user_attrs.get("mlflow_run_id")} for trial in trials]


def _confirm_best(study: optuna.Study, config: TuneConfig, client: MlflowClient, experiment_id: str,
                  parent_run_id: str, show_progress: bool) -> dict:
    """GAN results swing with the seed: the best params again with more seeds, as more nested runs.

    A seed already confirmed for this trial (a resumed study) is reused, an interrupted one resumed."""
    best = study.best_trial
    values = [best.value]
    confirm_runs = []
    for seed in range(config.seed + 1, config.seed + config.confirm_seeds):
        run = train_or_reuse(
            client, experiment_id, config.trial_config(best.params, seed, f"{config.name}-best-s{seed}"),
            {"mlflow.parentRunId": parent_run_id, "optuna.study_name": config.name, "ganlab.role": "confirm",
             "ganlab.confirms_trial": str(best.number)}, show_progress)
        values.append(run.data.metrics["fid"] if config.objective == "fid" else imbalance(run.data.metrics))
        confirm_runs.append(run.info.run_id)
    mean = sum(values) / len(values)
    std = math.sqrt(sum((value - mean) ** 2 for value in values) / max(len(values) - 1, 1))
    return {"trial": best.number, "objective": config.objective, "seeds": list(range(config.seed, config.seed +
            config.confirm_seeds)), "values": values, "mean": mean, "std": std, "runs": confirm_runs}


def train_or_reuse(client: MlflowClient, experiment_id: str, train_config: TrainConfig, tags: dict[str, str],
                    show_progress: bool) -> Run:
    """Train `train_config` as a run with `tags`, unless such a run exists: a finished one is reused, an interrupted
    one (KILLED or FAILED, with a checkpoint) is resumed. Returns the finished run, as the store has it.

    So rerunning a study's command never trains the same confirmation or retrain twice, and a long retrain that was
    stopped continues where it was."""
    earlier = _earlier_runs(client, experiment_id, tags, train_config)
    finished = [run for run in earlier if run.info.status == "FINISHED"]
    interrupted = [run for run in earlier if run.info.status in ("KILLED", "FAILED")
                   and tracking.artifact_bytes(client, run.info.run_id, "checkpoint/checkpoint.json") is not None]
    if finished:
        run_id = finished[0].info.run_id
    elif interrupted:
        run_id = train(train_config, resume_run_id=interrupted[0].info.run_id, show_progress=show_progress).run_id
    else:
        run_id = train(train_config, show_progress=show_progress, extra_tags=tags).run_id
    with tracking.store_errors("reading the finished run"):
        return client.get_run(run_id)


def _earlier_runs(client: MlflowClient, experiment_id: str, tags: dict[str, str], train_config: TrainConfig) -> list:
    """Runs with these tags whose params are `train_config` (settings of where it ran aside), newest first."""
    query = " and ".join(f"tags.`{name}` = '{value}'" for name, value in tags.items())
    wanted = {name: tracking.mlflow_param(name, value).value for name, value in dataclasses.asdict(train_config).items()
              if name not in RESUMABLE_OVERRIDES}
    with tracking.store_errors("looking for earlier runs"):
        runs = client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"])
    return [run for run in runs if all(run.data.params.get(name) == value for name, value in wanted.items())]


def close_dead_trial_runs(client: MlflowClient, experiment_id: str, study: optuna.Study, parent_run_id: str) -> int:
    """End the MLflow runs of trials whose worker died (SIGKILL, lost machine): Optuna's heartbeat marks such a trial
    FAIL, but its run would stay RUNNING in MLflow for ever. Returns how many runs were closed."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    states = {trial.number: trial.state for trial in study.get_trials(deepcopy=False)}
    closed = 0
    with tracking.store_errors("closing the runs of dead trials"):
        for run in client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}' and "
                                                       f"tags.`ganlab.role` = 'trial' and attributes.status = 'RUNNING'"):
            state = states.get(int(run.data.tags.get("optuna.trial_number", -1)))
            if state is None or state == TrialState.RUNNING or state == TrialState.WAITING:
                continue  # still running in a live worker, as far as Optuna knows
            client.set_tag(run.info.run_id, "optuna.trial_state", state.name)
            client.set_terminated(run.info.run_id, MLFLOW_STATUS_OF_TRIAL_STATE[state])
            closed += 1
    return closed


def _log_study_artifacts(client: MlflowClient, parent_run_id: str, study: optuna.Study, config: TuneConfig,
                         best: list[dict], confirmation: dict | None) -> None:
    """Optuna's matplotlib plots, the trials and the best params, on the parent run (and in --results-dir)."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(config.results_dir) if config.results_dir else Path(scratch)
        export_study(study, config, best, confirmation, folder)
        with tracking.store_errors("logging the study's artifacts"):
            client.log_artifacts(parent_run_id, str(folder))
            states = [trial.state for trial in study.get_trials(deepcopy=False)]
            metrics = {"trials_complete": states.count(TrialState.COMPLETE),
                       "trials_pruned": states.count(TrialState.PRUNED),
                       "trials_failed": states.count(TrialState.FAIL)}
            if best and config.objective != "both":
                metrics["best_value"] = best[0]["values"][0]
            if confirmation:
                metrics.update(best_value_mean=confirmation["mean"], best_value_std=confirmation["std"])
            for key, value in metrics.items():
                client.log_metric(parent_run_id, key, value)
            if best and config.objective != "both":  # tags, not params: a resumed study's best may change
                client.log_batch(parent_run_id, tags=[RunTag(f"best.{name}", str(value))
                                                      for name, value in best[0]["params"].items()])


def export_study(study: optuna.Study, config: TuneConfig, best: list[dict], confirmation: dict | None,
                 folder: Path) -> None:
    """The study as small files anyone can check: every trial (params, per-epoch values, times), the best, the
    settings and wall time, and Optuna's plots."""
    folder.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    device = devices.resolve_device(config.device)
    _write_trials_csv(folder / "trials.csv", study)
    (folder / "trials.json").write_text(json.dumps([{
        "number": trial.number, "state": trial.state.name, "values": trial.values, "params": trial.params,
        "intermediate_values": {str(step): value for step, value in sorted(trial.intermediate_values.items())},
        "user_attrs": trial.user_attrs, "seconds": _trial_seconds(trial),
    } for trial in trials], indent=2))
    (folder / "best.json").write_text(json.dumps({"best": best, "confirmation": confirmation}, indent=2))
    finished = [trial for trial in trials if trial.datetime_complete is not None]
    (folder / "study.json").write_text(json.dumps({
        "study_name": config.name, "metric_names": config.metric_names,
        "machines": _trial_machines(trials),
        "precision_resolved": devices.resolve_precision(config.precision, device),
        "settings": {name: value for name, value in dataclasses.asdict(config).items()
                     if name not in ("worker", "tracking_uri", "storage", "results_dir", "data_dir")},
        "trials_by_state": {state.name: sum(trial.state == state for trial in trials) for state in TrialState},
        "trial_seconds_total": sum(_trial_seconds(trial) or 0.0 for trial in trials),
        "first_start": min((trial.datetime_start for trial in trials if trial.datetime_start), default=None),
        "last_complete": max((trial.datetime_complete for trial in finished), default=None),
    }, indent=2, default=str))
    for name, figure in _study_figures(study, config):
        figure.savefig(folder / f"{name}.png", dpi=100)
        plt.close(figure)


def _trial_machines(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    """Trials per machine they ran on: a study goes on wherever its committed storage is carried, so the machine that
    exports it says nothing about where its trials ran."""
    machines = collections.Counter(trial.user_attrs.get("ganlab.machine", "not recorded") for trial in trials)
    return dict(machines.most_common())


def _trial_seconds(trial: optuna.trial.FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def _study_figures(study: optuna.Study, config: TuneConfig):
    """(name, Figure) for each plot that the study's state allows (importances need 2+ complete trials)."""
    from optuna.visualization import matplotlib as optuna_plots

    target_name = OBJECTIVE_NAMES.get(config.objective)
    multi = config.objective == "both"
    target = (lambda trial: trial.values[0]) if multi else None
    plot_options = {"target": target, "target_name": "FID"} if multi else {"target_name": target_name}
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    plots = [("optimization_history", lambda: optuna_plots.plot_optimization_history(study, **plot_options)),
             ("parallel_coordinate", lambda: optuna_plots.plot_parallel_coordinate(study, **plot_options)),
             ("slice", lambda: optuna_plots.plot_slice(study, **plot_options)),
             ("contour", lambda: optuna_plots.plot_contour(study, params=["lr_g", "lr_d"], **plot_options))]
    if not multi:
        plots.append(("intermediate_values", lambda: optuna_plots.plot_intermediate_values(study)))
    if complete >= 2:
        plots.append(("param_importances", lambda: optuna_plots.plot_param_importances(study, **plot_options)))
    if multi:
        plots.append(("pareto_front", lambda: optuna_plots.plot_pareto_front(
            study, target_names=["FID", "imbalance"])))
    for name, draw in plots:
        if complete == 0:
            break
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
                axes = draw()
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue  # e.g. a contour needs two distinct values of each param
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        yield name, figure


def _write_trials_csv(path: Path, study: optuna.Study) -> None:
    trials = study.get_trials(deepcopy=False)
    param_names = sorted({name for trial in trials for name in trial.params})
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "state", "values", *param_names, "last_epoch", "mlflow_run_id", "machine"])
        for trial in trials:
            writer.writerow([trial.number, trial.state.name, json.dumps(trial.values),
                             *[trial.params.get(name, "") for name in param_names],
                             trial.last_step if trial.last_step is not None else "",
                             trial.user_attrs.get("mlflow_run_id", ""), trial.user_attrs.get("ganlab.machine", "")])


def _retrain_best(best: dict, config: TuneConfig, client: MlflowClient, experiment_id: str,
                  show_progress: bool) -> str:
    """The best params as a full run, tagged ganlab.tuned_from, to stand next to the untuned one in the UI."""
    retrain_config = dataclasses.replace(
        config.trial_config(best["params"], config.seed, f"{config.arch}-tuned-s{config.seed}"),
        epochs=config.epochs, eval_every=TrainConfig.eval_every, max_steps=config.max_steps)
    return train_or_reuse(client, experiment_id, retrain_config, {
        "ganlab.tuned_from": config.name, "ganlab.tuned_trial": str(best["number"])}, show_progress).info.run_id
