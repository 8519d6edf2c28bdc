"""The whole latent study of one generator: the reports' figures, exactly, then the measured effects and the
reports' claims put to the test, written to a folder (PNG + CSV/JSON + summary.md) that the caller logs to MLflow.

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

from ganlab import claim_verdicts, claims, data, plots
from ganlab.cli import option
from ganlab.errors import GanlabError
from ganlab.latent import (Change, Direction, Effect, EffectMeter, base_latents, check_dims, ganspace_directions,
                           random_directions, sefa_directions, unit_dim)
from ganlab.latent_figures import ImageRows, draw_figures
from ganlab.latent_findings import EffectTable
from ganlab.metrics.classifier import FEATURE_SPACE

CONTROL_CURVES = 3  # random directions measured at every offset, as the control line of effect_vs_offset.png
FIGURES = ("grid", "magnitude", "dimension", "set", "offsets")  # the image figures a study can draw

# Each report's latent study exactly (../shared/seeds), as the values of this module's flags.
PRESETS: dict[str, dict[str, object]] = {
    # Lab04 (June 2025) §5.5, on the MLP GAN: dims 10, 20, 37, 53, 67 at offsets ±2…±10, 25 comparisons of
    # (−a, unchanged, +a) × 8 images; shown: dim 10 at every offset (Fig. 5.10–5.14) and the five dims at ±2
    # (Fig. 5.15–5.19), which is the assignment's 15×8 grid.
    "report-2025": {"dims": "10,20,37,53,67", "offsets": "2,4,6,8,10", "grid_offset": 2.0, "magnitude_dim": 10,
                    "figures": "grid,magnitude,offsets", "samples": 8},
    # 作业三 (June 2023) §四, on the small MLP GAN: torch.randn(8, 100), then the 2nd, 71st and 100th numbers
    # (indices 1, 70, 99) set to values; rows top to bottom as the report lists them (原图, the original: base).
    "report-2023": {"dims": "1,70,99", "set_values": ("1=base,0,10,100", "70=-10,base,10,100", "99=10,base,-10,-50"),
                    "figures": "set", "samples": 8},
}


@dataclass
class LatentStudyConfig:
    """Every setting of one latent study; the defaults are the first report's dims and offsets, all figures."""

    preset: str | None = option(None, f"one report's study exactly, {' or '.join(PRESETS)} (flags given beside it "
                                "override it)", choices=list(PRESETS), metavar="REPORT")
    dims: str = option("10,20,37,53,67", "the latent dims to study (0-based: a report's Nth number is N-1)")
    offsets: str = option("2,4,6,8,10", "offset magnitudes; each is applied as −a and +a")
    values: str = option("0,10,100", "values each of --dims is set to when no --set is given "
                         "(negatives: --values=-10,10)")
    set_values: tuple[str, ...] = option((), "DIM=V1,V2,…: set z[DIM] to each value, a row each; `base` places the "
                                         "unchanged row (else first); once per dim, e.g. --set 70=-10,base,10,100",
                                         flag="--set", metavar="DIM=VALUES")
    grid_offset: float = option(4.0, "offset of the 15×8 grid (dims × −a, 0, +a) and of the all-dims sweep")
    dimension_offset: float | None = option(None, "offset of the dimension comparison (default: the smallest of "
                                            "--offsets, the first report's ±2)")
    magnitude_dim: int | None = option(None, "the dim of the magnitude comparison (default: the first of --dims)")
    figures: str = option("grid,magnitude,dimension,set", f"image figures to draw, of {','.join(FIGURES)} "
                          "(offsets: one figure per dim × offset)")
    z_seed: int = option(0, "seed of the display latents")
    z_file: str | None = option(None, ".npy file of display latents [N, latent_dim], instead of --z-seed (default: none)")
    samples: int = option(8, "display images per row")
    stats_samples: int = option(512, "latent vectors behind every measured number")
    stats_seed: int = option(1, "seed of the statistics latents, the random directions and GANSpace's PCA")
    random_directions: int = option(20, "random unit directions: the control every dim is compared with")
    factor_directions: int = option(5, "SeFa and GANSpace directions to measure (each)")
    claims: bool = option(True, "also put the reports' claims to the test on this generator (summary.md, claims.csv)")

    @classmethod
    def from_flags(cls, given: dict) -> "LatentStudyConfig":
        """A preset's values first, then every flag given beside it."""
        preset = given.get("preset")
        if preset is not None and preset not in PRESETS:
            raise GanlabError(f"unknown --preset {preset!r}: choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS.get(preset, {}), **given})

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
        dimension_offset = min(offsets) if self.dimension_offset is None else self.dimension_offset
        for name, offset in (("grid-offset", self.grid_offset), ("dimension-offset", dimension_offset)):
            if not offset > 0 or not np.isfinite(offset):
                raise GanlabError(f"--{name} is a magnitude and must be positive, got {offset}")
        figures = _choices(self.figures, "--figures", FIGURES)
        # Set values are measured where --set names them or the set-value figure shows them (not in report-2025).
        set_blocks = (parse_set_values(self.set_values, latent_dim) if self.set_values
                      else [SetBlock(dim, [None, *values]) for dim in dims] if "set" in figures else [])
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
        return ParsedStudy(dims, offsets, set_blocks, magnitude_dim, self.grid_offset, dimension_offset, figures,
                           display)


@dataclass
class SetBlock:
    """One dim's rows of the set-value figure: a value per row, None for the unchanged (base) row."""

    dim: int
    rows: list[float | None]

    @property
    def values(self) -> list[float]:
        return [value for value in self.rows if value is not None]


@dataclass
class ParsedStudy:
    dims: list[int]
    offsets: list[float]
    set_blocks: list[SetBlock]
    magnitude_dim: int
    grid_offset: float
    dimension_offset: float
    figures: list[str]
    display_latents: torch.Tensor

    @property
    def curve_dims(self) -> list[int]:
        """The dims measured at every offset: the study's, and the magnitude comparison's."""
        return self.dims + ([self.magnitude_dim] if self.magnitude_dim not in self.dims else [])


def parse_set_values(specs: tuple[str, ...], latent_dim: int) -> list[SetBlock]:
    """`--set 70=-10,base,10,100` → SetBlock(70, [-10, None, 10, 100]); base goes first unless placed."""
    blocks: list[SetBlock] = []
    for spec in specs:
        dim_text, _, values_text = spec.partition("=")
        try:
            dim = int(dim_text)
            rows = [None if part.strip() == "base" else float(part) for part in values_text.split(",") if part.strip()]
        except ValueError:
            raise GanlabError(f"--set takes DIM=V1,V2,… (0-based dim; numbers, and `base` for the unchanged row), "
                              f"got {spec!r}") from None
        values = [value for value in rows if value is not None]
        if not values or not all(np.isfinite(values)):
            raise GanlabError(f"--set {spec!r} needs at least one finite value")
        if rows.count(None) > 1:
            raise GanlabError(f"--set {spec!r} places `base` more than once")
        check_dims([dim], latent_dim)
        if dim in [block.dim for block in blocks]:
            raise GanlabError(f"--set names dim {dim} twice; give all its values in one --set")
        blocks.append(SetBlock(dim, rows if None in rows else [None, *rows]))
    return blocks


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
              out_dir: Path, source_run: claims.SourceRun, progress: Callable[[int], None] = lambda _: None) -> dict:
    """Write every figure, table and the summary of the study to `out_dir`; return the headline numbers."""
    latent_dim = generator.latent_dim
    study = config.parsed(latent_dim)
    generator.eval()

    # The reports' figures, from the display batch.
    draw_figures(study, ImageRows(generator, classifier, study.display_latents, device), out_dir)

    # The measured effects, from the statistics batch.
    stats_latents = base_latents(config.stats_samples, latent_dim, config.stats_seed)
    meter = EffectMeter(generator, classifier, stats_latents, device)
    dims = [unit_dim(dim, latent_dim) for dim in range(latent_dim)]
    randoms = random_directions(config.random_directions, latent_dim, config.stats_seed)
    factors = (sefa_directions(generator, config.factor_directions)
               + ganspace_directions(generator, latent_dim, config.factor_directions, config.stats_seed,
                                     device=device))
    effects: list[Effect] = []
    for effect in meter.effects(_planned_effects(study, dims, randoms, factors)):
        effects.append(effect)
        progress(1)

    _write_effects_csv(out_dir / "effects.csv", effects)
    _write_directions_csv(out_dir / "directions.csv", randoms + factors)
    findings = EffectTable(effects, study)
    _save(plots.effect_vs_offset(findings.offset_curves(study.dims, min(CONTROL_CURVES, len(randoms))),
                                 "mean L2 pixel change",
                                 f"Pixel change vs |offset| ({config.stats_samples} samples, 95% CI)"),
          out_dir / "effect_vs_offset.png")
    shift_matrix = findings.class_shift_matrix(latent_dim)
    _save(plots.class_shift_heatmap(shift_matrix, data.CLASS_NAMES, study.dims,
                                    f"Mean change of class probability at +{_fmt(study.grid_offset)} per dim "
                                    f"({FEATURE_SPACE} classifier)"), out_dir / "class_shift_heatmap.png")
    _save(plots.dim_ranking(findings.flip_rates("dim"), study.dims, findings.band("random"),
                            f"Flip rate at ±{_fmt(study.grid_offset)} of every dim, the study's dims marked"),
          out_dir / "dim_ranking.png")
    _save(plots.direction_comparison(findings.family_flip_rates(study.dims), "Single dims vs random, SeFa and "
                                     f"GANSpace directions at ±{_fmt(study.grid_offset)}"),
          out_dir / "direction_comparison.png")

    summary = findings.summary(source_run.run_id, config)
    if config.claims:
        summary += claim_verdicts.study_section(generator, classifier, device, source_run, out_dir,
                                                claims.ClaimsSettings(config.stats_samples, config.stats_seed,
                                                                      config.random_directions), progress)
    (out_dir / "summary.md").write_text(summary)
    headline = findings.headline()
    (out_dir / "study.json").write_text(json.dumps({
        "source_run_id": source_run.run_id, "config": dataclasses.asdict(config), "feature_space": FEATURE_SPACE,
        "display_latents": study.display_latents.tolist(), "headline": headline}, indent=2))
    return headline


