"""What `train.py --system-metrics` costs a training run, measured as CPU time.

    python results/system-metrics/measure.py > results/system-metrics/result.json

A wall-clock A/B (`experiments/benchmark.py --system-metrics`) cannot resolve 2% on a machine shared with other jobs:
its rounds drift by tens of percent. CPU time can: this trains `mlp` for `STEPS` steps with the monitor on (MLflow's
default 10 s sampling) and reads the CPU time of the monitor's own thread against the CPU time of the whole training
process. The monitor holds the GIL for at most its own CPU time, so that share bounds what it takes from the steps.
"""

import json
import os
import sys
import tempfile
import threading
import time

import torch
from mlflow import MlflowClient
from mlflow.system_metrics import system_metrics_monitor

from ganlab.train import TrainConfig, train

STEPS = 3000  # about 20 monitor samples on this 2-core machine

monitor_cpu_seconds = []
_monitor_loop = system_metrics_monitor.SystemMetricsMonitor.monitor


def timed_monitor_loop(monitor) -> None:
    """MLflow's monitor loop, with the CPU time of its thread recorded."""
    start = time.thread_time()
    try:
        _monitor_loop(monitor)
    finally:
        monitor_cpu_seconds.append(time.thread_time() - start)


system_metrics_monitor.SystemMetricsMonitor.monitor = timed_monitor_loop

with tempfile.TemporaryDirectory() as scratch:
    store_uri = f"sqlite:///{scratch}/mlflow.db"
    process_start, wall_start = time.process_time(), time.perf_counter()
    result = train(TrainConfig(arch="mlp", epochs=STEPS // 937 + 1, max_steps=STEPS, eval_every=0,
                               tracking_uri=store_uri, system_metrics=True), show_progress=False)
    for thread in threading.enumerate():  # the monitor ends within one interval of the run
        if thread.name == "SystemMetricsMonitor":
            thread.join()
    process_cpu_seconds = time.process_time() - process_start
    wall_seconds = time.perf_counter() - wall_start
    samples = len(MlflowClient(store_uri).get_metric_history(result.run_id, "system/cpu_utilization_percentage"))

print(json.dumps({
    "arch": "mlp", "steps": result.steps_run, "step_seconds": round(result.step_seconds, 1),
    "wall_seconds": round(wall_seconds, 1), "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
    "monitor_samples": samples, "monitor_cpu_seconds": round(monitor_cpu_seconds[0], 3),
    "monitor_cpu_ms_per_sample": round(1000 * monitor_cpu_seconds[0] / max(samples, 1), 1),
    "process_cpu_seconds": round(process_cpu_seconds, 1),
    "monitor_share_of_process_cpu": round(monitor_cpu_seconds[0] / process_cpu_seconds, 5),
    "load_average_1min_at_end": os.getloadavg()[0],
    "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
}, indent=2))
