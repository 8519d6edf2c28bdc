"""Data-parallel training under torchrun: which rank this process is, and the few collectives training needs.

`torchrun --nproc-per-node N experiments/train.py …` starts N copies of the script with RANK, WORLD_SIZE and
LOCAL_RANK set. Each rank trains on its share of every batch; DistributedDataParallel averages the gradients,
so N ranks take the same optimizer steps as one process with the whole batch. Only rank 0 talks to MLflow
and writes checkpoints. Without torchrun, `Ranks()` is the single process and every call here is a no-op.
"""

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ganlab.errors import GanlabError

# Rank 0 evaluates FID alone at some epoch ends while the others wait in the next step's all-reduce.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=60)
LEAVE_TIMEOUT = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (rank 0 of 1 when not under torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def ranks_from_environment() -> Ranks:
    """The Ranks torchrun announced in the environment, or the single process."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return Ranks()
    try:
        return Ranks(rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                     local_rank=int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))
    except (KeyError, ValueError) as error:
        raise GanlabError("WORLD_SIZE is set but RANK/LOCAL_RANK are missing or not numbers: start with torchrun") \
            from error


def start(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group (NCCL on GPUs, gloo on CPUs); returns this rank's device."""
    if not ranks.is_distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not torch_dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT,
                                      device_id=device if device.type == "cuda" else None)
    return device


def stop(together: bool) -> None:
    """Leave the process group at the end of a torchrun worker; `together`: every rank is known to be leaving.

    Rank 0 finishes later than the others (it logs the final model), and a rank that tore its gloo group down and
    exited meanwhile was seen to abort now and then ("terminate called without an active exception", SIGABRT, 2 of
    13 test runs). So ranks that all end meet first (on the CPU for at most LEAVE_TIMEOUT); a rank that ends on an
    error of its own does not wait for ranks that may never come.
    """
    if not torch_dist.is_initialized():
        return
    if together:
        with contextlib.suppress(RuntimeError):  # a rank that never came (it crashed after all): leave anyway
            if torch_dist.get_backend() == "gloo":
                torch_dist.monitored_barrier(timeout=LEAVE_TIMEOUT)
            else:
                torch_dist.barrier()
    torch_dist.destroy_process_group()


def wrap(module: nn.Module, ranks: Ranks) -> nn.Module:
    """The module DDP-wrapped when there are several ranks (gradients averaged across them), else itself."""
    if not ranks.is_distributed:
        return module
    device_ids = [module_device(module)] if module_device(module).type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def mean_over_ranks(values: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """`values` replaced in place by their element-wise mean over all ranks (what rank 0 logs, so the run
    shows the whole batch, not rank 0's share)."""
    if ranks.is_distributed:
        torch_dist.all_reduce(values)
        values /= ranks.world_size
    return values


def any_rank(flag: bool, ranks: Ranks) -> bool:
    """True on every rank when it is true on any (a stop signal must stop all ranks at the same step)."""
    if not ranks.is_distributed:
        return flag
    device = "cuda" if torch_dist.get_backend() == "nccl" else "cpu"
    flag_tensor = torch.tensor([int(flag)], device=device)
    torch_dist.all_reduce(flag_tensor, op=torch_dist.ReduceOp.MAX)
    return bool(flag_tensor.item())


def rank_batch_size(batch_size: int, ranks: Ranks) -> int:
    """Images per step on this rank: the configured batch is the global one, split evenly."""
    if batch_size % ranks.world_size:
        raise GanlabError(f"--batch-size {batch_size} does not split evenly over {ranks.world_size} processes")
    return batch_size // ranks.world_size
