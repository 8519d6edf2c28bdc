"""The two reports' readings of their latent studies, each quoted, translated and put to a measured test.

What a latent index "means" is a property of one trained generator (its first layer's weights on that index), so
each claim is first tested on one G at a time, then judged across generators trained with different seeds: it
holds (on every one), does not hold (on none) or depends on the trained G. Whether any index means the same thing
across generators is measured directly: the class shifts an index causes, correlated between generators, against
the correlation that two unrelated indices reach by chance.

Every number comes from one fixed batch of latents z ~ N(0, I) per generator, classes from the fmnist-cnn-v1
classifier (not a person's eye), means with paired 95% normal intervals, shares with Wilson intervals.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ganlab import data
from ganlab.cli import option
from ganlab.errors import GanlabError
from ganlab.latent import (Change, EffectMeter, Z_95, base_latents, brightness, random_directions, unit_dim,
                           wilson_interval)

# The classes a report's words name (data.CLASS_NAMES spells them).
LONG_SLEEVED = ("Pullover", "Coat", "Shirt")  # 长袖上衣, long-sleeved tops
T_SHIRT = ("T-shirt/top",)  # 白色短袖 / T 恤, white short sleeves / T-shirt
TROUSER = ("Trouser",)  # 白色长方体 / 裤子, white cuboid / trousers

REPORT_2025_DIMS = (10, 20, 37, 53, 67)  # the first report's §5.5 (0-based, as its code indexes z)
REPORT_2025_OFFSETS = (2.0, 4.0, 6.0, 8.0, 10.0)
REPORT_AMPLITUDE = 2.0  # the first report compares its dims at ±2 (Fig. 5.15–5.19)
REPORT_2023_VALUES = (-50.0, -10.0, 0.0, 10.0, 100.0)  # every value the second report sets a number to
TOP_SHARE = 0.10  # an index "carries" an effect when it ranks in the top tenth of all dims for that effect
MIN_SHIFT = 0.05  # "more and more evident" needs a class probability to rise by 5 points at least, not by a trace
REQUIRED_LATENT_DIM = 100  # the reports' z; their indices go up to 99


@dataclass(frozen=True)
class SourceRun:
    """The training run a generator came from, as the claims tables name it."""

    run_id: str
    name: str
    arch: str
    seed: str

    @classmethod
    def of(cls, run) -> "SourceRun":
        return cls(run.info.run_id, run.info.run_name, run.data.tags.get("ganlab.arch", "?"),
                   run.data.params.get("seed", "?"))

    @property
    def label(self) -> str:
        return f"{self.name} ({self.run_id[:8]})"


@dataclass
class ClaimsSettings:
    """How the claims are measured on each generator."""

    stats_samples: int = option(512, "latent vectors behind every number, per generator")
    stats_seed: int = option(1, "seed of those latents, the random directions and the chance pairings")
    random_directions: int = option(50, "random unit directions: the control single dims are compared with")

    def validate(self) -> None:
        if self.stats_samples < 2:
            raise GanlabError(f"--stats-samples must be at least 2, got {self.stats_samples}")
        if self.random_directions < 2:
            raise GanlabError(f"--random-directions must be at least 2, got {self.random_directions}")


@dataclass
class Estimate:
    """A mean with its 95% interval."""

    value: float
    low: float
    high: float

    @classmethod
    def of_mean(cls, values: np.ndarray) -> "Estimate":
        values = np.asarray(values, dtype=np.float64)
        half = Z_95 * values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else 0.0
        return cls(float(values.mean()), float(values.mean() - half), float(values.mean() + half))

    @classmethod
    def of_share(cls, hits: np.ndarray) -> "Estimate":
        low, high = wilson_interval(int(np.sum(hits)), len(hits))
        return cls(float(np.mean(hits)), low, high)

    def signed(self, digits: int = 2) -> str:
        return f"{self.value:+.{digits}f} ({self.low:+.{digits}f}…{self.high:+.{digits}f})"

    def percent(self) -> str:
        return f"{self.value:.0%} ({self.low:.0%}–{self.high:.0%})"


@dataclass
class Check:
    """A claim tested on one generator."""

    holds: bool
    evidence: str  # the measured numbers, in words
    numbers: dict[str, float] = field(default_factory=dict)


class Measurements:
    """Everything the claims read, measured on one generator against one fixed batch of latents."""

    def __init__(self, generator: nn.Module, classifier: nn.Module, device: torch.device | str,
                 settings: ClaimsSettings, progress: Callable[[int], None] = lambda _: None):
        self.latent_dim = generator.latent_dim
        latents = base_latents(settings.stats_samples, self.latent_dim, settings.stats_seed)
        self.meter = EffectMeter(generator, classifier, latents, device)
        self.base_brightness = brightness(self.meter.base_images).numpy()
        self.base_classes = self.meter.base_probabilities.argmax(dim=1)
        self.offsets: dict[tuple[str, int, float], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.sets: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}
        dims = [unit_dim(dim, self.latent_dim) for dim in range(self.latent_dim)]
        self.randoms = random_directions(settings.random_directions, self.latent_dim, settings.stats_seed)
        changes: list[Change] = [("offset", direction, sign * REPORT_AMPLITUDE) for direction in dims + self.randoms
                                 for sign in (-1, 1)]
        changes += [("offset", dims[dim], sign * offset) for dim in REPORT_2025_DIMS
                    for offset in REPORT_2025_OFFSETS[1:] for sign in (-1, 1)]
        changes += [("set", dim, value) for dim in range(self.latent_dim) for value in REPORT_2023_VALUES]
        for (mode, target, amount), images, probabilities in self.meter.outcomes(changes):
            if mode == "offset":
                l2 = (images - self.meter.base_images).norm(dim=1).numpy()
                flipped = (probabilities.argmax(dim=1) != self.base_classes).numpy()
                shift = (probabilities - self.meter.base_probabilities).double().mean(dim=0).numpy()
                self.offsets[target.family, target.index, amount] = (l2, flipped, shift)
            else:
                self.sets[target, amount] = (probabilities.numpy(), brightness(images).numpy())
            progress(1)

    # Read-outs, − and + pooled where the reports show both.

    def l2(self, dim: int, offset: float) -> np.ndarray:
        """Per-sample L2 pixel change, the mean of the −offset and +offset images'."""
        return (self.offsets["dim", dim, -offset][0] + self.offsets["dim", dim, offset][0]) / 2

    def flips(self, dim: int, offset: float) -> np.ndarray:
        """Class changes at −offset and at +offset, pooled (2 per sample)."""
        return np.concatenate([self.offsets["dim", dim, -offset][1], self.offsets["dim", dim, offset][1]])

    def directedness(self, family: str, index: int) -> float:
        """The largest mean gain of one class's probability that ±2 along a direction brings."""
        return float(max(self.offsets[family, index, sign * REPORT_AMPLITUDE][2].max() for sign in (-1, 1)))

    def shift_vector(self, dim: int) -> np.ndarray:
        """The mean class-probability shifts at −2 and +2, side by side: what a dim does, as 20 numbers."""
        return np.concatenate([self.offsets["dim", dim, sign * REPORT_AMPLITUDE][2] for sign in (-1, 1)])

    def class_probability(self, dim: int, value: float | None, classes: tuple[str, ...]) -> np.ndarray:
        """Per sample: the probability of any of `classes` with z[dim] = value (None: the unchanged z)."""
        columns = [data.CLASS_NAMES.index(name) for name in classes]
        probabilities = (self.meter.base_probabilities.numpy() if value is None else self.sets[dim, value][0])
        return probabilities[:, columns].sum(axis=1)

    def predicted_in(self, dim: int, value: float | None, classes: tuple[str, ...]) -> np.ndarray:
        columns = [data.CLASS_NAMES.index(name) for name in classes]
        probabilities = (self.meter.base_probabilities.numpy() if value is None else self.sets[dim, value][0])
        return np.isin(probabilities.argmax(axis=1), columns)


