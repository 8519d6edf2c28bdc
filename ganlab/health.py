"""Is training still learning? A check over every block of per-step values, on the host, off the training thread.

Two states end a run at once, because no later step can undo them:
- **diverged**: a loss or D output is NaN or infinite (weights follow within a step or two);
- **saturated**: for `SATURATED_STEPS` steps in a row, mean D(x) and mean D(G(z)) are both pinned at 0 or 1, where
  BCE passes no gradient: a probability that rounds to 1 in fp32 (sigmoid's derivative is then exactly 0), or one
  below BCE's epsilon of 1e-12 (its gradient is clamped away). A batch mean there means every image is there. A D
  that merely wins (D(G(z)) ≈ 0.01, as in the reports' CNN GAN) still passes gradients and is not this.
"""

import math
from dataclasses import dataclass

from ganlab.metric_writer import STEP_METRIC_NAMES

PINNED_AT_ONE = 1 - 1e-7  # fp32 steps by 6e-8 just below 1: this is 1, or its neighbour
PINNED_AT_ZERO = 1e-12  # BCE's epsilon
SATURATED_STEPS = 100
D_OUTPUT_COLUMNS = (STEP_METRIC_NAMES.index("d_real"), STEP_METRIC_NAMES.index("d_fake"))


@dataclass(frozen=True)
class Failure:
    """Why and where training stopped learning."""

    kind: str  # "diverged" or "saturated"
    step: int  # the global step (from 1) where it became certain
    detail: str  # the values that show it


class HealthMonitor:
    """Fed blocks of consecutive step rows (loss_g, loss_d, d_real, d_fake); remembers the first failure."""

    def __init__(self) -> None:
        self.failure: Failure | None = None
        self._pinned_steps = 0  # consecutive steps with both D outputs pinned, across blocks

    def check(self, first_step: int, rows: list[list[float]]) -> None:
        for offset, row in enumerate(rows):
            if self.failure is not None:
                return
            step = first_step + offset
            not_finite = [name for name, value in zip(STEP_METRIC_NAMES, row) if not math.isfinite(value)]
            if not_finite:
                self.failure = Failure("diverged", step, ", ".join(f"{name} = {row[STEP_METRIC_NAMES.index(name)]}"
                                                                   for name in not_finite))
                return
            pinned = all(row[column] >= PINNED_AT_ONE or row[column] <= PINNED_AT_ZERO for column in D_OUTPUT_COLUMNS)
            self._pinned_steps = self._pinned_steps + 1 if pinned else 0
            if self._pinned_steps >= SATURATED_STEPS:
                values = ", ".join(f"{name} = {value:.4g}" for name, value in zip(STEP_METRIC_NAMES, row))
                self.failure = Failure("saturated", step, f"D's outputs pinned at 0 or 1 for {SATURATED_STEPS} steps "
                                                          f"({values}): no gradient reaches G")
