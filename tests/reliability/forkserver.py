"""Run ``tools/train.py`` many times without paying the interpreter start-up each time.

Started as a script, this module imports torch, mmdet_like and ``tools/train.py`` once
(without running anything in torch, so forking is safe), then reads one JSON request a line
on stdin: ``{"runs": [{"argv": [...], "env": {...}, "log": PATH}, ...], "timeout": S}``.
For each run it forks a child that sets the environment, sends stdout and stderr to
``log`` and calls ``tools/train.py``'s ``main(argv)``, exactly what the command line does
after its imports. It waits for all of them (killing what is left at the timeout) and
answers ``{"returncodes": [...], "timed_out": bool}``; a return code is the exit status,
or minus the signal that killed the child (as ``subprocess`` reports it).

The client side is :func:`run_train`; the server is shared by every test of the session.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- server side
def _load_train_tool():
    import torch._inductor  # noqa: F401 (imported by --deterministic: 2 s, paid once here)

    spec = importlib.util.spec_from_file_location("train_tool", ROOT / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child(train_tool, run):
    os.setpgid(0, 0)  # its own group: data-loader workers are killed with it
    fd = os.open(run["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.environ.update(run.get("env", {}))
    code = 1
    try:
        train_tool.main(run["argv"])
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, int):
            code = exc.code
        elif exc.code is not None:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _status(status):
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _serve():
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints must not reach the protocol pipe
    train_tool = _load_train_tool()
    for line in sys.stdin:
        request = json.loads(line)
        pids = []
        for run in request["runs"]:
            pid = os.fork()
            if pid == 0:
                _child(train_tool, run)
            pids.append(pid)
        deadline = time.monotonic() + request.get("timeout", 60)
        codes, timed_out = {}, False
        while len(codes) < len(pids):
            for pid in pids:
                if pid not in codes:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        codes[pid] = _status(status)
            if len(codes) < len(pids) and time.monotonic() > deadline:
                timed_out = True
                for pid in pids:
                    if pid not in codes:
                        os.killpg(pid, signal.SIGKILL)
                        codes[pid] = _status(os.waitpid(pid, 0)[1])
            time.sleep(0.02)
        for pid in pids:  # data-loader workers of killed children
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        protocol.write(
            json.dumps({"returncodes": [codes[p] for p in pids], "timed_out": timed_out})
        )
        protocol.write("\n")
        protocol.flush()


# --------------------------------------------------------------------------- client side
_SERVER = None
_LOCK = threading.Lock()


def _server():
    global _SERVER
    if _SERVER is None or _SERVER.poll() is not None:
        from tests.engine.cli_utils import env

        _SERVER = subprocess.Popen(
            [sys.executable, __file__],
            cwd=ROOT,
            env=env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
    return _SERVER


def run_train(*runs, timeout=60):
    """Run ``tools/train.py`` once per ``(argv, log_path[, env])`` in ``runs``, all at the
    same time; returns ``[(returncode, output), ...]``. Raises if ``timeout`` s pass."""
    request = {"runs": [], "timeout": timeout}
    for run in runs:
        argv, log = run[0], run[1]
        environ = run[2] if len(run) > 2 else {}
        request["runs"].append({"argv": [str(a) for a in argv], "log": str(log), "env": environ})
    with _LOCK:
        server = _server()
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        answer = server.stdout.readline()
    if not answer:
        raise RuntimeError("the fork server died")
    answer = json.loads(answer)
    results = [
        (rc, Path(r["log"]).read_text()) for rc, r in zip(answer["returncodes"], request["runs"])
    ]
    if answer["timed_out"]:
        raise AssertionError(f"timed out after {timeout} s:\n" + "\n".join(o for _, o in results))
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _serve()
