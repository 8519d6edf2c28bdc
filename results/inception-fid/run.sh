#!/usr/bin/env bash
# The standard-FID table (docs/metrics.md#standard-inception-fid): the reports' GANs trained 20 epochs (seed 0) in
# their own experiment, then 10k samples of each and the real floor in Inception space, beside Lucic et al. 2018.
# Resumable: run this file again after any interruption, from the repository root or anywhere. A finished run is
# reused, an interrupted one resumed from its last checkpoint, a measured row of the table reused.
#   bash results/inception-fid/run.sh                 # mlp, mlp-small, cnn, cnn-tuned
#   bash results/inception-fid/run.sh cnn-tuned       # only this row; the table keeps the rows it holds
# cnn-tuned is the cnn with the best trial of the balancing study cnn-bf16-lr (results/cnn-balance/cnn-bf16-lr/
# best.json): of the tuned settings, the one with the lowest FID in the committed 3-epoch, 3-seed comparison.
# Needs `make inception` once. A cnn row is ~45 min of training in bf16 on a 2-core AVX-512 CPU; each row of
# Inception features ~20-30 min.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
EXPERIMENT=inception-fid-20-epochs
LABELS=("$@")
[ ${#LABELS[@]} -gt 0 ] || LABELS=(mlp mlp-small cnn cnn-tuned)

# train_arguments LABEL: what train.py trains for a row (run name LABEL-s0).
train_arguments() {
    case "$1" in
        cnn-tuned) "$PYTHON" - <<'PY'
import json
best = json.load(open("results/cnn-balance/cnn-bf16-lr/best.json"))["best"][0]["params"]
print("--arch cnn --run-name cnn-tuned-s0", *(f"--{name.replace('_', '-')} {value!r}" for name, value in best.items()))
PY
        ;;
        *) echo "--arch $1" ;;
    esac
}

# run_state LABEL: "finished ID", "unfinished ID" (the newest run named LABEL-s0 in $EXPERIMENT) or "none".
run_state() {
    "$PYTHON" - "$1" "$EXPERIMENT" <<'PY'
import sys
from ganlab import tracking
label, experiment = sys.argv[1:]
client = tracking.connect(tracking.resolve_tracking_uri(None))
found = client.get_experiment_by_name(experiment)
runs = client.search_runs([found.experiment_id], f"attributes.run_name = '{label}-s0'",
                          order_by=["attributes.start_time DESC"], max_results=1) if found else []
print(f"{'finished' if runs[0].info.status == 'FINISHED' else 'unfinished'} {runs[0].info.run_id}" if runs else "none")
PY
}

TABLE_RUNS=()
for label in "${LABELS[@]}"; do
    read -r state run_id <<< "$(run_state "$label")"
    case "$state" in
        none) read -ra TRAIN_ARGUMENTS <<< "$(train_arguments "$label")"
              "$PYTHON" experiments/train.py "${TRAIN_ARGUMENTS[@]}" --epochs 20 --seed 0 --experiment "$EXPERIMENT" --no-progress ;;
        unfinished) "$PYTHON" experiments/train.py --resume "$run_id" --no-progress ;;
    esac
    read -r state run_id <<< "$(run_state "$label")"
    TABLE_RUNS+=(--run "$label=$run_id")
done
"$PYTHON" analysis/inception_table.py "${TABLE_RUNS[@]}" --no-progress
