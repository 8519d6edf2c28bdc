"""Does tuning balance the CNN GAN? The reports' settings against tuned settings, several seeds per arm.

Each arm is a set of training settings (the reports', a study's best trial or one trial of its Pareto front, in a
number format); each is trained with every seed as an ordinary tracked run, reused when it already finished and
resumed when it was interrupted, so the comparison runs in resumable pieces. The answer is numbers with their
uncertainty: per arm the mean, the standard deviation and a 95% t-interval of every final metric, and per other arm
the difference from the first arm (the baseline) with its 95% Welch interval, which says whether the difference is
larger than the seed-to-seed noise. D "no longer collapsing" is measured as the slope of the epoch D loss over the
last epochs (per epoch; negative = still falling towards 0).

The training runs live in a local MLflow store, which a fresh machine does not have; the committed summary.json does.
So an arm that summary.json already holds with the same settings and seeds is taken from it, not trained again, and
a comparison grows by one arm on another machine. Every run keeps the machine and day it trained on, and throughput
is compared only between arms trained on the same machine.
"""

import csv
import dataclasses
import datetime
import json
import math
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState
from scipy import stats

from ganlab import devices, tracking
from ganlab.errors import GanlabError
from ganlab.plots import arm_curves
from ganlab.train import TrainConfig
from ganlab.tuning import REPORT_SETTINGS, open_storage, train_or_reuse

FINAL_METRICS = ("fid", "kid", "precision", "recall", "coverage", "class_entropy", "epoch_loss_d", "epoch_d_gap",
                 "epoch_loss_g", "images_per_second")  # the last: training throughput of the last epoch, tracking on
LOWER_IS_BETTER = {"fid", "kid", "epoch_d_gap"}
SLOPE_EPOCHS = 3  # the last epochs whose D-loss trend says whether D is still collapsing


@dataclass
class Arm:
    """One set of settings to train: a name and the params that differ from TrainConfig's defaults."""

    name: str
    params: dict[str, float | int]
    source: str  # where the params came from, in words


@dataclass
class ArmResult:
    arm: Arm
    run_ids: list[str] = field(default_factory=list)
    finals: dict[str, list[float]] = field(default_factory=dict)  # metric → one value per seed
    curves: dict[str, list[list[float]]] = field(default_factory=dict)  # metric → per seed, one value per epoch
    d_loss_slopes: list[float] = field(default_factory=list)
    machines: list[str] = field(default_factory=list)  # per seed: the machine its run trained on
    dates: list[str] = field(default_factory=list)  # per seed: the day its run started
    recorded: bool = False  # taken from the summary.json of an earlier command, not from the store


def parse_arm(spec: str, storage_url: str) -> Arm:
    """`reports` → the reports' settings; `best:STUDY` → the best trial of that study in `storage_url`;
    `trial:STUDY:N` → trial N of that study (a point of a two-objective study's Pareto front). Each may end in `@fp32`
    or `@bf16`, which trains that arm in that number format (so one comparison can set the two side by side); without
    it the arm takes --precision."""
    settings, _, precision = spec.partition("@")
    arm = _parse_settings(settings, storage_url, spec)
    if not precision:
        return arm
    if precision not in ("fp32", "bf16"):
        raise GanlabError(f"unknown precision {precision!r} in --arm {spec!r}: use @fp32 or @bf16")
    return Arm(f"{arm.name}-{precision}", {**arm.params, "precision": precision}, f"{arm.source}, in {precision}")


ARM_FORMS = "`reports`, `best:STUDY_NAME` or `trial:STUDY_NAME:NUMBER`, optionally with @fp32 or @bf16"


