"""What a training run ran on, recorded in MLflow: the Fashion-MNIST files as dataset inputs, and optionally the
machine's load as system metrics.

The datasets are logged as MLflow inputs (name, digest = the images file's MD5, source path, shape read from the
file's header), so the UI's Datasets column shows what each run trained on and what its metrics were measured
against. System metrics are MLflow's own monitor (CPU, memory, disk, network, and NVIDIA GPUs through
nvidia-ml-py), sampling every 10 s where psutil is installed (the `system-metrics` extra); it stops by itself once
the run ends, and takes 0.24% of the training process's CPU (results/system-metrics/).
"""

import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.data.schema import TensorDatasetSchema
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.types import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from ganlab import data, tracking
from ganlab.metrics.features import REFERENCE_SET

TRAIN_IMAGES_FILE = "train-images-idx3-ubyte"
TEST_IMAGES_FILE = "t10k-images-idx3-ubyte"
SYSTEM_METRICS_SECONDS = 10  # MLflow's default sampling interval ($MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL wins)
# The monitor announces itself at INFO (start, stop, no GPU); ganlab's summary line is enough.
logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)


@dataclass(frozen=True)
class DatasetRef:
    """What a metric names to say which data it was measured on."""

    name: str
    digest: str


# The 10k test images: the reference set of every quality metric (the name is the metrics' `eval.reference`).
TEST_SET = DatasetRef(REFERENCE_SET, data.RAW_MD5[TEST_IMAGES_FILE])


def training_set_name(train_images: int | None) -> str:
    """The training set's name; a --train-images subset says so, since the digest is the whole file's."""
    return "fashion-mnist-train" if train_images is None else f"fashion-mnist-train-first-{train_images}"


def dataset_inputs(data_dir: Path, dataset_md5: dict[str, str], train_images: int | None) -> list[DatasetInput]:
    """The training images (context `training`) and the test images (context `evaluation`) as MLflow inputs."""
    raw = data.raw_dir(data_dir)
    train_count = _image_count(raw / TRAIN_IMAGES_FILE)
    if train_images is not None:
        train_count = min(train_count, train_images)
    return [
        DatasetInput(_dataset(training_set_name(train_images), raw / TRAIN_IMAGES_FILE,
                              dataset_md5[TRAIN_IMAGES_FILE], train_count),
                     [InputTag(MLFLOW_DATASET_CONTEXT, "training")]),
        DatasetInput(_dataset(TEST_SET.name, raw / TEST_IMAGES_FILE, dataset_md5[TEST_IMAGES_FILE],
                              _image_count(raw / TEST_IMAGES_FILE)),
                     [InputTag(MLFLOW_DATASET_CONTEXT, "evaluation")]),
    ]


def record(client: MlflowClient, run_id: str, data_dir: Path, dataset_md5: dict[str, str],
           train_images: int | None, system_metrics: bool) -> None:
    """Log the run's datasets (again on a resume: MLflow keeps one copy) and start the system-metrics monitor."""
    with tracking.store_errors(f"logging the datasets of run {run_id}"):
        _log_inputs(client, run_id, dataset_inputs(data_dir, dataset_md5, train_images))
        if system_metrics and not start_system_metrics(client.tracking_uri, run_id):
            client.set_tag(run_id, "ganlab.system_metrics", "not logged: psutil is not installed "
                                                            "(pip install 'ganlab[system-metrics]')")


def _log_inputs(client: MlflowClient, run_id: str, datasets: list[DatasetInput]) -> None:
    """log_inputs, tried twice: MLflow looks a dataset up, then inserts it, so two workers logging the same new dataset
    into one experiment at once collide on the store's unique key (seen with `tune.py --worker`); the second try finds
    the row the other wrote. Logging the same inputs again is harmless: MLflow keeps one copy."""
    try:
        client.log_inputs(run_id, datasets=datasets)
    except MlflowException:
        client.log_inputs(run_id, datasets=datasets)


def start_system_metrics(tracking_uri: str, run_id: str) -> bool:
    """MLflow's monitor in a daemon thread: it samples every 10 s and stops when the run is no longer RUNNING.
    False where psutil, which it needs, is not installed."""
    try:
        import psutil  # noqa: F401 - MLflow's CPU monitor imports it
    except ImportError:
        return False
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_SECONDS, resume_logging=True,
                         tracking_uri=tracking_uri).start()
    return True


def _dataset(name: str, path: Path, md5: str, image_count: int) -> Dataset:
    schema = TensorDatasetSchema(features=Schema([TensorSpec(np.dtype(np.uint8), (-1, 28, 28), "images")]))
    # Source as MLflow's LocalArtifactDatasetSource writes it (its resolver cannot tell a path's two readings apart).
    return Dataset(name=name, digest=md5, source_type="local", source=json.dumps({"uri": str(path.resolve())}),
                   schema=json.dumps(schema.to_dict()),
                   profile=json.dumps({"images": image_count, "shape": [image_count, 28, 28], "dtype": "uint8",
                                       "file": path.name, "md5": md5}))


def _image_count(path: Path) -> int:
    """The image count from an idx3 file's header (magic, count, rows, cols: big-endian int32s)."""
    with path.open("rb") as handle:
        _, count, _, _ = struct.unpack(">4i", handle.read(16))
    return count
