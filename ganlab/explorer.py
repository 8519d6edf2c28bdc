"""The latent explorer: a local web page where a person drags one latent number, or a SeFa / GANSpace direction, and
watches the run's real generator answer, with what the latent study measured for that move beside the slider.

    python analysis/explore.py --run-id RUN_ID       # serves http://127.0.0.1:PORT/ until Ctrl-C

The server keeps no exploration state: every request carries all of it (the base batch, the moves), so a reload, a
saved run and a benchmark describe the same images. G runs on the server, one batch per request and one request at a
time (two at once on a 2-core CPU would each take twice as long); the base latents, the directions and recent images
are cached.
"""

import copy
import functools
import io
import json
import math
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities import Param
from PIL import Image
from torch import nn

from ganlab import tracking
from ganlab.cli import option
from ganlab.errors import GanlabError, first_line
from ganlab.explorer_effects import read_study
from ganlab.latent import (Direction, base_latents, check_dims, ganspace_directions, offset_latents,
                           sefa_directions, set_latents, unit_dim)
from ganlab.latent_study import LatentStudyConfig, load_latent_file
from ganlab.metrics.classifier import FEATURE_SPACE
from ganlab.metrics.features import sampling_copy
from ganlab.plots import image_grid

FAMILIES = ("dim", "sefa", "ganspace")  # what a slider can move: one latent number, or a learned direction
MAX_SAMPLES = 64  # images in one batch
MAX_MOVES = 64  # sliders applied at once
MAX_AMOUNT = 1000.0  # |offset| and |set value|: the second report's 100 is already 100σ outside the prior
MAX_SEED = 2**31 - 1  # exact in JavaScript's numbers
MAX_INTERPOLATION_STEPS = 32
IMAGES_PER_ROW = 8
RENDER_CACHE_SIZE = 256  # recent PNGs kept: dragging back to where one was costs nothing


@dataclass
class ExplorerConfig:
    """What the page opens with; every default is the latent study's, so the two show the same thing."""

    dims: str = option(LatentStudyConfig.dims, "latent dims with a slider when the page opens (0-based; the page "
                                               "adds others)")
    values: str = option(LatentStudyConfig.values, "values a dim can be set to with one click (the second report's "
                                                   "experiment; negatives: --values=-10,10)")
    slider_range: float = option(10.0, "offset sliders run from −R to +R (the first report went to ±10)")
    z_seed: int = option(LatentStudyConfig.z_seed, "seed of the base latent batch the page opens with")
    z_file: str | None = option(None, ".npy file of base latents [N, latent_dim], offered beside the seeds "
                                      "(default: none)")
    samples: int = option(LatentStudyConfig.samples, "images in a seeded base batch")
    factor_directions: int = option(LatentStudyConfig.factor_directions,
                                    "SeFa and GANSpace sliders (each) when no latent study gives the directions")
    stats_seed: int = option(LatentStudyConfig.stats_seed, "seed of GANSpace's samples when computed here")


class InvalidRequest(GanlabError):
    """A request the explorer refuses before it reaches G: answered 400 with the message."""


@dataclass(frozen=True)
class Move:
    """One slider: `offset` adds amount·direction to z; `set` (single dims only) sets z[index] = amount."""

    family: str
    index: int
    mode: str
    amount: float

    @property
    def label(self) -> str:
        """`dim 37 +4`, `dim 20 = 100`, `sefa 0 −2.5`."""
        setting = f"= {self.amount:g}" if self.mode == "set" else f"{self.amount:+g}".replace("-", "−")
        return f"{self.family} {self.index} {setting}"


@dataclass(frozen=True)
class Exploration:
    """Everything the images depend on: the base batch (a seed, or "file") and the moves, applied together."""

    base: int | str
    samples: int
    moves: tuple[Move, ...]


