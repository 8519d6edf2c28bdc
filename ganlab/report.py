"""The lab report as one self-contained HTML file, written from what MLflow tracked.

It answers the lab's requirements in their order (models, curves, samples, a chosen latent batch, the latent
study, MLP vs CNN vs tuned CNN), every figure captioned with the run it came from. Images are embedded as
data URIs, so the file can be mailed or opened offline. A missing piece is a visible note naming the command
that produces it, not an error.
"""

import base64
import datetime
import html
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Run

import ganlab
from ganlab import comparison, plots, tracking
from ganlab.errors import GanlabError
from ganlab.inception_table import RESULTS_DIR as INCEPTION_RESULTS_DIR
from ganlab.metrics.classifier import FEATURE_SPACE

REPORT_ARCHS = ("mlp", "mlp-small", "cnn")  # the reports' three GANs, in the order the report shows them
LATENT_FIGURES = (  # (artifact, what the report asked for)
    ("perturbation_grid.png", "The 15×8 study: 5 dims × 3 changes, 8 images each"),
    ("magnitude_comparison.png", "One dim, growing offsets"),
    ("dimension_comparison.png", "One offset, different dims"),
    ("set_value_comparison.png", "Setting single numbers to fixed values (the second report's experiment)"),
    ("effect_vs_offset.png", "Pixel change against the offset, the study's dims and random directions"),
    ("dim_ranking.png", "Every dim's effect, against random directions"),
    ("direction_comparison.png", "Single dims vs random, SeFa and GANSpace directions"),
)
TUNING_FIGURES = ("optimization_history.png", "param_importances.png", "parallel_coordinate.png")
RESULTS = Path(__file__).resolve().parent.parent / "results"  # committed results, shown beside the store's runs
COMMITTED_CLAIMS = RESULTS / "latent-claims"  # when no run holds them
COMMITTED_BALANCE = RESULTS / "cnn-balance"
COMMITTED_SPEED = RESULTS / "speed"
COMMITTED_GPU_CAMPAIGN = RESULTS / "gpu-campaign"


@dataclass
class LabRuns:
    """The runs the report is written from."""

    by_arch: dict[str, Run] = field(default_factory=dict)  # latest finished untuned training run per arch
    tuned: Run | None = None  # latest finished cnn run retrained from a study (tag ganlab.tuned_from)
    latent: Run | None = None  # latest finished latent study of one of the runs above, an MLP's first
    study: Run | None = None  # the cnn study the tuned run came from, else the latest finished cnn study
    pruner_replay: Run | None = None  # latest finished replay of a study's curves through the pruners
    claims: Run | None = None  # latest finished test of the reports' claims across generators
    benchmarks: list[Run] = field(default_factory=list)

    @property
    def training(self) -> list[Run]:
        return [*self.by_arch.values(), *([self.tuned] if self.tuned else [])]