def planned_count(latent_dim: int, random_count: int) -> int:
    """How many perturbations `Measurements` generates and classifies (0 where the claims do not apply)."""
    if latent_dim < REQUIRED_LATENT_DIM:
        return 0
    return (2 * (latent_dim + random_count) + 2 * len(REPORT_2025_DIMS) * (len(REPORT_2025_OFFSETS) - 1)
            + latent_dim * len(REPORT_2023_VALUES))


# --- The claims ----------------------------------------------------------------------------------------------------

def _rank(values: np.ndarray, index: int) -> int:
    """1 for the largest of `values`; ties count against the index (a dim that ties with the rest stands out from
    nothing)."""
    return int(np.sum(values >= values[index]))


def _rank_from_smallest(values: np.ndarray, index: int) -> int:
    """1 for the smallest of `values`; ties count against the index."""
    return int(np.sum(values <= values[index]))


def _top_rank(count: int) -> int:
    return max(1, int(round(TOP_SHARE * count)))


def _spearman(first: np.ndarray, second: np.ndarray) -> float:
    def ranks(values: np.ndarray) -> np.ndarray:  # ties share their average rank
        return np.array([np.sum(values < value) + (np.sum(values == value) - 1) / 2 for value in values])
    return _correlation(ranks(np.asarray(first)), ranks(np.asarray(second)))


