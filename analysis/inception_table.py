"""The standard-FID table: ganlab's GANs and the real floor beside Lucic et al. 2018, into results/inception-fid/.

    make inception                                                      # once: the network
    python analysis/inception_table.py                                  # the report's runs of fashion-mnist-gan
    python analysis/inception_table.py --run cnn=RUN_ID --run cnn-tuned=RUN_ID
    python analysis/inception_table.py --floor-only --samples 2000 --reference-images 2000 --out /tmp/floor

Each row is N generated (or real training) images against the first N test images (all 10k by default), in
Inception space (fid_inception, also logged to the run) and in ganlab's fmnist-cnn-v1 space. Slow on a CPU: about
20 minutes per 10k images (the test images' features are cached); finished rows are reused when it runs again.
"""

import shlex
import sys
from pathlib import Path

from tqdm import tqdm

from ganlab import data, inception_table, tracking
from ganlab.cli import DATA_DIR_HELP, TRACKING_URI_HELP, ArgumentParser, run_script, script_parser
from ganlab.errors import GanlabError
from ganlab.metrics import inception
from ganlab.report import find_lab_runs
from ganlab.devices import resolve_device


def build_parser() -> ArgumentParser:
    parser = script_parser(__doc__)
    parser.add_argument("--run", action="append", default=[], metavar="LABEL=RUN_ID",
                        help="a training run and its row label (repeatable; default: the report's runs)")
    parser.add_argument("--experiment", default="fashion-mnist-gan",
                        help="where to find the report's runs without --run (default: fashion-mnist-gan)")
    parser.add_argument("--floor-only", action="store_true", help="only the real train-vs-test floor")
    parser.add_argument("--samples", type=int, default=10_000, help="images per row (default: 10000)")
    parser.add_argument("--reference-images", type=int, default=inception.REFERENCE_IMAGES,
                        help="the first N test images as the reference (default: all 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents and of the floor's subset (default: 0)")
    parser.add_argument("--out", type=Path, default=inception_table.RESULTS_DIR,
                        help="folder of table.json, table.csv, table.md (default: results/inception-fid)")
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    parser.add_argument("--device", default="auto", help="cpu, cuda, … (default: auto)")
    parser.add_argument("--tracking-uri", help=TRACKING_URI_HELP)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    return parser


def main() -> int:
    arguments = build_parser().parse_args()
    if arguments.samples < 2:
        raise GanlabError(f"--samples must be at least 2, got {arguments.samples}")
    if arguments.floor_only and arguments.run:
        raise GanlabError("--floor-only and --run exclude each other")

    # The runs first, so a wrong id fails before the slow reference features.
    client, runs = None, []
    if not arguments.floor_only:
        client = tracking.connect(tracking.resolve_tracking_uri(arguments.tracking_uri))
        runs = inception_table.parse_run_arguments(arguments.run) or [
            (label, run.info.run_id) for label, run in lab_runs(client, arguments.experiment)]
        for _, run_id in runs:
            tracking.get_run(client, run_id)
    device = resolve_device(arguments.device)
    measured = inception_table.measurement(shlex.join(["python", "analysis/inception_table.py", *sys.argv[1:]]))
    measurer = inception_table.TableMeasurer(data.resolve_data_dir(arguments.data_dir), device, arguments.samples,
                                             arguments.reference_images, arguments.seed, not arguments.no_progress,
                                             inception_table.read_rows(arguments.out), measured)
    kept = measurer.kept_rows({label for label, _ in runs})
    rows = [measurer.floor(), *kept]
    inception_table.write_table(arguments.out, rows, measured)
    for label, run_id in tqdm(runs, desc="runs", unit="run", disable=arguments.no_progress):
        rows.append(measurer.run(client, label, run_id))
        inception_table.write_table(arguments.out, rows, measured)  # after every row: an interruption loses one

    print((arguments.out / "table.md").read_text(), end="")
    print(f"{len(rows)} rows ({len(kept)} kept from the earlier table); table in {arguments.out}/table.md (.json, .csv)")
    return 0


def lab_runs(client, experiment: str) -> list:
    """The report's runs: the newest finished run of each of the reports' GANs, and the tuned CNN."""
    lab = find_lab_runs(client, experiment)
    return [*lab.by_arch.items(), *([("cnn-tuned", lab.tuned)] if lab.tuned else [])]


if __name__ == "__main__":
    run_script(main)