def find_lab_runs(client: MlflowClient, experiment: str, benchmark_experiment: str = "ganlab-benchmarks",
                  required: bool = True) -> LabRuns:
    """Pick the newest finished run of each kind the report needs from `experiment`; unless `required`, an
    experiment that does not exist yet or has no training runs is an empty LabRuns, not an error."""
    found = client.get_experiment_by_name(experiment)
    if found is None and not required:
        return LabRuns()
    if found is None:
        raise GanlabError(f"no MLflow experiment named {experiment!r} in {client.tracking_uri}; train first, "
                          "or run `make report`, which does")
    finished = client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'", max_results=5000,
                                  order_by=["attributes.start_time DESC"])
    lab = LabRuns()
    for run in finished:
        tags = run.data.tags
        kind, arch = tags.get("ganlab.kind"), tags.get("ganlab.arch")
        if kind == "train" and "mlflow.parentRunId" not in tags:
            if "ganlab.tuned_from" in tags:
                lab.tuned = lab.tuned or (run if arch == "cnn" else None)
            elif arch in REPORT_ARCHS and arch not in lab.by_arch:
                lab.by_arch[arch] = run
        elif kind == "pruner-replay":
            lab.pruner_replay = lab.pruner_replay or run
        elif kind == "latent-claims":
            lab.claims = lab.claims or run
    cnn_studies = [run for run in finished if run.data.tags.get("ganlab.kind") == "tune"
                   and run.data.tags.get("ganlab.arch") == "cnn"]
    tuned_from = lab.tuned.data.tags["ganlab.tuned_from"] if lab.tuned else None
    lab.study = next((run for run in cnn_studies if run.data.tags.get("optuna.study_name") == tuned_from),
                     cnn_studies[0] if cnn_studies else None)
    lab.by_arch = {arch: lab.by_arch[arch] for arch in REPORT_ARCHS if arch in lab.by_arch}
    studied = [run.info.run_id for run in lab.training]
    latent_runs = [run for run in finished if run.data.tags.get("ganlab.kind") == "latent-analysis"
                   and run.data.tags.get("ganlab.source_run_id") in studied]
    latent_runs.sort(key=lambda run: studied.index(run.data.tags["ganlab.source_run_id"]))  # stable: newest first
    lab.latent = latent_runs[0] if latent_runs else None
    benchmark_experiment_found = client.get_experiment_by_name(benchmark_experiment)
    if benchmark_experiment_found is not None:
        lab.benchmarks = client.search_runs([benchmark_experiment_found.experiment_id],
                                            "tags.`ganlab.kind` = 'benchmark' and attributes.status = 'FINISHED'",
                                            order_by=["attributes.start_time DESC"], max_results=20)
    if not lab.training and required:
        raise GanlabError(f"experiment {experiment!r} has no finished training runs: run `make report` to train "
                          "short ones, or experiments/train.py --arch mlp")
    return lab


class HtmlReport:
    """Sections of HTML, appended in order."""

    def __init__(self, client: MlflowClient):
        self.client = client
        self.parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def preformatted(self, text: str, caption: str) -> None:
        self.parts.append(f"<figure><pre>{html.escape(text)}</pre><figcaption>{html.escape(caption)}</figcaption>"
                          "</figure>")

    def markdown(self, text: str) -> None:
        self.parts.append(markdown_to_html(text))

    def png(self, png_bytes: bytes, caption: str) -> None:
        encoded = base64.b64encode(png_bytes).decode("ascii")
        self.parts.append(f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(caption)}">'
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def figure(self, figure: Figure, caption: str) -> None:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        self.png(buffer.getvalue(), caption)

    def artifact_image(self, run: Run, path: str, caption: str) -> bool:
        """Embed a run's PNG artifact captioned with the run; False (and nothing embedded) if it has none."""
        png_bytes = tracking.artifact_bytes(self.client, run.info.run_id, path)
        if png_bytes is None:
            return False
        self.png(png_bytes, f"{caption} (run {run_label(run)}, {path})")
        return True

    def row(self, build) -> None:
        """Whatever `build()` appends, laid out side by side."""
        start = len(self.parts)
        build()
        self.parts[start:] = ['<div class="row">' + "".join(self.parts[start:]) + "</div>"]

    def html(self, title: str) -> str:
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
                f"</title><style>{STYLE}</style></head><body>\n" + "\n".join(self.parts) + "\n</body></html>\n")