def _parse_settings(settings: str, storage_url: str, spec: str) -> Arm:
    if settings == "reports":
        return Arm("reports", {name: REPORT_SETTINGS[name] for name in ("lr_g", "lr_d", "beta1", "beta2")},
                   "the reports (lr 2e-4 both, betas 0.5/0.999)")
    if settings.startswith("best:"):
        study_name = settings.removeprefix("best:")
        study = _load_study(study_name, storage_url, spec)
        if len(study.directions) > 1:
            raise GanlabError(f"study {study_name!r} has two objectives: pick a trial of its Pareto front with "
                              f"--arm trial:{study_name}:NUMBER")
        try:
            best = study.best_trial
        except ValueError as error:
            raise GanlabError(f"study {study_name!r} has no complete trial yet") from error
        return Arm(f"best-{study_name}", dict(best.params), f"trial {best.number} of study {study_name}")
    if settings.startswith("trial:"):
        study_name, _, number = settings.removeprefix("trial:").rpartition(":")
        if not study_name or not number.isdigit():
            raise GanlabError(f"unknown --arm {spec!r}: a trial is trial:STUDY_NAME:NUMBER")
        study = _load_study(study_name, storage_url, spec)
        trials = [trial for trial in study.get_trials(deepcopy=False) if trial.number == int(number)]
        if not trials or trials[0].state != TrialState.COMPLETE:
            raise GanlabError(f"study {study_name!r} has no complete trial {number} (for --arm {spec})")
        return Arm(f"trial-{study_name}-{number}", dict(trials[0].params), f"trial {number} of study {study_name}")
    raise GanlabError(f"unknown --arm {spec!r}: use {ARM_FORMS}")


def _load_study(study_name: str, storage_url: str, spec: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=study_name, storage=open_storage(storage_url))
    except KeyError as error:
        raise GanlabError(f"no study {study_name!r} in {storage_url} (for --arm {spec})") from error


def comparison_settings(base: TrainConfig) -> dict:
    """What every arm shares; an arm recorded under other settings is not the same measurement."""
    return {name: getattr(base, name) for name in ("arch", "epochs", "eval_samples", "train_images", "precision")}


def recorded_arms(out_dir: Path | None, base: TrainConfig, seeds: list[int]) -> dict[str, dict]:
    """The arms of `out_dir`/summary.json (written by an earlier command) measured with these settings and seeds, by
    name; {} when there is none or it was measured otherwise."""
    summary_path = out_dir / "summary.json" if out_dir else None
    if summary_path is None or not summary_path.is_file():
        return {}
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise GanlabError(f"cannot read the earlier comparison {summary_path}: {error}") from error
    if summary.get("settings") != comparison_settings(base) or summary.get("seeds") != seeds:
        return {}
    return {arm["arm"]: arm for arm in summary["arms"] if "machines" in arm}


def _from_record(arm: Arm, record: dict) -> ArmResult:
    return ArmResult(arm, run_ids=record["run_ids"],
                     finals={name: record["metrics"][name]["values"] for name in FINAL_METRICS},
                     curves=record["curves"], d_loss_slopes=record["d_loss_slope_last_epochs"]["values"],
                     machines=record["machines"], dates=record["dates"], recorded=True)


def run_arms(arms: list[Arm], base: TrainConfig, seeds: list[int], comparison: str, show_progress: bool = True,
             recorded: dict[str, dict] | None = None) -> list[ArmResult]:
    """Train (or reuse, or resume) every arm with every seed; read back what the comparison needs. An arm in
    `recorded` (see recorded_arms) with the same params is taken from there."""
    client = tracking.connect(tracking.resolve_tracking_uri(base.tracking_uri))
    experiment_id = tracking.get_or_create_experiment(client, base.experiment)
    results = []
    for arm in arms:
        record = (recorded or {}).get(arm.name)
        if record is not None and record["params"] == arm.params:
            results.append(_from_record(arm, record))
            continue
        result = ArmResult(arm)
        for seed in seeds:
            config = dataclasses.replace(base, **arm.params, seed=seed, run_name=f"{comparison}-{arm.name}-s{seed}")
            run = train_or_reuse(client, experiment_id, config, {
                "ganlab.comparison": comparison, "ganlab.arm": arm.name}, show_progress)
            result.run_ids.append(run.info.run_id)
            for name in FINAL_METRICS:
                result.finals.setdefault(name, []).append(run.data.metrics.get(name, math.nan))
            for name in ("fid", "epoch_loss_d"):
                history = sorted((metric.step, metric.value)
                                 for metric in client.get_metric_history(run.info.run_id, name))
                result.curves.setdefault(name, []).append([value for _, value in history])
            result.d_loss_slopes.append(trend(result.curves["epoch_loss_d"][-1][-SLOPE_EPOCHS:]))
            result.machines.append(run.data.params.get("machine", "an unnamed machine"))
            result.dates.append(datetime.date.fromtimestamp(run.info.start_time / 1000).isoformat())
        results.append(result)
    return results


