"""`sv4d-kit batch`: inputs by name, seeds by name, the manifest, resume after a kill, failures, and 2 processes
under torchrun giving the files of 1."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sv4d_kit.batch import MANIFEST, find_inputs, input_seed, run_batch
from sv4d_kit.checks import KitInputError
from sv4d_kit.cli import main

DATA = Path(__file__).parent.parent / "data"
FAST = [
    "--frames",
    "4",
    "--steps",
    "2",
    "--threads",
    "1",
    "--no-progress",
]  # the bundled tiny model, 4 frames


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(DATA / "object.png", folder / "object.png")
    shutil.copy(DATA / "moving_object.gif", folder / "moving.gif")
    frames = folder / "frames"
    frames.mkdir()
    for i in range(2):
        shutil.copy(DATA / "object_rgba.png", frames / f"f{i}.png")
    return folder


def read_manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]


def same_outputs(a: Path, b: Path) -> None:
    """Every file of every input folder byte-identical, metadata.json apart from its timings and folder name."""
    names = sorted(p.name for p in a.iterdir() if p.is_dir())
    assert names == sorted(p.name for p in b.iterdir() if p.is_dir()) and names
    for name in names:
        files = sorted(p.name for p in (a / name).iterdir())
        assert files == sorted(p.name for p in (b / name).iterdir())
        for f in files:
            if f == "metadata.json":
                meta = [json.loads((d / name / f).read_text()) for d in (a, b)]
                for m in meta:
                    m.pop("timings_s")
                    m["parameters"].pop("output_dir")
                assert meta[0] == meta[1], name
            else:
                assert (a / name / f).read_bytes() == (b / name / f).read_bytes(), f"{name}/{f}"


def test_inputs_are_named_by_file_stem_and_folder(tmp_path):
    folder = tmp_path / "in"
    (folder / "clip_frames").mkdir(parents=True)
    for name in ("b.png", "a.gif", "a.mp4", "notes.txt", ".hidden.png"):
        (folder / name).write_bytes(b"")
    assert list(find_inputs(folder)) == ["a_gif", "a_mp4", "b", "clip_frames"]
    with pytest.raises(KitInputError, match="does not exist"):
        find_inputs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KitInputError, match="has no inputs"):
        find_inputs(tmp_path / "empty")


def test_seeds_depend_on_the_base_seed_and_the_name_only():
    assert input_seed(23, "cat") == input_seed(23, "cat")
    assert len({input_seed(23, "cat"), input_seed(23, "dog"), input_seed(24, "cat")}) == 3
    assert 0 <= input_seed(23, "cat") < 2**31


def test_a_corrupt_input_fails_alone_and_a_rerun_resumes(inputs, tmp_path, capsys):
    (inputs / "broken.png").write_text("not an image")
    out = tmp_path / "out"
    assert main(["batch", str(inputs), "--output", str(out), *FAST]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert (
        len(err) == 1 and err[0].startswith("error: 1 input(s) failed (first: broken:") and "3 ok" in err[0]
    )
    records = {r["name"]: r for r in read_manifest(out)}
    assert list(records) == ["broken", "frames", "moving", "object"]
    assert records["broken"]["status"] == "failed" and "broken.png" in records["broken"]["reason"]
    for name in ("frames", "moving", "object"):
        assert records[name]["status"] == "ok" and records[name]["seed"] == input_seed(23, name)
        assert json.loads((out / name / "metadata.json").read_text())["seed"] == input_seed(23, name)
    assert (
        not (out / "broken").exists()
        and sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    )
    # the rerun skips the three complete folders and tries the corrupt one again
    (inputs / "broken.png").unlink()
    shutil.copy(DATA / "object.png", inputs / "broken.png")
    before = (out / "object" / "orbit.mp4").stat().st_mtime_ns
    result = run_batch(inputs, out, frames=4, steps=2, threads=1, progress=False)
    assert (result.ok, result.failed, result.skipped) == (1, 0, 3)
    assert [r["status"] for r in read_manifest(out)] == ["ok"] * 4
    assert (out / "object" / "orbit.mp4").stat().st_mtime_ns == before


@pytest.mark.parametrize("case", ["missing", "empty", "output_is_a_file", "every_input_fails", "bad_option"])
def test_bad_batches_are_one_error_line(tmp_path, capsys, inputs, case):
    folder, out = inputs, tmp_path / "out"
    extra = []
    if case == "missing":
        folder = tmp_path / "nope"
    elif case == "empty":
        folder = tmp_path / "empty"
        folder.mkdir()
    elif case == "output_is_a_file":
        out.write_text("x")
    elif case == "every_input_fails":
        folder = tmp_path / "junk"
        folder.mkdir()
        (folder / "a.png").write_text("junk")
        (folder / "b.gif").write_text("junk")
    elif case == "bad_option":
        extra = ["--cfg", "-1"]
    assert main(["batch", str(folder), "--output", str(out), *FAST, *extra]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert "Traceback" not in err[0]
    if case == "every_input_fails":
        assert "every input failed" in err[0] and len(read_manifest(out)) == 2
    elif case == "output_is_a_file":
        assert out.read_text() == "x"
    else:
        assert not out.exists()


def test_a_killed_run_resumes_to_the_same_folder(inputs, tmp_path):
    """SIGKILL after the first input is written: no half-written folder is visible, and the rerun finishes
    exactly the missing inputs, giving the folder an uninterrupted run gives."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main(["batch", str(inputs), "--output", str(full), *FAST]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sv4d_kit", "batch", str(inputs), "--output", str(killed), *FAST]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rank_file = killed / ".manifest.rank0.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if rank_file.is_file() and rank_file.read_text().count("\n") >= 1:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    visible = [p for p in killed.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert all((p / "metadata.json").is_file() for p in visible)  # complete folders only
    assert len(visible) < 3, "the run finished before the kill; the test did not test a kill"
    assert main(["batch", str(inputs), "--output", str(killed), *FAST]) == 0
    same_outputs(full, killed)
    assert [r["name"] for r in read_manifest(killed)] == ["frames", "moving", "object"]
    assert sorted(p.name for p in killed.iterdir() if p.name.startswith(".")) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_under_torchrun_write_the_files_of_one(inputs, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["batch", str(inputs), "--output", str(one), *FAST]) == 0
    port = str(_free_port())
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", port]  # fmt: skip
    cmd = [*torchrun, "-m", "sv4d_kit", "batch", str(inputs), "--output", str(two), *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("batch: 3 ok") == 1 and "on 2 process(es)" in proc.stdout  # rank 0 speaks
    same_outputs(one, two)
    assert sorted(r["rank"] for r in read_manifest(two)) == [0, 0, 1]  # both ranks worked