def build_report(client: MlflowClient, lab: LabRuns, experiment: str) -> str:
    """The whole report as an HTML string."""
    report = HtmlReport(client)
    report.heading(f"ganlab lab report: GANs on Fashion-MNIST ({experiment})", 1)
    report.paragraph(f"Written by ganlab {ganlab.__version__} on {datetime.datetime.now():%Y-%m-%d %H:%M} from the "
                     f"MLflow store {client.tracking_uri}. Quality metrics (FID, KID, precision, recall, coverage) "
                     f"are computed in the feature space of ganlab's own Fashion-MNIST classifier ({FEATURE_SPACE}), "
                     "not Inception: compare them only with numbers from the same feature space. Section 9 sets "
                     "ganlab's GANs beside the literature in standard (Inception) FID.")
    report.markdown(_runs_used(lab))
    _models_section(report, lab)
    _training_section(report, lab)
    _samples_section(report, lab)
    _latent_section(report, lab)
    _claims_section(report, lab)
    _comparison_section(report, lab)
    _tuning_section(report, lab)
    _speed_section(report, lab)
    _literature_section(report)
    _gpu_section(report)
    return report.html(f"ganlab report: {experiment}")


def _models_section(report: HtmlReport, lab: LabRuns) -> None:
    report.heading("1. The models: print(D) and print(G)")
    for arch, run in lab.by_arch.items():
        summary = tracking.artifact_bytes(report.client, run.info.run_id, "model/summary.txt")
        if summary:
            report.preformatted(summary.decode(), f"{arch}: model/summary.txt of run {run_label(run)}")


def _training_section(report: HtmlReport, lab: LabRuns) -> None:
    report.heading("2. Training: D and G losses, D(x) and D(G(z)) per step")
    for run in lab.training:
        report.heading(run.info.run_name, 3)
        report.row(lambda run=run: (report.artifact_image(run, "plots/losses.png", "Losses"),
                                    report.artifact_image(run, "plots/d_outputs.png", "D outputs")))
        report.artifact_image(run, "plots/losses_d_g.png", "D and G losses apart, as the second report draws them")


def _samples_section(report: HtmlReport, lab: LabRuns) -> None:
    report.heading("3. Samples from a fixed latent batch: first vs last epoch")
    for run in lab.training:
        report.heading(run.info.run_name, 3)
        report.row(lambda run=run, last=comparison.last_epoch(report.client, run.info.run_id): (
            report.artifact_image(run, "samples/epoch_001.png", "Epoch 1"),
            report.artifact_image(run, f"samples/epoch_{last:03d}.png", f"Epoch {last}")))


def latent_source(params: dict[str, str]) -> str:
    """Where a latent study's display batch came from, in words: its file, or the seed it was drawn with."""
    z_file = params.get("z_file")
    if z_file and z_file != "None":  # MLflow keeps an unset option as the string "None"
        return f"the latent batch in {Path(z_file).name} (--z-file {z_file})"
    return f"8 latent vectors drawn with --z-seed {params.get('z_seed', '0')} (torch.randn, seeded)"


def _latent_section(report: HtmlReport, lab: LabRuns) -> None:
    report.heading("4. Eight images from a chosen latent batch")
    if lab.latent is None:
        report.note("No latent study of these runs yet: python analysis/latent_effects.py --run-id RUN_ID")
        report.heading("5. The latent study")
        report.note("Missing for the same reason.")
        return
    report.artifact_image(lab.latent, "base.png", f"G(z) for {latent_source(lab.latent.data.params)}")
    report.heading("5. The latent study: what each latent number does, measured")
    for path, what in LATENT_FIGURES:
        report.artifact_image(lab.latent, path, what)
    summary = tracking.artifact_bytes(report.client, lab.latent.info.run_id, "summary.md")
    if summary:
        report.markdown(summary.decode())
        report.note(f"Findings from summary.md of run {run_label(lab.latent)}.")


