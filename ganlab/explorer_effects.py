"""What a run's latest latent study measured, arranged per slider of the latent explorer.

The study (`analysis/latent_effects.py`) logs `effects.csv` (one row per measured perturbation) and `directions.csv`
(the random, SeFa and GANSpace vectors it measured) to a run tagged `ganlab.kind=latent-analysis` and
`ganlab.source_run_id`. The explorer reads the newest FINISHED such run and takes its SeFa and GANSpace vectors, so the
number beside a direction's slider was measured for exactly that vector.
"""

import csv
import io
from dataclasses import dataclass, field

import numpy as np
import torch
from mlflow import MlflowClient

from ganlab import tracking

TOP_SHIFTS = 2  # class shifts shown per measured row: the largest in size, gains and losses alike
NUMBER_COLUMNS = ("l2_mean", "l2_ci", "mean_abs_mean", "mean_abs_ci", "flip_rate", "flip_low", "flip_high")


@dataclass
class StudyEffects:
    """One latent study's measured effects, indexed by direction (`dim 37`, `sefa 0`, …)."""

    run_id: str
    rows: dict[str, list[dict]]  # direction → its measured rows, as the page shows them
    directions: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)  # from directions.csv
    grid_offset: float | None = None  # the offset at which every direction was measured, both signs
    samples: int = 0  # latent vectors behind each number

    def panel(self, family: str, index: int) -> dict | None:
        """What the page shows beside one slider: the measured rows and how the direction ranks against random
        unit directions (and, for a single dim, against every dim) by flip rate at ±grid offset."""
        key = f"{family} {index}"
        if key not in self.rows:
            return None
        panel: dict[str, object] = {"measured": self.rows[key]}
        score = self._flip_score(key)
        random_scores = [random_score for name in self.rows if name.startswith("random ")
                         if (random_score := self._flip_score(name)) is not None]
        if score is not None and random_scores:
            panel["versus_random"] = {"offset": self.grid_offset, "flip": score, "directions": len(random_scores),
                                      "beaten": sum(1 for other in random_scores if score > other),
                                      "band": [float(np.percentile(random_scores, 5)),
                                               float(np.percentile(random_scores, 95))]}
        if family == "dim" and score is not None:
            dim_scores = [dim_score for name in self.rows if name.startswith("dim ")
                          if (dim_score := self._flip_score(name)) is not None]
            panel["dim_rank"] = {"rank": 1 + sum(1 for other in dim_scores if other > score), "of": len(dim_scores)}
        return panel

    def _flip_score(self, key: str) -> float | None:
        """Mean flip rate of the −grid and +grid offsets, as the study ranks directions."""
        rates = {row["amount"]: row["flip"][0] for row in self.rows[key] if row["mode"] == "offset"}
        if self.grid_offset is None or -self.grid_offset not in rates or self.grid_offset not in rates:
            return None
        return (rates[-self.grid_offset] + rates[self.grid_offset]) / 2


def missing_study_message(source_run_id: str) -> str:
    return f"no latent study yet: python analysis/latent_effects.py --run-id {source_run_id}"


def latest_study_run(client: MlflowClient, source_run_id: str):
    """The newest FINISHED latent study of a run, in any experiment (a study may log elsewhere with --experiment)."""
    with tracking.store_errors("looking for the run's latent study"):
        experiment_ids = [experiment.experiment_id for experiment in client.search_experiments()]
        runs = client.search_runs(experiment_ids, "tags.`ganlab.kind` = 'latent-analysis' and "
                                  f"tags.`ganlab.source_run_id` = '{source_run_id}' and attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def read_study(client: MlflowClient, source_run_id: str, latent_dim: int) -> tuple[StudyEffects | None, str]:
    """The run's latest study and a line that says where its numbers come from, or (None, why there are none)."""
    study_run = latest_study_run(client, source_run_id)
    if study_run is None:
        return None, missing_study_message(source_run_id)
    study_id = study_run.info.run_id
    effects_bytes = tracking.artifact_bytes(client, study_id, "effects.csv")
    try:
        study = parse_effects(study_id, effects_bytes.decode())
    except (AttributeError, KeyError, ValueError):  # AttributeError: no file (None)
        return None, (f"latent study run {study_id} has no readable effects.csv; run a new one: "
                      f"python analysis/latent_effects.py --run-id {source_run_id}")
    directions_bytes = tracking.artifact_bytes(client, study_id, "directions.csv")
    if directions_bytes is not None:
        study.directions = parse_directions(directions_bytes.decode(), latent_dim)
    return study, (f"numbers from latent study run {study_id}: {study.samples} latent vectors each, mean ± 95% CI, "
                   f"one move at a time")


def parse_effects(run_id: str, text: str) -> StudyEffects:
    """effects.csv → rows per direction; raises KeyError/ValueError on a file that is not one."""
    reader = csv.DictReader(io.StringIO(text))
    class_names = [name.removeprefix("shift.") for name in reader.fieldnames or [] if name.startswith("shift.")]
    rows: dict[str, list[dict]] = {}
    for row in reader:
        numbers = {name: float(row[name]) for name in NUMBER_COLUMNS}
        shifts = [(name, float(row[f"shift.{name}"]), float(row[f"shift_ci.{name}"])) for name in class_names]
        shifts.sort(key=lambda item: -abs(item[1]))
        rows.setdefault(f"{row['family']} {int(row['index'])}", []).append({
            "mode": row["mode"], "amount": float(row["amount"]), "samples": int(row["samples"]),
            "l2": [numbers["l2_mean"], numbers["l2_ci"]],
            "mean_abs": [numbers["mean_abs_mean"], numbers["mean_abs_ci"]],
            "flip": [numbers["flip_rate"], numbers["flip_low"], numbers["flip_high"]],
            "shifts": [{"class": name, "shift": shift, "ci": ci} for name, shift, ci in shifts[:TOP_SHIFTS]]})
    if not rows:
        raise ValueError("no rows")
    for measured in rows.values():
        measured.sort(key=lambda row: (row["mode"], row["amount"]))
    samples = max(row["samples"] for measured in rows.values() for row in measured)
    return StudyEffects(run_id, rows, grid_offset=_grid_offset(rows), samples=samples)


def parse_directions(text: str, latent_dim: int) -> dict[tuple[str, int], torch.Tensor]:
    """directions.csv → unit vectors by (family, index); empty when the file does not fit this generator."""
    directions = {}
    try:
        for row in csv.reader(io.StringIO(text)):
            if row[0] == "family":
                continue
            vector = torch.tensor([float(value) for value in row[2:]])
            if len(vector) != latent_dim or not torch.isfinite(vector).all() or vector.norm() == 0:
                return {}
            directions[(row[0], int(row[1]))] = vector / vector.norm()
    except (IndexError, ValueError):
        return {}
    return directions


def _grid_offset(rows: dict[str, list[dict]]) -> float | None:
    """The offset the study measured every direction at, in both signs: the one all random directions share."""
    magnitude_sets = [{abs(row["amount"]) for row in measured if row["mode"] == "offset"
                       and any(other["amount"] == -row["amount"] for other in measured)}
                      for name, measured in rows.items() if name.startswith(("random ", "dim "))]
    shared = set.intersection(*magnitude_sets) if magnitude_sets else set()
    return min(shared) if shared else None

