"""TrainConfig and train(config): the GAN training loop, readable top to bottom.

The loop is the reports' (PyTorch-GAN's): per batch one generator step with the non-saturating BCE
loss, then one discriminator step on real and on the same fakes, detached. What ganlab adds is around
it: the data lives on the device, every step is tracked in MLflow without host syncs, every epoch is
checkpointed atomically, and an interrupted run resumes to the same weights.
"""

import contextlib
import dataclasses
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from mlflow import MlflowClient
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

import ganlab
from ganlab import checkpoint, data, distributed, metrics, model_registry, run_context, tracking
from ganlab.cli import option
from ganlab.errors import GanlabError
from ganlab.models import ARCHITECTURES, IMAGE_SHAPE, build_models, count_parameters, model_summary
from ganlab.plots import class_histogram_figure, image_grid, training_curves

SAMPLE_GRID_SIZE = 64  # the fixed latent batch drawn every epoch, 8 per row
FLUSH_EVERY_STEPS = 100  # per-step metrics go to the tracking thread in blocks of this many steps


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
    device: str = option("auto", "cpu, cuda, cuda:N, mps or auto (cuda when available)")
    label_smoothing: float = option(0.0, "one-sided label smoothing: D's target for real images is 1 - this")
    instance_noise: float = option(0.0, "std of Gaussian noise added to every image D sees (0: none)")
    d_update_every: int = option(1, "update D on every Nth step only (a weaker D; 1: every step, as the reports)")
    eval_every: int = option(5, "FID, KID, precision/recall, … every N epochs and after the last (0: never)")
    eval_samples: int = option(10_000, "generated samples per evaluation")
    max_steps: int | None = option(None, "stop after this many steps in all (smoke runs)")
    train_images: int | None = option(None, "train on the first N of the 60000 images only (smoke runs)")
    data_dir: str | None = option(None, "Fashion-MNIST root (else $GANLAB_DATA_DIR, else data/)")
    experiment: str = option("fashion-mnist-gan", "MLflow experiment name")
    run_name: str | None = option(None, "MLflow run name (default: ARCH-sSEED)")
    tracking_uri: str | None = option(None, "MLflow store (else $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    register_model: str | None = option(None, "register the final G under this MLflow model name; the alias "
                                        "`champion` moves to it if its FID is the lowest (docs/models.md)")
    system_metrics: bool = option(True, "log CPU, memory and GPU load every 10 s where psutil is installed (the "
                                  "system-metrics extra; 0.24% of the CPU, results/system-metrics)")

    def validate(self) -> None:
        """Reject settings that cannot train, with a message that names the flag."""
        if self.arch not in ARCHITECTURES:
            raise GanlabError(f"unknown --arch {self.arch!r}: choose one of {', '.join(ARCHITECTURES)}")
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
RESUMABLE_OVERRIDES = ("device", "data_dir", "tracking_uri", "register_model", "system_metrics")


@dataclass
class TrainResult:
    """What the summary line reports."""

    run_id: str
    experiment_id: str
    status: str
    final_step_values: dict[str, float]
    wall_seconds: float
    artifact_uri: str
    run_url: str
    steps_run: int  # optimizer steps taken by this call (a resumed run counts only its new ones)
    step_seconds: float  # time spent in those steps, without data loading, epoch ends and evaluation


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
    except (json.JSONDecodeError, TypeError) as error:
        raise GanlabError(f"run {run_id} has no readable config/train_config.json to resume from") from error


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C / SIGTERM once the checkpoint is written and the run marked KILLED."""

    def __init__(self, signal_number: int, run_id: str):
        super().__init__(f"interrupted by signal {signal_number}; resume with --resume {run_id}")
        self.signal_number = signal_number
        self.run_id = run_id


def resolve_device(requested: str) -> torch.device:
    """`auto` → the best available device; anything else must exist here."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise GanlabError(f"unknown --device {requested!r}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GanlabError(f"--device {requested} asked for, but this machine has no usable CUDA GPU")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise GanlabError(f"--device {requested} asked for, but MPS is not available here")
    return device


