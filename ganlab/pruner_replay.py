"""Which pruner suits noisy GAN curves? Replay the per-epoch curves of a study that pruned nothing through each of
tune.py's pruners and count what each saves (epochs not trained) and what it loses (good trials stopped).

Replaying measured curves costs no training and lets every pruner see the same trials, in the study's order and in
shuffled orders (a pruner's verdict depends on which trials came first). What a replay cannot show is how pruning
would have changed the sampler's later choices: a real pruned study samples from fewer finished trials.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from ganlab.errors import GanlabError
from ganlab.plots import study_curves_figure
from ganlab.tuning import TuneConfig, make_pruner

CANDIDATES = ("median", "patient", "hyperband")  # tune.py's --pruner choices, "none" being the replayed study
KEEP_BEST_SHARE = 0.95  # a pruner qualifies if the study's best trial survives in at least this share of orders
TOP_TRIALS = 3  # "good trials" = the study's best three by final value


@dataclass
class ReplayOutcome:
    """One pruner over all replayed orders; shares and means are over the orders."""

    pruner: str
    epochs_share: float  # epochs trained / epochs of the unpruned study
    trials_pruned: float  # mean count
    best_kept_share: float  # orders in which the study's best trial ran to its end
    top_trials_pruned: float  # mean count of the best TOP_TRIALS trials that were stopped
    regret: float  # mean of (best final value among the trials that finished − the study's best)

    @property
    def qualifies(self) -> bool:
        return self.best_kept_share >= KEEP_BEST_SHARE


def study_curves(study: optuna.Study) -> np.ndarray:
    """The per-epoch values of every complete trial, [trials, epochs]; refuses a study whose curves were cut."""
    trials = study.get_trials(deepcopy=False)
    if any(trial.state == TrialState.PRUNED for trial in trials):
        raise GanlabError(f"study {study.study_name!r} pruned trials, so their curves are cut short; replay needs "
                          f"a study run with --pruner none")
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    if len(complete) < 4:
        raise GanlabError(f"study {study.study_name!r} has {len(complete)} complete trials; replay needs at least 4")
    lengths = {len(trial.intermediate_values) for trial in complete}
    if len(lengths) != 1 or min(lengths) < 2:
        raise GanlabError(f"study {study.study_name!r}: trials report {sorted(lengths)} epochs; replay needs the "
                          f"same number, at least 2, in every trial")
    return np.array([[trial.intermediate_values[step] for step in sorted(trial.intermediate_values)]
                     for trial in complete])


def epochs_trained(curves: np.ndarray, pruner: optuna.pruners.BasePruner) -> np.ndarray:
    """How many epochs each trial (in the given order) trains under `pruner`, reporting exactly as tune.py does."""
    study = optuna.create_study(study_name="replay", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    trained = []
    for curve in curves:
        trial = study.ask()
        for epoch, value in enumerate(curve, start=1):
            trial.report(float(value), epoch)
            if epoch < len(curve) and trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                trained.append(epoch)
                break
        else:
            study.tell(trial, float(curve[-1]))
            trained.append(len(curve))
    return np.array(trained)


def replay(curves: np.ndarray, orders: int, seed: int) -> list[ReplayOutcome]:
    """Each candidate pruner over the study's own order and `orders` − 1 shuffled ones (lower values are better)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    finals = curves[:, -1]
    top = set(np.argsort(finals)[:TOP_TRIALS].tolist())
    best = int(np.argmin(finals))
    rng = np.random.default_rng(seed)
    permutations = [np.arange(len(curves))] + [rng.permutation(len(curves)) for _ in range(orders - 1)]
    outcomes = []
    for name in CANDIDATES:
        shares, pruned, kept, top_lost, regrets = [], [], [], [], []
        for order in permutations:
            trained = epochs_trained(curves[order], make_pruner(TuneConfig(pruner=name,
                                                                          epochs_per_trial=curves.shape[1])))
            ran_to_end = dict(zip(order.tolist(), (trained == curves.shape[1]).tolist()))
            shares.append(trained.sum() / curves.size)
            pruned.append(int((trained < curves.shape[1]).sum()))
            kept.append(ran_to_end[best])
            top_lost.append(sum(not ran_to_end[index] for index in top))
            regrets.append(min(finals[index] for index, finished in ran_to_end.items() if finished) - finals[best])
        outcomes.append(ReplayOutcome(name, float(np.mean(shares)), float(np.mean(pruned)), float(np.mean(kept)),
                                      float(np.mean(top_lost)), float(np.mean(regrets))))
    return outcomes


def early_rank_agreement(curves: np.ndarray) -> list[float]:
    """Spearman's ρ between each epoch's values and the final ones: how well an early epoch predicts the end."""
    final_ranks = np.argsort(np.argsort(curves[:, -1]))
    return [float(np.corrcoef(np.argsort(np.argsort(curves[:, epoch])), final_ranks)[0, 1])
            for epoch in range(curves.shape[1] - 1)]


def choose(outcomes: list[ReplayOutcome]) -> ReplayOutcome | None:
    """The rule: among pruners that keep the best trial in ≥ 95% of orders, the one that trains the fewest epochs;
    None when no such pruner saves any epoch (then pruning only risks losing good trials)."""
    qualified = [outcome for outcome in outcomes if outcome.qualifies and outcome.epochs_share < 1]
    return min(qualified, key=lambda outcome: outcome.epochs_share) if qualified else None


def write_replay(curves: np.ndarray, outcomes: list[ReplayOutcome], orders: int, objective_name: str,
                 out_dir: Path) -> str:
    """replay.md (returned), replay.csv and curves.png in out_dir."""
    trials, epochs = curves.shape
    choice = choose(outcomes)
    lines = [f"Pruner replay: {trials} complete trials x {epochs} epochs ({objective_name} per epoch, lower is "
             f"better), {orders} trial orders (the study's own and {orders - 1} shuffled).", "",
             f"| pruner | epochs trained | trials pruned (of {trials}) | best trial kept | top-{TOP_TRIALS} trials "
             f"pruned | regret |", "|---|---|---|---|---|---|"]
    for outcome in outcomes:
        lines.append(f"| {outcome.pruner} | {outcome.epochs_share:.0%} | {outcome.trials_pruned:.1f} | "
                     f"{outcome.best_kept_share:.0%} of orders | {outcome.top_trials_pruned:.2f} | "
                     f"{outcome.regret:.3f} |")
    agreement = ", ".join(f"epoch {epoch + 1}: {rho:.2f}" for epoch, rho in enumerate(early_rank_agreement(curves)))
    lines += ["", f"Spearman ρ of each epoch's {objective_name} with the final one: {agreement}.", "",
              "regret = best final value among the trials a pruner let finish − the study's best (0 = lost nothing).",
              f"Choice rule: among pruners that keep the best trial in ≥ {KEEP_BEST_SHARE:.0%} of orders, the one "
              f"that trains the fewest epochs: " + (f"**{choice.pruner}**." if choice else "none that saves an epoch "
                                                    "qualifies; do not prune (--pruner none).")]
    markdown = "\n".join(lines) + "\n"
    (out_dir / "replay.md").write_text(markdown)
    with (out_dir / "replay.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["pruner", "epochs_share", "trials_pruned", "best_kept_share", "top_trials_pruned", "regret"])
        for outcome in outcomes:
            writer.writerow([outcome.pruner, outcome.epochs_share, outcome.trials_pruned, outcome.best_kept_share,
                             outcome.top_trials_pruned, outcome.regret])
    figure = study_curves_figure(curves, objective_name)
    figure.savefig(out_dir / "curves.png", dpi=100)
    return markdown
