"""SIGKILL at five points of a training run, then ``tools/train.py --resume-from`` or
``--auto-resume``: the final weights, optimizer state, epoch count and LR are bitwise those
of an uninterrupted run with the same seed (CPU, ``--deterministic``), and a partially
written checkpoint never replaces a valid one.

The kills come from test-only hooks (tests/reliability/faults.py) named in the config.
"""

import hashlib
import os
import re
from pathlib import Path

import pytest
import torch

from mmdet_like.engine import find_latest_checkpoint
from tests.engine.cli_utils import write_config
from tests.reliability.forkserver import run_train

EXTRA = 'custom_imports = dict(imports=["tests.engine.toy", "tests.reliability.faults"])\n'
# 32 samples, 4 per batch: 8 iterations an epoch, 4 epochs, a checkpoint every epoch


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("cfg") / "toy.py", EXTRA)


def train(config, work_dir, *args, hook=None):
    """(returncode, output) of ``tools/train.py CONFIG --work-dir W --seed 0
    --deterministic ARGS`` with ``hook`` (a config string) as the only custom hook."""
    argv = [config, "--work-dir", work_dir, "--seed", "0", "--deterministic", *args]
    if hook is not None:
        argv += ["--cfg-options", f"custom_hooks=[{hook}]"]
    os.makedirs(work_dir, exist_ok=True)
    log = os.path.join(work_dir, f"run{len(list(Path(work_dir).glob('run*.out')))}.out")
    ((rc, out),) = run_train((argv, log))
    return rc, out


