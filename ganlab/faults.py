"""Deliberate faults at named points, for the fault-injection tests and tests/fault_injection.py.

`GANLAB_FAULT=POINT:N` makes the process act the N-th time it passes POINT: `kill` points SIGKILL the process
(nothing is cleaned up, as when a machine dies), `nan_weights` fills G's first weight with NaN (a real divergence,
on demand). Without the variable every point is one dictionary lookup.

Points: `flush` (a block of step values was just handed to the writer), `checkpoint` (a checkpoint's tensors are
written, its manifest not yet), `evaluation` (sample quality is being measured), `epoch_start` (nan_weights).
"""

import os
import signal

from torch import nn

KILL_POINTS = ("flush", "checkpoint", "evaluation")
_passes: dict[str, int] = {}


def point(name: str, generator: nn.Module | None = None) -> None:
    """Act here if GANLAB_FAULT names this point and this is the pass it asks for."""
    requested = os.environ.get("GANLAB_FAULT")
    if not requested:
        return
    requested_name, _, count = requested.partition(":")
    if requested_name != name and not (requested_name == "nan_weights" and name == "epoch_start"):
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] != int(count or 1):
        return
    if requested_name == "nan_weights":
        with_nan = next(generator.parameters())
        with_nan.data.fill_(float("nan"))
    else:
        os.kill(os.getpid(), signal.SIGKILL)
