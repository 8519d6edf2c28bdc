"""Time ganlab's training loop against the reports' DataLoader loop on the same device, and log the figures.

    python experiments/benchmark.py                        # mlp, one epoch of steps per loop, this machine's device
    python experiments/benchmark.py --arch cnn --steps 200 --repeats 1   # the CNN, shorter
    python experiments/benchmark.py --device cpu --json    # one JSON object on stdout
    python experiments/benchmark.py --arch cnn --precision bf16 --steps 150 --repeats 1   # bf16 autocast vs fp32
    python experiments/benchmark.py --system-metrics --repeats 6   # what train.py --system-metrics costs per step

Every figure comes from this one run on this one device: the reference loop (torchvision dataset, per-image
transforms, DataLoader, `.item()` per step), ganlab's loop untracked and tracked, and one 10k-sample evaluation.
The run is logged to MLflow (experiment ganlab-benchmarks, tag ganlab.kind=benchmark).
"""

import json

from ganlab.benchmark import BenchmarkConfig, log_benchmark_run, run_benchmark
from ganlab import tracking
from ganlab.cli import ArgumentParser, add_config_arguments, explicit_fields, run_script, script_parser


def build_parser() -> ArgumentParser:
    parser = script_parser(__doc__)
    add_config_arguments(parser, BenchmarkConfig)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    return parser


def main() -> int:
    arguments = build_parser().parse_args()
    config = BenchmarkConfig(**explicit_fields(arguments, BenchmarkConfig))
    config.validate()
    tracking.connect(tracking.resolve_tracking_uri(config.tracking_uri))  # an unusable store fails before the timing

    results = run_benchmark(config, show_progress=not arguments.no_progress)
    run_id, ui_hint = log_benchmark_run(config, results)
    if arguments.json:
        print(json.dumps({**results, "run_id": run_id}))
        return 0
    if config.system_metrics:
        print(f"{config.arch} on {results['device']} in {results['precision_resolved']}, batch {config.batch_size}, "
              f"{config.steps} steps per loop, {config.repeats} rounds\n"
              f"  ganlab, tracked                   {results['ganlab_images_per_s']:>9.0f} images/s (median)\n"
              f"  ganlab, tracked, system metrics   {results['system_metrics_images_per_s']:>9.0f} images/s (median)\n"
              f"  the monitor costs {100 * results['system_metrics_overhead']:+.1f}% per step (median of the rounds' "
              f"ratios {results['system_metrics_overhead_rounds']})\n"
              f"logged as run {run_id}; {ui_hint}")
        return 0
    print(f"{config.arch} on {results['device']} in {results['precision_resolved']} "
          f"(native bf16: {results['native_bf16']}), batch {config.batch_size}, {config.steps} steps per loop, "
          f"median of {config.repeats}\n"
          f"  reference loop (DataLoader) {results['reference_images_per_s']:>9.0f} images/s"
          f"  {results['reference_epoch_seconds']:7.2f} s/epoch\n"
          f"  ganlab, tracked             {results['ganlab_images_per_s']:>9.0f} images/s"
          f"  {results['ganlab_epoch_seconds']:7.2f} s/epoch   speedup {results['speedup']:.2f}x\n"
          f"  ganlab, untracked           {results['ganlab_untracked_images_per_s']:>9.0f} images/s"
          f"  tracking costs {100 * results['tracking_overhead']:+.1f}% per step"
          f" + {results['tracking_fixed_seconds']:.1f} s per run")
    if "eval_seconds" in results:
        print(f"  evaluate {config.eval_samples} samples   {results['eval_seconds']:.2f} s")
    print(f"logged as run {run_id}; {ui_hint}")
    return 0


if __name__ == "__main__":
    run_script(main)