@pytest.fixture(scope="module")
def reference(config, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("uninterrupted")
    rc, out = train(config, work_dir)
    assert rc == 0, out
    return torch.load(work_dir / "epoch_4.pth", weights_only=True)


def assert_same_as_reference(work_dir, reference):
    final = torch.load(work_dir / "epoch_4.pth", weights_only=True)
    assert (final["meta"]["epoch"], final["meta"]["iter"]) == (4, 32)
    assert final["state_dict"].keys() == reference["state_dict"].keys()
    for key, value in reference["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value), key
    ref_opt, opt = reference["optimizer"], final["optimizer"]
    assert [g["lr"] for g in opt["param_groups"]] == [g["lr"] for g in ref_opt["param_groups"]]
    assert opt["state"].keys() == ref_opt["state"].keys()
    for index, state in ref_opt["state"].items():
        assert torch.equal(opt["state"][index]["momentum_buffer"], state["momentum_buffer"])


def latest_target(work_dir):
    return os.path.basename(os.path.realpath(work_dir / "latest.pth"))


def loadable(path):
    return torch.load(path, weights_only=True)["meta"]["epoch"]


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def partial_files(work_dir):
    return sorted(p for p in work_dir.iterdir() if p.name.endswith(".tmp"))


def test_killed_mid_epoch_resumes_from_latest(config, reference, tmp_path):
    rc, out = train(config, tmp_path, hook="dict(type='KillAtIterHook', iteration=11)")
    assert rc == -9, out  # before iteration 12 = epoch 2, iteration 4
    assert latest_target(tmp_path) == "epoch_1.pth" and not (tmp_path / "epoch_2.pth").exists()
    rc, out = train(config, tmp_path, "--resume-from", tmp_path / "latest.pth")
    assert rc == 0, out
    assert "epoch 1, iter 8 (0 done in this epoch)" in out  # the interrupted epoch is redone
    assert_same_as_reference(tmp_path, reference)


def test_killed_just_after_a_checkpoint_auto_resumes_without_redoing_the_epoch(
    config, reference, tmp_path
):
    rc, out = train(config, tmp_path, hook="dict(type='KillAfterEpochHook', epoch=2)")
    assert rc == -9, out
    assert latest_target(tmp_path) == "epoch_2.pth" and loadable(tmp_path / "epoch_2.pth") == 2
    rc, out = train(config, tmp_path, "--auto-resume")
    assert rc == 0, out
    assert re.search(r"resumed from \S+epoch_2\.pth: epoch 2, iter 16", out), out
    assert_same_as_reference(tmp_path, reference)


def test_killed_while_writing_a_checkpoint_leaves_the_previous_one(config, reference, tmp_path):
    rc, out = train(config, tmp_path, hook="dict(type='KillDuringSaveHook', epoch=3)")
    assert rc == -9, out
    assert not (tmp_path / "epoch_3.pth").exists()  # the partial file was never renamed
    (partial,) = partial_files(tmp_path)
    assert partial.name.startswith(".epoch_3.pth.") and partial.stat().st_size > 0
    with pytest.raises(Exception):  # noqa: B017 (torch's error type for a truncated zip varies)
        torch.load(partial, weights_only=True)
    assert latest_target(tmp_path) == "epoch_2.pth" and loadable(tmp_path / "latest.pth") == 2
    rc, out = train(config, tmp_path, "--auto-resume")
    assert rc == 0, out
    assert f"removed {partial}, left by a save that was interrupted" in out
    assert re.search(r"resumed from \S+epoch_2\.pth", out), out
    assert not partial_files(tmp_path)
    assert_same_as_reference(tmp_path, reference)


def test_killed_before_latest_moves_auto_resume_finds_the_newer_checkpoint(
    config, reference, tmp_path
):
    rc, out = train(config, tmp_path, hook="dict(type='KillBeforeLatestHook', epoch=3)")
    assert rc == -9, out
    assert latest_target(tmp_path) == "epoch_2.pth"  # not moved yet
    assert loadable(tmp_path / "epoch_3.pth") == 3  # complete
    rc, out = train(config, tmp_path, "--auto-resume")
    assert rc == 0, out
    assert re.search(r"resumed from \S+epoch_3\.pth: epoch 3, iter 24", out), out
    assert_same_as_reference(tmp_path, reference)


def test_killed_while_overwriting_a_checkpoint_keeps_the_old_file(config, reference, tmp_path):
    rc, out = train(config, tmp_path, hook="dict(type='KillAtIterHook', iteration=20)")
    assert rc == -9, out
    old = tmp_path / "epoch_2.pth"
    before = (digest(old), old.stat().st_ino)
    # go back to epoch 1 (e.g. to redo epoch 2) and die while epoch_2.pth is rewritten
    rc, out = train(
        config,
        tmp_path,
        "--resume-from",
        tmp_path / "epoch_1.pth",
        hook="dict(type='KillDuringSaveHook', epoch=2)",
    )
    assert rc == -9, out
    assert len(partial_files(tmp_path)) == 1
    assert (digest(old), old.stat().st_ino) == before and loadable(old) == 2
    rc, out = train(config, tmp_path, "--auto-resume")
    assert rc == 0, out
    assert re.search(r"resumed from \S+epoch_2\.pth", out), out
    assert_same_as_reference(tmp_path, reference)


def test_broken_latest_checkpoint_falls_back_to_the_newest_valid_one(config, reference, tmp_path):
    rc, out = train(config, tmp_path, hook="dict(type='KillAtIterHook', iteration=27)")
    assert rc == -9, out
    newest = tmp_path / "epoch_3.pth"
    assert latest_target(tmp_path) == newest.name
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # storage lost its tail
    rc, out = train(config, tmp_path, "--auto-resume")
    assert rc == 0, out
    assert f"auto-resume: skipping {newest}, not a usable checkpoint" in out
    assert f"auto-resume: skipping {tmp_path / 'latest.pth'}" in out
    assert re.search(r"resumed from \S+epoch_2\.pth: epoch 2, iter 16", out), out
    assert_same_as_reference(tmp_path, reference)


def test_find_latest_checkpoint_orders_by_progress_and_skips_what_cannot_be_read(tmp_path):
    from torch import nn

    from mmdet_like.engine import save_checkpoint

    assert find_latest_checkpoint(str(tmp_path / "missing")) is None
    assert find_latest_checkpoint(str(tmp_path)) is None
    model = nn.Linear(2, 1)
    for name, epoch, iteration in (("epoch_2.pth", 2, 8), ("iter_6.pth", 1, 6)):
        save_checkpoint(str(tmp_path / name), model, meta={"epoch": epoch, "iter": iteration})
    save_checkpoint(str(tmp_path / "epoch_10.pth"), model, meta={"epoch": 10, "iter": 40})
    assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path / "epoch_10.pth")
    for broken in (b"", b"garbage", (tmp_path / "epoch_10.pth").read_bytes()[:100]):
        (tmp_path / "epoch_10.pth").write_bytes(broken)
        assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path / "epoch_2.pth")
    torch.save({"state_dict": model.state_dict()}, tmp_path / "epoch_11.pth")  # weights only
    os.symlink("epoch_12.pth", tmp_path / "latest.pth")  # dangling
    assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path / "epoch_2.pth")
    os.remove(tmp_path / "latest.pth")  # a file system without links: latest.pth is a copy
    save_checkpoint(str(tmp_path / "latest.pth"), model, meta={"epoch": 3, "iter": 12})
    assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path / "latest.pth")
