#!/usr/bin/env bash
# The CNN balancing study (docs/tuning.md): each command resumes where it stopped, so run this file again after any
# interruption, on any machine, from the repository root. The Optuna storage lives here and is committed as it grows.
# The trials train in bf16 autocast (equal quality and about twice as fast on an AMX CPU: results/precision,
# results/speed); each study records its number format and will not go on in another. On a CPU without native bf16
# the flag still works (emulated, slow). Study cnn-balance-lr in optuna.db is the earlier fp32 pilot (README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
STUDY=(--arch cnn --trials 24 --steps-per-trial 1500 --eval-samples 5000 --confirm-seeds 1
       --storage sqlite:///results/cnn-balance/optuna.db --precision bf16 --no-progress)

# 1. Learning rates and betas, FID after 1500 steps; trial 0 is the reports' settings.
python experiments/tune.py "${STUDY[@]}" --study-name cnn-bf16-lr --results-dir results/cnn-balance/cnn-bf16-lr
# 2. The same space plus the remedies (label smoothing, instance noise, D update interval).
python experiments/tune.py "${STUDY[@]}" --remedies --study-name cnn-bf16-remedies \
    --results-dir results/cnn-balance/cnn-bf16-remedies
# 3. FID and imbalance together: the Pareto front.
python experiments/tune.py "${STUDY[@]}" --objective both --study-name cnn-bf16-both \
    --results-dir results/cnn-balance/cnn-bf16-both
# 4. The answer: the reports' settings against the best of each single-objective study and one trial of study 3's
#    front (the lowest FID among front trials whose imbalance is at most half that of trial 0, the reports'
#    settings: trial 18 of the 24), 3 seeds each, 10k samples.
python experiments/compare_settings.py --arm reports --arm best:cnn-bf16-lr --arm best:cnn-bf16-remedies \
    --arm trial:cnn-bf16-both:18 \
    --storage sqlite:///results/cnn-balance/optuna.db --seeds 3 --epochs 3 --precision bf16 \
    --out results/cnn-balance/comparison --no-progress