def _claims_section(report: HtmlReport, lab: LabRuns) -> None:
    """The reports' claims with their verdicts across generators: from the newest claims run, else from the results
    committed under results/latent-claims/."""
    report.heading("The reports' claims, measured across generators", 3)
    if lab.claims is not None:
        claims_md = tracking.artifact_bytes(report.client, lab.claims.info.run_id, "claims.md")
        if claims_md:
            report.markdown(claims_md.decode("utf-8"))
            report.artifact_image(lab.claims, "consistency.png", "Does a latent index mean the same across generators?")
            report.note(f"Verdicts from claims.md of run {run_label(lab.claims)}.")
            return
    committed = COMMITTED_CLAIMS / "claims.md"
    if committed.is_file():
        report.markdown(committed.read_text(encoding="utf-8"))
        consistency = COMMITTED_CLAIMS / "consistency.png"
        if consistency.is_file():
            report.png(consistency.read_bytes(), "Does a latent index mean the same across generators? "
                                                 "(results/latent-claims/consistency.png)")
        report.note("No claims run in this store: these are the committed results in results/latent-claims/ "
                    "(README.md there has the commands). Yours: python analysis/claims.py --run-id A --run-id B "
                    "--run-id C")
        return
    report.note("No claims run yet: python analysis/claims.py --run-id A --run-id B --run-id C")


def _comparison_section(report: HtmlReport, lab: LabRuns) -> None:
    report.heading("6. MLP vs CNN vs tuned CNN")
    if lab.tuned is None:
        report.note("No tuned CNN yet: python experiments/tune.py --retrain-best --epochs 20")
    report.markdown(comparison.table_markdown(comparison.table_rows(lab.training)))
    fid_curves = {run_label(run): comparison.metric_curve(report.client, run.info.run_id, "fid") for run in lab.training}
    fid_curves = {label: curve for label, curve in fid_curves.items() if len(curve[0])}
    if fid_curves:
        samples = sorted({run.data.tags.get("eval.samples", "?") for run in lab.training}, key=str)
        report.figure(plots.run_overlay({"FID": fid_curves}, "epoch", f"FID by epoch ({FEATURE_SPACE} features)"),
                      "FID by epoch of " + ", ".join(fid_curves) + f", from {' or '.join(samples)} samples per "
                      "evaluation (fewer samples: a noisier FID, higher by a small-sample bias)")
    for run in lab.training:
        report.artifact_image(run, "plots/class_histogram.png", f"Predicted classes of {run.info.run_name}'s samples")


def _tuning_section(report: HtmlReport, lab: LabRuns, balance_dir: Path = COMMITTED_BALANCE) -> None:
    report.heading("7. Balancing the CNN: the tuning study")
    _committed_balance(report, balance_dir)
    if lab.study is None:
        report.note("No tuning study in this experiment: python experiments/tune.py (20 trials of 3 cnn epochs: "
                    "about 5 hours on a 2-core CPU)")
        return
    for path in TUNING_FIGURES:
        report.artifact_image(lab.study, path, path.removesuffix(".png").replace("_", " ").capitalize())
    best = tracking.artifact_bytes(report.client, lab.study.info.run_id, "best.json")
    if best:
        report.preformatted(json.dumps(json.loads(best), indent=2), f"best.json of study run {run_label(lab.study)}")
    if lab.pruner_replay is not None:
        report.heading("Which pruner: a replay of unpruned curves", level=3)
        replay = tracking.artifact_bytes(report.client, lab.pruner_replay.info.run_id, "replay.md")
        if replay:
            report.markdown(replay.decode())
        report.artifact_image(lab.pruner_replay, "curves.png", "The replayed per-epoch curves")


def _study_machines(summary: dict) -> str:
    """Where a committed study's trials ran: per machine with its trial count (exports before that was recorded name
    only the machine that exported them)."""
    if "machines" not in summary:
        return summary.get("machine", "an unnamed machine")
    if len(summary["machines"]) == 1:
        return next(iter(summary["machines"]))
    return " and ".join(f"{machine} ({count} trials)" for machine, count in summary["machines"].items())


