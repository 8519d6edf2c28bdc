"""Write the lab report, one self-contained HTML file, from the runs MLflow tracked.

    python analysis/report.py --experiment fashion-mnist-gan                  # → report.html
    python analysis/report.py --experiment fashion-mnist-gan --out lab.html --overwrite
    python analysis/report.py --train-missing --overwrite                    # what `make report` runs

The report answers the lab point by point: print(D)/print(G), loss and D-output curves, first vs last epoch
samples, 8 images from a chosen latent batch, the 15×8 latent study and its measured findings, MLP vs CNN vs
tuned CNN. Every figure names the run it came from; quality metrics are in ganlab's fmnist-cnn-v1 feature space.
"""

from pathlib import Path

from ganlab import lab, report, tracking
from ganlab.cli import TRACKING_URI_HELP, ArgumentParser, run_script, script_parser
from ganlab.errors import GanlabError


def build_parser() -> ArgumentParser:
    parser = script_parser(__doc__)
    parser.add_argument("--experiment", default="fashion-mnist-gan", help="MLflow experiment (default: fashion-mnist-gan)")
    parser.add_argument("--out", type=Path, default=Path("report.html"), help="the HTML file (default: report.html)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--train-missing", action="store_true",
                        help="first train each architecture with no finished run (short: mlp and mlp-small 5 epochs, "
                             "cnn 2) and run the latent study if none exists")
    parser.add_argument("--tracking-uri", help=TRACKING_URI_HELP)
    return parser


def main() -> int:
    arguments = build_parser().parse_args()
    if arguments.out.exists() and not arguments.overwrite:
        raise GanlabError(f"{arguments.out} exists; pass --overwrite to replace it, or choose another --out")
    if arguments.out.suffix.lower() not in (".html", ".htm"):
        raise GanlabError(f"--out must name an .html file, got {arguments.out}")

    tracking_uri = tracking.resolve_tracking_uri(arguments.tracking_uri)
    client = tracking.connect(tracking_uri)
    if arguments.train_missing:
        lab.complete_lab(client, tracking_uri, arguments.experiment, lab.SHORT_EPOCHS)
    lab_runs = report.find_lab_runs(client, arguments.experiment)
    page = report.build_report(client, lab_runs, arguments.experiment)
    try:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        staging = arguments.out.with_name(arguments.out.name + ".partial")
        staging.write_text(page, encoding="utf-8")
        staging.replace(arguments.out)  # a reader never sees half a report
    except OSError as error:
        raise GanlabError(f"cannot write {arguments.out}: {error.strerror or error}") from error
    print(f"report of {len(lab_runs.training)} training runs written to {arguments.out.resolve()} "
          f"({len(page) / 1e6:.1f} MB); open it in a browser")
    return 0


if __name__ == "__main__":
    run_script(main)
