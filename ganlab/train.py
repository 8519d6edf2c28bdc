"""TrainConfig and train(config): the GAN training loop, readable top to bottom.

The loop is the reports' (PyTorch-GAN's): per batch one generator step with the non-saturating BCE
loss, then one discriminator step on real and on the same fakes, detached. What ganlab adds is around
it: the data lives on the device, every step is tracked in MLflow without host syncs, every epoch is
checkpointed atomically, a run that stops learning says so, and an interrupted run resumes to the same weights.
"""

import contextlib
import dataclasses
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from mlflow import MlflowClient
from torch import nn
from tqdm import tqdm

import ganlab
from ganlab import (checkpoint, cuda_graph, data, devices, distributed, faults, health, metrics, model_registry,
                    run_context, run_outputs, tracking)
from ganlab.cli import DATA_DIR_HELP, DEVICE_HELP, TRACKING_URI_HELP, option
from ganlab.errors import GanlabError, TrainingFailed, TrainingInterrupted
from ganlab.models import ARCHITECTURES, count_parameters, model_summary
from ganlab.plots import class_histogram_figure, image_grid
from ganlab.training_state import TrainingState

FLUSH_EVERY_STEPS = 100  # per-step metrics go to the tracking thread (and the health check) in blocks of this many


@dataclass
class TrainConfig:
    """Every setting of a training run; logged whole as the run's params."""

    arch: str = option("mlp", "architecture", choices=list(ARCHITECTURES))
    epochs: int = option(20, "passes over the training images")
    batch_size: int = option(64, "images per step")
    lr_g: float = option(2e-4, "generator Adam learning rate")
    lr_d: float = option(2e-4, "discriminator Adam learning rate")
    beta1: float = option(0.5, "Adam beta1, both networks")
    beta2: float = option(0.999, "Adam beta2, both networks")
    latent_dim: int = option(100, "length of the latent vector z")
    seed: int = option(0, "seeds weights, batch order, latents and the sample grid")
    device: str = option("auto", DEVICE_HELP)
    precision: str = option("auto", "bf16 autocast or fp32 (weights and optimizer state stay fp32); auto: bf16 where "
                            "the hardware has native bf16 (AMX / AVX-512 BF16 CPUs, CUDA GPUs), else fp32",
                            choices=list(devices.PRECISIONS))
    label_smoothing: float = option(0.0, "one-sided label smoothing: D's target for real images is 1 - this")
    instance_noise: float = option(0.0, "std of Gaussian noise added to every image D sees (0: none)")
    d_update_every: int = option(1, "update D on every Nth step only (a weaker D; 1: every step, as the reports)")
    eval_every: int = option(5, "FID, KID, precision/recall, … every N epochs and after the last (0: never)")
    eval_samples: int = option(10_000, "generated samples per evaluation")
    max_steps: int | None = option(None, "stop after this many steps in all, for smoke runs (default: no cap)")
    train_images: int | None = option(None, "train on the first N of the 60000 images only, for smoke runs (default: all)")
    data_dir: str | None = option(None, DATA_DIR_HELP)
    experiment: str = option("fashion-mnist-gan", "MLflow experiment name")
    run_name: str | None = option(None, "MLflow run name (default: ARCH-sSEED)")
    tracking_uri: str | None = option(None, TRACKING_URI_HELP)
    register_model: str | None = option(None, "register the final G under this MLflow model name; the alias "
                                        "`champion` moves to it if its FID is the lowest (docs/models.md)")
    cuda_graph: bool = option(True, "on CUDA, the whole G+D step as one CUDA graph replayed every step (eager "
                              "where it cannot apply, with a note; docs/gpu.md)")
    system_metrics: bool = option(True, "log CPU, memory and GPU load every 10 s where psutil is installed (the "
                                  "system-metrics extra; it took 0.24 per cent of the CPU: results/system-metrics)")

    def validate(self) -> None:
        """Reject settings that cannot train, with a message that names the flag."""
        if self.arch not in ARCHITECTURES:
            raise GanlabError(f"unknown --arch {self.arch!r}: choose one of {', '.join(ARCHITECTURES)}")
        if self.precision not in devices.PRECISIONS:
            raise GanlabError(f"unknown --precision {self.precision!r}: choose one of {', '.join(devices.PRECISIONS)}")
        if self.eval_every < 0:
            raise GanlabError(f"--eval-every must be 0 (never) or positive, got {self.eval_every}")
        if not 0 <= self.label_smoothing < 1:
            raise GanlabError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if not self.instance_noise >= 0:
            raise GanlabError(f"--instance-noise must be 0 or positive, got {self.instance_noise}")
        for name in ("epochs", "batch_size", "latent_dim", "d_update_every", "eval_samples", "max_steps",
                     "train_images"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise GanlabError(f"--{name.replace('_', '-')} must be positive, got {value}")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                raise GanlabError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise GanlabError(f"--{name} must be in [0, 1), got {getattr(self, name)}")
        model_registry.check_model_name(self.register_model)


# Settings that may differ when a run is resumed: they say where, not what, it trains.
RESUMABLE_OVERRIDES = ("device", "data_dir", "tracking_uri", "register_model", "system_metrics", "cuda_graph")


@dataclass
class TrainResult:
    """What the summary line reports."""

    run_id: str
    experiment_id: str
    status: str
    final_step_values: dict[str, float]
    wall_seconds: float
    artifact_uri: str
    steps_run: int  # optimizer steps taken by this call (a resumed run counts only its new ones)
    step_seconds: float  # time spent in those steps, without data loading, epoch ends and evaluation
    precision: str = "fp32"  # what --precision resolved to
    registration: model_registry.Registration | None = None  # the registry version made with --register-model


def config_of_run(client: MlflowClient, run_id: str) -> TrainConfig:
    """The TrainConfig a run was started with, for --resume; refuses runs that cannot be resumed."""
    run = tracking.get_run(client, run_id)
    if run.data.tags.get("ganlab.kind") != "train":
        raise GanlabError(f"run {run_id} is not a ganlab training run")
    if not tracking.is_unfinished(run.info.status):
        raise GanlabError(f"run {run_id} already finished; start a new run instead of --resume")
    saved = tracking.artifact_bytes(client, run_id, "config/train_config.json")
    try:
        return TrainConfig(**json.loads(saved or b""))
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as error:
        raise GanlabError(f"run {run_id} has no readable config/train_config.json to resume from") from error


def gan_step(generator: nn.Module, discriminator: nn.Module, optimizer_g: torch.optim.Optimizer,
             optimizer_d: torch.optim.Optimizer, real_images: torch.Tensor, latents: torch.Tensor,
             real_label: float = 1.0, instance_noise: float = 0.0, noise_rng: torch.Generator | None = None,
             update_d: bool = True,
             autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> torch.Tensor:
    """One G update then one D update; returns (loss_g, loss_d, mean D(x), mean D(G(z))) as one fp32 device tensor.

    The defaults are the reports' step. The other arguments are the usual remedies for a D that wins: a real
    label below 1 (one-sided label smoothing), instance noise on everything D sees, and skipping D updates; and
    `autocast`, the forward passes' number format (`devices.autocast`). The losses are computed in fp32 outside it:
    CUDA refuses BCE under autocast, and D's probabilities are fp32 already (each Discriminator casts its logits).
    """
    real_labels = torch.full((real_images.size(0), 1), real_label, device=real_images.device)
    fake_labels = torch.zeros(real_images.size(0), 1, device=real_images.device)
    generator_labels = torch.ones(real_images.size(0), 1, device=real_images.device)

    def as_seen_by_d(images: torch.Tensor) -> torch.Tensor:
        if instance_noise == 0:
            return images
        return images + instance_noise * torch.randn(images.shape, device=images.device, generator=noise_rng)

    # Generator: make D call the fakes real (the non-saturating loss of Goodfellow et al.).
    optimizer_g.zero_grad(set_to_none=True)
    with autocast():
        fake_images = generator(latents)
    # D's gradients from this backward are thrown away below; under DDP, no_sync spares averaging them.
    with getattr(discriminator, "no_sync", contextlib.nullcontext)():
        with autocast():
            d_on_generated = discriminator(as_seen_by_d(fake_images))
        loss_g = _bce(d_on_generated.float(), generator_labels)
        loss_g.backward()
    optimizer_g.step()

    # Discriminator: real → 1, the same fakes (detached) → 0, averaged as in the reports.
    optimizer_d.zero_grad(set_to_none=True)
    with torch.set_grad_enabled(update_d):
        with autocast():
            d_on_real = discriminator(as_seen_by_d(real_images)).float()
            d_on_fake = discriminator(as_seen_by_d(fake_images.detach())).float()
        loss_d = (_bce(d_on_real, real_labels) + _bce(d_on_fake, fake_labels)) / 2
    if update_d:
        loss_d.backward()
        optimizer_d.step()
    return torch.stack([loss_g.detach(), loss_d.detach(), d_on_real.detach().mean(), d_on_fake.detach().mean()])


def _bce(probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The reports' BCE. A NaN probability (a diverged D) is scored as 0.5 here: the CPU kernel would raise on it and
    CUDA's would kill the process with a device-side assert, while the NaN in the logged D outputs tells the health
    check (ganlab.health) that training diverged. Finite probabilities pass unchanged."""
    return nn.functional.binary_cross_entropy(torch.nan_to_num(probabilities, nan=0.5), targets)


@dataclass
class TrainingData:
    """The training images on the device, scaled to [-1, 1], and how they split into steps."""

    images: torch.Tensor
    steps_per_epoch: int  # the last partial batch is dropped
    file_md5: dict[str, str]  # of the Fashion-MNIST files, logged with the run
    data_dir: Path  # where they are (--data-dir, $GANLAB_DATA_DIR or data/), for the evaluator and the run's inputs


def load_training_data(config: TrainConfig, device: torch.device) -> TrainingData:
    """Verify the files, then move the (first `train_images`) training images to the device once."""
    data_dir = data.resolve_data_dir(config.data_dir)
    file_md5 = data.prepare_fashion_mnist(data_dir)
    images_uint8, _ = data.load_images(data_dir, train=True)
    images = data.to_training_tensor(images_uint8[: config.train_images], device)
    steps_per_epoch = len(images) // config.batch_size
    if steps_per_epoch == 0:
        raise GanlabError(f"--batch-size {config.batch_size} is larger than the {len(images)} training images")
    return TrainingData(images, steps_per_epoch, file_md5, data_dir)


class StopRequests:
    """Ctrl-C and SIGTERM ask training to stop after the current step (a second one stops at once)."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def _handle(self, signal_number, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.signal_number = signal_number


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequests]:
    """Catch Ctrl-C / SIGTERM for the block; the previous handlers come back after it."""
    requests = StopRequests()
    previous = {number: signal.signal(number, requests._handle) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requests
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@dataclass
class Loop:
    """What the loop's steps share besides the TrainingState: settings, where things go, how to stop."""

    config: TrainConfig
    device: torch.device
    precision: str
    ranks: distributed.Ranks
    data: TrainingData
    total_steps: int
    run_logger: tracking.RunLogger | tracking.NullRunLogger
    run_id: str
    checkpoint_dir: Path | None  # None: nothing is checkpointed (untracked runs)
    artifact_dir: Path | None  # the run's artifact folder when it is on this file system
    evaluator: metrics.Evaluator | None
    stop: StopRequests
    progress: tqdm
    graphed_step: cuda_graph.GraphedStep | None = None  # the captured step on CUDA; None: eager steps
    steps_run: int = 0
    step_seconds: float = 0.0

    def done(self, state: TrainingState) -> bool:
        return state.global_step >= self.total_steps or state.epoch >= self.config.epochs

    def autocast(self) -> contextlib.AbstractContextManager:
        return devices.autocast(self.device, self.precision)


def train(config: TrainConfig, resume_run_id: str | None = None, show_progress: bool = True,
          extra_tags: dict[str, str] | None = None,
          after_epoch: Callable[[int, dict[str, float]], str | None] | None = None,
          track: bool = True) -> TrainResult:
    """Train one GAN as one MLflow run (new, or `resume_run_id` continued) and return the summary.

    `extra_tags` go on a new run (a tuning study nests its trials with `mlflow.parentRunId`). `after_epoch` sees
    each epoch's metrics once its checkpoint is written; when it returns a reason, training stops there and the run
    ends KILLED with tag `ganlab.stopped_early` (how a pruned Optuna trial ends). `track=False` trains with no run,
    checkpoint or evaluation (the benchmark's measure of what tracking costs). Under torchrun every rank calls this;
    rank 0 alone tracks. A run that stops learning raises TrainingFailed; Ctrl-C / SIGTERM raise TrainingInterrupted.
    """
    wall_start = time.perf_counter()
    config.validate()

    # Set up: ranks and device, the store (a bad URI fails before minutes of data loading), data, networks.
    ranks = distributed.ranks_from_environment()
    device = distributed.start(ranks, devices.resolve_device(config.device))
    precision = devices.resolve_precision(config.precision, device)
    tracked = track and ranks.is_main
    client = tracking.connect(tracking.resolve_tracking_uri(config.tracking_uri)) if tracked or resume_run_id \
        else None
    training_data = load_training_data(config, device)
    state = TrainingState.create(config, device, len(training_data.images), training_data.steps_per_epoch)
    if resume_run_id is not None:  # every rank restores the same state, optimizers included
        _restore_checkpoint(state, client, resume_run_id)
    evaluator = metrics.Evaluator(training_data.data_dir, device) \
        if config.eval_every and tracked else None
    run_info = {"run_id": resume_run_id or "", "experiment_id": "", "artifact_uri": ""}
    status, registration = "FINISHED", None

    try:
        with contextlib.ExitStack() as exits:
            # Open the run: a new one with its params, or the resumed one. It ends FINISHED, KILLED or FAILED
            # by how this block ends (tracking.run_lifecycle).
            run_logger, run_info = _open_run(exits, client, config, state, training_data, device, precision,
                                             resume_run_id, extra_tags or {}, tracked, ranks)
            checkpoint_dir, artifact_dir = _checkpoint_dirs(exits, client, run_info["run_id"], tracked)
            loop = Loop(config=config, device=device, precision=precision, ranks=ranks, data=training_data,
                        total_steps=min(training_data.steps_per_epoch * config.epochs,
                                        config.max_steps or sys.maxsize),
                        run_logger=run_logger, run_id=run_info["run_id"], checkpoint_dir=checkpoint_dir,
                        artifact_dir=artifact_dir, evaluator=evaluator, stop=exits.enter_context(stop_requests()),
                        progress=exits.enter_context(_progress_bar(config, state, show_progress and ranks.is_main)))
            # Under torchrun: DDP averages the gradients over the ranks. The plain modules stay for sampling/saving.
            models = (distributed.wrap(state.generator, ranks), distributed.wrap(state.discriminator, ranks))
            loop.graphed_step = _graphed_step(config, state, training_data, device, precision, ranks)
            run_logger.wait()  # the run's set-up writes land before the first step, not beside the loop

            # The loop: epochs of shuffled batches from the device-resident images, each ending with a checkpoint.
            while not loop.done(state):
                run_epoch(loop, state, models)
                epoch_metrics = end_epoch(loop, state)
                save_checkpoint(loop, state)
                stop_reason = after_epoch(state.epoch, {name: float(value) for name, value in epoch_metrics.items()}) \
                    if after_epoch else None
                if stop_reason:
                    raise tracking.StoppedEarly(stop_reason)

            # After training: final weights, the config to rebuild G, and the curves from the store.
            if tracked:
                run_outputs.log_final_model(run_logger, config, state.generator, state.discriminator,
                                            run_info["run_id"], state.epoch, state.global_step)
                run_logger.wait()
                model_registry.log_generator_model(client, run_info["run_id"])
                if config.register_model:
                    registration = model_registry.register_generator(client, run_info["run_id"], config.register_model)
                run_outputs.log_curves(run_logger, client, run_info["run_id"], training_data.steps_per_epoch)
    except tracking.StoppedEarly:
        status = "KILLED"
    finally:
        if ranks.is_distributed:
            # Ranks that ended together (done, or a stop they agreed on) leave together; an error one rank alone
            # hit leaves at once, and torchrun stops the others.
            distributed.stop(together=sys.exc_info()[0] in (None, TrainingInterrupted, TrainingFailed))
    return _result(client, run_info, status, wall_start, loop, precision, registration)


def _graphed_step(config: TrainConfig, state: TrainingState, training_data: TrainingData, device: torch.device,
                  precision: str, ranks: distributed.Ranks) -> cuda_graph.GraphedStep | None:
    """The step captured as a CUDA graph where it applies; a one-line note where CUDA steps eagerly."""
    if not config.cuda_graph:
        return None
    reason = cuda_graph.eager_reason(device, config.d_update_every, ranks.is_distributed)
    if reason is None:
        return cuda_graph.capture_step(state, training_data.images, config.batch_size, config.latent_dim, precision,
                                       real_label=1.0 - config.label_smoothing,
                                       instance_noise=config.instance_noise, step_function=gan_step)
    if device.type == "cuda" and ranks.is_main:
        print(f"note: no CUDA graph ({reason}); the steps run eagerly", file=sys.stderr)
    return None


def _open_run(exits: contextlib.ExitStack, client: MlflowClient | None, config: TrainConfig, state: TrainingState,
              training_data: TrainingData, device: torch.device, precision: str, resume_run_id: str | None,
              extra_tags: dict[str, str], tracked: bool, ranks: distributed.Ranks):
    """The run's lifecycle and its logger, entered on `exits`; a new run gets its params, tags and model summary."""
    if not tracked:
        return exits.enter_context(tracking.NullRunLogger()), {
            "run_id": resume_run_id or "", "experiment_id": "", "artifact_uri": ""}
    experiment_id = tracking.get_or_create_experiment(client, config.experiment)
    tracking.close_lost_runs(client, experiment_id)
    run = exits.enter_context(tracking.run_lifecycle(
        client, experiment_id, run_name=config.run_name or f"{config.arch}-s{config.seed}",
        tags={**_run_tags(config), **extra_tags}, reopen_run_id=resume_run_id))
    run_id = run.info.run_id
    if resume_run_id is None:
        run_logger = exits.enter_context(tracking.RunLogger(client, run_id))
        run_logger.log_params({
            **dataclasses.asdict(config),
            "device_resolved": str(device),
            "machine": devices.machine_description(device),  # the CPU or GPU by name: where its times come from
            "precision_resolved": precision,
            "world_size": ranks.world_size,  # processes under torchrun, each training on batch_size / world_size
            "steps_per_epoch": training_data.steps_per_epoch,
            "generator_parameters": count_parameters(state.generator),
            "discriminator_parameters": count_parameters(state.discriminator),
            "torch_version": torch.__version__,
            "ganlab_version": ganlab.__version__,
            **{f"dataset_md5.{name}": md5 for name, md5 in training_data.file_md5.items()},
        })
        if config.eval_every:
            run_logger.set_tags(metrics.protocol(config.eval_samples))
        run_logger.log_text(json.dumps(dataclasses.asdict(config), indent=2), "config/train_config.json")
        run_logger.log_text(model_summary(state.generator, state.discriminator), "model/summary.txt")
    else:
        run_logger = exits.enter_context(tracking.RunLogger(
            client, run_id, skip_steps_through=tracking.last_logged_step(client, run_id, "loss_g"),
            skip_epochs_through=tracking.last_logged_step(client, run_id, "epoch_loss_g")))
    # The data it trains on as MLflow dataset inputs; the machine's load, if asked (ganlab.run_context).
    run_context.record(client, run_id, training_data.data_dir, training_data.file_md5,
                       config.train_images, config.system_metrics)
    return run_logger, {"run_id": run_id, "experiment_id": experiment_id, "artifact_uri": run.info.artifact_uri}


def _checkpoint_dirs(exits: contextlib.ExitStack, client: MlflowClient | None, run_id: str,
                     tracked: bool) -> tuple[Path | None, Path | None]:
    """(where checkpoints are written, the run's local artifact folder): in place when the artifacts are on this
    file system, else a staging folder that is uploaded after each save."""
    if not tracked:
        return None, None
    artifact_dir = tracking.local_artifact_dir(client, run_id)
    if artifact_dir is not None:
        return artifact_dir / "checkpoint", artifact_dir
    return Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="ganlab-checkpoint-"))), None


