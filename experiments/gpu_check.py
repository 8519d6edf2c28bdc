"""The GPU campaign: ganlab's CUDA path checked and timed in one run of a few minutes, into one JSON and one table.

    make gpu-check                                          # on a machine with a CUDA GPU: into results/gpu-campaign/
    python3 experiments/gpu_check.py --out $OUT             # anywhere else
    python3 experiments/gpu_check.py --device cpu --quick --out /tmp/campaign   # the plumbing, on any machine

Three steps, each a subprocess with its own time limit inside --budget-s; after every step campaign.json and
table.md are written again, so a step that fails or runs out of time is recorded and the rest still runs:
1. the machine: GPU, driver, torch, CUDA, Python;
2. `pytest -m gpu` (tests/test_gpu.py and the other GPU-marked tests): training, resume, evaluation, the latent
   study and tuning on the device; its JUnit XML beside the table;
3. benchmark.py for mlp and cnn at batch 64 and 512, fp32 and bf16: ganlab's loop, tracked, against the reports'
   DataLoader loop in the same run, and the 10k-sample evaluation. Figures per epoch are from --steps steps.
docs/gpu.md says how to get the repository, the wheels and the dataset onto a GPU machine without network.
"""

import datetime
import sys
import time
from pathlib import Path

from ganlab.cli import TRACKING_URI_HELP, ArgumentParser, run_script, script_parser
from ganlab.errors import GanlabError
from ganlab.gpu_campaign import campaign_steps, run_step, write_results


def build_parser() -> ArgumentParser:
    parser = script_parser(__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder of campaign.json, table.md, gpu-tests.xml")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu to try the plumbing (default: cuda)")
    parser.add_argument("--budget-s", type=float, default=480, help="the whole campaign's seconds (default: 480)")
    parser.add_argument("--quick", action="store_true",
                        help="the plumbing only: mlp-small, batch 64, fp32, 5 steps, no GPU tests")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier campaign's files in --out")
    parser.add_argument("--tracking-uri", help=TRACKING_URI_HELP + "; the benchmark runs go there")
    return parser


def main() -> int:
    arguments = build_parser().parse_args()
    if arguments.budget_s <= 0:
        raise GanlabError(f"--budget-s must be positive, got {arguments.budget_s}")
    out = arguments.out.resolve()
    if (out / "campaign.json").exists() and not arguments.overwrite:
        raise GanlabError(f"{out} already holds a campaign; pass --overwrite to replace it, or another --out")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    steps = campaign_steps(arguments.device, arguments.quick, out, arguments.tracking_uri)
    deadline = time.perf_counter() + arguments.budget_s
    for step in steps:
        print(f"gpu-check: {step.name} …", file=sys.stderr, flush=True)
        run_step(step, deadline - time.perf_counter())
        print(f"gpu-check: {step.name}: {step.status} ({step.seconds:.0f} s)", file=sys.stderr, flush=True)
        if step.error_tail:
            print("  " + step.error_tail.replace("\n", "\n  "), file=sys.stderr, flush=True)
        write_results(out, steps, started)
    print((out / "table.md").read_text(), end="")
    failed = [step.name for step in steps if step.status != "ok"]
    print(f"{len(steps) - len(failed)} of {len(steps)} steps ok; results in {out}/campaign.json and table.md")
    return 1 if failed else 0


if __name__ == "__main__":
    run_script(main)
