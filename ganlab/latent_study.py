"""The whole latent study of one generator: the reports' figures, exactly, then the measured effects, written to a
folder (PNG + CSV/JSON + summary.md) that the caller logs to MLflow.

Two latent batches are used: the small display batch (`--z-seed` or `--z-file`, 8 like the reports) for the image
figures, and a larger statistics batch (`--stats-samples`, seeded by `--stats-seed`) for every number.
"""

import csv
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganlab import data, plots
from ganlab.cli import option
from ganlab.errors import GanlabError
from ganlab.latent import (Direction, Effect, EffectMeter, base_latents, check_dims, ganspace_directions,
                           offset_latents, random_directions, sefa_directions, set_latents, unit_dim)
from ganlab.metrics.classifier import FEATURE_SPACE
from ganlab.plots import image_grid

CONTROL_CURVES = 3  # random directions measured at every offset, as the control line of effect_vs_offset.png


@dataclass
class LatentStudyConfig:
    """Every setting of one latent study; the defaults reproduce the first report's study."""

    dims: str = option("10,20,37,53,67", "the 5 latent dims to study (0-based)")
    offsets: str = option("2,4,6,8,10", "offset magnitudes; each is applied as −a and +a")
    values: str = option("0,10,100", "values a dim is set to, the second report's experiment (negatives: --values=-10,10)")
    grid_offset: float = option(4.0, "the offset of the 15×8 grid, the dimension comparison and the all-dims sweep")
    magnitude_dim: int | None = option(None, "the dim of the magnitude comparison (default: the first of --dims)")
    z_seed: int = option(0, "seed of the display latents")
    z_file: str | None = option(None, ".npy file of display latents [N, latent_dim], instead of --z-seed (default: none)")
    samples: int = option(8, "display images per row")
    stats_samples: int = option(512, "latent vectors behind every measured number")
    stats_seed: int = option(1, "seed of the statistics latents, the random directions and GANSpace's PCA")
    random_directions: int = option(20, "random unit directions: the control every dim is compared with")
    factor_directions: int = option(5, "SeFa and GANSpace directions to measure (each)")

    def parsed(self, latent_dim: int) -> "ParsedStudy":
        """Lists parsed and every setting checked against this generator, with messages that name the flag."""
        dims = _int_list(self.dims, "--dims")
        offsets = _float_list(self.offsets, "--offsets")
        values = _float_list(self.values, "--values")
        check_dims(dims, latent_dim)
        magnitude_dim = dims[0] if self.magnitude_dim is None else self.magnitude_dim
        check_dims([magnitude_dim], latent_dim)
        if any(offset <= 0 for offset in offsets):
            raise GanlabError(f"--offsets are magnitudes and must be positive, got {self.offsets}")
        for name in ("samples", "stats_samples"):
            if getattr(self, name) < 2:
                raise GanlabError(f"--{name.replace('_', '-')} must be at least 2, got {getattr(self, name)}")
        for name in ("random_directions", "factor_directions"):
            if getattr(self, name) < 1:
                raise GanlabError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.factor_directions > latent_dim:
            raise GanlabError(f"--factor-directions must be at most the latent size {latent_dim}")
        display = (load_latent_file(Path(self.z_file), latent_dim) if self.z_file
                   else base_latents(self.samples, latent_dim, self.z_seed))
        return ParsedStudy(dims, offsets, values, magnitude_dim, display)


@dataclass
class ParsedStudy:
    dims: list[int]
    offsets: list[float]
    values: list[float]
    magnitude_dim: int
    display_latents: torch.Tensor