def _progress_bar(config: TrainConfig, state: TrainingState, show: bool) -> tqdm:
    total = min(config.epochs * len(state.step_values), config.max_steps or sys.maxsize)
    return tqdm(total=total, initial=state.global_step, unit="step", disable=not show, dynamic_ncols=True,
                file=sys.stderr)


def _restore_checkpoint(state: TrainingState, client: MlflowClient, run_id: str) -> None:
    """Load the run's last checkpoint into `state` (a run killed before its first checkpoint starts over)."""
    with tempfile.TemporaryDirectory() as download_root:
        saved = checkpoint.load_checkpoint(tracking.fetch_checkpoint_dir(client, run_id, Path(download_root)))
    if saved is not None:
        state.load_state_dict(saved)


def run_epoch(loop: Loop, state: TrainingState, models: tuple[nn.Module, nn.Module]) -> None:
    """Train until the epoch, the step budget or a stop request ends; the step values go out every 100 steps."""
    config, ranks = loop.config, loop.ranks
    rank_batch_size = distributed.rank_batch_size(config.batch_size, ranks)
    rank_share = slice(ranks.rank * rank_batch_size, (ranks.rank + 1) * rank_batch_size)
    loop.progress.set_description(f"{config.arch} epoch {state.epoch + 1}/{config.epochs}")
    faults.point("epoch_start", state.generator)
    epoch_start, steps_before = time.perf_counter(), state.global_step
    first_unflushed, stopping = state.step_in_epoch, False
    while state.step_in_epoch < loop.data.steps_per_epoch and state.global_step < loop.total_steps and not stopping:
        # This rank's share of the global batch of images and latents (all of it in a single process):
        # N ranks then see exactly what one process sees.
        batch = state.epoch_order[state.step_in_epoch * config.batch_size:(state.step_in_epoch + 1) * config.batch_size]
        if loop.graphed_step is not None:  # the same step, replayed as one CUDA graph (ganlab.cuda_graph)
            state.step_values[state.step_in_epoch] = loop.graphed_step(batch)
        else:
            real_images = loop.data.images[batch[rank_share].to(loop.device)]
            latents = torch.randn(config.batch_size, config.latent_dim, device=loop.device,
                                  generator=state.latent_rng)[rank_share]
            state.step_values[state.step_in_epoch] = gan_step(
                *models, state.optimizer_g, state.optimizer_d, real_images, latents,
                real_label=1.0 - config.label_smoothing, instance_noise=config.instance_noise,
                noise_rng=state.latent_rng, update_d=state.global_step % config.d_update_every == 0,
                autocast=loop.autocast)
        state.step_in_epoch += 1
        state.global_step += 1
        loop.progress.update()
        if state.step_in_epoch - first_unflushed == FLUSH_EVERY_STEPS:
            _flush_step_values(loop, state, first_unflushed)
            faults.point("flush")
            first_unflushed = state.step_in_epoch
            # The ranks agree here (not every step) on whether to stop: a signal, or a run that stopped learning.
            stopping = distributed.any_rank(loop.stop.requested or _failure_seen(loop), ranks)
        elif not ranks.is_distributed:
            stopping = loop.stop.requested
    if state.step_in_epoch > first_unflushed:
        _flush_step_values(loop, state, first_unflushed)
    if loop.device.type == "cuda":
        torch.cuda.synchronize(loop.device)  # once per epoch, for an honest epoch time
    seconds = time.perf_counter() - epoch_start
    state.epoch_seconds += seconds
    loop.steps_run += state.global_step - steps_before
    loop.step_seconds += seconds
    if distributed.any_rank(loop.stop.requested or _failure_seen(loop), ranks):
        _stop_mid_epoch(loop, state)


