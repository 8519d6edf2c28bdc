"""The reports' claims judged: on each generator, across generators trained with different seeds, and whether any
latent index means the same thing across them. Written as claims.md (the verdicts, each claim quoted), claims.csv
(one row per claim and generator), claim_numbers.csv (every number behind them), consistency.csv and
consistency.png (index by index, across generators), verdicts.json.
"""

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganlab import data, plots
from ganlab.claims import (CLAIMS, REPORT_2023_VALUES, REPORT_2025_DIMS, REPORT_AMPLITUDE, REQUIRED_LATENT_DIM,
                           Check, Claim, ClaimsSettings, Measurements, SourceRun, check_all)
from ganlab.metrics.classifier import FEATURE_SPACE

NULL_DRAWS = 20_000  # random pairings of unrelated indices: the chance level of cross-generator agreement
FAMILY_WISE_ALPHA = 0.05  # split over the latent dims (Bonferroni): no index is called consistent by luck
REPORT_INDICES = (1, 70, 99, *REPORT_2025_DIMS)  # the indices the reports give a meaning to
HOLDS, DOES_NOT_HOLD, DEPENDS = "holds", "does not hold", "depends on the trained G"  # the verdicts


@dataclass
class Verdict:
    claim: Claim
    verdict: str  # holds | does not hold | depends on the trained G
    voters: list[SourceRun]  # the generators it is judged on: the report's own architecture where given
    held_on: list[SourceRun]


def judge(claim: Claim, checks: dict[SourceRun, Check]) -> Verdict:
    """Holds on every voting generator, on none, or on some; the voters are the generators of the architecture the
    claim's report studied, or all of them when none of that architecture was given."""
    voters = [run for run in checks if run.arch == claim.arch] or list(checks)
    held_on = [run for run in voters if checks[run].holds]
    verdict = HOLDS if len(held_on) == len(voters) else DOES_NOT_HOLD if not held_on else DEPENDS
    return Verdict(claim, verdict, voters, held_on)


@dataclass
class Consistency:
    """Does an index mean the same across generators of one architecture? Index by index, the correlation of the
    class shifts it causes (±2, 20 numbers, less the generator's average over all dims) between every pair of
    generators, against the same correlation for unrelated indices."""

    arch: str
    runs: list[SourceRun]
    same_index: np.ndarray  # [latent_dim] mean pairwise correlation of the same index
    null: np.ndarray  # [NULL_DRAWS] the same statistic for distinct indices
    threshold: float  # the null's 1 − α/latent_dim quantile
    top_classes: list[list[str]]  # per dim, per generator: the class +2 raises most
    chance_agreement: float  # probability that unrelated indices raise the same class in every generator

    @property
    def consistent_dims(self) -> list[int]:
        return [int(dim) for dim in np.flatnonzero(self.same_index > self.threshold)]

    @property
    def agreeing_dims(self) -> list[int]:
        return [dim for dim, classes in enumerate(self.top_classes) if len(set(classes)) == 1]


def consistency(arch: str, runs: list[SourceRun], measurements: list[Measurements], seed: int) -> Consistency:
    latent_dim = measurements[0].latent_dim
    # What an index does beyond what any change does: each generator's mean shift over all dims taken out first.
    shifts = [np.stack([m.shift_vector(dim) for dim in range(latent_dim)]) for m in measurements]
    standardized = [_standardize(shift - shift.mean(axis=0)) for shift in shifts]
    pairs = list(combinations(range(len(runs)), 2))
    correlations = {(a, b): standardized[a] @ standardized[b].T / standardized[a].shape[1] for a, b in pairs}
    same_index = np.mean([np.diag(correlations[pair]) for pair in pairs], axis=0)
    rng = np.random.default_rng(seed)
    draws = np.stack([rng.choice(latent_dim, len(runs), replace=False) for _ in range(NULL_DRAWS)])
    null = np.mean([correlations[a, b][draws[:, a], draws[:, b]] for a, b in pairs], axis=0)
    top = np.stack([[int(np.argmax(m.offsets["dim", dim, REPORT_AMPLITUDE][2])) for dim in range(latent_dim)]
                    for m in measurements])  # [runs, dims]
    drawn_top = top[np.arange(len(runs))[None, :], draws]  # [draws, runs]: each generator's class for its index
    chance = float(np.mean(np.all(drawn_top == drawn_top[:, :1], axis=1)))
    return Consistency(arch, runs, same_index, null, float(np.quantile(null, 1 - FAMILY_WISE_ALPHA / latent_dim)),
                       [[data.CLASS_NAMES[top[run, dim]] for run in range(len(runs))] for dim in range(latent_dim)],
                       chance)