def trend(values: list[float]) -> float:
    """Least-squares slope per epoch (nan for fewer than 2 points)."""
    if len(values) < 2:
        return math.nan
    return float(np.polyfit(np.arange(len(values)), np.asarray(values), 1)[0])


def interval(values: list[float]) -> tuple[float, float, float, float]:
    """(mean, sample std, low, high) with a 95% t-interval of the mean."""
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return (math.nan,) * 4
    mean = statistics.fmean(finite)
    if len(finite) < 2:
        return mean, math.nan, math.nan, math.nan
    std = statistics.stdev(finite)
    half = stats.t.ppf(0.975, len(finite) - 1) * std / math.sqrt(len(finite))
    return mean, std, mean - half, mean + half


def welch_difference(values: list[float], baseline: list[float]) -> tuple[float, float, float]:
    """(mean difference, low, high): the 95% Welch interval of mean(values) − mean(baseline)."""
    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    difference = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return difference, math.nan, math.nan
    variance_a, variance_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    standard_error = math.sqrt(variance_a + variance_b)
    if standard_error == 0:
        return difference, difference, difference
    dof = (variance_a + variance_b) ** 2 / ((variance_a ** 2) / (len(a) - 1) + (variance_b ** 2) / (len(b) - 1))
    half = float(stats.t.ppf(0.975, dof)) * standard_error
    return difference, difference - half, difference + half


def summarize(results: list[ArmResult], seeds: list[int], base: TrainConfig) -> dict:
    """Everything the table, the report and the docs quote, as one JSON-friendly dict. The first arm is the baseline
    every other arm is compared with (the reports' settings, or fp32 when the arms differ in number format)."""
    baseline = results[0]
    arms = []
    for result in results:
        metrics = {}
        for name in FINAL_METRICS:
            mean, std, low, high = interval(result.finals[name])
            entry = {"values": result.finals[name], "mean": mean, "std": std, "ci95": [low, high]}
            if result is not baseline:
                difference, low, high = welch_difference(result.finals[name], baseline.finals[name])
                entry["vs_baseline"] = {"difference": difference, "ci95": [low, high],
                                        "beyond_noise": bool(math.isfinite(low) and (low > 0 or high < 0))}
            metrics[name] = entry
        slope_mean, slope_std, slope_low, slope_high = interval(result.d_loss_slopes)
        arms.append({"arm": result.arm.name, "source": result.arm.source, "params": result.arm.params,
                     "run_ids": result.run_ids, "metrics": metrics,
                     "d_loss_slope_last_epochs": {"values": result.d_loss_slopes, "mean": slope_mean,
                                                  "ci95": [slope_low, slope_high]},
                     "curves": result.curves, "machines": result.machines, "dates": result.dates,
                     "recorded": result.recorded})
    baseline_fid = statistics.fmean(baseline.finals["fid"])
    answer = {arm["arm"]: {"fid_ratio_to_baseline": arm["metrics"]["fid"]["mean"] / baseline_fid,
                           "fid_at_most_half": arm["metrics"]["fid"]["mean"] <= 0.5 * baseline_fid,
                           "d_loss_still_falling": arm["d_loss_slope_last_epochs"]["mean"] < 0}
              for arm in arms[1:]}
    return {"seeds": seeds, "settings": comparison_settings(base), "baseline": baseline.arm.name, "arms": arms,
            "answer": answer, "date": datetime.date.today().isoformat(),  # date and machine of this summing-up
            "machine": devices.machine_description(devices.resolve_device(base.device))}


