"""Launcher environment handling without starting a process group."""

import os
import stat

import pytest

from mmdet_like.engine import dist


def test_slurm_env_is_translated_for_torch_distributed(tmp_path, monkeypatch):
    scontrol = tmp_path / "scontrol"
    scontrol.write_text("#!/bin/sh\necho node-a\necho node-b\n")
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    # setenv first so that monkeypatch restores (or removes) every variable the code sets
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_NODELIST", "node-[a-b]")
    monkeypatch.setenv("PORT", "29555")
    assert dist._setup_slurm_env(port=None) == 1
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == (
        "5",
        "8",
        "1",
    )
    assert (os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]) == ("node-a", "29555")


def test_pytorch_launcher_without_torchrun_env_says_how_to_start(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="tools/dist_train.sh"):
        dist.init_dist("pytorch")
    with pytest.raises(ValueError, match="unknown launcher"):
        dist.init_dist("mpi")


def test_lost_ranks_are_parsed_from_monitored_barrier_errors():
    assert dist._ranks_in_message("Ranks 1, 3 failed to pass monitoredBarrier in 5000 ms") == [1, 3]
    assert dist._ranks_in_message("[Rank 0]: Rank 2 failed to pass monitoredBarrier") == [2]
