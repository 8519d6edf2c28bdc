#!/usr/bin/env bash
# Equal quality in bf16 (issue 15): the reports' settings trained in fp32 and in bf16 autocast, 3 seeds each, full
# training set, evaluated after every epoch with 10k samples (fmnist-cnn-v1); the cnn for 2 epochs, the mlp for 2.
# Resumable: a rerun reuses finished runs and resumes interrupted ones. Runs go to the default store (mlruns/);
# the result files land in this folder. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/../.."
arches=${*:-cnn mlp}
for arch in $arches; do
    python experiments/compare_settings.py --arch "$arch" --arm reports@fp32 --arm reports@bf16 --seeds 3 --epochs 2 \
        --eval-samples 10000 --name "precision-$arch" --experiment precision --out "results/precision/$arch" \
        --no-progress
done
