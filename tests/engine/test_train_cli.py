"""tools/train.py and tools/dist_train.sh end to end on the toy model (CPU, subprocesses)."""

import re
import time

import pytest
import torch

from tests.engine.cli_utils import (
    finish,
    log_records,
    start_dist_train,
    start_train,
    tool_module,
    weights,
    write_config,
)


def test_train_from_config_losses_go_down_and_kill_resume_is_exact(tmp_path):
    config = write_config(tmp_path / "toy.py")
    kill = 'custom_hooks=[dict(type="KillAtIterHook", iteration=20)]'
    by_iter = "checkpoint_config=dict(interval=3,by_epoch=False)"
    full = start_train(config, tmp_path / "full", "--seed", "0")
    killed = start_train(config, tmp_path / "epoch", "--seed", "0", "--cfg-options", kill)
    killed_iter = start_train(
        config, tmp_path / "iter", "--seed", "0", "--cfg-options", kill, by_iter
    )
    rc, out = finish(full)
    assert rc == 0, out
    rc_epoch, out_epoch = finish(killed)
    rc_iter, out_iter = finish(killed_iter)
    assert rc_epoch == -9, out_epoch  # SIGKILL, mid-epoch 3 (8 iterations an epoch)
    assert rc_iter == -9, out_iter

    records = [r for r in log_records(tmp_path / "full") if r["mode"] == "train"]
    assert records[-1]["loss"] < 0.2 * records[0]["loss"]
    # the merged config written to the work dir, the run's seed in it, as in the checkpoints
    dumped = (tmp_path / "full" / "toy.py").read_text()
    assert "seed = 0" in dumped.splitlines()
    meta = torch.load(tmp_path / "full" / "epoch_1.pth", weights_only=True)["meta"]
    assert meta["config"] == dumped and meta["seed"] == 0

    assert (tmp_path / "epoch" / "latest.pth").resolve().name == "epoch_2.pth"
    assert (tmp_path / "iter" / "latest.pth").resolve().name == "iter_18.pth"
    # stopped by a signal after the iteration in progress, with a checkpoint of it
    stop_at = "custom_hooks=[dict(type='SignalAtIterHook',iteration=13,{})]"
    with_workers = "data.workers_per_gpu=2"
    sigint = start_train(config, tmp_path / "sigint", "--seed", "0", "--cfg-options",
                         stop_at.format("group=True"), with_workers)  # fmt: skip
    sigterm = start_train(config, tmp_path / "sigterm", "--seed", "0", "--cfg-options",
                          stop_at.format("signal_name='SIGTERM'"))  # fmt: skip
    # Ctrl-C while the epoch's checkpoint is written: the save completes, then the run stops
    at_save = start_train(config, tmp_path / "at_save", "--seed", "0", "--cfg-options",
                          stop_at.format("epoch=2,group=True").replace("iteration=13,", ""),
                          with_workers)  # fmt: skip
    mid_epoch = "epoch 2, iteration 6/8 (global iteration 14)"
    runs = (
        (sigint, "sigint", "SIGINT", 130, mid_epoch, 14),
        (sigterm, "sigterm", "SIGTERM", 143, mid_epoch, 14),
        (at_save, "at_save", "SIGINT", 130, "the end of epoch 2 (global iteration 16)", 16),
    )
    for proc, folder, name, status, where, iteration in runs:
        rc, out = finish(proc)
        work_dir = tmp_path / folder
        assert rc == status, out
        assert "Traceback" not in out and "Error" not in out, out
        assert out.strip().splitlines()[-1] == (
            f"train.py: stopped by {name} at {where}; checkpoint "
            f"{work_dir / f'iter_{iteration}.pth'}; resume with --auto-resume"
        )
        assert (work_dir / "latest.pth").resolve().name == f"iter_{iteration}.pth"
    assert (tmp_path / "at_save" / "epoch_2.pth").is_file()
    resumed_sigint = start_train(config, tmp_path / "sigint", "--seed", "0", "--auto-resume",
                                 "--cfg-options", with_workers)  # fmt: skip
    resumed_sigterm = start_train(config, tmp_path / "sigterm", "--seed", "0", "--auto-resume")
    resumed_at_save = start_train(config, tmp_path / "at_save", "--seed", "0", "--auto-resume",
                                  "--cfg-options", with_workers)  # fmt: skip

    resumed = start_train(
        config,
        tmp_path / "epoch",
        "--seed",
        "0",
        "--resume-from",
        str(tmp_path / "epoch" / "latest.pth"),
    )
    resumed_iter = start_train(
        config, tmp_path / "iter", "--seed", "0", "--auto-resume", "--cfg-options", by_iter
    )
    rc, out = finish(resumed)
    assert rc == 0, out
    assert "resumed from" in out
    rc, out = finish(resumed_iter)
    assert rc == 0, out
    assert "(2 done in this epoch)" in out
    resumed_mid_epoch = "epoch 1, iter 14 (6 done in this epoch); training goes on in epoch 2"
    for proc, progress in (
        (resumed_sigint, resumed_mid_epoch),
        (resumed_sigterm, resumed_mid_epoch),
        (resumed_at_save, "epoch 2, iter 16 (0 done in this epoch)"),
    ):
        rc, out = finish(proc)
        assert rc == 0, out
        assert progress in out, out
    # the stopped run's log and the resumed run's (one file if both started in one second):
    # analyze_logs.py plot_curve on the work dir puts every record at its iteration
    analyze_logs = tool_module("analysis_tools/analyze_logs.py")
    run = str(tmp_path / "sigint")
    for x, at in (
        ("iter", [4, 8, 12, 16, 20, 24, 28, 32]),
        ("epoch", [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]),
    ):
        curves = analyze_logs.plot_curve([run], ["loss"], str(tmp_path / f"{x}.png"), x=x)
        assert curves[(run, "loss")][0] == at

    reference = torch.load(tmp_path / "full" / "epoch_4.pth", weights_only=True)
    assert reference["meta"]["epoch"] == 4 and reference["meta"]["iter"] == 32
    finals = ["epoch/epoch_4.pth", "iter/iter_32.pth"]
    finals += [f"{folder}/epoch_4.pth" for folder in ("sigint", "sigterm", "at_save")]
    for path in (tmp_path / final for final in finals):
        ckpt = torch.load(path, weights_only=True)
        # an iteration checkpoint of the last iteration: 3 finished epochs + 8 iterations
        done = (ckpt["meta"]["epoch"], ckpt["meta"]["inner_iter"])
        assert done == ((4, 0) if "epoch" in path.name else (3, 8))
        assert ckpt["meta"]["iter"] == 32
        for key, value in reference["state_dict"].items():
            assert torch.equal(ckpt["state_dict"][key], value), (path, key)
        lrs = [g["lr"] for g in ckpt["optimizer"]["param_groups"]]
        assert lrs == [g["lr"] for g in reference["optimizer"]["param_groups"]]