def gan_step(generator: nn.Module, discriminator: nn.Module, optimizer_g: torch.optim.Optimizer,
             optimizer_d: torch.optim.Optimizer, real_images: torch.Tensor, latents: torch.Tensor,
             real_label: float = 1.0, instance_noise: float = 0.0, noise_rng: torch.Generator | None = None,
             update_d: bool = True) -> torch.Tensor:
    """One G update then one D update; returns (loss_g, loss_d, mean D(x), mean D(G(z))) as one device tensor.

    The defaults are the reports' step. The other arguments are the usual remedies for a D that wins: a real
    label below 1 (one-sided label smoothing), instance noise on everything D sees, and skipping D updates.
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
    fake_images = generator(latents)
    # D's gradients from this backward are thrown away below; under DDP, no_sync spares averaging them.
    with getattr(discriminator, "no_sync", contextlib.nullcontext)():
        loss_g = nn.functional.binary_cross_entropy(discriminator(as_seen_by_d(fake_images)), generator_labels)
        loss_g.backward()
    optimizer_g.step()

    # Discriminator: real → 1, the same fakes (detached) → 0, averaged as in the reports.
    optimizer_d.zero_grad(set_to_none=True)
    with torch.set_grad_enabled(update_d):
        d_on_real = discriminator(as_seen_by_d(real_images))
        d_on_fake = discriminator(as_seen_by_d(fake_images.detach()))
        loss_d = (nn.functional.binary_cross_entropy(d_on_real, real_labels)
                  + nn.functional.binary_cross_entropy(d_on_fake, fake_labels)) / 2
    if update_d:
        loss_d.backward()
        optimizer_d.step()
    return torch.stack([loss_g.detach(), loss_d.detach(), d_on_real.detach().mean(), d_on_fake.detach().mean()])


def train(config: TrainConfig, resume_run_id: str | None = None, show_progress: bool = True,
          extra_tags: dict[str, str] | None = None,
          after_epoch: Callable[[int, dict[str, float]], str | None] | None = None,
          track: bool = True) -> TrainResult:
    """Train one GAN as one MLflow run (new, or `resume_run_id` continued) and return the summary.

    `extra_tags` go on a new run (a tuning study nests its trials with `mlflow.parentRunId`). `after_epoch` sees
    each epoch's metrics once its checkpoint is written; when it returns a reason, training stops there and the run
    ends KILLED with tag `ganlab.stopped_early` (how a pruned Optuna trial ends). `track=False` trains with no run,
    checkpoint or evaluation (the benchmark's measure of what tracking costs). Under torchrun every rank calls this;
    rank 0 alone tracks.
    """
    wall_start = time.perf_counter()
    config.validate()
    ranks = distributed.ranks_from_environment()
    device = distributed.start(ranks, resolve_device(config.device))
    rank_batch_size = distributed.rank_batch_size(config.batch_size, ranks)
    tracked = track and ranks.is_main

    # Connect to the tracking store first: a bad URI should fail before minutes of data loading.
    client = tracking.connect(tracking.resolve_tracking_uri(config.tracking_uri)) \
        if tracked or resume_run_id else None

    # Load the training set onto the device once, scaled to [-1, 1] there.
    data_dir = data.resolve_data_dir(config.data_dir)
    dataset_md5 = data.prepare_fashion_mnist(data_dir)
    train_images_uint8, _ = data.load_images(data_dir, train=True)
    if config.train_images is not None:
        train_images_uint8 = train_images_uint8[: config.train_images]
    all_real_images = data.to_training_tensor(train_images_uint8, device)
    steps_per_epoch = len(all_real_images) // config.batch_size  # the last partial batch is dropped
    if steps_per_epoch == 0:
        raise GanlabError(f"--batch-size {config.batch_size} is larger than the {len(all_real_images)} training images")
    total_steps = min(steps_per_epoch * config.epochs, config.max_steps or sys.maxsize)
    evaluator = metrics.Evaluator(data_dir, device) if config.eval_every and tracked else None

    # Construct networks, optimizers and the random streams, all from the seed.
    torch.manual_seed(config.seed)
    generator, discriminator = build_models(config.arch, config.latent_dim)
    # channels_last makes the CNN step ~1.3x faster on the CPU; Linear-only models are unaffected.
    generator = generator.to(device, memory_format=torch.channels_last)
    discriminator = discriminator.to(device, memory_format=torch.channels_last)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=(config.beta1, config.beta2))
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=(config.beta1, config.beta2))
    order_rng = torch.Generator().manual_seed(config.seed)  # batch order, on the CPU
    latent_rng = torch.Generator(device).manual_seed(config.seed + 1)  # training latents, on the device
    fixed_latents = torch.randn(SAMPLE_GRID_SIZE, config.latent_dim,
                                generator=torch.Generator().manual_seed(config.seed + 2)).to(device)

    # Open the MLflow run: a new one, or the resumed one with its checkpoint restored.
    experiment_id = tracking.get_or_create_experiment(client, config.experiment) if tracked else ""
    if not tracked:
        run_logger, run_id, run_artifact_uri = tracking.NullRunLogger(), resume_run_id or "", ""
    elif resume_run_id is None:
        with tracking.store_errors("creating the run"):
            run = client.create_run(experiment_id, run_name=config.run_name or f"{config.arch}-s{config.seed}",
                                    tags={**_run_tags(config), **(extra_tags or {})})
        run_logger = tracking.RunLogger(client, run.info.run_id)
        run_logger.log_params({
            **dataclasses.asdict(config),
            "device_resolved": str(device),
            "world_size": ranks.world_size,  # processes under torchrun, each training on batch_size / world_size
            "steps_per_epoch": steps_per_epoch,
            "generator_parameters": count_parameters(generator),
            "discriminator_parameters": count_parameters(discriminator),
            "torch_version": torch.__version__,
            "ganlab_version": ganlab.__version__,
            **{f"dataset_md5.{name}": md5 for name, md5 in dataset_md5.items()},
        })
        if evaluator is not None:
            run_logger.set_tags(metrics.protocol(config.eval_samples))
        run_logger.log_text(json.dumps(dataclasses.asdict(config), indent=2), "config/train_config.json")
        run_logger.log_text(model_summary(generator, discriminator), "model/summary.txt")
        run_id, run_artifact_uri = run.info.run_id, run.info.artifact_uri
    else:
        run = tracking.get_run(client, resume_run_id)
        run_logger = tracking.RunLogger(
            client, resume_run_id,
            skip_steps_through=tracking.last_logged_step(client, resume_run_id, "loss_g"),
            skip_epochs_through=tracking.last_logged_step(client, resume_run_id, "epoch_loss_g"))
        client.update_run(resume_run_id, status="RUNNING")
        run_id, run_artifact_uri = resume_run_id, run.info.artifact_uri
    if tracked:  # the data it trains on as MLflow dataset inputs; the machine's load, if asked (ganlab.run_context)
        run_context.record(client, run_id, data_dir, dataset_md5, config.train_images, config.system_metrics)
    resumed_state = None
    if resume_run_id is not None:  # every rank restores the same state, optimizers included
        with tempfile.TemporaryDirectory() as download_root:
            resumed_state = checkpoint.load_checkpoint(
                tracking.fetch_checkpoint_dir(client, resume_run_id, Path(download_root)))
    artifact_dir = tracking.local_artifact_dir(client, run_id) if tracked else None
    checkpoint_dir = artifact_dir / "checkpoint" if artifact_dir else Path(tempfile.mkdtemp(prefix="ganlab-ckpt-"))

    epoch, step_in_epoch, global_step = 0, 0, 0
    step_values = torch.zeros(steps_per_epoch, len(tracking.STEP_METRIC_NAMES), device=device)
    epoch_order = torch.randperm(len(all_real_images), generator=order_rng)
    epoch_seconds_before = 0.0
    if resumed_state is not None:
        epoch, step_in_epoch, global_step = resumed_state.epoch, resumed_state.step_in_epoch, resumed_state.global_step
        tensors = resumed_state.tensors
        generator.load_state_dict(checkpoint.unprefixed("generator", tensors))
        discriminator.load_state_dict(checkpoint.unprefixed("discriminator", tensors))
        optimizer_g.load_state_dict(checkpoint.optimizer_from_tensors(
            "optimizer_g", tensors, resumed_state.info["optimizer_g_param_groups"]))
        optimizer_d.load_state_dict(checkpoint.optimizer_from_tensors(
            "optimizer_d", tensors, resumed_state.info["optimizer_d_param_groups"]))
        order_rng.set_state(tensors["rng.order"])
        latent_rng.set_state(tensors["rng.latent"])
        epoch_order = tensors["epoch_order"]
        step_values.copy_(tensors["epoch_step_values"])
        epoch_seconds_before = resumed_state.info["epoch_seconds_before"]

    # Under torchrun: DDP averages the gradients over the ranks. The plain modules stay for sampling and saving.
    train_generator = distributed.wrap(generator, ranks)
    train_discriminator = distributed.wrap(discriminator, ranks)

    def save_training_state() -> None:
        """Checkpoint after everything logged so far is in the store (so a resume never misses a step)."""
        if not tracked:
            return
        run_logger.wait()
        optimizer_g_tensors, optimizer_g_groups = checkpoint.optimizer_to_tensors("optimizer_g", optimizer_g)
        optimizer_d_tensors, optimizer_d_groups = checkpoint.optimizer_to_tensors("optimizer_d", optimizer_d)
        checkpoint.save_checkpoint(checkpoint_dir, checkpoint.TrainingState(
            epoch=epoch, step_in_epoch=step_in_epoch, global_step=global_step,
            tensors={
                **checkpoint.prefixed("generator", generator.state_dict()),
                **checkpoint.prefixed("discriminator", discriminator.state_dict()),
                **optimizer_g_tensors, **optimizer_d_tensors,
                "rng.order": order_rng.get_state(), "rng.latent": latent_rng.get_state(),
                "epoch_order": epoch_order, "epoch_step_values": step_values,
            },
            info={"optimizer_g_param_groups": optimizer_g_groups, "optimizer_d_param_groups": optimizer_d_groups,
                  "epoch_seconds_before": epoch_seconds_before},
        ))
        tracking.publish_checkpoint(run_logger, checkpoint_dir, artifact_dir)
        run_logger.wait()

    # Ctrl-C (and SIGTERM) ask the loop to stop after the current step; a second one stops at once.
    stop_signal: list[int] = []

    def request_stop(signal_number, frame):
        if stop_signal:
            raise KeyboardInterrupt
        stop_signal.append(signal_number)

    previous_handlers = {number: signal.signal(number, request_stop) for number in (signal.SIGINT, signal.SIGTERM)}
    stopping = False  # under torchrun the ranks agree on it every FLUSH_EVERY_STEPS steps, so all stop together
    steps_run, step_seconds = 0, 0.0
    progress = tqdm(total=total_steps, initial=global_step, unit="step",
                    disable=not (show_progress and ranks.is_main),
                    dynamic_ncols=True, file=sys.stderr)
    run_logger.wait()  # the run's set-up writes land before the first step, not beside the loop
    try:
        # The loop: epochs of shuffled batches from the device-resident images.
        while global_step < total_steps and epoch < config.epochs:
            progress.set_description(f"{config.arch} epoch {epoch + 1}/{config.epochs}")
            epoch_start = time.perf_counter()
            first_unflushed = step_in_epoch
            steps_before = global_step
            while step_in_epoch < steps_per_epoch and global_step < total_steps and not stopping:
                # This rank's share of the global batch of images and latents (all of it in a single process):
                # N ranks then see exactly what one process sees.
                rank_share = slice(ranks.rank * rank_batch_size, (ranks.rank + 1) * rank_batch_size)
                batch_indices = epoch_order[step_in_epoch * config.batch_size:(step_in_epoch + 1) * config.batch_size]
                real_images = all_real_images[batch_indices[rank_share].to(device)]
                latents = torch.randn(config.batch_size, config.latent_dim, device=device,
                                      generator=latent_rng)[rank_share]
                step_values[step_in_epoch] = gan_step(
                    train_generator, train_discriminator, optimizer_g, optimizer_d, real_images, latents,
                    real_label=1.0 - config.label_smoothing, instance_noise=config.instance_noise,
                    noise_rng=latent_rng, update_d=global_step % config.d_update_every == 0)
                step_in_epoch += 1
                global_step += 1
                progress.update()
                if not ranks.is_distributed:
                    stopping = bool(stop_signal)
                if step_in_epoch - first_unflushed == FLUSH_EVERY_STEPS:
                    run_logger.log_step_values(global_step - FLUSH_EVERY_STEPS + 1, distributed.mean_over_ranks(
                        step_values[first_unflushed:step_in_epoch].clone(), ranks))
                    first_unflushed = step_in_epoch
                    progress.set_postfix({name: f"{value:.3f}" for name, value in run_logger.latest_step_values.items()})
                    stopping = distributed.any_rank(bool(stop_signal), ranks)
            if step_in_epoch > first_unflushed:
                run_logger.log_step_values(global_step - (step_in_epoch - first_unflushed) + 1,
                                           distributed.mean_over_ranks(
                                               step_values[first_unflushed:step_in_epoch].clone(), ranks))
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # once per epoch, for an honest epoch time
            epoch_seconds_before += time.perf_counter() - epoch_start
            steps_run += global_step - steps_before
            step_seconds += time.perf_counter() - epoch_start

            if distributed.any_rank(bool(stop_signal), ranks):
                # The checkpoint keeps this epoch's step values for its means: those of all ranks.
                step_values = distributed.mean_over_ranks(step_values, ranks)
                save_training_state()
                run_logger.close("KILLED")
                raise TrainingInterrupted(stop_signal[0] if stop_signal else signal.SIGTERM, run_id)

            # End of epoch: the fixed-latent sample grid, the epoch means and, now and then, the quality
            # metrics; then a checkpoint.
            generator.eval()
            with torch.no_grad():
                sample_grid = image_grid(generator(fixed_latents))
            generator.train()
            epoch_means = distributed.mean_over_ranks(step_values[:step_in_epoch].mean(dim=0), ranks)
            epoch_metrics = {
                **{f"epoch_{name}": epoch_means[index] for index, name in enumerate(tracking.STEP_METRIC_NAMES)},
                "epoch_d_gap": epoch_means[2] - epoch_means[3],  # mean D(x) − mean D(G(z)): 1 when D wins outright
                "epoch_seconds": epoch_seconds_before,
                "images_per_second": step_in_epoch * config.batch_size / max(epoch_seconds_before, 1e-9),
            }
            is_last_epoch = epoch + 1 == config.epochs or global_step >= total_steps
            if evaluator is not None and ((epoch + 1) % config.eval_every == 0 or is_last_epoch):
                epoch_metrics.update(_evaluate(evaluator, generator, config, run_logger, is_last_epoch))
            run_logger.log_epoch(epoch + 1, epoch_metrics, sample_grid)
            epoch, step_in_epoch, epoch_seconds_before = epoch + 1, 0, 0.0
            epoch_order = torch.randperm(len(all_real_images), generator=order_rng)
            save_training_state()
            stop_reason = after_epoch(epoch, {name: float(value) for name, value in epoch_metrics.items()}) \
                if after_epoch else None
            if stop_reason:
                progress.close()
                run_logger.set_tags({"ganlab.stopped_early": stop_reason})
                run_logger.close("KILLED")
                return _result(client, run_id, run_artifact_uri, experiment_id, "KILLED", wall_start,
                               steps_run, step_seconds)

        # After training: final weights, the config to rebuild G, and the curves from the store.
        progress.close()
        if tracked:
            _log_final_model(run_logger, config, generator, discriminator, run_id, epoch, global_step)
            run_logger.wait()
            model_registry.log_generator_model(client, run_id, register_as=config.register_model)  # G as an MLflow Model
            _log_curves(run_logger, client, run_id, steps_per_epoch)
        run_logger.close("FINISHED")
    except TrainingInterrupted:
        raise
    except BaseException:
        progress.close()
        with contextlib.suppress(GanlabError):  # the error that stopped training is the one to report
            run_logger.close("FAILED")
        raise
    finally:
        progress.close()
        for number, handler in previous_handlers.items():
            signal.signal(number, handler)
        if ranks.is_distributed:
            distributed.stop()

    return _result(client, run_id, run_artifact_uri, experiment_id, "FINISHED", wall_start, steps_run, step_seconds)


def _result(client: MlflowClient | None, run_id: str, artifact_uri: str, experiment_id: str, status: str,
            wall_start: float, steps_run: int, step_seconds: float) -> TrainResult:
    final_metrics = client.get_run(run_id).data.metrics if client is not None and artifact_uri else {}
    return TrainResult(
        run_id=run_id, experiment_id=experiment_id, status=status,
        final_step_values={name: final_metrics[name] for name in tracking.STEP_METRIC_NAMES if name in final_metrics},
        wall_seconds=time.perf_counter() - wall_start, artifact_uri=artifact_uri,
        run_url=tracking.run_url(experiment_id, run_id) if artifact_uri else "",
        steps_run=steps_run, step_seconds=step_seconds)


def _evaluate(evaluator: metrics.Evaluator, generator: nn.Module, config: TrainConfig,
              run_logger: tracking.RunLogger, is_last_epoch: bool) -> dict[str, float]:
    """The quality metrics of this epoch's G (the same latents every time); after the last epoch also the
    class-histogram plot and eval/final.json."""
    eval_start = time.perf_counter()
    evaluation = evaluator.evaluate_generator(generator, config.latent_dim, config.eval_samples, seed=config.seed + 3)
    if is_last_epoch:
        run_logger.log_figure(class_histogram_figure(evaluation.class_shares, data.CLASS_NAMES,
                                                     f"Predicted classes of {config.eval_samples} samples "
                                                     f"({metrics.FEATURE_SPACE} classifier)"),
                              "plots/class_histogram.png")
        run_logger.log_text(json.dumps(dataclasses.asdict(evaluation), indent=2), "eval/final.json")
    return {**evaluation.metrics, "eval_seconds": time.perf_counter() - eval_start}


def _run_tags(config: TrainConfig) -> dict[str, str]:
    tags = {"ganlab.kind": "train", "ganlab.arch": config.arch, "mlflow.source.name": "experiments/train.py"}
    commit = tracking.git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def _log_final_model(run_logger: tracking.RunLogger, config: TrainConfig, generator: nn.Module,
                     discriminator: nn.Module, run_id: str, epochs_trained: int, global_step: int) -> None:
    """model/: both networks as safetensors and the JSON that `tracking.load_generator` rebuilds G from."""
    model_config = {
        "format": "ganlab-generator-v1", "arch": config.arch, "latent_dim": config.latent_dim,
        "image_shape": list(IMAGE_SHAPE), "pixel_range": [-1, 1], "run_id": run_id,
        "epochs_trained": epochs_trained, "global_step": global_step,
        "ganlab_version": ganlab.__version__, "torch_version": torch.__version__,
    }
    staging_dir = Path(tempfile.mkdtemp(prefix="ganlab-model-"))
    for name, module in (("generator", generator), ("discriminator", discriminator)):
        save_file({key: value.detach().cpu().contiguous() for key, value in module.state_dict().items()},
                  str(staging_dir / f"{name}.safetensors"))
        run_logger.log_artifact(staging_dir / f"{name}.safetensors", "model")
    run_logger.log_text(json.dumps(model_config, indent=2), "model/config.json")


def _log_curves(run_logger: tracking.RunLogger, client: MlflowClient, run_id: str, steps_per_epoch: int) -> None:
    """plots/losses.png and plots/d_outputs.png from the whole history in the store (resumes included)."""
    history = {}
    for name in tracking.STEP_METRIC_NAMES:
        by_step = {metric.step: metric.value for metric in client.get_metric_history(run_id, name)}
        steps = np.array(sorted(by_step))
        history[name] = np.array([by_step[step] for step in steps])
    run_logger.log_figure(training_curves(steps, {"G loss": history["loss_g"], "D loss": history["loss_d"]},
                                          steps_per_epoch, "Generator and discriminator losses", "BCE loss"),
                          "plots/losses.png")
    run_logger.log_figure(training_curves(steps, {"D(x)": history["d_real"], "D(G(z))": history["d_fake"]},
                                          steps_per_epoch, "Discriminator outputs", "mean D output"),
                          "plots/d_outputs.png")