def _standardize(rows: np.ndarray) -> np.ndarray:
    """Rows to mean 0, std 1; constant rows to 0 (an index that changes nothing correlates with nothing)."""
    centred = rows - rows.mean(axis=1, keepdims=True)
    scale = rows.std(axis=1, keepdims=True)
    return np.divide(centred, scale, out=np.zeros_like(centred), where=scale > 1e-12)


def write_claims(out_dir: Path, measurements: dict[SourceRun, Measurements], settings: ClaimsSettings) -> dict:
    """Every claim checked on every generator, judged, and index consistency per architecture; returns headline
    metrics."""
    checks = {run: check_all(m) for run, m in measurements.items()}
    verdicts = [judge(claim, {run: checks[run][claim.key] for run in checks}) for claim in CLAIMS]
    by_arch: dict[str, list[SourceRun]] = {}
    for run in measurements:
        by_arch.setdefault(run.arch, []).append(run)
    consistencies = [consistency(arch, runs, [measurements[run] for run in runs], settings.stats_seed)
                     for arch, runs in by_arch.items() if len(runs) >= 2]

    _write_checks(out_dir, checks)
    _write_consistency_csv(out_dir / "consistency.csv", consistencies)
    if consistencies:
        plots.index_consistency({c.arch: (c.same_index, c.null, c.threshold) for c in consistencies},
                                "Same index, different generators: class-shift correlation against unrelated "
                                "indices").savefig(out_dir / "consistency.png", dpi=110)
    (out_dir / "verdicts.json").write_text(json.dumps([
        {"claim": v.claim.key, "report": v.claim.report, "arch": v.claim.arch, "original": v.claim.original,
         "translation": v.claim.translation, "test": v.claim.test, "verdict": v.verdict,
         "judged_on": [run.run_id for run in v.voters], "holds_on": [run.run_id for run in v.held_on]}
        for v in verdicts], indent=2, ensure_ascii=False))
    (out_dir / "claims.md").write_text(claims_markdown(list(measurements), settings, checks, verdicts,
                                                       consistencies), encoding="utf-8")
    headline = {f"claims.{name.replace(' ', '_')}": float(sum(v.verdict == name for v in verdicts))
                for name in (HOLDS, DOES_NOT_HOLD, DEPENDS)}
    headline |= {f"claims.consistent_dims.{c.arch}": float(len(c.consistent_dims)) for c in consistencies}
    return headline


def study_section(generator: nn.Module, classifier: nn.Module, device: torch.device | str, source_run: SourceRun,
                  out_dir: Path, settings: ClaimsSettings, progress: Callable[[int], None]) -> str:
    """The claims on the one generator a latent study looks at (claims.csv, claim_numbers.csv), as a summary
    section; the verdict across generators needs analysis/claims.py."""
    lines = ["", "## The reports' claims on this generator", ""]
    if generator.latent_dim < REQUIRED_LATENT_DIM:
        return "\n".join(lines + [f"Not measured: the reports' claims name indices up to 99 of a "
                                  f"{REQUIRED_LATENT_DIM}-dim z; this generator's z has {generator.latent_dim}.", ""])
    checks = {source_run: check_all(Measurements(generator, classifier, device, settings, progress))}
    _write_checks(out_dir, checks)
    lines += [f"Each claim quoted, then tested on this {source_run.arch} generator alone ({settings.stats_samples} "
              f"latents, {FEATURE_SPACE} classes). A latent index's meaning is a property of one trained G: "
              "`python analysis/claims.py --run-id A --run-id B --run-id C` judges the claims across generators "
              "trained with different seeds.", ""]
    for claim in CLAIMS:
        check = checks[source_run][claim.key]
        lines.append(f"- **{claim.key}** ({claim.report}, studied on {claim.arch}) — {claim.translation} "
                     f"**{'Holds' if check.holds else 'Does not hold'} on this G:** {check.evidence}.")
    return "\n".join(lines + [""])


