"""Save and load the whole training state as safetensors + JSON, atomically, with no pickle.

A checkpoint directory holds two tensor slots (`state_a.safetensors`, `state_b.safetensors`) and one
manifest, `checkpoint.json`, that names the slot in use and its sha256. A save writes the slot *not*
in use, then replaces the manifest with `os.replace`; a process killed at any moment therefore leaves
either the old or the new checkpoint complete, never a torn one.

This module is the file format only: it stores whatever flat state_dict it is given (`TrainingState.state_dict()`),
tensors in the slot and every other value in the manifest.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ganlab import faults
from ganlab.errors import GanlabError, first_line

MANIFEST_NAME = "checkpoint.json"
FORMAT = "ganlab-checkpoint-v2"
OLD_FORMATS = ("ganlab-checkpoint-v1",)  # still read: same tensors, the counters at the manifest's top level
SLOTS = ("state_a.safetensors", "state_b.safetensors")

State = dict[str, Any]  # a flat state_dict: tensors go to the slot, everything else (JSON) to the manifest


def save_checkpoint(directory: Path, state: State) -> Path:
    """Write the tensors of `state` into the free slot of `directory`, then switch the manifest to it (with the
    state's other, JSON-friendly values)."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / MANIFEST_NAME
    in_use = _read_manifest(manifest_path)["tensors_file"] if manifest_path.exists() else SLOTS[1]
    slot_name = SLOTS[0] if in_use == SLOTS[1] else SLOTS[1]

    tensors = {name: value.detach().to("cpu").contiguous() for name, value in state.items()
               if isinstance(value, torch.Tensor)}
    slot_path = directory / slot_name
    temporary_path = slot_path.with_suffix(".tmp")
    try:
        save_file(tensors, str(temporary_path))
        _fsync_and_replace(temporary_path, slot_path)
    except (OSError, SafetensorError) as error:  # a full disk: free the partial file, keep the previous checkpoint
        temporary_path.unlink(missing_ok=True)
        raise GanlabError(f"cannot write the checkpoint to {directory}: {_reason(error)}") from error
    faults.point("checkpoint")  # a kill here must leave the previous checkpoint readable

    manifest = {
        "format": FORMAT,
        "tensors_file": slot_name,
        "tensors_sha256": _sha256(slot_path),
        "state": {name: value for name, value in state.items() if not isinstance(value, torch.Tensor)},
    }
    try:
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2))
    except OSError as error:
        raise GanlabError(f"cannot write the checkpoint manifest {manifest_path}: {_reason(error)}") from error
    return manifest_path


def load_checkpoint(directory: Path) -> State | None:
    """The state saved in `directory`, or None when there is none; a damaged checkpoint is an error."""
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.exists():
        return None
    manifest = _read_manifest(manifest_path)
    slot_path = directory / manifest["tensors_file"]
    if not slot_path.exists() or _sha256(slot_path) != manifest["tensors_sha256"]:
        raise GanlabError(f"checkpoint {slot_path} is missing or does not match its sha256 in {manifest_path}")
    try:
        tensors = load_file(str(slot_path), device="cpu")
    except SafetensorError as error:
        raise GanlabError(f"checkpoint {slot_path} is not a readable safetensors file: {error}") from error
    if manifest["format"] in OLD_FORMATS:
        values = {name: manifest[name] for name in ("epoch", "step_in_epoch", "global_step")} | manifest["info"]
    else:
        values = manifest["state"]
    return {**values, **tensors}


def saved_global_step(directory: Path | None) -> int | None:
    """The global step of the checkpoint in `directory` (without reading its tensors), or None when there is none."""
    manifest_path = directory / MANIFEST_NAME if directory is not None else None
    if manifest_path is None or not manifest_path.exists():
        return None
    manifest = _read_manifest(manifest_path)
    return manifest["global_step"] if manifest["format"] in OLD_FORMATS else manifest["state"]["global_step"]


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
    try:
        temporary_path.write_text(text)
        _fsync_and_replace(temporary_path, path)
    finally:
        temporary_path.unlink(missing_ok=True)  # gone after the replace; a partial one after a failure


def _fsync_and_replace(temporary_path: Path, final_path: Path) -> None:
    with open(temporary_path, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary_path, final_path)


def _reason(error: Exception) -> str:
    """Why a write failed, in a few words (`No space left on device`)."""
    return getattr(error, "strerror", None) or first_line(error)


def _read_manifest(manifest_path: Path) -> dict:
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise GanlabError(f"cannot read checkpoint manifest {manifest_path}: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") not in (FORMAT, *OLD_FORMATS):
        raise GanlabError(f"{manifest_path} is not a {FORMAT} manifest")
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
