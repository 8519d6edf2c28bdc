"""Everything a training run changes and a checkpoint restores, as one object with state_dict / load_state_dict.

G, D, both Adam states, the two random streams (batch order on the CPU, latents on the device), where training
stands (epoch, step in epoch, global step) and the buffers of the epoch in progress (its batch order, its per-step
values, the seconds spent in it). Saving and restoring are one pair of methods, so they cannot drift apart.
"""

import torch
from torch import nn

from ganlab import checkpoint
from ganlab.errors import GanlabError
from ganlab.metric_writer import STEP_METRIC_NAMES
from ganlab.models import build_models

SAMPLE_GRID_SIZE = 64  # the fixed latent batch drawn every epoch, 8 per row
MODEL_PREFIXES = ("generator", "discriminator")


class TrainingState:
    """The mutable state of one training run (see the module docstring)."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, optimizer_g: torch.optim.Optimizer,
                 optimizer_d: torch.optim.Optimizer, order_rng: torch.Generator, latent_rng: torch.Generator,
                 fixed_latents: torch.Tensor, num_images: int, steps_per_epoch: int):
        self.generator, self.discriminator = generator, discriminator
        self.optimizer_g, self.optimizer_d = optimizer_g, optimizer_d
        self.order_rng = order_rng  # batch order, on the CPU
        self.latent_rng = latent_rng  # training latents (and instance noise), on the device
        self.fixed_latents = fixed_latents  # the sample grid's latents: derived from the seed, never saved
        self.num_images = num_images
        self.epoch = 0  # index of the epoch in progress (0-based) = epochs finished
        self.step_in_epoch = 0
        self.global_step = 0
        self.epoch_seconds = 0.0  # step time spent in the epoch in progress (a resumed epoch adds up)
        self.epoch_order = torch.randperm(num_images, generator=order_rng)
        self.step_values = torch.zeros(steps_per_epoch, len(STEP_METRIC_NAMES), device=fixed_latents.device)

    @classmethod
    def create(cls, config, device: torch.device, num_images: int, steps_per_epoch: int) -> "TrainingState":
        """Fresh networks, optimizers and random streams, all from `config.seed`."""
        torch.manual_seed(config.seed)
        generator, discriminator = build_models(config.arch, config.latent_dim)
        # channels_last makes the CNN step ~1.3x faster on the CPU; Linear-only models are unaffected.
        generator = generator.to(device, memory_format=torch.channels_last)
        discriminator = discriminator.to(device, memory_format=torch.channels_last)
        betas = (config.beta1, config.beta2)
        return cls(
            generator, discriminator,
            torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=betas),
            torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=betas),
            order_rng=torch.Generator().manual_seed(config.seed),
            latent_rng=torch.Generator(device).manual_seed(config.seed + 1),
            fixed_latents=torch.randn(SAMPLE_GRID_SIZE, config.latent_dim,
                                      generator=torch.Generator().manual_seed(config.seed + 2)).to(device),
            num_images=num_images, steps_per_epoch=steps_per_epoch)

    def start_next_epoch(self) -> None:
        """Count the finished epoch and draw the next one's batch order."""
        self.epoch, self.step_in_epoch, self.epoch_seconds = self.epoch + 1, 0, 0.0
        self.epoch_order = torch.randperm(self.num_images, generator=self.order_rng)

    def weights_are_finite(self) -> bool:
        """Whether every weight and buffer of G and D is finite (a NaN state must never be checkpointed)."""
        return all(bool(torch.isfinite(tensor).all()) for module in (self.generator, self.discriminator)
                   for tensor in module.state_dict().values() if tensor.is_floating_point())

    def state_dict(self) -> checkpoint.State:
        """Everything above as one flat dict of tensors and JSON values (what `checkpoint.save_checkpoint` stores)."""
        optimizer_g_tensors, optimizer_g_groups = checkpoint.optimizer_to_tensors("optimizer_g", self.optimizer_g)
        optimizer_d_tensors, optimizer_d_groups = checkpoint.optimizer_to_tensors("optimizer_d", self.optimizer_d)
        return {
            **checkpoint.prefixed("generator", self.generator.state_dict()),
            **checkpoint.prefixed("discriminator", self.discriminator.state_dict()),
            **optimizer_g_tensors, **optimizer_d_tensors,
            "optimizer_g_param_groups": optimizer_g_groups, "optimizer_d_param_groups": optimizer_d_groups,
            "rng.order": self.order_rng.get_state(), "rng.latent": self.latent_rng.get_state(),
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "epoch_seconds_before": self.epoch_seconds,
            "epoch_order": self.epoch_order, "epoch_step_values": self.step_values,
        }

    def load_state_dict(self, state: checkpoint.State) -> None:
        """Continue exactly where `state_dict()` was taken (on any device)."""
        try:
            self.generator.load_state_dict(checkpoint.unprefixed("generator", state))
            self.discriminator.load_state_dict(checkpoint.unprefixed("discriminator", state))
            for prefix, optimizer in (("optimizer_g", self.optimizer_g), ("optimizer_d", self.optimizer_d)):
                load_optimizer(optimizer, checkpoint.optimizer_from_tensors(prefix, state,
                                                                             state[f"{prefix}_param_groups"]))
            self.order_rng.set_state(state["rng.order"])
            self.latent_rng.set_state(state["rng.latent"])
            self.epoch, self.step_in_epoch, self.global_step = (
                state["epoch"], state["step_in_epoch"], state["global_step"])
            self.epoch_seconds = state["epoch_seconds_before"]
            self.epoch_order = state["epoch_order"]
            self.step_values.copy_(state["epoch_step_values"])
        except (KeyError, RuntimeError, ValueError) as error:
            raise GanlabError(f"the checkpoint does not fit this run's models and settings ({error})") from error


def load_optimizer(optimizer: torch.optim.Optimizer, state_dict: dict) -> None:
    """Load an optimizer's state but keep how this process steps it: a checkpoint of a CUDA-graph run (capturable
    Adam) resumes on the CPU, and an eager one under a graph (ganlab.cuda_graph sets capturable itself)."""
    capturable = [group.get("capturable", False) for group in optimizer.param_groups]
    optimizer.load_state_dict(state_dict)
    for group, flag in zip(optimizer.param_groups, capturable):
        group["capturable"] = flag
