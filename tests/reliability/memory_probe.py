"""Host memory of a process and its children from ``/proc`` (Linux), and a hook that records
it during training, for the soak test (``tests/reliability/test_soak.py``).

Registered for configs through ``custom_imports=dict(imports=["tests.reliability.memory_probe"])``
and ``custom_hooks=[dict(type="MemoryProbeHook", out_file=PATH, interval=100)]``. Nothing in
the package imports it.

Three measures are taken of the training process plus its descendants (the data-loader
workers):

* ``rss``: resident set sizes summed. Pages shared between processes (the libraries, and the
  parent's memory that forked workers have not written to) count once per process, so the
  sum overstates the machine's use, but it is what ``ps``/``top`` show and it is stable.
* ``pss``: proportional set sizes summed (a page shared by k processes counts 1/k in each):
  the memory the process tree really holds. Copy-on-write growth in the workers (a worker
  touching the parent's Python objects) shows here and not in ``rss``.
* ``uss``: private pages only (``Private_Clean + Private_Dirty``).
"""

import gc
import json
import os
import time

from mmdet_like.engine import Hook
from mmdet_like.registry import HOOKS

KIB_PER_MIB = 1024


def _read(path):
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None  # the process exited meanwhile


def children_of(pid):
    """Process ids of every descendant of ``pid`` (from the parent ids in ``/proc/*/stat``)."""
    parent_of = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _read(f"/proc/{name}/stat")
        if stat is None:
            continue
        # the command name is in parentheses and may hold spaces: fields follow the last ")"
        fields = stat[stat.rfind(")") + 2 :].split()
        parent_of[int(name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parent_of.items() if pp == parent]
        found += kids
        frontier += kids
    return sorted(found)


def process_memory(pid):
    """``{"rss", "pss", "uss"}`` in KiB of one process, or None when it has exited.

    From ``/proc/PID/smaps_rollup``; where the kernel has no such file (before Linux 4.14)
    ``pss`` and ``uss`` fall back to the RSS of ``/proc/PID/status``.
    """
    rollup = _read(f"/proc/{pid}/smaps_rollup")
    values = {}
    if rollup:
        for line in rollup.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                values[parts[0][:-1]] = int(parts[1])
    if "Rss" in values and "Pss" in values:
        uss = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
        return {"rss": values["Rss"], "pss": values["Pss"], "uss": uss}
    status = _read(f"/proc/{pid}/status")
    if status is None:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
            return {"rss": rss, "pss": rss, "uss": rss}
    return None


def tree_memory(pid=None):
    """Memory of ``pid`` (default: this process) and its descendants, in MiB.

    Returns:
        dict: ``rss``, ``pss``, ``uss`` summed over the tree; ``main_rss``, ``main_pss``,
        ``main_uss`` of ``pid`` alone; ``children`` (how many were measured) and
        ``child_uss`` (a list, one value per child).
    """
    pid = os.getpid() if pid is None else pid
    main = process_memory(pid)
    if main is None:
        raise ProcessLookupError(f"process {pid} is not running")
    total = dict(main)
    child_uss = []
    for child in children_of(pid):
        mem = process_memory(child)
        if mem is None:
            continue
        child_uss.append(round(mem["uss"] / KIB_PER_MIB, 1))
        for key in total:
            total[key] += mem[key]
    out = {key: round(value / KIB_PER_MIB, 1) for key, value in total.items()}
    out.update({f"main_{key}": round(value / KIB_PER_MIB, 1) for key, value in main.items()})
    out["children"] = len(child_uss)
    out["child_uss"] = child_uss
    return out


@HOOKS.register(force=True)
class MemoryProbeHook(Hook):
    """Every ``interval`` training iterations, append one JSON line to ``out_file``:
    ``{"iter", "epoch", "time", "rss", "pss", "uss", "main_rss", "main_pss", "main_uss",
    "children", "child_uss", "gc_objects"}`` (memory in MiB, ``time`` in seconds since the
    run started, ``gc_objects`` the number of objects the main process's garbage collector
    tracks).

    The file is opened and closed for each line, and the hook keeps nothing per sample, so it
    adds no memory of its own as the run goes on.
    """

    priority = "LOWEST"

    def __init__(self, out_file, interval=100):
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.out_file = out_file
        self.interval = interval
        self._start = None

    def before_run(self, runner):
        self._start = time.monotonic()

    def after_train_iter(self, runner):
        iteration = runner.iter + 1  # runner.iter counts the iterations finished before this one
        if iteration % self.interval:
            return
        record = {
            "iter": iteration,
            "epoch": runner.epoch + 1,
            "time": round(time.monotonic() - self._start, 2),
            **tree_memory(),
            "gc_objects": len(gc.get_objects()),
        }
        with open(self.out_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
