"""Every figure ganlab draws: pure functions from numbers to a matplotlib Figure (or a grid image).

Figures are built with `matplotlib.figure.Figure` directly, not pyplot, so no global state or GUI
backend is involved; the caller saves or logs them.
"""

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure


def image_grid(images: torch.Tensor, images_per_row: int = 8) -> np.ndarray:
    """Images in [-1, 1] of shape [N, 1, H, W] → one uint8 grayscale grid [rows·(H+2)+2, …]."""
    # torchvision's make_grid(nrow, padding=2, normalize=True, value_range=(-1, 1), pad_value=1), without importing
    # torchvision (2.5 s a process); a test checks the two give the same bytes.
    pixels = images.detach().float().cpu()[:, 0].clamp(-1, 1).add(1).div(2)
    count, height, width = pixels.shape
    if count == 1:  # as make_grid: one image alone, unpadded
        return (pixels[0] * 255).round().to(torch.uint8).numpy()
    columns = min(images_per_row, count)
    rows = -(-count // columns)
    grid = torch.ones(rows * (height + 2) + 2, columns * (width + 2) + 2)
    for index, image in enumerate(pixels):
        row, column = divmod(index, columns)
        grid[row * (height + 2) + 2: row * (height + 2) + 2 + height,
             column * (width + 2) + 2: column * (width + 2) + 2 + width] = image
    return (grid * 255).round().to(torch.uint8).numpy()


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
    _draw_curves(axes, steps, series, ("tab:blue", "tab:orange", "tab:green", "tab:red"), steps_per_epoch)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    return figure


def separate_loss_curves(steps: np.ndarray, loss_d: np.ndarray, loss_g: np.ndarray, steps_per_epoch: int) -> Figure:
    """The D and G losses in panels of their own, D first, as the second report draws them: on one shared axis a
    small D loss is flattened by the G loss's scale. Colours match the combined plot's."""
    figure = Figure(figsize=(10, 4.2), layout="constrained")
    for index, (name, values, color) in enumerate((("D loss", loss_d, "tab:orange"), ("G loss", loss_g, "tab:blue"))):
        axes = figure.add_subplot(1, 2, index + 1)
        _draw_curves(axes, steps, {name: values}, (color,), steps_per_epoch)
        axes.set_ylabel("BCE loss")
        axes.set_title(f"{'Discriminator' if name == 'D loss' else 'Generator'} loss")
    figure.suptitle("Discriminator and generator losses, apart")
    return figure


def _draw_curves(axes, steps: np.ndarray, series: dict[str, np.ndarray], colors: tuple[str, ...],
                 steps_per_epoch: int) -> None:
    window = max(1, min(200, len(steps) // 50))
    for (name, values), color in zip(series.items(), colors):
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
    axes.grid(alpha=0.3)
    axes.legend(loc="best")


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


def labelled_image_rows(rows: list[tuple[str, np.ndarray]], title: str) -> Figure:
    """Image strips (uint8 grids from `image_grid`) stacked, each labelled on the left, as in the reports."""
    strip_height, strip_width = rows[0][1].shape
    figure = Figure(figsize=(1.0 + strip_width / 60, 0.5 + len(rows) * strip_height / 60), layout="constrained")
    figure.suptitle(title)
    for row_index, (label, strip) in enumerate(rows):
        axes = figure.add_subplot(len(rows), 1, row_index + 1)
        axes.imshow(strip, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    return figure


def effect_vs_offset(curves: dict[str, list[tuple[float, float, float]]], ylabel: str, title: str) -> Figure:
    """Effect size against |offset| per direction (points: (|offset|, mean, CI half-width)); random controls grey."""
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for name, points in curves.items():
        offsets, means, cis = (np.array(column) for column in zip(*points))
        is_control = name.startswith("random")
        axes.errorbar(offsets, means, yerr=cis, marker="o", capsize=3, label=name,
                      color="grey" if is_control else None, linestyle="--" if is_control else "-",
                      alpha=0.7 if is_control else 1.0)
    axes.set_xlabel("|offset| added to z (prior std = 1)")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    return figure


def class_shift_heatmap(shifts: np.ndarray, class_names: tuple[str, ...], marked_rows: list[int],
                        title: str) -> Figure:
    """Rows: latent dims; columns: classes; colour: mean change of the class probability. Marked rows labelled."""
    figure = Figure(figsize=(7, 10), layout="constrained")
    axes = figure.add_subplot()
    limit = max(float(np.abs(shifts).max()), 1e-6)
    image = axes.imshow(shifts, aspect="auto", cmap="coolwarm", vmin=-limit, vmax=limit, interpolation="nearest")
    axes.set_xticks(range(len(class_names)), class_names, rotation=40, ha="right")
    axes.set_yticks(marked_rows, [f"dim {row} ◀" for row in marked_rows], fontsize=8)
    axes.set_ylabel("latent dim (study dims labelled)")
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, label="Δ probability")
    return figure


def dim_ranking(values: np.ndarray, marked: list[int], control_band: tuple[float, float], title: str) -> Figure:
    """Every dim's value sorted, the marked dims highlighted, the control's 5–95% band shaded."""
    figure = Figure(figsize=(9, 4), layout="constrained")
    axes = figure.add_subplot()
    order = np.argsort(-values)
    axes.bar(range(len(values)), values[order], color="lightsteelblue", width=1.0)
    for dim in marked:
        rank = int(np.where(order == dim)[0][0])
        axes.bar(rank, values[dim], color="tab:red", width=1.0)
        axes.annotate(f"dim {dim}", (rank, values[dim]), textcoords="offset points", xytext=(0, 4), ha="center",
                      fontsize=8, rotation=90)
    axes.axhspan(*control_band, color="grey", alpha=0.25, label="random unit directions, 5–95%")
    axes.set_xlabel("dims, ranked")
    axes.set_ylabel("flip rate")
    axes.set_title(title)
    axes.legend(loc="upper right")
    return figure


def direction_comparison(groups: dict[str, list[tuple[str, float, float, float]]], title: str) -> Figure:
    """Flip rate with its 95% interval for each direction, grouped by family."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    axes = figure.add_subplot()
    position, ticks, labels = 0, [], []
    for (family, entries), color in zip(groups.items(), ("tab:red", "grey", "tab:blue", "tab:green")):
        for label, rate, low, high in entries:
            axes.bar(position, rate, color=color, yerr=[[rate - low], [high - rate]], capsize=2)
            ticks.append(position)
            labels.append(label)
            position += 1
        position += 1
    axes.set_xticks(ticks, labels, rotation=90, fontsize=7)
    axes.set_ylabel("flip rate (95% Wilson interval)")
    axes.set_title(title)
    return figure


def run_overlay(panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], xlabel: str, title: str,
                smoothing_window: int = 1) -> Figure:
    """One panel per quantity (e.g. "G loss"), one line per run; lines are moving averages of `smoothing_window`."""
    figure = Figure(figsize=(6 * len(panels), 4.2), layout="constrained")
    for panel_index, (quantity, runs) in enumerate(panels.items()):
        axes = figure.add_subplot(1, len(panels), panel_index + 1)
        for run_name, (x_values, y_values) in runs.items():
            if len(x_values):
                axes.plot(x_values, moving_average(y_values, smoothing_window), linewidth=1.5, label=run_name,
                          marker="o" if len(x_values) <= 30 else None, markersize=3)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(quantity)
        axes.set_title(quantity if smoothing_window == 1 else f"{quantity} (moving average of {smoothing_window})")
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize="small")
    figure.suptitle(title)
    return figure


def grids_side_by_side(grids: dict[str, np.ndarray], title: str) -> Figure:
    """Sample grids (uint8 images) next to each other, each captioned with its run."""
    figure = Figure(figsize=(3.2 * len(grids), 3.6), layout="constrained")
    for index, (caption, grid) in enumerate(grids.items()):
        axes = figure.add_subplot(1, len(grids), index + 1)
        axes.imshow(grid, cmap="gray", vmin=0, vmax=255)
        axes.set_title(caption, fontsize="small")
        axes.axis("off")
    figure.suptitle(title)
    return figure


def study_curves_figure(curves: np.ndarray, objective_name: str) -> Figure:
    """Every trial's per-epoch value, coloured by its final rank (dark = best), on a log scale: how noisy and
    how crossing the curves are that a pruner must judge."""
    figure = Figure(figsize=(6, 4.2), layout="constrained")
    axes = figure.add_subplot()
    final_ranks = np.argsort(np.argsort(curves[:, -1]))
    epochs = np.arange(1, curves.shape[1] + 1)
    colours = matplotlib.colormaps["viridis"]
    for curve, rank in zip(curves, final_ranks):
        axes.plot(epochs, curve, marker="o", markersize=3, linewidth=1.2, color=colours(rank / max(len(curves) - 1, 1)))
    axes.set_yscale("log")
    axes.set_xticks(epochs)
    axes.set_xlabel("epoch")
    axes.set_ylabel(objective_name)
    axes.set_title(f"{len(curves)} trials, coloured by final rank (dark = best)")
    axes.grid(alpha=0.3)
    return figure


def arm_curves(curves_by_arm: dict[str, list[list[float]]], ylabel: str, title: str) -> Figure:
    """One colour per arm: each seed's curve by epoch faint, their mean bold."""
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for (arm, curves), color in zip(curves_by_arm.items(), matplotlib.colormaps["tab10"].colors):
        for curve in curves:
            axes.plot(range(1, len(curve) + 1), curve, color=color, alpha=0.3, linewidth=0.8)
        length = min(len(curve) for curve in curves) if curves else 0
        if length:
            mean = np.mean([curve[:length] for curve in curves], axis=0)
            axes.plot(range(1, length + 1), mean, color=color, linewidth=2, marker="o", label=f"{arm} (mean)")
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    return figure


def index_consistency(groups: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str) -> Figure:
    """Per architecture: how strongly the same latent index's effects correlate between generators (one value per
    index) against unrelated indices (the chance distribution), with the threshold an index must pass."""
    figure = Figure(figsize=(5.5 * len(groups), 4.2), layout="constrained")
    for index, (arch, (same_index, null, threshold)) in enumerate(groups.items()):
        axes = figure.add_subplot(1, len(groups), index + 1)
        bins = np.linspace(-1, 1, 41)
        axes.hist(null, bins=bins, density=True, color="lightgrey", label="unrelated indices (chance)")
        axes.hist(same_index, bins=bins, density=True, color="tab:blue", alpha=0.6, label="same index")
        axes.axvline(threshold, color="tab:red", linestyle="--", label=f"chance threshold r = {threshold:+.2f}")
        axes.set_xlabel("mean correlation of class shifts between generators")
        axes.set_ylabel("density")
        axes.set_title(arch)
        axes.legend(loc="upper left", fontsize="small")
    figure.suptitle(title)
    return figure
