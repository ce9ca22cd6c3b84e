"""Per-iteration values (losses, timings) kept for averaging by the logger hooks."""

from collections import defaultdict


class LogBuffer:
    """``history[key]`` is a list of ``(value, count)`` since the start of the epoch.

    ``eval_output`` holds the metrics of the last evaluation until they are logged;
    ``eval_iter`` the global iteration (1-based) after which an evaluation by iterations
    (``EvalHook(by_epoch=False)``) computed them, else None.
    ``counters`` holds event counts since the run started (e.g. ``skipped_steps``,
    ``skipped_images``), added to every training log record; :meth:`clear` keeps them.
    """

    def __init__(self):
        self.history = defaultdict(list)
        self.eval_output = {}
        self.eval_iter = None
        self.counters = {}

    def count(self, key, n=1):
        """Add ``n`` to the counter ``key`` (``n=0`` only makes it appear in the log)."""
        self.counters[key] = self.counters.get(key, 0) + int(n)

    def clear(self):
        self.history.clear()
        self.eval_output = {}
        self.eval_iter = None

    def update(self, values, count=1):
        """Append ``values`` (name -> float) with weight ``count`` (e.g. the batch size)."""
        for key, value in values.items():
            self.history[key].append((float(value), count))

    def average(self, last=None):
        """Count-weighted mean of the ``last`` entries of every key (all when None)."""
        output = {}
        for key, entries in self.history.items():
            window = entries if last is None else entries[-last:]
            total = sum(c for _, c in window)
            if total:
                output[key] = sum(v * c for v, c in window) / total
        return output