def test_two_processes_gloo_match_one_process_with_same_total_batch(tmp_path):
    extra = (
        "evaluation = dict(interval=2)\n"
        "custom_hooks = [dict(type='RecordSamplesHook')]\n"
        "lr_config = dict(warmup_iters=0, step=[30])\n"
        "total_epochs = 6\n"
    )
    dist_cfg = write_config(tmp_path / "dist.py", extra, imgs_per_gpu=4, num_samples=8)
    single_cfg = write_config(tmp_path / "single.py", extra, imgs_per_gpu=8, num_samples=8)
    dist = start_dist_train(dist_cfg, tmp_path / "dist", 2, "--seed", "0")
    single = start_train(single_cfg, tmp_path / "single", "--seed", "0")
    rc, out = finish(dist)
    assert rc == 0, out
    rc, single_out = finish(single)
    assert rc == 0, single_out

    import json

    seen = [json.loads((tmp_path / "dist" / f"samples_rank{r}.json").read_text()) for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 6  # one iteration per epoch on each rank
    for batch0, batch1 in zip(*seen):
        assert len(batch0) == len(batch1) == 4
        assert sorted(batch0 + batch1) == list(range(8))  # disjoint shares, all samples
    dist_w = weights(tmp_path / "dist" / "epoch_6.pth")
    single_w = weights(tmp_path / "single" / "epoch_6.pth")
    for key in single_w:
        torch.testing.assert_close(dist_w[key], single_w[key], rtol=1e-4, atol=1e-5)
    dist_val = [r for r in log_records(tmp_path / "dist") if r["mode"] == "val"]
    single_val = [r for r in log_records(tmp_path / "single") if r["mode"] == "val"]
    assert [r["epoch"] for r in dist_val] == [2, 4, 6]
    for a, b in zip(dist_val, single_val):
        assert abs(a["mse"] - b["mse"]) < 1e-4 * max(1.0, b["mse"])
    # only rank 0 writes logs and checkpoints: a single .log.json / .log
    assert len(list((tmp_path / "dist").glob("*.log.json"))) == 1


def test_a_rank_that_dies_ends_the_run_naming_it(tmp_path):
    extra = (
        "custom_hooks = [dict(type='KillAtIterHook', iteration=3, rank=1)]\n"
        "dist_params = dict(timeout=30)\n"
    )
    config = write_config(tmp_path / "die.py", extra)
    start = time.monotonic()
    rc, out = finish(start_dist_train(config, tmp_path / "wd", 2), timeout=90)
    assert rc != 0
    assert time.monotonic() - start < 60
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)", out), out
    assert "Signal 9 (SIGKILL)" in out or "exitcode  : -9" in out, out


