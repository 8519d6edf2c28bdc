#!/usr/bin/env bash
# The standard-FID table (docs/metrics.md#standard-inception-fid): the reports' GANs trained 20 epochs (seed 0) in
# their own experiment, then 10k samples of each and the real floor in Inception space, beside Lucic et al. 2018.
# Resumable: run this file again after any interruption, from the repository root or anywhere. A finished run is
# reused, an interrupted one resumed from its last checkpoint, a measured row of the table reused.
#   bash results/inception-fid/run.sh                 # mlp, mlp-small, cnn (cnn: ~2.5 h of a 2-core CPU)
#   bash results/inception-fid/run.sh mlp mlp-small   # only these rows (and the floor)
# Needs `make inception` once. Each row of Inception features is ~20 min of a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
EXPERIMENT=inception-fid-20-epochs
ARCHS=("$@")
[ ${#ARCHS[@]} -gt 0 ] || ARCHS=(mlp mlp-small cnn)

# run_state ARCH: "finished ID", "unfinished ID" (the newest run named ARCH-s0 in $EXPERIMENT) or "none".
run_state() {
    "$PYTHON" - "$1" "$EXPERIMENT" <<'PY'
import sys
from ganlab import tracking
arch, experiment = sys.argv[1:]
client = tracking.connect(tracking.resolve_tracking_uri(None))
found = client.get_experiment_by_name(experiment)
runs = client.search_runs([found.experiment_id], f"attributes.run_name = '{arch}-s0'",
                          order_by=["attributes.start_time DESC"], max_results=1) if found else []
print(f"{'finished' if runs[0].info.status == 'FINISHED' else 'unfinished'} {runs[0].info.run_id}" if runs else "none")
PY
}

TABLE_RUNS=()
for arch in "${ARCHS[@]}"; do
    read -r state run_id <<< "$(run_state "$arch")"
    case "$state" in
        none) "$PYTHON" experiments/train.py --arch "$arch" --epochs 20 --seed 0 --experiment "$EXPERIMENT" --no-progress ;;
        unfinished) "$PYTHON" experiments/train.py --resume "$run_id" --no-progress ;;
    esac
    read -r state run_id <<< "$(run_state "$arch")"
    TABLE_RUNS+=(--run "$arch=$run_id")
done
"$PYTHON" analysis/inception_table.py "${TABLE_RUNS[@]}" --no-progress
