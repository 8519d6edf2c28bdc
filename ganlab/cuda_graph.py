"""The whole G+D step as one CUDA graph: on a GPU these small models spend most of an eager step launching kernels.

Captured once per run (`capture_step`), replayed every step: the batch's image indices go into a static buffer,
the latents (and instance noise) are drawn inside the graph from the run's latent generator, registered with the
graph, and Adam runs with capturable=True. PyTorch needs a few warm-up steps on a side stream before capture;
everything they change (weights, Adam's moments and step counts, the latent stream) is put back afterwards, so a
run with the graph trains the same steps as one without (tests/test_gpu.py compares them).

Left eager, with a one-line note: D updated only every Nth step (a branch a graph cannot take), and torchrun (DDP
communicates between the backward passes). Not yet run on a GPU by the session that wrote it: the GPU campaign
(docs/gpu.md) is its first check.
"""

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from ganlab import devices
from ganlab.training_state import TrainingState

WARMUP_STEPS = 3  # eager steps on a side stream before capture (PyTorch's whole-network capture recipe)


def eager_reason(device: torch.device, d_update_every: int, is_distributed: bool) -> str | None:
    """Why this run steps eagerly on CUDA, or None when the graph applies. Off the GPU: no note, no graph."""
    if device.type != "cuda":
        return "not on CUDA"
    if d_update_every != 1:
        return f"D is updated every {d_update_every} steps, a branch the graph cannot take"
    if is_distributed:
        return "torchrun: DDP communicates between the backward passes"
    return None


class GraphedStep:
    """Replays the captured step for a batch of image indices; returns the step's (loss_g, loss_d, D(x), D(G(z)))."""

    def __init__(self, graph: torch.cuda.CUDAGraph, batch_indices: torch.Tensor, step_values: torch.Tensor):
        self.graph, self.batch_indices, self.step_values = graph, batch_indices, step_values

    def __call__(self, batch_indices: torch.Tensor) -> torch.Tensor:
        self.batch_indices.copy_(batch_indices, non_blocking=True)
        self.graph.replay()
        return self.step_values


def capture_step(state: TrainingState, images: torch.Tensor, batch_size: int, latent_dim: int, precision: str,
                 real_label: float, instance_noise: float,
                 step_function: Callable[..., torch.Tensor]) -> GraphedStep:
    """Warm up, capture one `step_function` (ganlab.train.gan_step) as a graph, and put the state back as it was
    before the warm-up."""
    device = images.device
    for optimizer in (state.optimizer_g, state.optimizer_d):
        _make_capturable(optimizer)
    batch_indices = torch.zeros(batch_size, dtype=torch.long, device=device)
    generator, discriminator = state.generator, state.discriminator

    def autocast() -> contextlib.AbstractContextManager:
        return devices.autocast(device, precision, cache=False)  # autocast's weight cache breaks under capture

    def step() -> torch.Tensor:
        latents = torch.randn(batch_size, latent_dim, device=device, generator=state.latent_rng)
        return step_function(generator, discriminator, state.optimizer_g, state.optimizer_d, images[batch_indices],
                             latents, real_label=real_label, instance_noise=instance_noise,
                             noise_rng=state.latent_rng, autocast=autocast)

    before = _snapshot(state)
    side_stream = torch.cuda.Stream(device)
    side_stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side_stream):
        for _ in range(WARMUP_STEPS):
            step()
    torch.cuda.current_stream(device).wait_stream(side_stream)

    graph = torch.cuda.CUDAGraph()
    graph.register_generator_state(state.latent_rng)
    with torch.cuda.graph(graph):
        step_values = step()
    _restore(state, before)
    return GraphedStep(graph, batch_indices, step_values)


def _make_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Adam inside a graph: capturable, its step counts on the GPU (a resumed state brings them from the CPU)."""
    for group in optimizer.param_groups:
        group["capturable"] = True
        for parameter in group["params"]:
            parameter_state = optimizer.state.get(parameter, {})
            if "step" in parameter_state:
                parameter_state["step"] = parameter_state["step"].to(parameter.device, torch.float32)


@torch.no_grad()
def _snapshot(state: TrainingState) -> dict:
    """Copies of what a warm-up step changes."""
    return {
        "tensors": [tensor.clone() for tensor in _module_tensors(state.generator, state.discriminator)],
        "optimizers": [{parameter: {name: value.clone() for name, value in optimizer.state[parameter].items()}
                        for parameter in optimizer.state} for optimizer in (state.optimizer_g, state.optimizer_d)],
        "latent_rng": state.latent_rng.get_state(),
    }


@torch.no_grad()
def _restore(state: TrainingState, before: dict) -> None:
    """Back to the snapshot, in place: the graph holds the addresses of these very tensors. Adam state that the
    warm-up created is zeroed, which is what Adam's first step starts from."""
    for tensor, saved in zip(_module_tensors(state.generator, state.discriminator), before["tensors"]):
        tensor.copy_(saved)
    for optimizer, saved_state in zip((state.optimizer_g, state.optimizer_d), before["optimizers"]):
        for parameter, parameter_state in optimizer.state.items():
            for name, value in parameter_state.items():
                if parameter in saved_state:
                    value.copy_(saved_state[parameter][name])
                else:
                    value.zero_()
    state.latent_rng.set_state(before["latent_rng"])


def _module_tensors(*modules: nn.Module) -> list[torch.Tensor]:
    return [tensor for module in modules for tensor in (*module.parameters(), *module.buffers())]