def load_latent_file(path: Path, latent_dim: int) -> torch.Tensor:
    """A user's latent batch from .npy (never unpickled), checked for shape and finite values."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise GanlabError(f"cannot read --z-file {path}: {error}") from error
    if array.ndim != 2 or array.shape[1] != latent_dim or array.shape[0] < 1:
        raise GanlabError(f"--z-file {path} holds an array of shape {array.shape}; need [N, {latent_dim}]")
    if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise GanlabError(f"--z-file {path} must hold finite numbers")
    return torch.from_numpy(array.astype(np.float32))


def run_study(config: LatentStudyConfig, generator: nn.Module, classifier: nn.Module, device: torch.device | str,
              out_dir: Path, source_run_id: str, progress: Callable[[int], None] = lambda _: None) -> dict:
    """Write every figure, table and the summary of the study to `out_dir`; return the headline numbers."""
    latent_dim = generator.latent_dim
    study = config.parsed(latent_dim)
    generator.eval()

    # The reports' figures, from the display batch.
    display = ImageRows(generator, classifier, study.display_latents, device)
    _write_rows(out_dir, "base", f"{len(study.display_latents)} images from the custom latent batch",
                [display.base_row()])
    _write_rows(out_dir, "perturbation_grid",
                f"{len(study.dims)} dims × (−{_fmt(config.grid_offset)}, 0, +{_fmt(config.grid_offset)})",
                [display.offset_row(dim, sign * config.grid_offset) for dim in study.dims for sign in (-1, 0, 1)])
    _write_rows(out_dir, "magnitude_comparison", f"dim {study.magnitude_dim}, offsets ±{_fmt_list(study.offsets)}",
                [display.base_row()] + [display.offset_row(study.magnitude_dim, sign * offset)
                                        for offset in study.offsets for sign in (-1, 1)])
    _write_rows(out_dir, "dimension_comparison", f"offset ±{_fmt(config.grid_offset)}, dims {study.dims}",
                [display.base_row()] + [display.offset_row(dim, sign * config.grid_offset)
                                        for dim in study.dims for sign in (-1, 1)])
    _write_rows(out_dir, "set_value_comparison", f"dims {study.dims} set to {_fmt_list(study.values)}",
                [display.base_row()] + [display.set_row(dim, value) for dim in study.dims for value in study.values])

    # The measured effects, from the statistics batch.
    stats_latents = base_latents(config.stats_samples, latent_dim, config.stats_seed)
    meter = EffectMeter(generator, classifier, stats_latents, device)
    dims = [unit_dim(dim, latent_dim) for dim in range(latent_dim)]
    randoms = random_directions(config.random_directions, latent_dim, config.stats_seed)
    factors = (sefa_directions(generator, config.factor_directions)
               + ganspace_directions(generator, latent_dim, config.factor_directions, config.stats_seed,
                                     device=device))
    planned: list[tuple[Direction | int, str, float]] = []
    for direction in dims + randoms + factors:  # every direction at ±grid offset
        planned += [(direction, "offset", sign * config.grid_offset) for sign in (-1, 1)]
    for direction in [dims[dim] for dim in study.dims] + randoms[:CONTROL_CURVES]:  # curves over every offset
        planned += [(direction, "offset", sign * offset) for offset in study.offsets for sign in (-1, 1)
                    if offset != config.grid_offset]
    planned += [(dim, "set", value) for dim in study.dims for value in study.values]

    effects: list[Effect] = []
    for direction, mode, amount in planned:
        effects.append(meter.offset(direction, amount) if mode == "offset" else meter.set_value(direction, amount))
        progress(1)

    _write_effects_csv(out_dir / "effects.csv", effects)
    _write_directions_csv(out_dir / "directions.csv", randoms + factors)
    findings = EffectTable(effects, study, config.grid_offset)
    _save(plots.effect_vs_offset(findings.offset_curves(study.dims, CONTROL_CURVES), "mean L2 pixel change",
                                 f"Pixel change vs |offset| ({config.stats_samples} samples, 95% CI)"),
          out_dir / "effect_vs_offset.png")
    shift_matrix = findings.class_shift_matrix(latent_dim)
    _save(plots.class_shift_heatmap(shift_matrix, data.CLASS_NAMES, study.dims,
                                    f"Mean change of class probability at +{_fmt(config.grid_offset)} per dim "
                                    f"({FEATURE_SPACE} classifier)"), out_dir / "class_shift_heatmap.png")
    _save(plots.dim_ranking(findings.flip_rates("dim"), study.dims, findings.band("random"),
                            f"Flip rate at ±{_fmt(config.grid_offset)} of every dim, the study's dims marked"),
          out_dir / "dim_ranking.png")
    _save(plots.direction_comparison(findings.family_flip_rates(study.dims),
                                     f"Single dims vs random, SeFa and GANSpace directions at ±{_fmt(config.grid_offset)}"),
          out_dir / "direction_comparison.png")

    summary = findings.summary(source_run_id, config)
    (out_dir / "summary.md").write_text(summary)
    headline = findings.headline()
    (out_dir / "study.json").write_text(json.dumps({
        "source_run_id": source_run_id, "config": dataclasses.asdict(config), "feature_space": FEATURE_SPACE,
        "display_latents": study.display_latents.tolist(), "headline": headline}, indent=2))
    return headline


def planned_effect_count(config: LatentStudyConfig, latent_dim: int) -> int:
    """How many effects `run_study` measures (the progress bar's total)."""
    study = config.parsed(latent_dim)
    other_offsets = sum(1 for offset in study.offsets if offset != config.grid_offset)
    return (2 * (latent_dim + config.random_directions + 2 * config.factor_directions)
            + 2 * other_offsets * (len(study.dims) + min(CONTROL_CURVES, config.random_directions))
            + len(study.dims) * len(study.values))


class ImageRows:
    """Rows of the image figures: the display batch, perturbed, with each image's predicted class."""

    def __init__(self, generator: nn.Module, classifier: nn.Module, latents: torch.Tensor, device):
        self.generator, self.classifier, self.latents, self.device = generator, classifier, latents, device

    @torch.no_grad()
    def _row(self, label: str, latents: torch.Tensor, **spec) -> dict:
        images = self.generator(latents.to(self.device)).float().clamp(-1, 1)
        predicted = self.classifier(images).argmax(dim=1).cpu().tolist()
        return {"label": label, **spec, "images": images.cpu(),
                "predicted_classes": [data.CLASS_NAMES[index] for index in predicted]}

    def base_row(self) -> dict:
        return self._row("base", self.latents, mode="base")

    def offset_row(self, dim: int, amount: float) -> dict:
        vector = unit_dim(dim, self.latents.shape[1]).vector
        return self._row(f"dim {dim}, {_signed(amount)}", offset_latents(self.latents, vector, amount),
                         mode="offset", dim=dim, amount=amount)

    def set_row(self, dim: int, value: float) -> dict:
        return self._row(f"dim {dim} = {_fmt(value)}", set_latents(self.latents, dim, value),
                         mode="set", dim=dim, amount=value)


class EffectTable:
    """The measured effects, indexed for the figures and the plain-language summary."""

    def __init__(self, effects: list[Effect], study: ParsedStudy, grid_offset: float):
        self.effects, self.study, self.grid_offset = effects, study, grid_offset

    def find(self, family: str, index: int, amount: float, mode: str = "offset") -> Effect:
        return next(effect for effect in self.effects if (effect.family, effect.index, effect.mode, effect.amount)
                    == (family, index, mode, float(amount)))

    def at_grid_offset(self, family: str) -> dict[int, tuple[Effect, Effect]]:
        """(−, +) effects at the grid offset of every direction of a family."""
        indices = sorted({effect.index for effect in self.effects if effect.family == family})
        return {index: (self.find(family, index, -self.grid_offset), self.find(family, index, self.grid_offset))
                for index in indices}

    def flip_rates(self, family: str) -> np.ndarray:
        """Mean of the − and + flip rates at the grid offset, per direction of the family."""
        return np.array([(minus.flip_rate + plus.flip_rate) / 2
                         for minus, plus in self.at_grid_offset(family).values()])

    def band(self, family: str) -> tuple[float, float]:
        """The 5–95% range of a family's flip rates."""
        rates = self.flip_rates(family)
        return float(np.percentile(rates, 5)), float(np.percentile(rates, 95))

    def offset_curves(self, dims: list[int], control_count: int) -> dict[str, list[tuple[float, float, float]]]:
        """(|offset|, mean L2, CI) per curve; − and + averaged."""
        curves = {}
        for family, index in [("dim", dim) for dim in dims] + [("random", i) for i in range(control_count)]:
            points = []
            for offset in self.study.offsets:
                minus, plus = self.find(family, index, -offset), self.find(family, index, offset)
                points.append((offset, (minus.l2_mean + plus.l2_mean) / 2, max(minus.l2_ci, plus.l2_ci)))
            curves[f"{family} {index}"] = points
        return curves

    def class_shift_matrix(self, latent_dim: int) -> np.ndarray:
        return np.array([self.find("dim", dim, self.grid_offset).class_shift for dim in range(latent_dim)])

    def family_flip_rates(self, dims: list[int]) -> dict[str, list[tuple[str, float, float, float]]]:
        """Per family: (label, flip rate, low, high) at +grid offset; single dims restricted to the study's."""
        groups: dict[str, list[tuple[str, float, float, float]]] = {}
        for family in ("dim", "random", "sefa", "ganspace"):
            for index, (_, plus) in self.at_grid_offset(family).items():
                if family == "dim" and index not in dims:
                    continue
                groups.setdefault(family, []).append((f"{family} {index}", plus.flip_rate, plus.flip_low,
                                                      plus.flip_high))
        return groups

    def headline(self) -> dict[str, float]:
        """A few numbers worth a metric in MLflow."""
        return {"latent.median_dim_flip_rate": float(np.median(self.flip_rates("dim"))),
                "latent.median_random_flip_rate": float(np.median(self.flip_rates("random"))),
                "latent.median_sefa_flip_rate": float(np.median(self.flip_rates("sefa"))),
                "latent.median_ganspace_flip_rate": float(np.median(self.flip_rates("ganspace"))),
                "latent.max_dim_flip_rate": float(np.max(self.flip_rates("dim")))}

    def summary(self, source_run_id: str, config: LatentStudyConfig) -> str:
        """Plain-language findings, every sentence computed from the table."""
        offset = self.grid_offset
        lines = [f"# Latent study of run {source_run_id}", "",
                 f"Every number: {config.stats_samples} latent vectors z ~ N(0, I) (seed {config.stats_seed}), "
                 f"mean ± 95% CI half-width (flip rates: Wilson interval); classes as predicted by ganlab's "
                 f"{FEATURE_SPACE} classifier, not by a person. Pixel change is in [-1, 1] units over 784 pixels.", "",
                 "## Findings", ""]
        dim_effects = self.at_grid_offset("dim")
        dim_rates = self.flip_rates("dim")
        random_low, random_high = self.band("random")
        order = np.argsort(-dim_rates)
        ranks = {int(dim_index): rank + 1 for rank, dim_index in enumerate(list(dim_effects)[i] for i in order)}
        for dim_index in [list(dim_effects)[i] for i in order[:3]]:
            for effect in dim_effects[dim_index]:
                lines.append(f"- {_move_sentence(effect)}.")
        study_rates = {dim: (dim_effects[dim][0].flip_rate + dim_effects[dim][1].flip_rate) / 2
                       for dim in self.study.dims}
        inside = [dim for dim, rate in study_rates.items() if random_low <= rate <= random_high]
        lines.append(
            f"- The study's dims {self.study.dims} rank "
            + ", ".join(f"{ranks[dim]}" for dim in self.study.dims)
            + f" of {len(dim_rates)} dims by flip rate at ±{_fmt(offset)}; "
            + (f"all of them lie inside the 5–95% band of random unit directions ({random_low:.0%}–{random_high:.0%}): "
               "they are not special." if len(inside) == len(study_rates) else
               f"{len(study_rates) - len(inside)} lie outside the 5–95% band of random unit directions "
               f"({random_low:.0%}–{random_high:.0%}): "
               + ", ".join(f"dim {dim} ({rate:.0%})" for dim, rate in study_rates.items() if dim not in inside) + "."))
        lines.append(f"- Median flip rate at ±{_fmt(offset)}: single dims {np.median(dim_rates):.0%}, random unit "
                     f"directions {np.median(self.flip_rates('random')):.0%}, SeFa "
                     f"{np.median(self.flip_rates('sefa')):.0%}, GANSpace {np.median(self.flip_rates('ganspace')):.0%}.")
        for family, name in (("sefa", "SeFa"), ("ganspace", "GANSpace")):
            best_index, (minus, plus) = max(self.at_grid_offset(family).items(),
                                            key=lambda item: item[1][0].flip_rate + item[1][1].flip_rate)
            lines.append(f"- Strongest {name} direction ({family} {best_index}): {_move_sentence(plus)}; "
                         f"{_move_sentence(minus)}.")
        lines.append(f"- Magnitude on dim {self.study.magnitude_dim}: " + "; ".join(
            f"±{_fmt(o)} → L2 {self._pair_mean(self.study.magnitude_dim, o, 'l2_mean'):.2f}, "
            f"flips {self._pair_mean(self.study.magnitude_dim, o, 'flip_rate'):.0%}" for o in self.study.offsets) + ".")
        for dim in self.study.dims:
            value = max(self.study.values, key=abs)
            effect = self.find("dim", dim, value, mode="set")
            lines.append(f"- Setting dim {dim} to {_fmt(value)} ({abs(value):g}σ from the prior's mean) flips "
                         f"{effect.flip_rate:.0%} ({effect.flip_low:.0%}–{effect.flip_high:.0%}) of samples, "
                         f"mean L2 change {effect.l2_mean:.2f} ± {effect.l2_ci:.2f}.")
        lines += ["", "## Files", "",
                  "base.png, perturbation_grid.png, magnitude_comparison.png, dimension_comparison.png, "
                  "set_value_comparison.png (each with a .json of its rows and predicted classes); effects.csv "
                  "(every measured perturbation); directions.csv (random, SeFa, GANSpace vectors); "
                  "effect_vs_offset.png, class_shift_heatmap.png, dim_ranking.png, direction_comparison.png.", ""]
        return "\n".join(lines)

    def _pair_mean(self, dim: int, offset: float, field: str) -> float:
        return (getattr(self.find("dim", dim, -offset), field) + getattr(self.find("dim", dim, offset), field)) / 2


def _move_sentence(effect: Effect) -> str:
    """'+4 on dim 37 raises P(Trouser) by 23% ± 3% and changes the predicted class of 31% (28–35%) of samples'."""
    top_class = int(np.argmax(effect.class_shift))
    subject = f"{_signed(effect.amount)} on {effect.family} {effect.index}"
    return (f"{subject} raises P({data.CLASS_NAMES[top_class]}) by {effect.class_shift[top_class]:.0%} ± "
            f"{effect.class_shift_ci[top_class]:.0%} and changes the predicted class of {effect.flip_rate:.0%} "
            f"({effect.flip_low:.0%}–{effect.flip_high:.0%}) of samples")


def _write_rows(out_dir: Path, name: str, title: str, rows: list[dict]) -> None:
    """One image figure (`name`.png) and the numbers behind it (`name`.json: labels, latent changes, classes)."""
    strips = [(row["label"], image_grid(row["images"], images_per_row=len(row["images"]))) for row in rows]
    _save(plots.labelled_image_rows(strips, title), out_dir / f"{name}.png")
    described = [{key: value for key, value in row.items() if key != "images"} for row in rows]
    (out_dir / f"{name}.json").write_text(json.dumps({"title": title, "rows": described}, indent=2))


def _write_effects_csv(path: Path, effects: list[Effect]) -> None:
    rows = [effect.row(data.CLASS_NAMES) for effect in effects]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _write_directions_csv(path: Path, directions: list[Direction]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["family", "index", *[f"z{i}" for i in range(len(directions[0].vector))]])
        for direction in directions:
            writer.writerow([direction.family, direction.index, *[f"{v:.6f}" for v in direction.vector.tolist()]])


def _save(figure, path: Path) -> None:
    figure.savefig(path, dpi=110)


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise GanlabError(f"{flag} takes comma-separated integers, got {text!r}") from None
    if not values:
        raise GanlabError(f"{flag} is empty")
    return values


def _float_list(text: str, flag: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise GanlabError(f"{flag} takes comma-separated numbers, got {text!r}") from None
    if not values or not all(np.isfinite(values)):
        raise GanlabError(f"{flag} needs finite numbers, got {text!r}")
    return values


def _fmt(value: float) -> str:
    return f"{value:g}"


def _fmt_list(values: list[float]) -> str:
    return ", ".join(_fmt(value) for value in values)


def _signed(value: float) -> str:
    return f"+{value:g}" if value > 0 else ("0" if value == 0 else f"−{abs(value):g}")
