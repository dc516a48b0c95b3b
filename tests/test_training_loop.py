"""Tests of the training loop: the same run with render workers, and `sv4d-kit train` end to end."""

import json

import torch

from sv4d_kit import training


def test_render_workers_give_the_same_run(tmp_path, small):
    config = training.TrainConfig(**small, steps=3, checkpoint_every=1)
    _, inline = training.train(config, tmp_path / "inline", progress=False)
    training.train(config, tmp_path / "split", progress=False, stop_at=1, workers=2)
    _, resumed = training.train(config, tmp_path / "split", progress=False, resume=True, workers=2)
    assert len(inline) == 3 and resumed == inline
    summary = json.loads((tmp_path / "split" / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["data_workers"] == 2 and summary["steps"] == 3


def test_cli_train_runs_resumes_and_rejects_bad_input(tmp_path, capsys, small):
    from sv4d_kit import cli

    cfg = tmp_path / "small.json"
    cfg.write_text(json.dumps({**small, "checkpoint_every": 1}))
    run = tmp_path / "run"
    assert (
        cli.main(["train", "--output", str(run), "--steps", "2", "--config", str(cfg), "--no-progress"]) == 0
    )
    assert (run / "model" / "model_index.json").exists() and (run / "model" / "training.json").exists()
    assert json.loads((run / "summary.json").read_text())["steps"] == 2
    # a non-empty folder needs --resume or --overwrite
    assert cli.main(["train", "--output", str(run), "--steps", "2", "--config", str(cfg)]) == 2
    assert "--resume" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"P_std": -1}))
    assert cli.main(["train", "--output", str(tmp_path / "b"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "P_std" in err[0]
    # fine-tuning from an exported folder; a folder that is not one gets one line and leaves no output behind
    tuned = tmp_path / "tuned"
    args = ["train", "--output", str(tuned), "--steps", "1", "--config", str(cfg), "--no-progress"]
    assert cli.main(args + ["--init-from", str(run / "model")]) == 0
    summary = json.loads((tuned / "summary.json").read_text())
    assert summary["config"]["init_from"] == str(run / "model")
    assert summary["init_from_record"]["steps"] == 2  # the record of the weights it started from
    assert cli.main(args[:2] + [str(tmp_path / "c")] + args[3:] + ["--init-from", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an exported model folder" in err[0] and not (tmp_path / "c").exists()
    # a device torch cannot use and a negative worker count: one line each, exit 2, no output folder
    for extra, words in (
        (["--device", "tpu"], ("--device", "must be cpu, cuda")),
        (["--workers", "-1"], ("--workers", ">= 0")),
    ):
        assert cli.main(args[:2] + [str(tmp_path / "d")] + args[3:] + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and all(w in err[0] for w in words) and not (tmp_path / "d").exists(), err
    if not torch.cuda.is_available():
        assert cli.main(args[:2] + [str(tmp_path / "d")] + args[3:] + ["--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_callback_sees_every_step_and_changes_nothing(tmp_path, small):
    """`train(callback=...)` is called after each step with (steps done, that step's loss); the run, its losses and
    its weights, is bit-identical to the run without it (even when the callback draws global random numbers), and
    a resumed run's callback continues from the checkpoint's step."""
    config = training.TrainConfig(**small, steps=3, checkpoint_every=1)
    plain_pipe, plain = training.train(config, tmp_path / "plain", progress=False)
    seen = []

    def callback(step, loss):
        seen.append((step, loss))
        torch.rand(3)  # a plotting callback may touch the global generator; the run must not depend on it

    pipe, losses = training.train(config, tmp_path / "hooked", progress=False, callback=callback)
    assert losses == plain and seen == list(zip([1, 2, 3], plain))
    assert all(type(loss) is float for _, loss in seen)
    for name in ("unet", "conditioner"):
        a, b = getattr(plain_pipe, name).state_dict(), getattr(pipe, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    resumed = []
    training.train(config, tmp_path / "split", progress=False, stop_at=1)
    _, again = training.train(
        config, tmp_path / "split", progress=False, callback=lambda s, v: resumed.append(s)
    )
    assert again == plain and resumed == [2, 3]
