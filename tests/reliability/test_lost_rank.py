"""Two ``tools/train.py --launcher pytorch`` processes in a gloo group, one killed with
SIGKILL: the other must end on its own, within the configured collective timeout, with an
error that names the lost rank (no launcher that would stop it for us: like a node that
lost its peer on another machine).

The torchrun path (``tools/dist_train.sh``: torchrun reports the dead rank and stops the
others) and a hanging rank are tested in tests/engine/test_train_cli.py.
"""

import time

import pytest

from tests.engine.cli_utils import free_port, write_config
from tests.reliability.forkserver import run_train

TIMEOUT_S = 10


def train_two_ranks(config, work_dir):
    port = free_port()
    runs = []
    for rank in (0, 1):
        environ = {
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        argv = [config, "--work-dir", work_dir, "--launcher", "pytorch", "--seed", "0"]
        runs.append((argv, work_dir / f"rank{rank}.out", environ))
    start = time.monotonic()
    results = run_train(*runs, timeout=6 * TIMEOUT_S)
    return results, time.monotonic() - start


@pytest.mark.parametrize("lost", [1, 0])
def test_the_survivor_of_a_killed_rank_fails_naming_it_within_the_timeout(tmp_path, lost):
    extra = (
        'custom_imports = dict(imports=["tests.engine.toy"])\n'
        f"custom_hooks = [dict(type='KillAtIterHook', iteration=3, rank={lost})]\n"
        f"dist_params = dict(timeout={TIMEOUT_S})\n"
    )
    config = write_config(tmp_path / "die.py", extra)
    results, elapsed = train_two_ranks(config, tmp_path)
    survivor = 1 - lost
    (rc_lost, out_lost), (rc, out) = results[lost], results[survivor]
    assert rc_lost == -9, out_lost
    assert rc == 1, out
    assert "DistributedError" in out, out
    assert f"rank {survivor}/2: a collective operation failed at epoch 1, iteration 4" in out, out
    assert f"rank(s) {lost} died (process(es) " in out, out
    assert elapsed < 2 * TIMEOUT_S + 10  # start-up, then at most the timeout: no hang
