"""What `make report` does before writing: train and study whatever the report still lacks, with short defaults.

Each missing piece is the user's own command run as a subprocess (experiments/train.py, analysis/latent_effects.py),
so its progress bar shows and its run is exactly what the user would have made by hand.
"""

import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from ganlab.errors import GanlabError
from ganlab.report import REPORT_ARCHS, find_lab_runs

REPO_ROOT = Path(__file__).resolve().parent.parent
SHORT_EPOCHS = {"mlp": 5, "mlp-small": 5, "cnn": 2}  # minutes on a 2-core CPU: ~1, ~0.5, ~10
# Short runs are evaluated every epoch, so "FID by epoch" is a curve; 2000 samples keep that cheap (noisier: the
# report says so beside the figure).
SHORT_EVALUATION = ("--eval-every", "1", "--eval-samples", "2000")


def complete_lab(client: MlflowClient, tracking_uri: str, experiment: str, epochs: dict[str, int],
                 train_arguments: tuple[str, ...] = (), study_arguments: tuple[str, ...] = ()) -> list[str]:
    """Train each report architecture that has no finished run, then study the latent space if no study exists;
    returns the commands it ran. The extra arguments go to every train / study command (the tests shrink them)."""
    have = set(find_lab_runs(client, experiment, required=False).by_arch)
    commands = []
    for arch in REPORT_ARCHS:
        if arch not in have:
            commands.append(_run(["experiments/train.py", "--arch", arch, "--epochs", str(epochs[arch]),
                                  *SHORT_EVALUATION, "--experiment", experiment, "--tracking-uri", tracking_uri,
                                  *train_arguments]))
    lab = find_lab_runs(client, experiment)
    if lab.latent is None:
        studied = lab.by_arch.get("mlp") or lab.training[0]
        commands.append(_run(["analysis/latent_effects.py", "--run-id", studied.info.run_id,
                              "--tracking-uri", tracking_uri, *study_arguments]))
    return commands


def _run(arguments: list[str]) -> str:
    command = [sys.executable, *arguments]
    shown = "python " + " ".join(arguments)
    print(f"report needs: {shown}", file=sys.stderr, flush=True)
    completed = subprocess.run(command, cwd=REPO_ROOT)
    if completed.returncode != 0:
        raise GanlabError(f"`{shown}` failed (exit {completed.returncode}); its error is above")
    return shown