@dataclass
class Source:
    """The generator to explore and the run it came from."""

    generator: nn.Module  # eval mode, channels-last sampling copy
    latent_dim: int
    arch: str
    run_id: str
    run_name: str
    experiment_id: str
    client: MlflowClient
    tracking_uri: str


def load_source(*, run_id: str, tracking_uri: str | None, device: torch.device | str) -> Source:
    """G and its run, from a tracked training run: the one place where another kind of source (a registered
    model) plugs in."""
    tracking_uri = tracking.resolve_tracking_uri(tracking_uri)
    client = tracking.connect(tracking_uri)
    run = tracking.get_run(client, run_id)
    generator = sampling_copy(tracking.load_generator(run_id, tracking_uri, device))
    return Source(generator, generator.latent_dim, run.data.tags.get("ganlab.arch", ""), run_id, run.info.run_name,
                  run.info.experiment_id, client, tracking_uri)


class Explorer:
    """Renders explorations with the real G; knows the directions, the study's numbers and the limits."""

    def __init__(self, source: Source, config: ExplorerConfig, device: torch.device | str):
        self.source, self.config, self.device = source, config, device
        latent_dim = source.latent_dim
        self.start_dims = _int_list(config.dims, "--dims")
        check_dims(self.start_dims, latent_dim)
        self.set_values = _float_list(config.values, "--values")
        if not 0 < config.slider_range <= MAX_AMOUNT:
            raise GanlabError(f"--slider-range must be in (0, {MAX_AMOUNT:g}], got {config.slider_range:g}")
        if not 1 <= config.samples <= MAX_SAMPLES:
            raise GanlabError(f"--samples must be 1…{MAX_SAMPLES}, got {config.samples}")
        if not 1 <= config.factor_directions <= latent_dim:
            raise GanlabError(f"--factor-directions must be 1…{latent_dim}, got {config.factor_directions}")
        if not 0 <= config.z_seed <= MAX_SEED:
            raise GanlabError(f"--z-seed must be 0…{MAX_SEED}, got {config.z_seed}")
        self.file_latents = load_latent_file(Path(config.z_file), latent_dim) if config.z_file else None
        if self.file_latents is not None and len(self.file_latents) > MAX_SAMPLES:
            raise GanlabError(f"--z-file {config.z_file} holds {len(self.file_latents)} latents; at most "
                              f"{MAX_SAMPLES} are shown at once")
        self.study, self.study_line = read_study(source.client, source.run_id, latent_dim)
        self._generator_lock, self._cache_lock = threading.Lock(), threading.Lock()
        self._rendered: OrderedDict[Exploration, bytes] = OrderedDict()  # recent PNGs, oldest first
        self.directions_ready = threading.Event()
        self._find_directions()

    def _find_directions(self) -> None:
        """SeFa and GANSpace vectors: the study's own when it logged them. Else SeFa now (closed form, a second) and
        GANSpace in the background (a PCA over thousands of images of G: minutes for the cnn on a CPU), so that the
        page opens at once; their sliders appear when they are ready."""
        studied = {} if self.study is None else {key: vector for key, vector in self.study.directions.items()
                                                 if key[0] in ("sefa", "ganspace")}
        if studied:
            self.directions = studied
            self.direction_notes = {family: f"from latent study run {self.study.run_id}"
                                    for family in ("sefa", "ganspace")}
            self.directions_ready.set()
            return
        count = self.config.factor_directions
        self.directions, self.direction_notes = {}, {}
        try:
            self.directions = _keyed(sefa_directions(self.source.generator, count))
            self.direction_notes["sefa"] = "computed here from G's first layer"
        except GanlabError as error:
            self.direction_notes["sefa"] = f"unavailable: {error}"
        self.direction_notes["ganspace"] = "being computed from images of G, as the latent study does…"
        threading.Thread(target=self._compute_ganspace, args=(count,), name="ganspace", daemon=True).start()

    def _compute_ganspace(self, count: int) -> None:
        """On a copy of G: its forward hook must not see the images the page asks for meanwhile."""
        try:
            found = ganspace_directions(copy.deepcopy(self.source.generator), self.source.latent_dim, count,
                                        self.config.stats_seed, device=self.device)
        except Exception as error:  # noqa: BLE001 - shown on the page; the explorer stays usable without GANSpace
            note = f"unavailable: {first_line(error)}"
        else:
            self.directions = {**self.directions, **_keyed(found)}  # one swap: readers see old or new, never half
            note = f"computed here from images of G (seed {self.config.stats_seed}), as the latent study does"
        self.direction_notes = {**self.direction_notes, "ganspace": note}
        self.directions_ready.set()

    # Requests → latents.

    def parse(self, payload: object) -> Exploration:
        """A request's JSON checked field by field, with a message that names what is wrong."""
        if not isinstance(payload, dict):
            raise InvalidRequest("the body must be a JSON object with fields base, samples and moves")
        base = payload.get("base", self.config.z_seed)
        if base == "file":
            if self.file_latents is None:
                raise InvalidRequest('base "file" needs the server started with --z-file')
            samples = len(self.file_latents)
        else:
            base = _integer(base, "base", 0, MAX_SEED, 'a seed or "file"')
            samples = _integer(payload.get("samples", self.config.samples), "samples", 1, MAX_SAMPLES)
        moves = payload.get("moves", [])
        if not isinstance(moves, list):
            raise InvalidRequest("moves must be a list")
        if len(moves) > MAX_MOVES:
            raise InvalidRequest(f"at most {MAX_MOVES} moves at once, got {len(moves)}")
        return Exploration(base, samples, tuple(self._parse_move(move, number) for number, move in enumerate(moves)))

    def _parse_move(self, move: object, number: int) -> Move:
        where = f"moves[{number}]"
        if not isinstance(move, dict):
            raise InvalidRequest(f"{where} must be an object with family, index, mode and amount")
        family, mode = move.get("family"), move.get("mode", "offset")
        if family not in FAMILIES:
            raise InvalidRequest(f"{where}: unknown direction family {family!r}; one of {', '.join(FAMILIES)}")
        count = self.source.latent_dim if family == "dim" else self.direction_count(family)
        index = _integer(move.get("index"), f"{where}.index", 0, count - 1,
                         "0-based" if family == "dim" else self._direction_hint(family, count))
        if mode not in ("offset", "set") or (mode == "set" and family != "dim"):
            raise InvalidRequest(f"{where}: mode must be offset, or set for a single dim; got {mode!r}")
        amount = move.get("amount")
        if (isinstance(amount, bool) or not isinstance(amount, (int, float))
                or (isinstance(amount, float) and not math.isfinite(amount))):
            raise InvalidRequest(f"{where}.amount must be a finite number, got {str(amount)[:40]}")
        if abs(amount) > MAX_AMOUNT:  # also before any float(): a 400-digit JSON integer must not overflow
            raise InvalidRequest(f"{where}.amount {str(amount)[:40]} is beyond ±{MAX_AMOUNT:g}: G never saw latents "
                                 "anywhere near it")
        return Move(family, index, mode, float(amount))

    def parse_pair(self, payload: dict, samples: int) -> tuple[int, int, int]:
        """The interpolation's two sample indices and its number of steps."""
        first = _integer(payload.get("from"), "from", 0, samples - 1, "a sample index")
        second = _integer(payload.get("to"), "to", 0, samples - 1, "a sample index")
        steps = _integer(payload.get("steps", IMAGES_PER_ROW), "steps", 2, MAX_INTERPOLATION_STEPS)
        return first, second, steps

    def direction_count(self, family: str) -> int:
        return sum(1 for key in self.directions if key[0] == family)

    def _direction_hint(self, family: str, count: int) -> str:
        return f"{family} directions are {self.direction_notes[family]}" if count == 0 else \
            f"this explorer has {count} {family} directions"

    @functools.lru_cache(maxsize=64)
    def base(self, base: int | str, samples: int) -> torch.Tensor:
        """The base batch: a seeded draw (the latent study's, same seed → same z) or the --z-file."""
        if base == "file":
            return self.file_latents
        return base_latents(samples, self.source.latent_dim, base)

    def latents(self, exploration: Exploration) -> torch.Tensor:
        """The base batch with every move applied: offsets first, then set values (a set value is the last word)."""
        latents = self.base(exploration.base, exploration.samples)
        for move in exploration.moves:
            if move.mode == "offset":
                vector = (unit_dim(move.index, self.source.latent_dim).vector if move.family == "dim"
                          else self.directions[(move.family, move.index)])
                latents = offset_latents(latents, vector, move.amount)
        for move in exploration.moves:
            if move.mode == "set":
                latents = set_latents(latents, move.index, move.amount)
        return latents

    # Rendering.

    @torch.inference_mode()
    def images(self, latents: torch.Tensor) -> tuple[torch.Tensor, float]:
        """G(latents) in [-1, 1] as one batch, one request at a time, and G's forward milliseconds."""
        with self._generator_lock:
            started = time.perf_counter()
            images = self.source.generator(latents.to(self.device)).float().clamp(-1, 1).cpu()
            return images, 1000 * (time.perf_counter() - started)

    def grid_png(self, exploration: Exploration) -> tuple[bytes, float | None]:
        """The exploration's images as one PNG, and G's forward milliseconds (None: the PNG came from the cache)."""
        with self._cache_lock:
            if exploration in self._rendered:
                self._rendered.move_to_end(exploration)
                return self._rendered[exploration], None
        images, forward_ms = self.images(self.latents(exploration))
        png = png_bytes(image_grid(images, IMAGES_PER_ROW))
        with self._cache_lock:
            self._rendered[exploration] = png
            while len(self._rendered) > RENDER_CACHE_SIZE:
                self._rendered.popitem(last=False)
        return png, forward_ms

    def interpolation_png(self, exploration: Exploration, first: int, second: int, steps: int) -> tuple[bytes, float]:
        latents = self.latents(exploration)
        images, forward_ms = self.images(slerp(latents[first], latents[second], steps))
        return png_bytes(image_grid(images, steps)), forward_ms

    # Saving.

    def save(self, exploration: Exploration, pair: tuple[int, int, int] | None) -> tuple[str, str]:
        """Log the exploration as a run of the source's experiment: the latent batch as .npy, the sliders as JSON, the
        images as PNG. Returns (run id, its address in the MLflow UI)."""
        source, client = self.source, self.source.client
        latents = self.latents(exploration)
        settings = {"source_run_id": source.run_id, "base": exploration.base, "samples": exploration.samples,
                    "moves": [vars(move) for move in exploration.moves],
                    "directions": {f"{move.family} {move.index}": self.directions[(move.family, move.index)].tolist()
                                   for move in exploration.moves if move.family != "dim"},
                    "direction_notes": self.direction_notes,
                    "z_file": self.config.z_file if exploration.base == "file" else None,
                    "interpolation": dict(zip(("from", "to", "steps"), pair)) if pair else None,
                    "order": "offsets are added first, then set values are set"}
        tags = {"ganlab.kind": "exploration", "ganlab.source_run_id": source.run_id, "ganlab.arch": source.arch,
                "mlflow.source.name": "analysis/explore.py"}
        with tracking.run_lifecycle(client, source.experiment_id, run_name=f"exploration-{source.run_name}",
                                    tags=tags) as run, tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            np.save(folder / "latents.npy", latents.numpy().astype(np.float32))
            np.save(folder / "base_latents.npy", self.base(exploration.base, exploration.samples).numpy())
            (folder / "grid.png").write_bytes(self.grid_png(exploration)[0])
            if pair:
                (folder / "interpolation.png").write_bytes(self.interpolation_png(exploration, *pair)[0])
            (folder / "settings.json").write_text(json.dumps(settings, indent=2))
            params = {"source_run_id": source.run_id, "base": exploration.base, "samples": exploration.samples,
                      "moves": "; ".join(move.label for move in exploration.moves) or "none"}
            with tracking.store_errors("saving the exploration"):
                client.log_batch(run.info.run_id, params=[Param(name, str(value)) for name, value in params.items()])
                client.log_artifacts(run.info.run_id, str(folder))
        return run.info.run_id, tracking.run_url(source.experiment_id, run.info.run_id, source.tracking_uri)

    # What the page needs to build itself.

    def state(self) -> dict:
        """What the page builds itself from: the run, the sliders, the study's numbers per slider, the limits."""
        source, study = self.source, self.study
        panels = {}
        if study is not None:
            keys = [("dim", index) for index in range(source.latent_dim)] + list(self.directions)
            panels = {f"{family} {index}": panel for family, index in keys
                      if (panel := study.panel(family, index)) is not None}
        return {"run": {"id": source.run_id, "name": source.run_name, "arch": source.arch,
                        "latent_dim": source.latent_dim},
                "base": {"seed": self.config.z_seed, "samples": self.config.samples,
                         "file": None if self.file_latents is None else {"name": Path(self.config.z_file).name,
                                                                         "samples": len(self.file_latents)}},
                "dims": self.start_dims, "set_values": self.set_values, "slider_range": self.config.slider_range,
                "directions": {family: self.direction_count(family) for family in ("sefa", "ganspace")},
                "direction_notes": self.direction_notes, "directions_ready": self.directions_ready.is_set(),
                "study": None if study is None else {"run_id": study.run_id, "samples": study.samples,
                                                     "grid_offset": study.grid_offset, "classifier": FEATURE_SPACE},
                "study_line": self.study_line, "effects": panels,
                "limits": {"samples": MAX_SAMPLES, "moves": MAX_MOVES, "amount": MAX_AMOUNT,
                           "interpolation_steps": MAX_INTERPOLATION_STEPS}}


