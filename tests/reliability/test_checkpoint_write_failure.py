"""A checkpoint write that fails with "No space left on device" (simulated: the write or the
fsync raises ``OSError(ENOSPC)`` after part of the bytes went out). The previous checkpoint
stays valid and ``latest.pth`` keeps pointing at it; the error names the file, the OS error
and what to do; ``checkpoint_config.on_error`` stops the run (default) or trains on."""

import errno
import logging
import os

import pytest
import torch

from mmdet_like.engine import CheckpointError, CheckpointHook
from tests.engine.toy import toy_loader, toy_runner

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def disk_full_at(monkeypatch):
    """``disk_full_at(stage, epochs)``: the save of a checkpoint of one of ``epochs`` fails
    with ENOSPC during ``stage`` ("write": after 100 bytes; "fsync")."""

    def arm(stage, epochs):
        real_save, real_fsync = torch.save, os.fsync
        state = {"failing": False}

        def save(obj, f, *args, **kwargs):
            state["failing"] = obj.get("meta", {}).get("epoch") in epochs
            if state["failing"] and stage == "write":
                f.write(b"\0" * 100)
                raise ENOSPC
            return real_save(obj, f, *args, **kwargs)

        def fsync(fd):
            if state["failing"] and stage == "fsync":
                raise ENOSPC
            return real_fsync(fd)

        monkeypatch.setattr(torch, "save", save)
        monkeypatch.setattr(os, "fsync", fsync)

    return arm


def pth_files(folder):
    return sorted(f for f in os.listdir(folder) if f.endswith((".pth", ".tmp")))


def run(runner, test_logger_name="test_checkpoint_failure"):
    runner.logger = logging.getLogger(test_logger_name)  # propagates to caplog
    runner.run([toy_loader(16, 4)], [("train", 1)])


@pytest.mark.parametrize("stage", ["write", "fsync"])
def test_disk_full_stops_and_keeps_the_previous_checkpoint(tmp_path, disk_full_at, stage):
    runner = toy_runner(tmp_path, max_epochs=3, checkpoint_config={"interval": 1})
    disk_full_at(stage, epochs={2})
    with pytest.raises(CheckpointError) as info:
        run(runner)
    message = str(info.value)
    target, previous = tmp_path / "epoch_2.pth", tmp_path / "epoch_1.pth"
    assert f"could not write checkpoint {target}" in message
    assert "[Errno 28] No space left on device" in message
    assert f"the last good checkpoint is {previous}" in message
    assert "Free space on that disk" in message and "--resume-from" in message
    assert "checkpoint_config.on_error='warn'" in message
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert runner.epoch == 1  # stopped at the failed save, epoch 3 never ran
    # nothing replaced, no partial file left, and the previous checkpoint still loads
    assert pth_files(tmp_path) == ["epoch_1.pth", "latest.pth"]
    assert os.path.realpath(tmp_path / "latest.pth") == str(previous)
    kept = torch.load(tmp_path / "latest.pth", weights_only=True)
    assert kept["meta"]["epoch"] == 1 and all(
        torch.isfinite(v).all() for v in kept["state_dict"].values()
    )
    resumed = toy_runner(tmp_path / "resume", max_epochs=3, checkpoint_config={"interval": 1})
    resumed.resume(str(tmp_path / "latest.pth"))
    assert (resumed.epoch, resumed.iter) == (1, 4)


def test_disk_full_with_on_error_warn_trains_on(tmp_path, disk_full_at, caplog):
    config = {"interval": 1, "on_error": "warn"}
    runner = toy_runner(
        tmp_path, max_epochs=3, checkpoint_config=config, log_config={"interval": 2}
    )
    disk_full_at("write", epochs={2})  # the disk has room again at epoch 3
    with caplog.at_level(logging.ERROR, logger="test_checkpoint_failure"):
        run(runner)
    assert runner.epoch == 3
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"could not write checkpoint {tmp_path / 'epoch_2.pth'}" in error
    assert "No space left on device" in error and "Training goes on" in error
    assert pth_files(tmp_path) == ["epoch_1.pth", "epoch_3.pth", "latest.pth"]
    assert os.path.realpath(tmp_path / "latest.pth") == str(tmp_path / "epoch_3.pth")
    assert torch.load(tmp_path / "latest.pth", weights_only=True)["meta"]["epoch"] == 3
    assert runner.log_buffer.counters["failed_checkpoints"] == 1


def test_failed_latest_update_leaves_the_complete_checkpoint_found(tmp_path, monkeypatch):
    from mmdet_like.engine import find_latest_checkpoint
    from mmdet_like.engine.hooks import checkpoint as checkpoint_hook

    real_update = checkpoint_hook.update_latest

    def update_latest(out_dir, filename):
        if filename == "epoch_2.pth":
            raise ENOSPC
        return real_update(out_dir, filename)

    monkeypatch.setattr(checkpoint_hook, "update_latest", update_latest)
    runner = toy_runner(tmp_path, max_epochs=3, checkpoint_config={"interval": 1})
    with pytest.raises(CheckpointError, match="could not point latest.pth at it") as info:
        run(runner)
    assert "No space left on device" in str(info.value)
    assert os.path.realpath(tmp_path / "latest.pth") == str(tmp_path / "epoch_1.pth")
    assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path / "epoch_2.pth")


def test_on_error_is_checked():
    with pytest.raises(ValueError, match="on_error must be one of"):
        CheckpointHook(on_error="ignore")


def test_latest_is_a_durable_copy_where_links_are_not_supported(tmp_path, monkeypatch):
    def no_symlink(*args, **kwargs):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "symlink", no_symlink)
    runner = toy_runner(tmp_path, max_epochs=2, checkpoint_config={"interval": 1})
    run(runner)
    assert not os.path.islink(tmp_path / "latest.pth")
    assert (tmp_path / "latest.pth").read_bytes() == (tmp_path / "epoch_2.pth").read_bytes()
    assert pth_files(tmp_path) == ["epoch_1.pth", "epoch_2.pth", "latest.pth"]