def test_a_hanging_rank_times_out_with_an_error_naming_it(tmp_path):
    """Rank 1 stops for 12 s, three times the collective timeout: rank 0 fails naming it.
    (A rank hung in Python for good takes torchrun's 30 s grace to be killed: its SIGTERM
    asks it to finish its iteration, which it never does; see docs/training.md.)"""
    extra = (
        "custom_hooks = [dict(type='HangAtIterHook', iteration=3, rank=1, seconds=12)]\n"
        "dist_params = dict(timeout=4)\n"
    )
    config = write_config(tmp_path / "hang.py", extra)
    start = time.monotonic()
    rc, out = finish(start_dist_train(config, tmp_path / "wd", 2), timeout=90)
    assert rc != 0
    assert time.monotonic() - start < 60
    assert "DistributedError" in out, out
    assert "rank(s) 1 died or hang" in out, out


def test_a_second_signal_stops_at_once_without_saving(tmp_path):
    extra = (
        "total_epochs = 1\n"
        "custom_hooks = [dict(type='SignalAtIterHook', iteration=3, again_after=1.5)]\n"
    )
    config = write_config(tmp_path / "twice.py", extra)
    rc, out = finish(start_train(config, tmp_path / "wd", "--seed", "0"))
    assert rc == 130, out
    assert "Traceback" not in out, out
    assert out.strip().splitlines()[-1] == (
        "train.py: stopped at once by a second signal in epoch 1, without saving; the last "
        "checkpoint is none (no checkpoint was written in this run); resume with --auto-resume"
    )
    assert not list((tmp_path / "wd").glob("*.pth"))


def test_a_signal_repeated_at_once_is_one_request(monkeypatch):
    """A terminal's Ctrl-C reaches the process twice (directly and forwarded by a
    launcher): one request to stop after the iteration; one later is a second press."""
    import os
    import signal

    from mmdet_like.engine import interrupts

    watcher = interrupts.SignalWatcher()
    previous = signal.getsignal(signal.SIGINT)
    assert watcher.install()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert watcher.signum == signal.SIGINT
        monkeypatch.setattr(interrupts, "REPEAT_WINDOW_S", 0.0)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)
        assert signal.getsignal(signal.SIGINT) is previous  # put back by the second
    finally:
        watcher.uninstall()


def test_iteration_based_training_counts_iterations_and_resumes_exactly(tmp_path):
    """mmdetection's runner=dict(type="IterBasedRunner", max_iters=N): 20 iterations over an
    8-iteration loader (2.5 epochs); checkpoints, evaluation and LR steps by iterations; a
    run killed after its iter_12 checkpoint resumes to the same weights."""
    extra = (
        "runner = dict(type='IterBasedRunner', max_iters=20)\n"
        "checkpoint_config = dict(interval=6)\n"
        "evaluation = dict(interval=5)\n"
        "lr_config = dict(warmup_iters=4, step=[15])\n"
        "log_config = dict(interval=5)\n"
    )
    config = write_config(tmp_path / "iters.py", extra)
    full = start_train(config, tmp_path / "full", "--seed", "0")
    killed = start_train(config, tmp_path / "killed", "--seed", "0", "--cfg-options",
                         "custom_hooks=[dict(type='KillAtIterHook',iteration=13)]")  # fmt: skip
    rc, out = finish(full)
    assert rc == 0, out
    assert "training by iterations" in out and "max: 20 iterations" in out
    assert finish(killed)[0] == -9
    names = sorted(p.name for p in (tmp_path / "full").glob("iter_*.pth"))
    assert names == ["iter_12.pth", "iter_18.pth", "iter_20.pth", "iter_6.pth"]
    assert not list((tmp_path / "full").glob("epoch_*.pth"))
    records = log_records(tmp_path / "full")
    evaluated = [(r["epoch"], r["iter"]) for r in records if r["mode"] == "val"]
    assert evaluated == [(1, 5), (2, 2), (2, 7), (3, 4)]  # after global iterations 5, 10, 15, 20
    assert all("mse" in r for r in records if r["mode"] == "val")
    lrs = {(r["epoch"], r["iter"]): r["lr"] for r in records if r["mode"] == "train"}
    assert lrs[(2, 5)] == pytest.approx(0.01) and lrs[(3, 4)] == pytest.approx(0.001)
    final = torch.load(tmp_path / "full" / "iter_20.pth", weights_only=True)
    assert (final["meta"]["iter"], final["meta"]["epoch"], final["meta"]["inner_iter"]) == (
        20,
        2,
        4,
    )

    rc, out = finish(start_train(config, tmp_path / "killed", "--seed", "0", "--auto-resume"))
    assert rc == 0, out
    assert "iter 12 (4 done in this epoch)" in out, out
    resumed = torch.load(tmp_path / "killed" / "iter_20.pth", weights_only=True)
    for key, value in final["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
