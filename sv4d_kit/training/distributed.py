"""Data-parallel training: under torchrun or `accelerate launch`, N processes share each batch equally.

Every process draws the whole batch's randomness (`data.make_batch`, `objective.diffusion_loss`) but renders and
runs the network on its own contiguous share of the scenes; the gradients are then averaged over the processes,
so each step is the single-process step of the whole batch (up to float rounding). One process: nothing changes.
"""

from __future__ import annotations

import torch
from accelerate import PartialState
from accelerate.utils import reduce

from sv4d_kit.checks import KitInputError


def process_state(device: str | torch.device) -> PartialState:
    """This process's place in the run: accelerate's `PartialState` (one process unless launched by torchrun or
    `accelerate launch`; then gloo on the CPU, NCCL on GPUs, where `.device` is the process's own GPU)."""
    return PartialState(cpu=torch.device(device).type != "cuda")


def scene_share(batch_scenes: int, state: PartialState) -> range:
    """The scenes of every step's batch that this process trains on: a contiguous equal share."""
    n = state.num_processes
    if batch_scenes % n:
        raise KitInputError(
            f"batch_scenes ({batch_scenes}) must be a multiple of the number of processes ({n})"
        )
    share = batch_scenes // n
    return range(state.process_index * share, (state.process_index + 1) * share)


def average_gradients(params: list[torch.nn.Parameter], state: PartialState) -> None:
    """Replace each gradient by its mean over the processes: for equal shares, the gradient of the whole batch's
    mean loss. A parameter that no process has a gradient for keeps None, as in one process (AdamW then leaves it
    alone: e.g. the image tower when every scene dropped its conditioning); where only some have one, the others
    count zeros."""
    if state.num_processes == 1:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=flat.dtype, device=flat.device)
    # all-reduce (mean) of (sum of the numels,) and (len(params),)
    flat, has_grad = reduce([flat, has_grad], reduction="mean")
    for p, chunk, has in zip(params, flat.split([p.numel() for p in params]), has_grad.tolist()):
        p.grad = chunk.view_as(p).clone() if has > 0 else None


def mean_over_processes(value: torch.Tensor) -> float:
    """The mean of a scalar over the processes (itself in one process)."""
    return float(reduce(value.detach(), reduction="mean"))