def _planned_effects(study: "ParsedStudy", dims: list[Direction], randoms: list[Direction],
                     factors: list[Direction]) -> list[Change]:
    """Every direction at ±grid offset; the study's dims and a few random controls at every other offset; every
    set value."""
    planned: list[Change] = []
    for direction in dims + randoms + factors:
        planned += [("offset", direction, sign * study.grid_offset) for sign in (-1, 1)]
    for direction in [dims[dim] for dim in study.curve_dims] + randoms[:CONTROL_CURVES]:
        planned += [("offset", direction, sign * offset) for offset in study.offsets for sign in (-1, 1)
                    if offset != study.grid_offset]
    planned += [("set", block.dim, value) for block in study.set_blocks for value in block.values]
    return planned


def planned_effect_count(config: LatentStudyConfig, latent_dim: int) -> int:
    """How many effects `run_study` measures (the progress bar's total), claims included."""
    study = config.parsed(latent_dim)
    other_offsets = sum(1 for offset in study.offsets if offset != study.grid_offset)
    count = (2 * (latent_dim + config.random_directions + 2 * config.factor_directions)
             + 2 * other_offsets * (len(study.curve_dims) + min(CONTROL_CURVES, config.random_directions))
             + sum(len(block.values) for block in study.set_blocks))
    return count + (claims.planned_count(latent_dim, config.random_directions) if config.claims else 0)


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



def _choices(text: str, flag: str, allowed: tuple[str, ...]) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in chosen if part not in allowed]
    if unknown:
        raise GanlabError(f"{flag} takes a comma-separated subset of {','.join(allowed)}, got {', '.join(unknown)}")
    return chosen
