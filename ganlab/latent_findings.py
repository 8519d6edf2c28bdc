"""The measured effects of a latent study indexed by direction and amount, and written up: the numbers behind
its figures (curves, rankings, bands) and summary.md, every sentence computed from the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ganlab import data
from ganlab.latent import Effect
from ganlab.latent_figures import figure_files, signed
from ganlab.metrics.classifier import FEATURE_SPACE

if TYPE_CHECKING:
    from ganlab.latent_study import LatentStudyConfig, ParsedStudy


class EffectTable:
    """The measured effects, indexed for the figures and the plain-language summary."""

    def __init__(self, effects: list[Effect], study: ParsedStudy):
        self.effects, self.study, self.grid_offset = effects, study, study.grid_offset

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
        preset = f" (preset {config.preset}: that report's study exactly)" if config.preset else ""
        lines = [f"# Latent study of run {source_run_id}{preset}", "",
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
        for block in self.study.set_blocks:
            dim, value = block.dim, max(block.values, key=abs)
            effect = self.find("dim", dim, value, mode="set")
            lines.append(f"- Setting dim {dim} to {_fmt(value)} ({abs(value):g}σ from the prior's mean) flips "
                         f"{effect.flip_rate:.0%} ({effect.flip_low:.0%}–{effect.flip_high:.0%}) of samples, "
                         f"mean L2 change {effect.l2_mean:.2f} ± {effect.l2_ci:.2f}.")
        lines += ["", "## Files", "",
                  ", ".join(figure_files(self.study)) + " (each with a .json of its rows and predicted classes); "
                  "effects.csv (every measured perturbation); directions.csv (random, SeFa, GANSpace vectors); "
                  "effect_vs_offset.png, class_shift_heatmap.png, dim_ranking.png, direction_comparison.png.", ""]
        return "\n".join(lines)

    def _pair_mean(self, dim: int, offset: float, field: str) -> float:
        return (getattr(self.find("dim", dim, -offset), field) + getattr(self.find("dim", dim, offset), field)) / 2


def _move_sentence(effect: Effect) -> str:
    """'+4 on dim 37 raises P(Trouser) by 23% ± 3% and changes the predicted class of 31% (28–35%) of samples'."""
    top_class = int(np.argmax(effect.class_shift))
    subject = f"{signed(effect.amount)} on {effect.family} {effect.index}"
    return (f"{subject} raises P({data.CLASS_NAMES[top_class]}) by {effect.class_shift[top_class]:.0%} ± "
            f"{effect.class_shift_ci[top_class]:.0%} and changes the predicted class of {effect.flip_rate:.0%} "
            f"({effect.flip_low:.0%}–{effect.flip_high:.0%}) of samples")


def _fmt(value: float) -> str:
    return f"{value:g}"