def _keyed(directions: list[Direction]) -> dict[tuple[str, int], torch.Tensor]:
    return {(direction.family, direction.index): direction.vector for direction in directions}


def slerp(start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
    """Spherical interpolation: z ~ N(0, I) lies near a sphere, and the straight line between two samples cuts
    through its low-norm inside, where G saw no latents in training (White 2016, "Sampling generative networks")."""
    fractions = torch.linspace(0, 1, steps)[:, None]
    cosine = torch.dot(start / start.norm(), end / end.norm()).clamp(-1, 1)
    angle = torch.arccos(cosine)
    if angle < 1e-6:  # (nearly) the same direction: the straight line is the arc
        return start + fractions * (end - start)
    return (torch.sin((1 - fractions) * angle) * start + torch.sin(fractions * angle) * end) / torch.sin(angle)


def png_bytes(grid: np.ndarray) -> bytes:
    """A uint8 grayscale image [H, W] as PNG (fast compression: these are a few kB either way)."""
    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _integer(value: object, name: str, low: int, high: int, hint: str = "") -> int:
    hint = f" ({hint})" if hint else ""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer{hint}, got {json.dumps(value)[:40]}")
    if not low <= value <= high:
        raise InvalidRequest(f"{name} {str(value)[:40]} is out of range {low}…{high}{hint}")
    return value


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise GanlabError(f"{flag} takes comma-separated integers, got {text!r}") from None


def _float_list(text: str, flag: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise GanlabError(f"{flag} takes comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(value) and abs(value) <= MAX_AMOUNT for value in values):
        raise GanlabError(f"{flag} needs finite numbers within ±{MAX_AMOUNT:g}, got {text!r}")
    return values
