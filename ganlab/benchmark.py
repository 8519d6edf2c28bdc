"""ganlab's training loop timed against the reports' loop on the same device, in one process.

The baseline is the loop of the reports (and of PyTorch-GAN, which they follow): torchvision's FashionMNIST
with per-image transforms behind a DataLoader, numpy latents, and every step's losses and D outputs pulled
to the host with `.item()` for the curves. ganlab's loop is `ganlab.train.train` itself, timed twice: with
no tracking, and tracked into a throwaway SQLite store like the default one, which prices the tracking.
Shared machines drift by ±20% from minute to minute, so the three loops take turns, `--repeats` times, and
every figure is the median. `--system-metrics` asks another question: what MLflow's system-metrics monitor
(`train.py --system-metrics`) costs per step; it times the tracked loop with and without it, in turn.
"""

import dataclasses
import datetime
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from mlflow.entities import Metric
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms
from tqdm import tqdm

from ganlab import data, metrics, tracking
from ganlab.cli import DATA_DIR_HELP, DEVICE_HELP, TRACKING_URI_HELP, option
from ganlab.errors import GanlabError
from ganlab.models import ARCHITECTURES, build_models
from ganlab.devices import has_native_bf16, machine_description, resolve_device, resolve_precision
from ganlab.train import TrainConfig, train

IMAGES_PER_EPOCH = 60_000


@dataclass
class BenchmarkConfig:
    """What to time, and where; logged whole as the benchmark run's params."""

    arch: str = option("mlp", "architecture", choices=list(ARCHITECTURES))
    device: str = option("auto", DEVICE_HELP)
    precision: str = option("auto", "ganlab's loop in bf16 autocast or fp32 (the reference loop stays fp32, as the "
                            "reports ran it); auto: bf16 where the hardware has native bf16",
                            choices=["auto", "fp32", "bf16"])
    steps: int = option(937, "training steps timed per loop (937 = one epoch at batch 64)")
    repeats: int = option(3, "rounds of the three loops, taken in turn; figures are medians")
    batch_size: int = option(64, "images per step, both loops")
    eval_samples: int = option(10_000, "generated samples for the evaluation timing (0: skip it)")
    system_metrics: bool = option(False, "instead, time the tracked loop with and without --system-metrics")
    seed: int = option(0, "seeds both loops")
    data_dir: str | None = option(None, DATA_DIR_HELP)
    experiment: str = option("ganlab-benchmarks", "MLflow experiment of the benchmark run")
    tracking_uri: str | None = option(None, TRACKING_URI_HELP)

    def validate(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise GanlabError(f"unknown --arch {self.arch!r}: choose one of {', '.join(ARCHITECTURES)}")
        for name in ("steps", "repeats", "batch_size"):
            if getattr(self, name) <= 0:
                raise GanlabError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.eval_samples < 0:
            raise GanlabError(f"--eval-samples must be 0 (skip) or positive, got {self.eval_samples}")


@dataclass
class Timing:
    """One loop's measurement: its steps and the seconds they took (and, for ganlab, the whole call's)."""

    steps: int
    seconds: float
    batch_size: int
    wall_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.steps * self.batch_size / self.seconds

    @property
    def epoch_seconds(self) -> float:
        """Seconds for the 60000 training images at this rate (the steps alone, no epoch-end work)."""
        return IMAGES_PER_EPOCH / self.images_per_second


def time_reference_loop(config: BenchmarkConfig, device: torch.device, show_progress: bool = False) -> Timing:
    """`config.steps` steps of the reports' loop; the clock includes the DataLoader, as theirs did."""
    dataset = torchvision.datasets.FashionMNIST(
        str(data.resolve_data_dir(config.data_dir)), train=True, download=False,
        transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]))
    dataloader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(config.seed))
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    generator, discriminator = (model.to(device) for model in build_models(config.arch, 100))
    adversarial_loss = nn.BCELoss()
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    g_losses, d_losses, d_real_means, d_fake_means = [], [], [], []

    steps_done = 0
    progress = tqdm(total=config.steps, desc=f"reference {config.arch}", unit="step", disable=not show_progress,
                    file=sys.stderr, dynamic_ncols=True)
    start = time.perf_counter()
    while steps_done < config.steps:
        for images, _ in dataloader:
            valid = torch.ones(images.size(0), 1, device=device)
            fake = torch.zeros(images.size(0), 1, device=device)
            real_images = images.to(device)

            optimizer_g.zero_grad()
            latents = torch.tensor(np.random.normal(0, 1, (images.size(0), 100)), dtype=torch.float32, device=device)
            generated_images = generator(latents)
            d_on_generated = discriminator(generated_images)
            g_loss = adversarial_loss(d_on_generated, valid)
            g_loss.backward()
            optimizer_g.step()

            optimizer_d.zero_grad()
            d_on_real = discriminator(real_images)
            d_on_fake = discriminator(generated_images.detach())
            d_loss = (adversarial_loss(d_on_real, valid) + adversarial_loss(d_on_fake, fake)) / 2
            d_loss.backward()
            optimizer_d.step()

            g_losses.append(g_loss.item())
            d_losses.append(d_loss.item())
            d_real_means.append(d_on_real.mean().item())
            d_fake_means.append(d_on_fake.mean().item())
            steps_done += 1
            progress.update()  # the reports printed a line per step; a bar costs less and still shows progress
            if steps_done == config.steps:
                break
    _synchronize(device)
    seconds = time.perf_counter() - start
    progress.close()
    return Timing(steps_done, seconds, config.batch_size)