def write_results(summary: dict, out_dir: Path) -> None:
    """runs.csv (one row per run), summary.json, table.md and the per-arm curves."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "runs.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arm", "seed", "run_id", *FINAL_METRICS, "d_loss_slope_last_epochs", "machine", "date"])
        for arm in summary["arms"]:
            for index, seed in enumerate(summary["seeds"]):
                writer.writerow([arm["arm"], seed, arm["run_ids"][index],
                                 *[arm["metrics"][name]["values"][index] for name in FINAL_METRICS],
                                 arm["d_loss_slope_last_epochs"]["values"][index], arm["machines"][index],
                                 arm["dates"][index]])
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "table.md").write_text(table_markdown(summary))
    (out_dir / "answer.md").write_text(answer_markdown(summary))
    for name, ylabel in (("fid", "FID (fmnist-cnn-v1)"), ("epoch_loss_d", "epoch D loss")):
        figure = arm_curves({arm["arm"]: arm["curves"][name] for arm in summary["arms"]}, ylabel,
                            f"{ylabel} by epoch, mean and each seed")
        figure.savefig(out_dir / f"{name}_by_epoch.png", dpi=100)


def table_markdown(summary: dict) -> str:
    """Mean ± std per arm; the difference from the baseline (first) arm, marked when beyond the noise."""
    epochs = summary["settings"]["epochs"]
    shown = ("fid", "kid", "recall", "coverage", "class_entropy", "epoch_loss_d", "epoch_d_gap", "epoch_loss_g",
             "images_per_second")
    header = f"| arm (after {epochs} epochs, {len(summary['seeds'])} seeds) | " + " | ".join(shown) + \
             " | D-loss slope, last epochs |"
    lines = [header, "|" + " --- |" * (len(shown) + 2)]
    for arm in summary["arms"]:
        cells = []
        for name in shown:
            entry = arm["metrics"][name]
            cell = f"{entry['mean']:.3g} ± {entry['std']:.2g}"
            if "vs_baseline" in entry:
                difference = entry["vs_baseline"]
                cell += f" (Δ {difference['difference']:+.3g}{'*' if difference['beyond_noise'] else ''})"
            cells.append(cell)
        slope = arm["d_loss_slope_last_epochs"]
        lines.append(f"| {arm['arm']} | " + " | ".join(cells) + f" | {slope['mean']:+.3g} |")
    lines.append("")
    lines.append(f"mean ± standard deviation over seeds; Δ: difference from the first arm ({summary['baseline']}), * "
                 "where its 95% Welch interval excludes 0 (larger than the seed-to-seed noise). FID and KID in the "
                 "fmnist-cnn-v1 feature space, 10k samples against the 10k test images; images_per_second: training "
                 "throughput of the last epoch, tracking on (on a shared machine it varies with its load).")
    if len(_machines(summary["arms"])) > 1:
        lines.append("")
        lines.append("Trained on more than one machine, so images_per_second compares only arms of one machine: " +
                     "; ".join(f"{arm['arm']}: {_where([arm])}" for arm in summary["arms"]) + ".")
    return "\n".join(lines) + "\n"


def _machines(arms: list[dict]) -> set[str]:
    return {machine for arm in arms for machine in arm["machines"]}


def _where(arms: list[dict]) -> str:
    """"MACHINE, DAY" (or "…, FIRST DAY to LAST DAY") of the runs of these arms."""
    dates = sorted({date for arm in arms for date in arm["dates"]})
    days = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    return f"{' and '.join(sorted(_machines(arms)))}, {days}"


def answer_markdown(summary: dict) -> str:
    """The comparison's answer in a few short sentences with their uncertainty, for the README to quote as it is (a
    generated block, so the prose cannot drift from the committed numbers)."""
    arms = {arm["arm"]: arm for arm in summary["arms"]}
    baseline = arms[summary["baseline"]]
    base_fid, base_speed = baseline["metrics"]["fid"], baseline["metrics"].get("images_per_second")
    beside_baseline = [arm for arm in summary["arms"] if _machines([arm]) == _machines([baseline])]
    where = _where(beside_baseline) + ("" if len(beside_baseline) == len(arms) else ", unless an arm says otherwise")
    lines = [f"After {summary['settings']['epochs']} epochs, {len(summary['seeds'])} seeds per arm, 10k-sample FID "
             f"(fmnist-cnn-v1); {where}:", ""]
    for name, answer in summary["answer"].items():
        fid = arms[name]["metrics"]["fid"]
        difference = fid["vs_baseline"]
        low, high = difference["ci95"]
        slope = arms[name]["d_loss_slope_last_epochs"]["mean"]
        trend_words = "still falling" if answer["d_loss_still_falling"] else "not falling"
        sentence = (f"- **{name}**: FID {fid['mean']:.3g} ± {fid['std']:.2g} vs {summary['baseline']} "
                    f"{base_fid['mean']:.3g} ± {base_fid['std']:.2g} ({answer['fid_ratio_to_baseline']:.2f}×), "
                    f"difference {difference['difference']:+.3g}, 95% Welch interval [{low:+.3g}, {high:+.3g}]: "
                    f"{'beyond' if difference['beyond_noise'] else 'within'} the seed noise. D loss over the last "
                    f"epochs {slope:+.3g} per epoch ({trend_words}).")
        speed = arms[name]["metrics"].get("images_per_second")
        if _machines([arms[name]]) != _machines([baseline]):
            sentence += f" Trained on {_where([arms[name]])}, so its images/s are not compared."
            speed = None
        if speed and base_speed:
            sentence += (f" {speed['mean']:.0f} ± {speed['std']:.2g} vs {base_speed['mean']:.0f} ± "
                         f"{base_speed['std']:.2g} images/s ({speed['mean'] / base_speed['mean']:.2f}×).")
        lines.append(sentence)
    return "\n".join(lines) + "\n"


def log_comparison(summary: dict, base: TrainConfig, name: str, out_dir: Path | None) -> tuple[str, str, str]:
    """The result files in `out_dir` (else a temporary folder) and as a run tagged ganlab.kind=settings-comparison.
    Returns (run id, experiment id, the Markdown table)."""
    client = tracking.connect(tracking.resolve_tracking_uri(base.tracking_uri))
    experiment_id = tracking.get_or_create_experiment(client, base.experiment)
    with tracking.run_lifecycle(client, experiment_id, run_name=f"{name}-comparison", tags={
            "ganlab.kind": "settings-comparison", "ganlab.comparison": name, "ganlab.arch": base.arch,
            "mlflow.source.name": "experiments/compare_settings.py"}) as run, \
            tempfile.TemporaryDirectory() as scratch, tracking.store_errors("logging the comparison"):
        folder = out_dir or Path(scratch)
        write_results(summary, folder)
        client.log_batch(run.info.run_id, params=[tracking.mlflow_param(key, value) for key, value in {
            "arms": ",".join(arm["arm"] for arm in summary["arms"]), "seeds": len(summary["seeds"]),
            "epochs": base.epochs, "eval_samples": base.eval_samples, "arch": base.arch}.items()])
        client.log_artifacts(run.info.run_id, str(folder))
        table = (folder / "table.md").read_text()
    return run.info.run_id, experiment_id, table