def _flush_step_values(loop: Loop, state: TrainingState, first_unflushed: int) -> None:
    """Hand the step values since `first_unflushed` to the tracking thread (mean over ranks under torchrun)."""
    block = distributed.mean_over_ranks(state.step_values[first_unflushed:state.step_in_epoch].clone(), loop.ranks)
    loop.run_logger.log_step_values(state.global_step - len(block) + 1, block)
    loop.progress.set_postfix({name: f"{value:.3f}" for name, value in loop.run_logger.latest_step_values.items()})


def _failure_seen(loop: Loop) -> bool:
    """Whether the health check has found a failure in a block written so far (without waiting for the rest)."""
    return loop.run_logger.health_monitor.failure is not None


def _raise_if_failed(loop: Loop, state: TrainingState) -> None:
    """Stop a run that stopped learning before anything of its state is checkpointed."""
    loop.run_logger.wait()
    failure = loop.run_logger.health_monitor.failure
    if failure is None and not state.weights_are_finite():
        failure = health.Failure("diverged", state.global_step, "non-finite weights")
    if distributed.any_rank(failure is not None, loop.ranks):
        if failure is None:  # another rank failed; this one stops with it
            raise TrainingInterrupted(signal.SIGTERM, loop.run_id)
        raise TrainingFailed(failure.kind, failure.step, failure.detail, loop.run_id,
                             checkpoint.saved_global_step(loop.checkpoint_dir))


