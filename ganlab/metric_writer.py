"""The child process that writes a run's per-step metrics to MLflow.

MLflow's SQL store spends ~0.2 s of pure Python per 1000 values. In a thread of the training process that time
holds the GIL, and every PyTorch call of the training thread then waits for it: tracked `mlp-small` ran 1.7×
slower than untracked. In its own process the same writes cost the training loop almost nothing.

Protocol (`python -m ganlab.metric_writer TRACKING_URI RUN_ID`): one JSON object per line on stdin,
{"first_step": N, "rows": [[loss_g, loss_d, d_real, d_fake], …]} for steps N, N+1, …; one line back on stdout for
each, "ok" or "error: <message>", after a first line "ready" once MLflow is imported. End of stdin ends the
process. It imports MLflow only, not torch.
"""

import json
import os
import sys
import time

from mlflow import MlflowClient
from mlflow.entities import Metric

from ganlab.errors import first_line

STEP_METRIC_NAMES = ("loss_g", "loss_d", "d_real", "d_fake")  # the columns of a row
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call


def write_rows(client: MlflowClient, run_id: str, first_step: int, rows: list[list[float]]) -> None:
    """Rows of consecutive steps as MLflow metrics, in batches MLflow accepts."""
    timestamp = int(time.time() * 1000)
    metrics = [Metric(name, value, timestamp, first_step + offset)
               for offset, row in enumerate(rows) for name, value in zip(STEP_METRIC_NAMES, row)]
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[start:start + MAX_METRICS_PER_BATCH])


def main(arguments: list[str]) -> int:
    tracking_uri, run_id = arguments
    # Lowest CPU priority: on a busy CPU the writes wait for idle moments (and for the epoch end, where training
    # waits for them) instead of preempting PyTorch's threads, which stalls every thread of a parallel op.
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(19)
    client = MlflowClient(tracking_uri)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            write_rows(client, run_id, request["first_step"], request["rows"])
            reply = "ok"
        except Exception as error:  # noqa: BLE001 - sent to the training process, which stops with it
            reply = "error: " + first_line(error)
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