def _committed_balance(report: HtmlReport, balance_dir: Path) -> None:
    """The balancing study committed under results/cnn-balance/ (each study's summary and plots, the comparison's
    table), marked as committed with its date and machine; or what fills it and how long that takes."""
    studies = sorted(balance_dir.glob("*/study.json"))
    comparison_table = balance_dir / "comparison" / "table.md"
    if not studies and not comparison_table.is_file():
        report.note(f"No committed balancing study in {_shown(balance_dir)}/ yet: "
                    f"bash {_shown(balance_dir)}/run.sh (resumable; each 24-trial cnn study "
                    "is about 50 minutes in bf16 on a 2-core AMX CPU and 4.5 hours in fp32 without, the 3-seed "
                    "comparison of two arms about 30 minutes in bf16).")
        return
    for summary_path in studies:
        summary = json.loads(summary_path.read_text())
        states = ", ".join(f"{count} {state.lower()}" for state, count in summary["trials_by_state"].items() if count)
        report.heading(f"Committed study {summary['study_name']}", level=3)
        report.note(f"{states}; {summary['trial_seconds_total'] / 3600:.1f} h of trials from {summary['first_start']} "
                    f"to {summary['last_complete']} on {_study_machines(summary)} "
                    f"({summary.get('precision_resolved', 'fp32')}). Committed in "
                    f"{_shown(summary_path.parent)}/, not from this report's store.")
        for name in ("optimization_history", "param_importances", "pareto_front"):
            figure = summary_path.parent / f"{name}.png"
            if figure.is_file():
                report.png(figure.read_bytes(), f"{name.replace('_', ' ').capitalize()} of {summary['study_name']} "
                                                f"(committed file {_shown(figure)})")
    if comparison_table.is_file():
        comparison = json.loads((comparison_table.parent / "summary.json").read_text())
        report.heading("Committed comparison: the reports' settings against the tuned settings", level=3)
        answer = comparison_table.parent / "answer.md"
        if answer.is_file():
            report.markdown(answer.read_text())
        report.markdown(comparison_table.read_text())
        report.note(f"Committed in {_shown(comparison_table.parent)}/, summed up on {comparison.get('date', '?')} on "
                    f"{comparison.get('machine', 'an unnamed machine')} (runs.csv: the machine and day of each run); "
                    "not from this report's store.")
        for name in ("fid_by_epoch", "epoch_loss_d_by_epoch"):
            figure = comparison_table.parent / f"{name}.png"
            if figure.is_file():
                report.png(figure.read_bytes(), f"{name.replace('_', ' ')} per arm (committed file {_shown(figure)})")


def _speed_section(report: HtmlReport, lab: LabRuns, speed_dir: Path = COMMITTED_SPEED) -> None:
    report.heading("8. Speed: ganlab's loop against the reports' DataLoader loop")
    if (speed_dir / "table.md").is_file():
        report.markdown((speed_dir / "table.md").read_text())
        report.note(f"Committed in {_shown(speed_dir)}/ (run.sh there made it; machine and date "
                    "in each row); not from this report's store.")
    if not lab.benchmarks:
        report.note("No benchmark runs in this store: python experiments/benchmark.py (about 2 minutes for mlp on "
                    "a 2-core CPU; --arch cnn --steps 150 --repeats 1 about 3 minutes)")
        return
    lines = ["| run | device | arch | steps | reference images/s | ganlab images/s | speedup | tracking overhead |",
             "|---|---|---|---|---|---|---|---|"]
    for run in lab.benchmarks:
        values = run.data.metrics
        lines.append(f"| {run.info.run_id[:8]} | {run.data.tags.get('ganlab.device', '')} | "
                     f"{run.data.params.get('arch', '')} | {run.data.params.get('steps', '')} | "
                     f"{values.get('reference_images_per_s', float('nan')):.0f} | "
                     f"{values.get('ganlab_images_per_s', float('nan')):.0f} | {values.get('speedup', float('nan')):.2f}× | "
                     f"{100 * values.get('tracking_overhead', float('nan')):+.1f}% |")
    report.markdown("\n".join(lines))


