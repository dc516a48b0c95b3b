"""The training loop: `train(config, output_dir)` trains the tiny SV4D, checkpoints it and exports it.

Everything is deterministic in `config.seed`: the batches (`data`), the noise (CPU generators seeded by the
step) and so the losses, whether the run is interrupted and resumed or not, and whichever device runs the network
(up to its arithmetic), or how many processes share each batch (`distributed`: torchrun or `accelerate launch`).
`RUN_DIR/summary.json` and the exported folder's `training.json` record the steps, the wall time, the device, the
number of processes and the final loss (and, when fine-tuning, the record of the weights it started from).
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from sv4d_kit.training.checkpoint import (
    init_from_model,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    trainable_modules,
    training_record,
)
from sv4d_kit.training.config import TrainConfig
from sv4d_kit.training.data import batches, projection_images
from sv4d_kit.training.distributed import average_gradients, mean_over_processes, process_state, scene_share
from sv4d_kit.training.export import export
from sv4d_kit.training.model import build_tiny_sv4d, measure_sigma_data
from sv4d_kit.training.objective import diffusion_loss, lr_at


def train(config: TrainConfig, output_dir: str | os.PathLike, resume: bool = True, export_dir=None,
          progress: bool = True, log_every: int = 10, stop_at: int | None = None, device: str = "cpu",
          workers: int = 0, callback=None):  # fmt: skip
    """Train the tiny SV4D; checkpoints go to `output_dir/checkpoint`, the final pipeline to `export_dir`
    (default `output_dir/model`). With `resume`, an existing checkpoint is continued from its step (the result is
    the same as an uninterrupted run). `stop_at` ends this session early at that step (with a checkpoint, no
    export), e.g. to time-box a session. `device` runs the network there ("cuda"; scenes are rendered on the CPU,
    by `workers` processes ahead of the steps when > 0); noise comes from CPU generators, so the batches and the
    noise do not depend on the device (the arithmetic does, slightly). Returns (pipeline, list of per-step losses).

    Launched as N processes (torchrun, `accelerate launch`), each trains on its share of every batch
    (`batch_scenes` must be a multiple of N) with `threads // N` CPU threads, and with "cuda" on its own GPU; the
    losses are the whole batch's, the run the one-process run (up to float rounding), and only the first process
    writes files (the others wait for it). A checkpoint resumes with any number of processes.

    `callback(step, loss)`, if given, is called on the main process after each optimizer step with the number of
    steps done so far (1, 2, ...; a resumed run continues from its checkpoint's) and that step's loss (a float), e.g.
    to plot the loss live in a notebook; it only observes, so the run is the same with or without it."""
    from tqdm.auto import tqdm

    state = process_state(device)
    scenes = scene_share(config.batch_scenes, state)  # this process's scenes of every batch
    main = state.is_main_process
    threads = max(1, config.threads // state.num_processes)  # config.threads is the whole run's
    torch.set_num_threads(threads)
    device = torch.device(device)
    if device.type == "cuda" and state.num_processes > 1:
        device = state.device  # each process its own GPU
    out = Path(output_dir)
    pipe = build_tiny_sv4d(config).to(device)  # weights loaded below are copied into its parameters in place
    params = [p for m in trainable_modules(pipe).values() for p in m.parameters()]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.99),
    )
    step, losses, wall_before = 0, [], 0.0
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        step, losses, wall_before = load_checkpoint(pipe, optimizer, ckpt)
    else:
        images = functools.cache(lambda: projection_images(config))  # rendered once, if needed at all
        if config.init_from is not None:
            init_from_model(pipe, config.init_from, images)
        if config.sigma_data == "per_channel":  # of the latent space it trains in, fitted or carried above
            pipe.register_to_config(sigma_data=measure_sigma_data(pipe.vae, images()))
    if main:
        out.mkdir(parents=True, exist_ok=True)  # after the checks above, so bad input leaves no folder behind
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    state.wait_for_everyone()
    for m in trainable_modules(pipe).values():
        m.train()
    bar = tqdm(
        total=config.steps, initial=step, disable=not (progress and main), desc="train", dynamic_ncols=True
    )
    tic = time.perf_counter()
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    for batch in batches(config, step, end, workers, scenes):
        batch = batch.to(device)
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(config, step)
        loss = diffusion_loss(pipe, batch, config, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(params, state)  # so clipping sees the whole batch's gradient, as in one process
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        losses.append(mean_over_processes(loss))  # the whole batch's loss (equal shares)
        step += 1
        recent = float(np.mean(losses[-50:]))
        bar.set_postfix(loss=f"{losses[-1]:.4f}", avg50=f"{recent:.4f}")
        bar.update()
        if main and callback is not None:
            callback(step, losses[-1])
        if main and not progress and step % log_every == 0:
            print(f"step {step}/{config.steps} loss {losses[-1]:.4f} avg50 {recent:.4f} "
                  f"lr {lr_at(config, step - 1):.2e} {time.perf_counter() - tic:.0f}s", flush=True)  # fmt: skip
        if step % config.checkpoint_every == 0 or step == end:
            if main:  # the model and optimizer are the same in every process
                save_checkpoint(
                    pipe, optimizer, step, losses, wall_before + time.perf_counter() - tic, config, out
                )
            state.wait_for_everyone()
    bar.close()
    pipe.to("cpu")
    if step < config.steps:
        return pipe, losses
    pipe.unet.eval()
    pipe.conditioner.eval()
    if main:
        folder = export(pipe, export_dir or out / "model")
        gpu = f": {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
        summary = {
            "command": "sv4d-kit train --output DIR (with this config)",
            "steps": step,
            "final_loss_avg50": float(np.mean(losses[-50:])) if losses else None,
            "wall_s": wall_before + time.perf_counter() - tic,  # all sessions of the run together
            "processes": state.num_processes,  # each trained on batch_scenes / processes scenes of every batch
            "torch_threads": threads,  # per process
            "device": f"{device}{gpu}",
            "data_workers": workers,  # per process
            "config": config.to_dict(),
        }
        if config.init_from is not None:  # the record of the weights this run started from, if they have one
            summary["init_from_record"] = training_record(config.init_from)
        for path in (out / "summary.json", folder / "training.json"):
            path.write_text(json.dumps(summary, indent=2) + "\n")
    state.wait_for_everyone()
    return pipe, losses
