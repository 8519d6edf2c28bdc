"""Every figure ganlab draws: pure functions from numbers to a matplotlib Figure (or a grid image).

Figures are built with `matplotlib.figure.Figure` directly, not pyplot, so no global state or GUI
backend is involved; the caller saves or logs them.
"""

import numpy as np
import torch
from matplotlib.figure import Figure
from torchvision.utils import make_grid


def image_grid(images: torch.Tensor, images_per_row: int = 8) -> np.ndarray:
    """Images in [-1, 1] of shape [N, 1, H, W] → one uint8 grayscale grid [rows·(H+2)+2, …]."""
    grid = make_grid(images.detach().float().cpu(), nrow=images_per_row, padding=2, normalize=True,
                     value_range=(-1, 1), pad_value=1.0)
    return (grid[0] * 255).round().to(torch.uint8).numpy()


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` points (fewer at the start), so the bold line spans every step."""
    cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(values, dtype=np.float64))])
    end = np.arange(1, len(cumulative))
    start = np.maximum(end - window, 0)
    return (cumulative[end] - cumulative[start]) / (end - start)


def training_curves(steps: np.ndarray, series: dict[str, np.ndarray], steps_per_epoch: int, title: str,
                    ylabel: str) -> Figure:
    """Per-step curves: raw values faint, a moving average bold, epochs marked on a top axis."""
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    axes = figure.add_subplot()
    window = max(1, min(200, len(steps) // 50))
    for (name, values), color in zip(series.items(), ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        axes.plot(steps, values, color=color, alpha=0.2, linewidth=0.6)
        axes.plot(steps, moving_average(values, window), color=color, linewidth=1.8,
                  label=f"{name} (moving average of {window})")
    last_step = int(steps[-1]) if len(steps) else 0
    if steps_per_epoch > 0 and last_step // steps_per_epoch <= 60:
        for boundary in range(steps_per_epoch, last_step + 1, steps_per_epoch):
            axes.axvline(boundary, color="grey", linewidth=0.5, alpha=0.4)
    if steps_per_epoch > 0:
        epoch_axis = axes.secondary_xaxis(
            "top", functions=(lambda step: step / steps_per_epoch, lambda epoch: epoch * steps_per_epoch))
        epoch_axis.set_xlabel("epoch")
    axes.set_xlabel("step")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    return figure


def class_histogram_figure(class_shares: list[float], class_names: tuple[str, ...], title: str) -> Figure:
    """Share of samples per predicted class, against the uniform share of the real data."""
    figure = Figure(figsize=(8, 4), layout="constrained")
    axes = figure.add_subplot()
    axes.bar(range(len(class_shares)), class_shares, color="tab:blue")
    axes.axhline(1 / len(class_shares), color="black", linestyle="--", linewidth=1, label="real data (uniform)")
    axes.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    axes.set_ylabel("share of samples")
    axes.set_title(title)
    axes.legend(loc="best")
    return figure