def _correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson's r; 0 when either side is constant (an index that changes nothing shares no meaning)."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if first.std() < 1e-12 or second.std() < 1e-12:
        return 0.0
    return float(np.corrcoef(first, second)[0, 1])


def check_magnitude(m: Measurements) -> Check:
    curves, steps_up, steps = {}, 0, 0
    for dim in REPORT_2025_DIMS:
        per_offset = [m.l2(dim, offset) for offset in REPORT_2025_OFFSETS]
        curves[dim] = [float(values.mean()) for values in per_offset]
        for lower, higher in zip(per_offset, per_offset[1:]):
            steps += 1
            steps_up += Estimate.of_mean(higher - lower).low > 0
    text = "; ".join(f"dim {dim} " + " → ".join(f"{value:.1f}" for value in curve) for dim, curve in curves.items())
    return Check(steps_up == steps, f"mean L2 pixel change at ±2, ±4, …, ±10: {text}; {steps_up} of {steps} steps "
                                    "up change the images more (paired 95% CI above 0)",
                 {f"dim{dim}.l2.{offset:g}": value for dim, curve in curves.items()
                  for offset, value in zip(REPORT_2025_OFFSETS, curve)} | {"steps_up": steps_up, "steps": steps})


def check_class_kept_then_lost(m: Measurements) -> Check:
    low, high = (Estimate.of_share(m.flips(10, offset)) for offset in (REPORT_2025_OFFSETS[0], REPORT_2025_OFFSETS[-1]))
    return Check(low.high < 0.5 and high.low > 0.5,
                 f"dim 10 changes the predicted class of {low.percent()} of images at ±2 and {high.percent()} at ±10 "
                 "(holds: under half at ±2, over half at ±10)",
                 {"flip.2": low.value, "flip.2.high": low.high, "flip.10": high.value, "flip.10.low": high.low})


def check_dim_10_small(m: Measurements) -> Check:
    l2 = np.array([m.l2(dim, REPORT_AMPLITUDE).mean() for dim in range(m.latent_dim)])
    rank, needed = _rank_from_smallest(l2, 10), _top_rank(m.latent_dim)
    return Check(rank <= needed,
                 f"dim 10 moves the pixels by L2 {l2[10]:.2f} at ±2 (median dim {np.median(l2):.2f}), rank {rank} of "
                 f"{m.latent_dim} dims from the smallest (holds: rank {needed} or better, the smallest tenth)",
                 {"l2": float(l2[10]), "median_dim_l2": float(np.median(l2)), "rank_from_smallest": rank})


def check_ladder(m: Measurements) -> Check:
    rates = [float(m.flips(dim, REPORT_AMPLITUDE).mean()) for dim in REPORT_2025_DIMS]
    rho = _spearman(np.arange(len(rates)), np.array(rates))
    text = ", ".join(f"dim {dim} {rate:.0%}" for dim, rate in zip(REPORT_2025_DIMS, rates))
    return Check(rho >= 0.9, f"class changed at ±2: {text}; Spearman ρ with the report's order {rho:+.2f} "
                             "(holds: ρ ≥ 0.9, at most one neighbouring pair swapped)",
                 {f"dim{dim}.flip.2": rate for dim, rate in zip(REPORT_2025_DIMS, rates)} | {"spearman": rho})


