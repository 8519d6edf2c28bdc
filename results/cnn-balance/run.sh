#!/usr/bin/env bash
# The CNN balancing study (docs/tuning.md): each command resumes where it stopped, so run this file again after any
# interruption, on any machine, from the repository root. The Optuna storage lives here and is committed as it grows.
set -euo pipefail
cd "$(dirname "$0")/../.."
STUDY=(--arch cnn --trials 24 --steps-per-trial 1500 --eval-samples 5000 --confirm-seeds 1
       --storage sqlite:///results/cnn-balance/optuna.db --no-progress)

# 1. Learning rates and betas, FID after 1500 steps; trial 0 is the reports' settings.
python experiments/tune.py "${STUDY[@]}" --study-name cnn-balance-lr --results-dir results/cnn-balance/cnn-balance-lr
# 2. The same space plus the remedies (label smoothing, instance noise, D update interval).
python experiments/tune.py "${STUDY[@]}" --remedies --study-name cnn-balance-remedies \
    --results-dir results/cnn-balance/cnn-balance-remedies
# 3. FID and imbalance together: the Pareto front.
python experiments/tune.py "${STUDY[@]}" --objective both --study-name cnn-balance-both \
    --results-dir results/cnn-balance/cnn-balance-both
# 4. The answer: the reports' settings against the best of each single-objective study, 3 seeds each, 10k samples.
python experiments/compare_settings.py --arm reports --arm best:cnn-balance-lr --arm best:cnn-balance-remedies \
    --storage sqlite:///results/cnn-balance/optuna.db --seeds 3 --epochs 3 --out results/cnn-balance/comparison \
    --no-progress
