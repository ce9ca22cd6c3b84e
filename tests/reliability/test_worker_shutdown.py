"""When the training process dies (SIGKILL: nothing of it runs), its data-loader workers
exit within 5 seconds instead of living on re-parented to PID 1."""

import os
import signal
import sys
import time

import pytest

from tests.engine.cli_utils import start_train, write_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

EXTRA = """
data["workers_per_gpu"] = 2
custom_hooks = [dict(type="HangAtIterHook", iteration=2, rank=0, seconds=120)]
"""


def children(pid):
    """PIDs whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_exit_when_the_training_process_is_killed(tmp_path):
    config = write_config(tmp_path / "toy.py", EXTRA)
    proc = start_train(config, tmp_path / "work")
    try:
        deadline = time.monotonic() + 120
        workers = []
        while time.monotonic() < deadline and len(workers) < 2:
            assert proc.poll() is None, proc.stdout.read()
            workers = children(proc.pid)
            time.sleep(0.2)
        assert len(workers) == 2, workers
        time.sleep(1.0)  # the workers are busy prefetching while the main process hangs
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        killed = time.monotonic()
        while time.monotonic() - killed < 5 and any(alive(w) for w in workers):
            time.sleep(0.1)
        left = [w for w in workers if alive(w)]
        assert not left, f"workers {left} still alive 5 s after the main process was killed"
    finally:
        for pid in [proc.pid, *children(proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.stdout.close()
