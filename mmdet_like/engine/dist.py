"""Distributed helpers: process-group set-up from a launcher, rank info, reductions.

NCCL on CUDA and gloo on CPU, chosen automatically unless ``dist_params`` names a backend.
A gloo side group (``monitor group``) lets a rank that sees a collective fail find out which
ranks are gone or stuck, so the error can name them: ranks on the same machine whose process
has exited are named at once (their process ids are exchanged at start-up); otherwise a
monitored barrier names the ranks that do not answer.
"""

import datetime
import functools
import os
import re
import socket
import subprocess
import time

import torch
import torch.distributed as dist

from mmdet_like.errors import ProjectError

_MONITOR_GROUP = None
_TIMEOUT_S = None
_PROCESSES = None  # per rank: (machine id, pid), exchanged at start-up


class DistributedError(ProjectError, RuntimeError):
    """A collective failed or timed out because another rank died or hangs."""


def default_backend():
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_dist(launcher, backend=None, timeout=1800, port=None):
    """Join the process group of ``launcher`` ("pytorch" = torchrun, or "slurm").

    ``timeout`` (seconds) bounds every collective: a rank that hangs makes the others fail
    after it. Returns ``(rank, world_size)``.
    """
    if launcher == "pytorch":
        for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise RuntimeError(
                    f"--launcher pytorch: environment variable {var} is not set; start the "
                    "run with tools/dist_train.sh or python -m torch.distributed.run"
                )
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    elif launcher == "slurm":
        local_rank = _setup_slurm_env(port)
    else:
        raise ValueError(f"unknown launcher {launcher!r}; use 'none', 'pytorch' or 'slurm'")
    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    init_process_group(backend, timeout)
    return get_dist_info()


def init_process_group(backend, timeout):
    """``dist.init_process_group`` from the environment, plus the gloo monitor group."""
    global _MONITOR_GROUP, _TIMEOUT_S
    kwargs = {"backend": backend, "timeout": datetime.timedelta(seconds=timeout)}
    if backend == "nccl":
        kwargs["device_id"] = torch.device("cuda", torch.cuda.current_device())
    dist.init_process_group(**kwargs)
    _TIMEOUT_S = timeout
    _MONITOR_GROUP = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout))
    global _PROCESSES
    _PROCESSES = [None] * dist.get_world_size()
    dist.all_gather_object(_PROCESSES, (_machine_id(), os.getpid()), group=_MONITOR_GROUP)


def _machine_id():
    """This host and PID namespace: processes with the same id can see each other's pids."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{socket.gethostname()}:{namespace}"


def _process_gone(pid):
    """Whether ``pid`` has exited (a zombie not yet reaped counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


def dead_local_ranks(grace=2.0):
    """``{rank: pid}`` of the ranks on this machine whose process has exited.

    Waits up to ``grace`` seconds for one to show up: a killed process closes its sockets
    (failing our collective) a moment before it is gone.
    """
    if not _PROCESSES or _machine_id() is None:
        return {}
    here, me = _machine_id(), os.getpid()
    local = {r: pid for r, (machine, pid) in enumerate(_PROCESSES) if machine == here}
    deadline = time.monotonic() + grace
    while True:
        dead = {r: pid for r, pid in local.items() if pid != me and _process_gone(pid)}
        if dead or time.monotonic() >= deadline:
            return dead
        time.sleep(0.05)


def _setup_slurm_env(port):
    """Translate the SLURM_* variables into the torch.distributed ones; returns local rank."""
    proc_id = int(os.environ["SLURM_PROCID"])
    ntasks = int(os.environ["SLURM_NTASKS"])
    node_list = os.environ["SLURM_NODELIST"]
    master = subprocess.check_output(
        ["scontrol", "show", "hostname", node_list], text=True
    ).splitlines()[0]
    if port is not None:
        os.environ["MASTER_PORT"] = str(port)
    elif "MASTER_PORT" not in os.environ:
        os.environ["MASTER_PORT"] = os.environ.get("PORT", "29500")
    os.environ.setdefault("MASTER_ADDR", master)
    os.environ["WORLD_SIZE"] = str(ntasks)
    os.environ["RANK"] = str(proc_id)
    local_rank = int(os.environ.get("SLURM_LOCALID", proc_id % max(torch.cuda.device_count(), 1)))
    os.environ["LOCAL_RANK"] = str(local_rank)
    return local_rank


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def get_dist_info():
    """``(rank, world_size)``; ``(0, 1)`` outside a process group."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def master_only(func):
    """Run ``func`` on rank 0 only (returns None on the other ranks)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if get_dist_info()[0] == 0:
            return func(*args, **kwargs)
        return None

    return wrapper


def unresponsive_ranks(timeout=None):
    """Ranks that do not reach a gloo barrier within ``timeout`` s (default: the group's).

    Used after a collective failed, to name the ranks that died or hang.
    """
    if _MONITOR_GROUP is None:
        return []
    timeout = timeout if timeout is not None else min(_TIMEOUT_S or 30, 30)
    try:
        dist.monitored_barrier(
            group=_MONITOR_GROUP, timeout=datetime.timedelta(seconds=timeout), wait_all_ranks=True
        )
    except RuntimeError as exc:
        return _ranks_in_message(str(exc))
    return []


def _ranks_in_message(message):
    """Parse "Ranks 1, 3 failed to pass monitoredBarrier" / "Rank 1 failed ..." messages."""
    found = re.search(r"Ranks? ([\d, ]+) failed to pass monitoredBarrier", message)
    if found:
        return [int(r) for r in found.group(1).replace(" ", "").split(",") if r]
    return [r for r in range(get_dist_info()[1]) if f"rank {r}" in message.lower()]


def collective_failure(exc, where):
    """A :class:`DistributedError` for ``exc`` raised by a collective, naming lost ranks."""
    rank, world_size = get_dist_info()
    dead = dead_local_ranks()
    lost = [] if dead else [r for r in unresponsive_ranks() if r != rank]
    if dead:
        who = (
            f"rank(s) {', '.join(map(str, dead))} died (process(es) "
            f"{', '.join(map(str, dead.values()))} on this machine exited)"
        )
    elif lost:
        who = f"rank(s) {', '.join(map(str, lost))} died or hang"
    else:
        who = "another rank died or hangs (see the launcher's report for which)"
    return DistributedError(
        f"rank {rank}/{world_size}: a collective operation failed {where}: {who}. "
        f"Original error: {exc}"
    )


def all_reduce_mean(tensor):
    """Mean of ``tensor`` over ranks (a no-op outside a process group)."""
    if not is_distributed():
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor.div_(dist.get_world_size())


def broadcast_object(obj, src=0):
    """``obj`` of rank ``src`` on every rank."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def barrier():
    if is_distributed():
        dist.barrier()


def close_dist():
    """Wait for every rank, then destroy the process group (a no-op outside one): a rank that
    leaves the interpreter with the group alive can abort in gloo's teardown ("terminate
    called without an active exception") while the others still use it."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()