def _stop_mid_epoch(loop: Loop, state: TrainingState) -> None:
    """A stop request: checkpoint this step (unless training failed) and raise, ending the run KILLED."""
    # The checkpoint keeps this epoch's step values for its means: those of all ranks.
    state.step_values = distributed.mean_over_ranks(state.step_values, loop.ranks)
    _raise_if_failed(loop, state)
    _write_checkpoint(loop, state)
    raise TrainingInterrupted(loop.stop.signal_number or signal.SIGTERM, loop.run_id)


def end_epoch(loop: Loop, state: TrainingState) -> dict[str, torch.Tensor | float]:
    """The fixed-latent sample grid, the epoch means and, now and then, the quality metrics, all logged (after the
    health check: a diverged G is not evaluated)."""
    config = loop.config
    _raise_if_failed(loop, state)
    state.generator.eval()
    with torch.no_grad():
        sample_grid = image_grid(state.generator(state.fixed_latents))
    state.generator.train()
    steps = state.step_in_epoch
    epoch_means = distributed.mean_over_ranks(state.step_values[:steps].mean(dim=0), loop.ranks)
    epoch_metrics = {
        **{f"epoch_{name}": epoch_means[index] for index, name in enumerate(tracking.STEP_METRIC_NAMES)},
        "epoch_d_gap": epoch_means[2] - epoch_means[3],  # mean D(x) − mean D(G(z)): 1 when D wins outright
        "epoch_seconds": state.epoch_seconds,
        "images_per_second": steps * config.batch_size / max(state.epoch_seconds, 1e-9),
    }
    is_last_epoch = state.epoch + 1 == config.epochs or state.global_step >= loop.total_steps
    if loop.evaluator is not None and ((state.epoch + 1) % config.eval_every == 0 or is_last_epoch):
        epoch_metrics.update(_evaluate(loop, state.generator, is_last_epoch))
    loop.run_logger.log_epoch(state.epoch + 1, epoch_metrics, sample_grid)
    return epoch_metrics


