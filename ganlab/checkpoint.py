"""Save and load the whole training state as safetensors + JSON, atomically, with no pickle.

A checkpoint directory holds two tensor slots (`state_a.safetensors`, `state_b.safetensors`) and one
manifest, `checkpoint.json`, that names the slot in use and its sha256. A save writes the slot *not*
in use, then replaces the manifest with `os.replace`; a process killed at any moment therefore leaves
either the old or the new checkpoint complete, never a torn one.
"""

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ganlab.errors import GanlabError

MANIFEST_NAME = "checkpoint.json"
FORMAT = "ganlab-checkpoint-v1"
SLOTS = ("state_a.safetensors", "state_b.safetensors")


@dataclass
class TrainingState:
    """Everything needed to continue training exactly where it stopped."""

    epoch: int  # index of the epoch in progress (0-based); equals the number of finished epochs
    step_in_epoch: int  # steps of that epoch already taken
    global_step: int
    tensors: dict[str, torch.Tensor]  # weights, optimizer moments, RNG states, epoch buffers
    info: dict[str, Any] = field(default_factory=dict)  # JSON-friendly extras (optimizer param groups, timings)


def save_checkpoint(directory: Path, state: TrainingState) -> Path:
    """Write `state` into the free slot of `directory`, then switch the manifest to it."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / MANIFEST_NAME
    in_use = _read_manifest(manifest_path)["tensors_file"] if manifest_path.exists() else SLOTS[1]
    slot_name = SLOTS[0] if in_use == SLOTS[1] else SLOTS[1]

    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in state.tensors.items()}
    slot_path = directory / slot_name
    temporary_path = slot_path.with_suffix(".tmp")
    save_file(tensors, str(temporary_path))
    _fsync_and_replace(temporary_path, slot_path)

    manifest = {
        "format": FORMAT,
        "epoch": state.epoch,
        "step_in_epoch": state.step_in_epoch,
        "global_step": state.global_step,
        "tensors_file": slot_name,
        "tensors_sha256": _sha256(slot_path),
        "info": state.info,
    }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2))
    return manifest_path


def load_checkpoint(directory: Path) -> TrainingState | None:
    """The checkpoint in `directory`, or None when there is none; a damaged one is an error."""
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.exists():
        return None
    manifest = _read_manifest(manifest_path)
    slot_path = directory / manifest["tensors_file"]
    if not slot_path.exists() or _sha256(slot_path) != manifest["tensors_sha256"]:
        raise GanlabError(f"checkpoint {slot_path} is missing or does not match its sha256 in {manifest_path}")
    return TrainingState(
        epoch=manifest["epoch"],
        step_in_epoch=manifest["step_in_epoch"],
        global_step=manifest["global_step"],
        tensors=load_file(str(slot_path), device="cpu"),
        info=manifest["info"],
    )


def checkpoint_files(directory: Path) -> list[Path]:
    """The manifest and the slot it names, in the order a mirror must copy them (manifest last)."""
    manifest_path = directory / MANIFEST_NAME
    return [directory / _read_manifest(manifest_path)["tensors_file"], manifest_path]


def optimizer_to_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    """Split an optimizer's state_dict into named tensors (moments, step counts) and JSON param groups."""
    state_dict = optimizer.state_dict()
    tensors = {}
    for param_index, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if not isinstance(value, torch.Tensor):
                raise GanlabError(f"optimizer state {name!r} is not a tensor; ganlab cannot save it without pickle")
            tensors[f"{prefix}.{param_index}.{name}"] = value
    return tensors, state_dict["param_groups"]


def optimizer_from_tensors(prefix: str, tensors: dict[str, torch.Tensor], param_groups: list) -> dict:
    """Rebuild the state_dict that `optimizer_to_tensors` split, for `optimizer.load_state_dict`."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            param_index, name = key[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(param_index), {})[name] = value
    return {"state": state, "param_groups": param_groups}


def prefixed(prefix: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A module's state_dict with its keys under `prefix.`, to share one tensor file."""
    return {f"{prefix}.{key}": value for key, value in state_dict.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `prefixed`: the entries under `prefix.` with the prefix removed."""
    start = len(prefix) + 1
    return {key[start:]: value for key, value in tensors.items() if key.startswith(prefix + ".")}


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so that readers see the old content or the new, never half of it."""
    temporary_path = path.with_name(path.name + ".tmp")
    temporary_path.write_text(text)
    _fsync_and_replace(temporary_path, path)


def _fsync_and_replace(temporary_path: Path, final_path: Path) -> None:
    with open(temporary_path, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary_path, final_path)


def _read_manifest(manifest_path: Path) -> dict:
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise GanlabError(f"cannot read checkpoint manifest {manifest_path}: {error}") from error
    if manifest.get("format") != FORMAT:
        raise GanlabError(f"{manifest_path} is not a {FORMAT} manifest")
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