def check_dim_67_global(m: Measurements) -> Check:
    rates = np.array([m.flips(dim, REPORT_AMPLITUDE).mean() for dim in range(m.latent_dim)])
    rank, needed = _rank(rates, 67), _top_rank(m.latent_dim)
    share = Estimate.of_share(m.flips(67, REPORT_AMPLITUDE))
    return Check(rank <= needed,
                 f"dim 67 changes the predicted class of {share.percent()} of images at ±2 (median dim "
                 f"{np.median(rates):.0%}), rank {rank} of {m.latent_dim} (holds: rank {needed} or better)",
                 {"flip": share.value, "median_dim_flip": float(np.median(rates)), "rank": rank})


def check_semantic_axes(m: Measurements) -> Check:
    dims = np.array([m.directedness("dim", dim) for dim in range(m.latent_dim)])
    randoms = np.array([m.directedness("random", direction.index) for direction in m.randoms])
    p_value = mann_whitney_greater(dims, randoms)
    return Check(p_value < 0.05 and np.median(dims) > np.median(randoms),
                 f"±2 along a single dim raises one class's probability by {np.median(dims):.1%} (median over the "
                 f"{m.latent_dim} dims), along a random unit direction by {np.median(randoms):.1%} (median of "
                 f"{len(randoms)}); one-sided Mann–Whitney p = {p_value:.2g} that single dims move the class more "
                 "(holds: p < 0.05)",
                 {"median_dim": float(np.median(dims)), "median_random": float(np.median(randoms)),
                  "p_value": p_value})


