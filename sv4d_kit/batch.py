"""`run_batch(input_dir, output_dir)`: every image, GIF, MP4 or frame folder in a folder through `generate`, sharded
across processes with accelerate's `PartialState`, resumable, with one manifest line per input.

    sv4d-kit batch clips/ --output out/                                   # one process
    torchrun --nproc_per_node 2 -m sv4d_kit batch clips/ --output out/    # two: the same files

Each input `clips/<name>.<ext>` becomes `out/<name>/` (the folder `sv4d-kit generate` writes, atomically), with a
seed derived from the base seed and the name, so a result depends neither on the number of processes nor on the
order. On the CPU every process uses `threads` torch threads (default: its share of the cores). The last bits of a
CPU result depend on the thread count, so runs with different process counts are byte-identical when they use the
same `threads` (e.g. 1). Each process appends its records to
`out/.manifest.rank<R>.jsonl` (one writer per file, so lines never interleave); at the end rank 0 merges them into
`out/manifest.jsonl`. A rerun skips inputs whose folder is complete and finishes the rest; a killed run leaves its
records and no half-written folder (leftover temporary folders are removed on the next run).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from sv4d_kit import checks
from sv4d_kit.checks import INPUT_ERRORS, KitInputError

MANIFEST = "manifest.jsonl"
RANK_MANIFEST = ".manifest.rank{rank}.jsonl"


@dataclass
class BatchResult:
    """What a batch run did: the manifest records of every input (rank 0; other ranks: their own) and the counts."""

    records: list[dict]
    ok: int = 0
    failed: int = 0
    skipped: int = 0  # complete before this run
    manifest: Path | None = None
    timings: dict = field(default_factory=dict)


def find_inputs(input_dir: str | os.PathLike) -> dict[str, Path]:
    """The inputs of a folder by name, in name order: media files by their stem, frame folders by their name
    (a file whose stem another input already has keeps its extension in the name: `a.gif` -> `a_gif`)."""
    from sv4d_kit.preprocess import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    folder = Path(input_dir)
    if not folder.is_dir():
        raise KitInputError(f"input folder {str(folder)!r} does not exist or is not a folder")
    media = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    entries = [p for p in entries if p.is_dir() or p.suffix.lower() in media]
    stems = [p.stem if p.is_file() else p.name for p in entries]
    inputs = {}
    for path, stem in zip(entries, stems):
        name = stem if stems.count(stem) == 1 else path.name.replace(".", "_")
        inputs[name] = path
    if not inputs:
        raise KitInputError(
            f"input folder {str(folder)!r} has no inputs (images, GIFs, videos or folders of frames)"
        )
    return dict(sorted(inputs.items()))


def input_seed(seed: int, name: str) -> int:
    """The seed of input `name`: a hash of (seed, name), the same in every process and every run."""
    digest = hashlib.sha256(f"{int(seed)}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFF_FFFF


def is_complete(folder: Path) -> bool:
    """Whether `folder` holds a finished `generate` output (its metadata.json is written last)."""
    return (folder / "metadata.json").is_file()


def run_batch(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    model: str | os.PathLike = "tiny",
    seed: int = 23,
    threads: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **options,
) -> BatchResult:
    """Generate every input of `input_dir` into `output_dir/<name>/` (see the module docstring); `options` are
    `sv4d_kit.generate`'s (steps, cfg, elevation, device, ...). Under torchrun / accelerate launch the inputs are
    split between the processes, each on its own device (`cuda` -> `cuda:<local rank>`). Returns the records;
    raises `KitInputError` for a bad folder or option, before any work. `overwrite` regenerates complete folders."""
    import torch
    from accelerate import PartialState
    from tqdm.auto import tqdm

    from sv4d_kit.generation import check_options, generate
    from sv4d_kit.pipeline import SV4DPipeline

    # 1. Check everything that can be checked before any work
    inputs = find_inputs(input_dir)
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise KitInputError(f"output path {str(out)!r} is a file, not a folder")
    opts = check_options({"seed": seed, **options})
    opts.pop("seed")  # each input gets its own, from the base seed and its name
    device = opts.pop("device", "cpu")
    state = PartialState(cpu=device.startswith("cpu"))
    if state.num_processes > 1 and device.startswith("cuda"):
        device = f"cuda:{state.local_process_index}"  # one GPU per process
    if threads is None:  # this process's share of the cores
        threads = max(1, (os.cpu_count() or 1) // state.num_processes)
    torch.set_num_threads(checks.integer("threads", threads, minimum=1))

    # 2. Rank 0 prepares the folder: remove what a killed run left half-written, keep its manifest records
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        for leftover in out.glob(".*.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        _merge_manifest(out, inputs)  # a killed run's rank files into manifest.jsonl
    state.wait_for_everyone()

    # 3. Every process loads the model once (a bad model fails them all alike), then takes its share of the inputs
    todo = [name for name in inputs if overwrite or not is_complete(out / name)]
    tic = time.perf_counter()
    pipe = None
    if todo:
        pipe = SV4DPipeline.from_pretrained(model, variant=opts.get("variant"), download=opts.get("download", False),
                                            torch_dtype=getattr(torch, opts.get("dtype", "float32")))  # fmt: skip
    records = []
    with state.split_between_processes(todo) as mine:
        bar = tqdm(mine, desc="batch", disable=not (progress and state.is_main_process), dynamic_ncols=True)
        for name in bar:
            record = _generate_one(generate, pipe, name, inputs[name], out, seed, device, overwrite, opts)
            record.update(rank=state.process_index, threads=torch.get_num_threads())
            _append(out / RANK_MANIFEST.format(rank=state.process_index), record)
            records.append(record)
    state.wait_for_everyone()

    # 4. Rank 0 merges the manifest: one line per input, in name order
    result = BatchResult(records=records, skipped=len(inputs) - len(todo))
    if state.is_main_process:
        result.records, result.manifest = _merge_manifest(out, inputs), out / MANIFEST
    this_run = [r for r in result.records if r["name"] in todo]  # rank 0: every process's; others: their own
    result.ok = sum(r["status"] == "ok" for r in this_run)
    result.failed = sum(r["status"] == "failed" for r in this_run)
    result.timings = {"wall_s": time.perf_counter() - tic, "processes": state.num_processes}
    return result


def _generate_one(generate, pipe, name, path, out, seed, device, overwrite, opts) -> dict:
    """One input through `generate`: its manifest record, `ok` or `failed` with the one-line reason."""
    tic = time.perf_counter()
    record = {"name": name, "input": str(path), "seed": input_seed(seed, name)}
    try:
        result = generate(path, out / name, model=pipe, seed=record["seed"], device=device, overwrite=overwrite,
                          progress=False, command="batch", **opts)  # fmt: skip
    except INPUT_ERRORS as e:
        reason = checks.one_line(e)
        return {
            **record,
            "status": "failed",
            "reason": reason,
            "seconds": round(time.perf_counter() - tic, 3),
        }
    timings = {k: round(v, 3) for k, v in result.metadata["timings_s"].items()}
    return {**record, "status": "ok", "reason": None, "seconds": round(time.perf_counter() - tic, 3),
            "timings_s": timings}  # fmt: skip


def _append(path: Path, record: dict) -> None:
    """Append one JSON line and make it durable before the next input starts (a kill keeps every record)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read_lines(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    return records


def _merge_manifest(out: Path, inputs: dict[str, Path]) -> list[dict]:
    """manifest.jsonl, then every rank's file (newer) -> one record per current input, written atomically; the
    rank files are removed. Inputs with a complete folder but no record (made by hand) get an `ok` record."""
    latest = {}
    rank_files = sorted(out.glob(RANK_MANIFEST.format(rank="*")))
    for path in [out / MANIFEST, *rank_files]:
        for record in _read_lines(path):
            latest[record.get("name")] = record
    records = []
    for name, path in inputs.items():
        record = latest.get(name)
        if record is None or (record["status"] == "failed" and is_complete(out / name)):
            if not is_complete(out / name):
                continue
            meta = json.loads((out / name / "metadata.json").read_text())
            record = {
                "name": name,
                "input": str(path),
                "seed": meta.get("seed"),
                "status": "ok",
                "reason": None,
            }
        records.append(record)
    tmp = out / f".{MANIFEST}.partial"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(out / MANIFEST)
    for path in rank_files:
        path.unlink()
    return records