def claims_markdown(runs: list[SourceRun], settings: ClaimsSettings, checks: dict[SourceRun, dict[str, Check]],
                    verdicts: list[Verdict], consistencies: list[Consistency]) -> str:
    lines = ["# The reports' claims, measured", "",
             f"{len(runs)} generators, each measured on {settings.stats_samples} latent vectors z ~ N(0, I) (seed "
             f"{settings.stats_seed}) with {settings.random_directions} random unit directions as the control; "
             f"classes as ganlab's {FEATURE_SPACE} classifier predicts them, not as a person sees them; means with "
             "paired 95% normal intervals, shares with Wilson intervals. Set values: "
             + ", ".join(f"{value:g}" for value in REPORT_2023_VALUES)
             + f"; offsets ±{REPORT_AMPLITUDE:g} unless named.",
             "", "| generator | arch | seed | run id |", "|---|---|---|---|"]
    lines += [f"| {run.name} | {run.arch} | {run.seed} | {run.run_id} |" for run in runs]
    lines += ["", "A claim is judged on the generators of the architecture its report studied (the 2025 report's "
              "latent study used the MLP GAN, mlp; the 2023 report's the small MLP GAN, mlp-small); the others are "
              "measured and listed too. **holds**: on every one; **does not hold**: on none; **depends on the "
              "trained G**: on some.", "", "## Verdicts", "",
              "| claim | report | judged on | verdict | holds on |", "|---|---|---|---|---|"]
    for v in verdicts:
        judged_on = " + ".join(sorted({run.arch for run in v.voters}))
        lines.append(f"| {v.claim.key} | {v.claim.report} | {len(v.voters)} × {judged_on} | **{v.verdict}** | "
                     f"{len(v.held_on)} of {len(v.voters)} |")
    lines += ["", "## Does any latent index mean the same thing across generators?", ""]
    if not consistencies:
        lines.append("Not measured: it needs at least two generators of one architecture.")
    for c in consistencies:
        best = int(np.argmax(c.same_index))
        found = c.consistent_dims
        lines.append(
            f"- **{c.arch}** ({len(c.runs)} generators): " + ("**yes**" if found else "**no**") + ". Between "
            f"generators, the class shifts (±{REPORT_AMPLITUDE:g}) of the same index correlate by r = "
            f"{np.mean(c.same_index):+.2f} on average (best: dim {best}, r = {c.same_index[best]:+.2f}); unrelated "
            f"indices reach r = {c.threshold:+.2f} once in {len(c.same_index) / FAMILY_WISE_ALPHA:.0f} pairings "
            f"({FAMILY_WISE_ALPHA:.0%} spread over {len(c.same_index)} indices), and {len(found)} indices pass it"
            + (f" ({', '.join(f'dim {dim}' for dim in found)})" if found else "")
            + f". The class +{REPORT_AMPLITUDE:g} raises most is the same in all {len(c.runs)} generators for "
            f"{len(c.agreeing_dims)} of {len(c.same_index)} indices; chance gives "
            f"{c.chance_agreement * len(c.same_index):.1f}.")
        lines.append("- The reports' indices on " + c.arch + ": " + "; ".join(
            f"dim {dim} raises {' / '.join(c.top_classes[dim])} (r = {c.same_index[dim]:+.2f})"
            for dim in REPORT_INDICES if dim < len(c.same_index)) + ".")
    lines += ["", "## Each claim", ""]
    for v in verdicts:
        lines += [f"### {v.claim.key}: {v.verdict}", "",
                  f"- **Original** ({v.claim.report}): {v.claim.original}",
                  f"- **Translation:** {v.claim.translation}",
                  f"- **Measured:** {v.claim.test}."]
        for run, run_checks in checks.items():
            check = run_checks[v.claim.key]
            vote = "" if run in v.voters else " (other architecture: not judged)"
            lines.append(f"- {run.label}, {run.arch}{vote}: **{'holds' if check.holds else 'does not hold'}**: "
                         f"{check.evidence}.")
        lines.append("")
    return "\n".join(lines)


def _write_checks(out_dir: Path, checks: dict[SourceRun, dict[str, Check]]) -> None:
    with (out_dir / "claims.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["claim", "report", "report_arch", "run_id", "run_name", "arch", "seed", "holds", "evidence"])
        for claim in CLAIMS:
            for run, run_checks in checks.items():
                check = run_checks[claim.key]
                writer.writerow([claim.key, claim.report, claim.arch, run.run_id, run.name, run.arch, run.seed,
                                 check.holds, check.evidence])
    with (out_dir / "claim_numbers.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["claim", "run_id", "quantity", "value"])
        for claim in CLAIMS:
            for run, run_checks in checks.items():
                for quantity, value in run_checks[claim.key].numbers.items():
                    writer.writerow([claim.key, run.run_id, quantity, f"{value:.6g}"])


def _write_consistency_csv(path: Path, consistencies: list[Consistency]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch", "dim", "same_index_correlation", "chance_threshold", "consistent",
                         "top_class_per_generator", "same_top_class"])
        for c in consistencies:
            for dim, correlation in enumerate(c.same_index):
                writer.writerow([c.arch, dim, f"{correlation:.4f}", f"{c.threshold:.4f}", correlation > c.threshold,
                                 " / ".join(c.top_classes[dim]), len(set(c.top_classes[dim])) == 1])