def mann_whitney_greater(first: np.ndarray, second: np.ndarray) -> float:
    """One-sided p-value that values of `first` tend to exceed those of `second` (normal approximation of the
    Mann–Whitney U test, ties counted half)."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    greater = (first[:, None] > second[None, :]).sum() + 0.5 * (first[:, None] == second[None, :]).sum()
    count_first, count_second = len(first), len(second)
    mean = count_first * count_second / 2
    std = math.sqrt(count_first * count_second * (count_first + count_second + 1) / 12)
    return float(0.5 * math.erfc((greater - 0.5 - mean) / std / math.sqrt(2)))


def class_claim(dim: int, classes: tuple[str, ...], sequence: tuple[float, ...], what: str) -> Callable:
    """A check that P(`classes`) rises along the set values `sequence`: by MIN_SHIFT or more and significantly from
    its first to its last value, at every step, and more on `dim` than on 90% of the dims."""
    start, end = sequence[0], sequence[-1]

    def check(m: Measurements) -> Check:
        changes = [Estimate.of_mean(m.class_probability(d, end, classes) - m.class_probability(d, start, classes))
                   for d in range(m.latent_dim)]
        change = changes[dim]
        passing = sum(estimate.low > 0 and estimate.value >= MIN_SHIFT for estimate in changes)
        means = [float(m.class_probability(dim, value, classes).mean()) for value in sequence]
        rising = all(later > earlier for earlier, later in zip(means, means[1:]))
        rank, needed = _rank(np.array([estimate.value for estimate in changes]), dim), _top_rank(m.latent_dim)
        shares = [Estimate.of_share(m.predicted_in(dim, value, classes)) for value in (None, *sequence)]
        steps = " → ".join(f"{mean:.1%} (z[{dim}]={value:g})" for value, mean in zip(sequence, means))
        return Check(change.low > 0 and change.value >= MIN_SHIFT and rising and rank <= needed,
                     f"P({what}) {steps}, base {m.class_probability(dim, None, classes).mean():.1%}; change "
                     f"{change.value:+.1%} ({change.low:+.1%}…{change.high:+.1%}); images predicted {what}: "
                     + ", ".join(f"{'base' if value is None else f'{value:g}'} {share.value:.0%}"
                                 for value, share in zip((None, *sequence), shares))
                     + f"; dim {dim} ranks {rank} of {m.latent_dim} dims on this change, {passing} dims raise it by "
                       f"{MIN_SHIFT:.0%} or more significantly (holds: significant and ≥ {MIN_SHIFT:.0%}, rising at "
                       f"every step, rank {needed} or better)",
                     {"change": change.value, "change.low": change.low, "change.high": change.high, "rank": rank,
                      "dims_passing": passing} | {f"p.{value:g}": mean for value, mean in zip(sequence, means)})
    return check


def check_darker(m: Measurements) -> Check:
    sequence = (10.0, -10.0, -50.0)
    means = [float(m.sets[99, value][1].mean()) for value in sequence]
    change = Estimate.of_mean(m.sets[99, -50.0][1] - m.base_brightness)
    darker = Estimate.of_share(m.sets[99, -50.0][1] < m.base_brightness)
    darkening = np.array([(m.base_brightness - m.sets[d, -50.0][1]).mean() for d in range(m.latent_dim)])
    rank, needed = _rank(darkening, 99), _top_rank(m.latent_dim)
    falling = all(later < earlier for earlier, later in zip(means, means[1:]))
    return Check(change.high < 0 and darker.value >= 0.9 and falling and rank <= needed,
                 "mean brightness "
                 + " → ".join(f"{mean:.3f} (z[99]={value:g})" for value, mean in zip(sequence, means))
                 + f", base {m.base_brightness.mean():.3f}; at −50 the change is {change.signed(3)} and "
                   f"{darker.percent()} of images are darker; dim 99 ranks {rank} of {m.latent_dim} dims in darkening "
                   f"at −50, {int(np.sum(darkening > 0))} dims darken on average (holds: darker, falling at every "
                   f"step, ≥ 90% of images, rank {needed} or better)",
                 {"change": change.value, "change.high": change.high, "share_darker": darker.value, "rank": rank})


@dataclass(frozen=True)
class Claim:
    key: str
    report: str  # which report and where
    arch: str  # the architecture that report's latent study used: its generators vote on the verdict
    original: str  # the report's words
    translation: str
    test: str  # what ganlab measures
    check: Callable[[Measurements], Check]


CLAIMS = (
    Claim("larger-offsets-change-more", "report-2025 §5.5", "mlp",
          "从上面这些图像中，我们可以发现，随着幅度的增大，我们的图像的变化情况是非常大的。",
          "From these images we find that as the offset grows, the images change a great deal.",
          "mean L2 pixel change of each of the five dims at ±2, ±4, ±6, ±8, ±10; every step up must change the images "
          "more (paired 95% CI above 0)", check_magnitude),
    Claim("small-offsets-keep-the-class", "report-2025 §5.5", "mlp",
          "低幅度 (±2、±4): 调整后样本…与原始样本…差异相对小…幅度越大 (如 ±10), 样本失真越明显, 甚至难以识别原始类别",
          "Small offsets (±2, ±4) differ little from the original; the larger the offset (e.g. ±10), the more "
          "distorted, until the original class can hardly be recognised.",
          "share of images of dim 10 (the report's figures) whose predicted class changes, at ±2 and at ±10",
          check_class_kept_then_lost),
    Claim("dim-10-is-local", "report-2025 §5.5", "mlp",
          "维度 10: 调整后样本与原始样本差异小, 轮廓、主体特征 (衣物形态) 保留度高, 说明该维度对应细粒度、局部特征",
          "Dim 10: little differs from the original; outline and main features are kept, so this dim controls "
          "fine, local features.",
          "dim 10's mean L2 pixel change at ±2 against all 100 dims: it must be among the smallest tenth",
          check_dim_10_small),
    Claim("dims-10-to-67-escalate", "report-2025 §5.5", "mlp",
          "维度 10 … 差异小；维度 20 … 整体仍可识别；维度 37 … 类别特征模糊；维度 53 … 样本失真更明显；维度 67 … 样本严重扭曲",
          "Dim 10 changes little, 20 stays recognisable, 37 blurs the class, 53 distorts more, 67 severely.",
          "share of images whose class changes at ±2 for the five dims; its order must follow the report's "
          "(Spearman ρ ≥ 0.9)", check_ladder),
    Claim("dim-67-rewrites-globally", "report-2025 §5.5", "mlp",
          "维度 67: 样本严重扭曲, 原始类别几乎无法识别, 反映该维度涉及全局特征重构",
          "Dim 67: severely distorted, the original class almost unrecognisable: this dim rewrites the global "
          "structure.",
          "dim 67's share of images whose class changes at ±2, against all 100 dims: it must be in the top tenth",
          check_dim_67_global),
    Claim("dims-are-semantic-axes", "report-2025 §5.6, §6", "mlp",
          "如果我们调整了某一个维度的值，可能就是调整了某一判别性特征的值，导致图像在生成的过程中朝着某一个类别靠近。"
          "…生成器在训练中自发将噪声维度映射到解耦的语义轴",
          "Adjusting one dimension adjusts one discriminative feature and moves the image toward a class: the "
          "generator maps noise dimensions to disentangled semantic axes.",
          "how far ±2 along each single dim raises one class's probability, against random unit directions: a "
          "dim that is a semantic axis must move the class more than a mixture of dims does (one-sided "
          "Mann–Whitney test over the 100 dims and the random directions, p < 0.05)", check_semantic_axes),
    Claim("2nd-number-long-sleeves", "report-2023 §四(一), 总结", "mlp-small",
          "发现随着第二个随机数的增大，长袖上衣的图像越来越明显，说明第二个随机数与此类分布关系紧密。",
          "As the 2nd number grows, long-sleeved tops become more and more evident: the 2nd number is closely tied "
          "to this class.",
          "P(long-sleeved top) = P(Pullover) + P(Coat) + P(Shirt) with z[1] set to 0, 10, 100: rising at each "
          "step, by 5 points or more and significantly from 0 to 100, and more on dim 1 than on 90% of the dims",
          class_claim(1, LONG_SLEEVED, (0.0, 10.0, 100.0), "long-sleeved top")),
    Claim("71st-number-t-shirts", "report-2023 §四(二), 总结", "mlp-small",
          "随着第 71 个随机数的减小, 白色短袖轮廓特征的图像越来越明显, 随着该随机数的增大, 轮廓越来越不明显。"
          "…第七十一个随机数隐含的信息是 T 恤，它越小，T 恤越明显",
          "As the 71st number falls, white short-sleeve outlines become more evident, and fade as it grows: the "
          "71st number carries 'T-shirt'.",
          "P(T-shirt/top) with z[70] set to 100, 10, −10: rising at each step as the value falls, by 5 points or "
          "more and significantly from 100 to −10, and more on dim 70 than on 90% of the dims",
          class_claim(70, T_SHIRT, (100.0, 10.0, -10.0), "T-shirt/top")),
    Claim("100th-number-trousers", "report-2023 §四(三), 总结", "mlp-small",
          "随着第 100 个随机数的减小, 白色长方体越来越明显…第 100 个随机数则隐含裤子的语义，越小裤子的轮廓越明显",
          "As the 100th number falls, a white cuboid becomes more evident: the 100th number carries 'trousers', "
          "the smaller the clearer.",
          "P(Trouser) with z[99] set to 10, −10, −50: rising at each step as the value falls, by 5 points or "
          "more and significantly from 10 to −50, and more on dim 99 than on 90% of the dims",
          class_claim(99, TROUSER, (10.0, -10.0, -50.0), "Trouser")),
    Claim("100th-number-darkens", "report-2023 §四(三)", "mlp-small",
          "随着该随机数的减小, 该特征越来越不明显, 导致几乎所有图片越来越黑。",
          "As this number falls, the feature fades and almost every image gets darker (read literally: the "
          "sentence says 'falls' twice).",
          "mean brightness with z[99] set to 10, −10, −50: falling at each step, at −50 darker than the original "
          "for ≥ 90% of images, and darker on dim 99 than on 90% of the dims", check_darker),
)


def check_all(measurements: Measurements) -> dict[str, Check]:
    return {claim.key: claim.check(measurements) for claim in CLAIMS}
