"""SIGINT (Ctrl-C) and SIGTERM (slurm, spot machines, ``kill``) during training.

The first signal asks the runner to stop after the iteration in progress: it shuts the
data-loader workers down, writes an iteration checkpoint (atomically, as every checkpoint)
and ends the run with :class:`~mmdet_like.errors.StoppedBySignal` (one line; exit status
130 or 143). A second signal stops at once, saving nothing more. Signals that come within
``REPEAT_WINDOW_S`` of the first are the same request sent twice (a terminal's Ctrl-C
reaches the launcher and each process of the group; ``torchrun`` forwards it again), not a
second press. Data-loader workers ignore both signals (``worker_init_fn`` in
mmdet_like/datasets/builder.py): a worker that died of the terminal's Ctrl-C would fail the
batch the training process waits for; the runner stops them itself.
"""

import signal
import threading
import time

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REPEAT_WINDOW_S = 1.0


class SignalWatcher:
    """Records the first SIGINT / SIGTERM instead of raising; a later one (after
    ``REPEAT_WINDOW_S``) raises ``KeyboardInterrupt``. Installed only from the main thread
    (Python delivers signals there); elsewhere :meth:`install` does nothing and the
    process keeps its handlers."""

    def __init__(self, logger=None):
        self.logger = logger
        self.signum = None
        self.received_at = None
        self._previous = {}

    @property
    def requested(self):
        return self.signum is not None

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in HANDLED_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return True

    def uninstall(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        now = time.monotonic()
        if self.signum is None:
            self.signum, self.received_at = signum, now
            if self.logger is not None:
                self.logger.warning(
                    "%s received: stopping after the current iteration and saving a "
                    "checkpoint (Ctrl-C again to stop at once without saving)",
                    signal.Signals(signum).name,
                )
            return
        if now - self.received_at < REPEAT_WINDOW_S:
            return  # the same request, delivered twice
        self.uninstall()
        raise KeyboardInterrupt(f"second {signal.Signals(signum).name}")
