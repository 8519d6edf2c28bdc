#!/usr/bin/env bash
# ganlab's loop in fp32 and in bf16 autocast, each beside the reports' DataLoader loop measured in the same run
# (docs/speed.md). Each JSON names the machine and the date. Run from anywhere; results land in this folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/speed
python experiments/benchmark.py --arch cnn --precision fp32 --steps 150 --repeats 1 --eval-samples 0 --json --no-progress > $out/cnn-fp32.json
python experiments/benchmark.py --arch cnn --precision bf16 --steps 150 --repeats 1 --eval-samples 0 --json --no-progress > $out/cnn-bf16.json
python experiments/benchmark.py --arch mlp --precision fp32 --steps 600 --repeats 1 --eval-samples 0 --json --no-progress > $out/mlp-fp32.json
python experiments/benchmark.py --arch mlp --precision bf16 --steps 600 --repeats 1 --eval-samples 0 --json --no-progress > $out/mlp-bf16.json
python - <<'PY'
import json, pathlib
folder = pathlib.Path("results/speed")
rows = ["| arch | precision | reference loop, images/s | ganlab, tracked, images/s | ganlab / reference | machine | date |",
        "| --- | --- | --- | --- | --- | --- | --- |"]
for name in ("cnn-fp32", "cnn-bf16", "mlp-fp32", "mlp-bf16"):
    result = json.loads((folder / f"{name}.json").read_text())
    rows.append(f"| {name.split('-')[0]} | {result['precision_resolved']} | {result['reference_images_per_s']:.0f} | "
                f"{result['ganlab_images_per_s']:.0f} | {result['speedup']:.2f}× | {result['machine']} | {result['date']} |")
(folder / "table.md").write_text("\n".join(rows) + "\n")
PY