def save_checkpoint(loop: Loop, state: TrainingState) -> None:
    """Start the next epoch and checkpoint there (end_epoch checked the state's health: a NaN state never
    replaces the last good checkpoint)."""
    state.start_next_epoch()
    _write_checkpoint(loop, state)


def _write_checkpoint(loop: Loop, state: TrainingState) -> None:
    """After everything logged so far is in the store, so a resume never misses a step."""
    if loop.checkpoint_dir is None:
        return
    loop.run_logger.wait()
    checkpoint.save_checkpoint(loop.checkpoint_dir, state.state_dict())
    tracking.publish_checkpoint(loop.run_logger, loop.checkpoint_dir, loop.artifact_dir)
    loop.run_logger.wait()


def _result(client: MlflowClient | None, run_info: dict[str, str], status: str, wall_start: float, loop: Loop,
            precision: str, registration: model_registry.Registration | None) -> TrainResult:
    run_id, artifact_uri = run_info["run_id"], run_info["artifact_uri"]
    final_metrics = client.get_run(run_id).data.metrics if client is not None and artifact_uri else {}
    return TrainResult(
        run_id=run_id, experiment_id=run_info["experiment_id"], status=status,
        final_step_values={name: final_metrics[name] for name in tracking.STEP_METRIC_NAMES if name in final_metrics},
        wall_seconds=time.perf_counter() - wall_start, artifact_uri=artifact_uri,
        steps_run=loop.steps_run, step_seconds=loop.step_seconds, precision=precision, registration=registration)


def _evaluate(loop: Loop, generator: nn.Module, is_last_epoch: bool) -> dict[str, float]:
    """The quality metrics of this epoch's G (the same latents every time, in fp32); after the last epoch also
    the class-histogram plot and eval/final.json."""
    config = loop.config
    eval_start = time.perf_counter()
    faults.point("evaluation")
    evaluation = loop.evaluator.evaluate_generator(generator, config.latent_dim, config.eval_samples,
                                                   seed=config.seed + 3)
    if is_last_epoch:
        loop.run_logger.log_figure(class_histogram_figure(evaluation.class_shares, data.CLASS_NAMES,
                                                          f"Predicted classes of {config.eval_samples} samples "
                                                          f"({metrics.FEATURE_SPACE} classifier)"),
                                   "plots/class_histogram.png")
        loop.run_logger.log_text(json.dumps(dataclasses.asdict(evaluation), indent=2), "eval/final.json")
    return {**evaluation.metrics, "eval_seconds": time.perf_counter() - eval_start}


def _run_tags(config: TrainConfig) -> dict[str, str]:
    tags = {"ganlab.kind": "train", "ganlab.arch": config.arch, "mlflow.source.name": "experiments/train.py"}
    commit = tracking.git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags
