"""The reports' latent study, made measurable: perturb z along single dims (offsets or set values), random
unit directions, SeFa and GANSpace directions, and measure what changes over many samples with 95% CIs.

An effect is always measured the same way: the same base latents z, images G(z) and G(z + offset·direction),
and from them the pixel change (L2 and mean absolute, in [-1, 1] pixel units), the change of mean brightness
(in [0, 1], black to white), the shift of each class probability under the metrics classifier (fmnist-cnn-v1),
and the flip rate (share of samples whose predicted class changes).
"""

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ganlab.errors import GanlabError
from ganlab.metrics.features import sampling_copy

Z_95 = 1.959964  # two-sided 95% normal quantile
EFFECT_BATCH = 2048  # images per generator/classifier forward pass


@dataclass(frozen=True)
class Direction:
    """A unit vector in latent space with a name: `dim 37`, `random 3`, `sefa 0`, `ganspace 2`."""

    family: str  # dim | random | sefa | ganspace
    index: int
    vector: torch.Tensor  # [latent_dim], unit norm

    @property
    def label(self) -> str:
        return f"{self.family} {self.index}"


@dataclass
class Effect:
    """What one perturbation did to `samples` images: means and 95% CI half-widths (flip rate: Wilson bounds)."""

    family: str
    index: int
    mode: str  # offset (z + a·direction) | set (z[dim] = a)
    amount: float
    samples: int
    l2_mean: float
    l2_ci: float
    mean_abs_mean: float
    mean_abs_ci: float
    flip_rate: float
    flip_low: float
    flip_high: float
    class_shift: list[float]  # mean change of each class probability
    class_shift_ci: list[float]
    brightness_change: float  # mean change of the mean pixel value, in [0, 1] units (negative: darker)
    brightness_change_ci: float

    def row(self, class_names: tuple[str, ...]) -> dict[str, object]:
        """A flat CSV row."""
        fields = {name: getattr(self, name) for name in ("family", "index", "mode", "amount", "samples", "l2_mean",
                                                          "l2_ci", "mean_abs_mean", "mean_abs_ci", "flip_rate",
                                                          "flip_low", "flip_high", "brightness_change",
                                                          "brightness_change_ci")}
        for class_name, shift, ci in zip(class_names, self.class_shift, self.class_shift_ci):
            fields[f"shift.{class_name}"] = shift
            fields[f"shift_ci.{class_name}"] = ci
        return fields


def check_dims(dims: list[int], latent_dim: int) -> None:
    """Dims are 0-based indices into z; say so when one is out of range, with the mapping from the reports'
    ordinals (their "100th number" is index 99)."""
    for dim in dims:
        if not 0 <= dim < latent_dim:
            raise GanlabError(f"latent dim {dim} is out of range: dims are 0-based indices 0…{latent_dim - 1} of "
                              f"this generator's {latent_dim}-dim z (a report's Nth number is index N-1: the "
                              f"100th is {latent_dim - 1})")


def brightness(images: torch.Tensor) -> torch.Tensor:
    """Mean pixel value of each image in [0, 1] (0 black, 1 white), from images in [-1, 1]."""
    return (images.flatten(1).mean(dim=1) + 1) / 2


def base_latents(count: int, latent_dim: int, seed: int) -> torch.Tensor:
    """The study's z batch, from a CPU generator so it is the same on every device."""
    return torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(seed))


def offset_latents(latents: torch.Tensor, direction: torch.Tensor, amount: float) -> torch.Tensor:
    """z + amount·direction."""
    return latents + amount * direction.to(latents.dtype)


def set_latents(latents: torch.Tensor, dim: int, value: float) -> torch.Tensor:
    """z with z[dim] = value (the second report's experiment)."""
    changed = latents.clone()
    changed[:, dim] = value
    return changed


def unit_dim(dim: int, latent_dim: int) -> Direction:
    vector = torch.zeros(latent_dim)
    vector[dim] = 1.0
    return Direction("dim", dim, vector)


def random_directions(count: int, latent_dim: int, seed: int) -> list[Direction]:
    """Random unit directions: the control a single dim must beat to be called special."""
    vectors = torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(seed))
    return [Direction("random", index, vector / vector.norm()) for index, vector in enumerate(vectors)]


def first_linear_layer(generator: nn.Module) -> nn.Linear:
    first = next((module for module in generator.modules() if isinstance(module, nn.Linear)), None)
    if first is None:
        raise GanlabError("the generator has no Linear layer on z, so SeFa directions are undefined")
    return first


def sefa_directions(generator: nn.Module, count: int) -> list[Direction]:
    """SeFa (Shen & Zhou 2021): the top eigenvectors of WᵀW of the layer that first sees z are the directions
    that change its output most, found in closed form from the weights alone."""
    weight = first_linear_layer(generator).weight.detach().double().cpu()  # [out, latent]
    eigenvalues, eigenvectors = torch.linalg.eigh(weight.T @ weight)
    order = torch.argsort(eigenvalues, descending=True)[:count]
    return [Direction("sefa", rank, _fixed_sign(eigenvectors[:, column]).float())
            for rank, column in enumerate(order.tolist())]


@torch.no_grad()
def ganspace_directions(generator: nn.Module, latent_dim: int, count: int, seed: int,
                        samples: int = 2048, device: torch.device | str = "cpu") -> list[Direction]:
    """GANSpace (Härkönen et al. 2020): PCA of G's first nonlinear activations over random z, each component
    carried back to z by linear regression (as the paper does for BigGAN)."""
    activation_layer = next((module for module in generator.modules()
                             if isinstance(module, (nn.LeakyReLU, nn.ReLU))), None)
    if activation_layer is None:
        raise GanlabError("the generator has no ReLU/LeakyReLU layer, so GANSpace activations are undefined")
    captured = []
    hook = activation_layer.register_forward_hook(lambda _m, _i, output: captured.append(output.flatten(1).clone()))
    try:
        latents = base_latents(samples, latent_dim, seed)
        generator(latents.to(device))
    finally:
        hook.remove()
    activations = captured[0].double().cpu()
    centered = activations - activations.mean(dim=0)
    _, _, components = torch.linalg.svd(centered, full_matrices=False)  # rows: principal axes
    coordinates = centered @ components[:count].T  # [samples, count]
    # z ≈ coordinates · M: each row of M is where one principal axis lies in latent space.
    latent_directions = torch.linalg.lstsq(coordinates, latents.double()).solution  # [count, latent]
    return [Direction("ganspace", rank, _fixed_sign(vector / vector.norm()).float())
            for rank, vector in enumerate(latent_directions)]


def _fixed_sign(vector: torch.Tensor) -> torch.Tensor:
    """Eigenvectors have no sign; fix it (largest entry positive) so the same run gives the same figures."""
    return vector if vector[vector.abs().argmax()] >= 0 else -vector


Change = tuple[str, "Direction | int", float]  # ("offset", direction, amount) or ("set", dim, value)


class EffectMeter:
    """Measures effects against one fixed set of base latents, whose images and class probabilities are
    computed once and shared by every perturbation."""

    def __init__(self, generator: nn.Module, classifier: nn.Module, latents: torch.Tensor,
                 device: torch.device | str):
        self.generator, self.classifier, self.device = sampling_copy(generator), classifier, device
        self.latents = latents
        self.base_images, self.base_probabilities = self.images_and_probabilities(latents)

    @torch.no_grad()
    def images_and_probabilities(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """G(latents) flattened, on the CPU, and the classifier's class probabilities for them."""
        images, probabilities = [], []
        for start in range(0, len(latents), EFFECT_BATCH):
            batch_images = self.generator(latents[start:start + EFFECT_BATCH].to(self.device)).float().clamp(-1, 1)
            probabilities.append(torch.softmax(self.classifier(batch_images).float(), dim=1).cpu())
            images.append(batch_images.flatten(1).cpu())
        return torch.cat(images), torch.cat(probabilities)

    def changed_latents(self, change: Change) -> torch.Tensor:
        mode, target, amount = change
        return (offset_latents(self.latents, target.vector, amount) if mode == "offset"
                else set_latents(self.latents, target, amount))

    def outcomes(self, changes: Iterable[Change]) -> Iterator[tuple[Change, torch.Tensor, torch.Tensor]]:
        """(change, images, probabilities) for every change, in order, computed for many changes per forward pass:
        with few samples a change, one pass each would cost far more than its images."""
        pending: list[Change] = []
        for change in changes:
            pending.append(change)
            if len(pending) * len(self.latents) >= EFFECT_BATCH:
                yield from self._outcomes_of(pending)
                pending = []
        if pending:
            yield from self._outcomes_of(pending)

    def _outcomes_of(self, changes: list[Change]) -> Iterator[tuple[Change, torch.Tensor, torch.Tensor]]:
        images, probabilities = self.images_and_probabilities(torch.cat([self.changed_latents(change)
                                                                         for change in changes]))
        count = len(self.latents)
        for position, change in enumerate(changes):
            window = slice(position * count, (position + 1) * count)
            yield change, images[window], probabilities[window]

    def effects(self, changes: Iterable[Change]) -> Iterator[Effect]:
        for (mode, target, amount), images, probabilities in self.outcomes(changes):
            family, index = (target.family, target.index) if mode == "offset" else ("dim", target)
            yield self._effect(family, index, mode, amount, images, probabilities)

    def offset(self, direction: Direction, amount: float) -> Effect:
        return next(self.effects([("offset", direction, amount)]))

    def set_value(self, dim: int, value: float) -> Effect:
        return next(self.effects([("set", dim, value)]))

    def _effect(self, family: str, index: int, mode: str, amount: float, images: torch.Tensor,
                probabilities: torch.Tensor) -> Effect:
        pixel_change = images - self.base_images
        brightness_change = (brightness(images) - brightness(self.base_images)).double()
        l2 = pixel_change.norm(dim=1).double()
        mean_abs = pixel_change.abs().mean(dim=1).double()
        flipped = probabilities.argmax(dim=1) != self.base_probabilities.argmax(dim=1)
        shift = (probabilities - self.base_probabilities).double()
        flip_low, flip_high = wilson_interval(int(flipped.sum()), len(flipped))
        return Effect(family, index, mode, float(amount), len(images),
                      l2_mean=float(l2.mean()), l2_ci=ci_half_width(l2),
                      mean_abs_mean=float(mean_abs.mean()), mean_abs_ci=ci_half_width(mean_abs),
                      flip_rate=float(flipped.double().mean()), flip_low=flip_low, flip_high=flip_high,
                      class_shift=shift.mean(dim=0).tolist(),
                      class_shift_ci=[ci_half_width(column) for column in shift.T],
                      brightness_change=float(brightness_change.mean()),
                      brightness_change_ci=ci_half_width(brightness_change))


def ci_half_width(values: torch.Tensor) -> float:
    """Normal-approximation 95% CI half-width of a mean (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    return float(Z_95 * values.std(unbiased=True) / math.sqrt(len(values)))


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: honest near 0 and 1, where flip rates often are."""
    if trials == 0:
        return 0.0, 1.0
    share = successes / trials
    denominator = 1 + Z_95**2 / trials
    centre = (share + Z_95**2 / (2 * trials)) / denominator
    half_width = Z_95 * math.sqrt(share * (1 - share) / trials + Z_95**2 / (4 * trials**2)) / denominator
    return max(0.0, centre - half_width), min(1.0, centre + half_width)