def _literature_section(report: HtmlReport, results_dir: Path = INCEPTION_RESULTS_DIR) -> None:
    """The committed standard-FID table (results/inception-fid/table.md), or how to make it."""
    report.heading("9. Beside the literature: standard (Inception) FID")
    table_path = results_dir / "table.md"
    if not table_path.is_file():
        report.note(f"No standard-FID table in {results_dir} yet: `make inception` once, then "
                    "`python analysis/inception_table.py` (20-epoch runs, 10k samples each: about 20 minutes per "
                    "row on a 2-core CPU).")
        return
    report.markdown(table_path.read_text().split("\n", 1)[1])  # the report's own heading replaces the file's title
    report.note(f"From {results_dir.parent.name}/{results_dir.name}/table.md, committed with the command that made "
                "it; not from this report's MLflow store.")


def _shown(path: Path) -> str:
    """A results folder as a reader finds it: relative to the repository when it is inside."""
    return str(path.relative_to(RESULTS.parent)) if path.is_relative_to(RESULTS.parent) else str(path)


def _gpu_section(report: HtmlReport, campaign_dir: Path = COMMITTED_GPU_CAMPAIGN) -> None:
    """The committed GPU campaign, or that none has run yet."""
    report.heading("10. On a GPU")
    if (campaign_dir / "table.md").is_file():
        report.markdown((campaign_dir / "table.md").read_text())
        report.note(f"Committed in {_shown(campaign_dir)}/ (GPU and date inside).")
        return
    report.note(f"No GPU campaign committed in {_shown(campaign_dir)}/ yet: it needs a machine "
                "with a CUDA GPU (docs/speed.md says what is ready). Every number above is from the CPU.")


def _runs_used(lab: LabRuns) -> str:
    lines = ["| role | run | id |", "|---|---|---|"]
    roles = [*((arch, run) for arch, run in lab.by_arch.items()), ("tuned cnn", lab.tuned),
             ("latent study", lab.latent), ("claims", lab.claims), ("tuning study", lab.study),
             ("pruner replay", lab.pruner_replay)]
    for role, run in roles:
        if run is not None:
            lines.append(f"| {role} | {run.info.run_name} | {run.info.run_id} |")
    return "\n".join(lines)


def run_label(run: Run) -> str:
    return f"{run.info.run_name} ({run.info.run_id[:8]})"


def markdown_to_html(text: str) -> str:
    """The Markdown ganlab itself writes (headings, bullets, tables, paragraphs, `code`) as HTML."""
    blocks, lines = [], text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            index += 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 2, 6)  # the report's own h1/h2 stay above
            blocks.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
            index += 1
        elif line.startswith("|"):
            rows = []
            while index < len(lines) and lines[index].startswith("|"):
                cells = [cell.strip() for cell in lines[index].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                    tag = "th" if not rows else "td"
                    rows.append("<tr>" + "".join(f"<{tag}>{_inline(cell)}</{tag}>" for cell in cells) + "</tr>")
                index += 1
            blocks.append("<table>" + "".join(rows) + "</table>")
        elif line.lstrip().startswith(("- ", "* ")):
            items = []
            while index < len(lines) and lines[index].lstrip().startswith(("- ", "* ")):
                items.append(f"<li>{_inline(lines[index].lstrip()[2:])}</li>")
                index += 1
            blocks.append("<ul>" + "".join(items) + "</ul>")
        else:
            paragraph = []
            while index < len(lines) and lines[index].strip() and not lines[index].startswith(("#", "|", "- ")):
                paragraph.append(lines[index].strip())
                index += 1
            blocks.append(f"<p>{_inline(' '.join(paragraph))}</p>")
    return "\n".join(blocks)


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .8em; }
table { border-collapse: collapse; font-size: .85em; margin: 1em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; }
.row { display: flex; gap: 1em; flex-wrap: wrap; } .row figure { flex: 1 1 400px; }
.note { background: #fff6dd; padding: .5em .8em; border-left: 4px solid #e0b000; }
"""