def time_ganlab_loop(config: BenchmarkConfig, tracked: bool, show_progress: bool = False,
                     system_metrics: bool = TrainConfig.system_metrics) -> Timing:
    """`config.steps` steps of `ganlab.train.train` (no evaluation); tracked runs go to a throwaway store."""
    with tempfile.TemporaryDirectory(prefix="ganlab-benchmark-") as scratch:
        train_config = TrainConfig(arch=config.arch, batch_size=config.batch_size, seed=config.seed,
                                   device=config.device, precision=config.precision, eval_every=0,
                                   max_steps=config.steps,
                                   epochs=-(-config.steps * config.batch_size // IMAGES_PER_EPOCH),
                                   data_dir=config.data_dir, tracking_uri=f"sqlite:///{Path(scratch) / 'mlflow.db'}",
                                   system_metrics=system_metrics)
        result = train(train_config, show_progress=show_progress, track=tracked)
        # The monitor stops once it sees the run ended (within its sampling interval): not during the next loop.
        for thread in threading.enumerate():
            if thread.name == "SystemMetricsMonitor":
                thread.join()
    return Timing(result.steps_run, result.step_seconds, config.batch_size, result.wall_seconds)


def time_evaluation(config: BenchmarkConfig, device: torch.device) -> float:
    """Seconds to generate and score `config.eval_samples` samples (classifier and reference set loaded before)."""
    evaluator = metrics.Evaluator(data.resolve_data_dir(config.data_dir), device)
    generator, _ = build_models(config.arch, 100)
    generator = generator.to(device)
    start = time.perf_counter()
    evaluator.evaluate_generator(generator, 100, config.eval_samples, seed=config.seed)
    _synchronize(device)
    return time.perf_counter() - start


def run_benchmark(config: BenchmarkConfig, show_progress: bool = False) -> dict[str, float | str]:
    """Every timing of one benchmark, as the flat dict that is printed, logged and returned as JSON."""
    config.validate()
    device = resolve_device(config.device)
    data.prepare_fashion_mnist(data.resolve_data_dir(config.data_dir))
    if config.system_metrics:
        return price_system_metrics(config, device, show_progress)
    rounds = [(time_reference_loop(config, device, show_progress),
               time_ganlab_loop(config, tracked=False, show_progress=show_progress),
               time_ganlab_loop(config, tracked=True, show_progress=show_progress))
              for _ in range(config.repeats)]
    reference, untracked, tracked = (_median_timing([timings[loop] for timings in rounds]) for loop in range(3))
    results: dict[str, float | str] = {
        **_where_and_how(config, device),
        "reference_images_per_s": reference.images_per_second,
        "reference_epoch_seconds": reference.epoch_seconds,
        "ganlab_images_per_s": tracked.images_per_second,
        "ganlab_epoch_seconds": tracked.epoch_seconds,
        "ganlab_untracked_images_per_s": untracked.images_per_second,
        "speedup": tracked.images_per_second / reference.images_per_second,
        # The steady cost per step (metrics handed to MLflow's writer thread), and the one-off cost of the
        # run itself: creating it, params, the epoch-end grid and checkpoint, the final weights and curves.
        "tracking_overhead": tracked.seconds / untracked.seconds - 1,
        "tracking_fixed_seconds": (tracked.wall_seconds - tracked.seconds) - (untracked.wall_seconds - untracked.seconds),
    }
    if config.eval_samples:
        results["eval_seconds"] = time_evaluation(config, device)
    return results


def price_system_metrics(config: BenchmarkConfig, device: torch.device, show_progress: bool = False
                         ) -> dict[str, float | str]:
    """The tracked loop without and with the system-metrics monitor, in turn (which goes first alternates), and the
    monitor's cost per step: the median of the rounds' own ratios, since the machine drifts less within a round."""
    rounds = []
    for round_number in range(config.repeats):
        order = (False, True) if round_number % 2 == 0 else (True, False)
        timings = {monitored: time_ganlab_loop(config, tracked=True, show_progress=show_progress,
                                               system_metrics=monitored) for monitored in order}
        rounds.append((timings[False], timings[True]))
    ratios = sorted(monitored.seconds / plain.seconds - 1 for plain, monitored in rounds)
    plain, monitored = (_median_timing([timings[loop] for timings in rounds]) for loop in range(2))
    return {**_where_and_how(config, device),
            "ganlab_images_per_s": plain.images_per_second,
            "system_metrics_images_per_s": monitored.images_per_second,
            "system_metrics_overhead": ratios[len(ratios) // 2],
            "system_metrics_overhead_rounds": json.dumps([round(ratio, 4) for ratio in ratios])}


def _where_and_how(config: BenchmarkConfig, device: torch.device) -> dict[str, str]:
    """The machine, the date and the precision every benchmark result names."""
    return {"device": device_name(device), "device_type": device.type, "machine": machine_description(device),
            "date": datetime.date.today().isoformat(),
            "precision_resolved": resolve_precision(config.precision, device),
            "native_bf16": str(has_native_bf16(device))}


def _median_timing(timings: list[Timing]) -> Timing:
    """The round with the median rate (its own steps, seconds and wall time, so the figures stay consistent)."""
    return sorted(timings, key=lambda timing: timing.images_per_second)[len(timings) // 2]


def device_name(device: torch.device) -> str:
    """The device in words, for the table and the run: the GPU's name, or the CPU with its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads)"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def log_benchmark_run(config: BenchmarkConfig, results: dict[str, float | str]) -> tuple[str, str]:
    """The results as one FINISHED MLflow run tagged ganlab.kind=benchmark; returns (run id, how to open it)."""
    client = tracking.connect(tracking.resolve_tracking_uri(config.tracking_uri))
    experiment_id = tracking.get_or_create_experiment(client, config.experiment)
    with tracking.run_lifecycle(client, experiment_id, run_name=f"benchmark-{config.arch}-{results['device_type']}",
                                tags={"ganlab.kind": "benchmark", "ganlab.arch": config.arch,
                                      "ganlab.device": str(results["device"]),
                                      "mlflow.source.name": "experiments/benchmark.py"}) as run, \
            tracking.store_errors("logging the benchmark run"):
        client.log_batch(run.info.run_id,
                         metrics=[Metric(name, value, int(time.time() * 1000), 0)
                                  for name, value in results.items() if isinstance(value, float)],
                         params=[tracking.mlflow_param(name, value)
                                 for name, value in {**dataclasses.asdict(config),
                                                     "precision_resolved": results["precision_resolved"],
                                                     "native_bf16": results["native_bf16"],
                                                     "torch_version": torch.__version__,
                                                     "torch_threads": torch.get_num_threads()}.items()])
    return run.info.run_id, tracking.ui_hint(experiment_id, run.info.run_id, client.tracking_uri)
