"""Where and in which number format ganlab computes: `--device` and `--precision`, resolved once for every script.

bf16 autocast pays only where the hardware multiplies bf16 natively: CUDA GPUs from Ampere on, and CPUs with AMX or
AVX-512 BF16 (measured 2.6–3.6× on the cnn step there). Elsewhere PyTorch emulates it: on an AVX2-only CPU the cnn
step ran 14× slower in bf16 than in fp32 (docs/speed.md). So `auto` picks bf16 only where it is native.
"""

import contextlib
import os
import platform
from pathlib import Path

import torch

from ganlab.errors import GanlabError

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(requested: str) -> torch.device:
    """`auto` → the best available device; anything else must exist here."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise GanlabError(f"unknown --device {requested!r}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GanlabError(f"--device {requested} asked for, but this machine has no usable CUDA GPU")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise GanlabError(f"--device {requested} asked for, but MPS is not available here")
    return device


def has_native_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix products run in hardware on this device (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        checks = (getattr(torch.cpu, "_is_amx_tile_supported", None),
                  getattr(torch.cpu, "_is_avx512_bf16_supported", None))
        return any(check() for check in checks if check is not None)
    return False


def resolve_precision(requested: str, device: torch.device) -> str:
    """`auto` → "bf16" where the device has native bf16, else "fp32"; "fp32"/"bf16" as asked."""
    if requested not in PRECISIONS:
        raise GanlabError(f"unknown --precision {requested!r}: choose one of {', '.join(PRECISIONS)}")
    if requested == "auto":
        return "bf16" if has_native_bf16(device) else "fp32"
    if requested == "bf16" and device.type not in ("cpu", "cuda"):
        raise GanlabError(f"--precision bf16 is supported on cpu and cuda, not {device.type}")
    return requested


def machine_description(device: torch.device) -> str:
    """The machine in words, for committed results: CPU model and cores (or the GPU), and whether bf16 is native."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        name += f", {os.cpu_count()} cores"
    return f"{name}, torch {torch.__version__}, native bf16: {'yes' if has_native_bf16(device) else 'no'}"


def autocast(device: torch.device, precision: str, cache: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast for the forward passes (weights, optimizer state and losses stay fp32), or nothing. `cache`
    off inside a CUDA graph capture, where autocast's cache of cast weights would go stale."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)

