"""The reports' image figures, drawn from the display batch: rows of images, each row one change of z, each image
labelled with the class the classifier predicts. Every figure is a PNG and a JSON of its rows (label, the dim and
amount changed, the z values each image got, the predicted classes), so a reader or a test can hold a figure
against the report's numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ganlab import data, plots
from ganlab.latent import offset_latents, set_latents, unit_dim
from ganlab.plots import image_grid

if TYPE_CHECKING:
    from ganlab.latent_study import ParsedStudy

OFFSET_FOLDER = "offset_comparisons"  # the first report's 25 comparisons, one figure each


class ImageRows:
    """Rows of the image figures: the display batch, changed, with each image's predicted class."""

    def __init__(self, generator: nn.Module, classifier: nn.Module, latents: torch.Tensor, device):
        self.generator, self.classifier, self.latents, self.device = generator, classifier, latents, device

    @torch.no_grad()
    def _row(self, label: str, latents: torch.Tensor, **spec) -> dict:
        images = self.generator(latents.to(self.device)).float().clamp(-1, 1)
        predicted = self.classifier(images).argmax(dim=1).cpu().tolist()
        z_values = {"z_values": latents[:, spec["dim"]].tolist()} if "dim" in spec else {}
        return {"label": label, **spec, **z_values, "images": images.cpu(),
                "predicted_classes": [data.CLASS_NAMES[index] for index in predicted]}

    def base_row(self) -> dict:
        return self._row("base", self.latents, mode="base")

    def offset_row(self, dim: int, amount: float) -> dict:
        vector = unit_dim(dim, self.latents.shape[1]).vector
        return self._row(f"dim {dim}, {signed(amount)}", offset_latents(self.latents, vector, amount),
                         mode="offset", dim=dim, amount=amount)

    def set_row(self, dim: int, value: float | None) -> dict:
        """z[dim] = value; None is the unchanged row, placed where the report placed its original."""
        if value is None:
            return self.base_row()
        return self._row(f"dim {dim} = {value:g}", set_latents(self.latents, dim, value), mode="set", dim=dim,
                         amount=value)


def draw_figures(study: ParsedStudy, rows: ImageRows, out_dir: Path) -> None:
    """base.png, then each figure `study.figures` names."""
    write_rows(out_dir, "base", f"{len(rows.latents)} images from the custom latent batch", [rows.base_row()])
    if "grid" in study.figures:
        grid = study.grid_offset
        write_rows(out_dir, "perturbation_grid", f"{len(study.dims)} dims × (−{grid:g}, 0, +{grid:g})",
                   [rows.offset_row(dim, sign * grid) for dim in study.dims for sign in (-1, 0, 1)])
    if "magnitude" in study.figures:
        write_rows(out_dir, "magnitude_comparison", f"dim {study.magnitude_dim}, offsets ±{_fmt_list(study.offsets)}",
                   [rows.base_row()] + [rows.offset_row(study.magnitude_dim, sign * offset)
                                        for offset in study.offsets for sign in (-1, 1)])
    if "dimension" in study.figures:
        offset = study.dimension_offset
        write_rows(out_dir, "dimension_comparison", f"offset ±{offset:g}, dims {study.dims}",
                   [rows.base_row()] + [rows.offset_row(dim, sign * offset) for dim in study.dims for sign in (-1, 1)])
    if "set" in study.figures:
        dims = ", ".join(str(block.dim) for block in study.set_blocks)
        write_rows(out_dir, "set_value_comparison", f"z[dim] set to values: dims {dims}, a block each",
                   [rows.set_row(block.dim, value) for block in study.set_blocks for value in block.rows])
    if "offsets" in study.figures:
        (out_dir / OFFSET_FOLDER).mkdir(exist_ok=True)
        for dim in study.dims:
            for offset in study.offsets:
                write_rows(out_dir, f"{OFFSET_FOLDER}/dim_{dim}_offset_{offset:g}",
                           f"dim {dim}, offset ±{offset:g}: −, unchanged, +",
                           [rows.offset_row(dim, sign * offset) for sign in (-1, 0, 1)])


def figure_files(study: ParsedStudy) -> list[str]:
    """The PNGs `draw_figures` writes for this study."""
    named = {"grid": ["perturbation_grid.png"], "magnitude": ["magnitude_comparison.png"],
             "dimension": ["dimension_comparison.png"], "set": ["set_value_comparison.png"],
             "offsets": [f"{OFFSET_FOLDER}/ ({len(study.dims) * len(study.offsets)} figures)"]}
    return ["base.png"] + [name for figure in study.figures for name in named[figure]]


def write_rows(out_dir: Path, name: str, title: str, rows: list[dict]) -> None:
    """One image figure (`name`.png) and the numbers behind it (`name`.json)."""
    strips = [(row["label"], image_grid(row["images"], images_per_row=len(row["images"]))) for row in rows]
    plots.labelled_image_rows(strips, title).savefig(out_dir / f"{name}.png", dpi=110)
    described = [{key: value for key, value in row.items() if key != "images"} for row in rows]
    (out_dir / f"{name}.json").write_text(json.dumps({"title": title, "rows": described}, indent=2))


def signed(value: float) -> str:
    return f"+{value:g}" if value > 0 else ("0" if value == 0 else f"−{abs(value):g}")


def _fmt_list(values: list[float]) -> str:
    return ", ".join(f"{value:g}" for value in values)
