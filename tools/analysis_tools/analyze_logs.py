"""Plot training curves, or print iteration times, from the json logs a training writes.

    python tools/analysis_tools/analyze_logs.py plot_curve LOG [LOG2 ...]
        --keys loss_cls bbox_mAP [--legend run1 run2] --out curves.png [--x epoch|iter]
        [--title TITLE]
    python tools/analysis_tools/analyze_logs.py cal_train_time LOG.json [LOG2.json ...]
        [--include-outliers]

A log is the ``{work_dir}/{timestamp}.log.json`` of ``TextLoggerHook``: one JSON object a
line with ``mode`` ("train" / "val"), ``epoch`` (1-based), ``iter`` (1-based within the
epoch), ``iters_per_epoch`` (training and evaluation records; older logs lack it) and the
logged values (losses and ``time`` in training records, metrics such as ``bbox_mAP`` in
validation records). Each run of a work dir writes its own log, so a run that was
interrupted and resumed (``--auto-resume``) has several; for ``plot_curve`` a LOG is one
run: a log file, a run's log files joined by commas (oldest first), or a work directory
(all its logs, oldest first).

``plot_curve`` draws one panel per key, every run's curve in it. A record is at the global
iteration it ends, ``(epoch - 1) * N + iter``: divided by N with ``--x epoch``, as is
with ``--x iter``; ``val`` workflow losses (whose ``iter`` counts validation batches) and
the evaluations of older logs at the end of their epoch. N, the epoch's length, is the
record's ``iters_per_epoch``, or for older logs the largest training ``iter`` of the run, so
the records of an interrupted epoch (from the iteration checkpoint's run and the resumed
one) land where they were in the epoch. Where a resumed run redid iterations (resumed from
an earlier checkpoint), the later records replace the earlier ones from there on.

``cal_train_time`` prints, per epoch and overall, the average time of an iteration (each
record's ``time`` is the average of the iterations since the previous record, weighted so)
and the fastest and slowest of the logged averages. As mmdetection's does, it leaves out
each epoch's first training record, whose iterations include the data loader's warm-up
(starting its workers, filling the prefetch queue) and are much slower than the rest;
``--include-outliers`` keeps them. An epoch with a single record keeps it (nothing else to
average), and the output says so.
"""

import argparse
import glob
import json
import os
import os.path as osp
import sys
from collections import OrderedDict

import numpy as np

from mmdet_like.apis.analysis import AnalysisError, check_file
from mmdet_like.engine.hooks.logger import POSITION_KEYS
from mmdet_like.errors import run_tool


def load_log(path):
    """The records of a json log, in order (lines without ``mode``, such as an environment
    header, are skipped)."""
    check_file(path, "log file")
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AnalysisError(
                    f"{path}, line {number}: not JSON ({exc.msg}); give the .log.json file a "
                    "training writes, not the .log text file"
                ) from exc
            if isinstance(record, dict) and "mode" in record and "epoch" in record:
                records.append(record)
    if not records:
        raise AnalysisError(f"{path}: no log records (lines with 'mode' and 'epoch')")
    return records


def run_epoch_length(records):
    """The run's epoch length for records without ``iters_per_epoch`` (``val`` workflow
    records; every record of a log written before records held it): the largest
    ``iters_per_epoch`` of the records, else the largest training ``iter``. Every epoch of a
    run has the same length; taking the largest over all epochs (not each epoch's own) keeps
    an interrupted epoch, whose records stop early, from being stretched over a whole epoch."""
    lengths = [int(r["iters_per_epoch"]) for r in records if r.get("iters_per_epoch")]
    if lengths:
        return max(lengths)
    return max((int(r["iter"]) for r in records if r["mode"] == "train"), default=0)


def global_iter(record, length):
    """Where ``record`` is in the run, in training iterations (a float: the end of its epoch
    for a ``val`` workflow record, whose ``iter`` counts validation batches)."""
    length = record.get("iters_per_epoch") or length
    if record["mode"] == "train" or "iters_per_epoch" in record:
        return (record["epoch"] - 1) * length + int(record["iter"])
    return record["epoch"] * length  # evaluation of an old log, or val workflow losses


def place(records):
    """``records`` of one run, in the order written (a run's log, then its resumptions'),
    each with ``_at``, the global iteration it ends, and ``_length``, its epoch's length.
    A run resumed from an iteration checkpoint goes on where the interrupted one stopped, so
    its records follow on; a run resumed from an earlier checkpoint redoes iterations: where
    a training record is not past the last one, the records before it from that place on
    are dropped (the run went on from the redone iterations), so the curve never steps back
    nor holds two values at one place."""
    length = run_epoch_length(records) or 1
    kept, last_train = [], None
    for record in records:
        at = global_iter(record, length)
        if record["mode"] == "train":
            if last_train is not None and at <= last_train:
                kept = [r for r in kept if r["_at"] < at]
            last_train = at
        kept.append({**record, "_at": at, "_length": record.get("iters_per_epoch") or length})
    return kept


def run_logs(spec):
    """The json logs of one run named by a command-line LOG: a file, files joined by commas
    (in that order), or a work directory (its ``*.log.json``, oldest first: their names are
    the runs' start times)."""
    if osp.isdir(spec):
        paths = sorted(glob.glob(osp.join(spec, "*.log.json")))
        if not paths:
            raise AnalysisError(f"{spec}: a directory without .log.json files")
        return paths
    return [p for p in spec.split(",") if p] if "," in spec else [spec]


def load_run(spec):
    """The placed records (:func:`place`) of the run ``spec`` names (:func:`run_logs`)."""
    return place([r for path in run_logs(spec) for r in load_log(path)])


def curve(records, key, x="epoch"):
    """``(xs, ys)`` of ``key`` in ``records`` (one run's, placed or not), ``x`` "epoch" or
    "iter" (see the module)."""
    if records and "_at" not in records[0]:
        records = place(records)
    xs, ys = [], []
    for r in records:
        value = r.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        xs.append(r["_at"] / r["_length"] if x == "epoch" else r["_at"])
        ys.append(float(value))
    return xs, ys


def logged_keys(records):
    keys = OrderedDict()
    for r in records:
        for k, v in r.items():
            if k not in POSITION_KEYS and not k.startswith("_") and isinstance(v, int | float):
                keys[k] = None
    return list(keys)


def plot_curve(logs, keys, out, legend=None, x="epoch", title=None):
    """Draw ``keys`` of every log in ``logs`` (paths) into the PNG ``out``; returns the
    curves as ``{(log, key): (xs, ys)}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if legend is None:
        legend = [
            osp.basename(osp.normpath(p)) if osp.isdir(p) else osp.basename(p).removesuffix(".json")
            for p in logs
        ]
    if len(legend) != len(logs):
        raise AnalysisError(f"--legend: {len(legend)} names for {len(logs)} logs; give one a log")
    records = {path: load_run(path) for path in logs}
    for path, recs in records.items():
        missing = [k for k in keys if not curve(recs, k, x)[0]]
        if missing:
            raise AnalysisError(
                f"{path}: no records with key(s) {missing}; its records have {logged_keys(recs)}"
            )
    curves = {}
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 3.2 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        for path, name in zip(logs, legend):
            xs, ys = curve(records[path], key, x)
            curves[(path, key)] = (xs, ys)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=name)
        ax.set_ylabel(key)
        ax.set_xlabel(x)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return curves


def train_times(records, include_outliers=False):
    """Epoch -> ``(average, fastest, slowest, iterations, first_kept)`` of its training
    records' times; the average weights each record by the iterations it covers. Unless
    ``include_outliers``, each epoch's first record is left out when the epoch has others
    (``first_kept`` says whether it was counted)."""
    by_epoch = OrderedDict()
    last = {}
    for r in records:
        if r["mode"] != "train" or "time" not in r:
            continue
        epoch, it = r["epoch"], int(r["iter"])
        covered = max(it - last.get(epoch, 0), 1)
        last[epoch] = it
        by_epoch.setdefault(epoch, []).append((float(r["time"]), covered))
    out = OrderedDict()
    for epoch, items in by_epoch.items():
        first_kept = include_outliers or len(items) == 1
        if not first_kept:
            items = items[1:]
        times = np.array([t for t, _ in items])
        weights = np.array([n for _, n in items], dtype=np.float64)
        out[epoch] = (float((times * weights).sum() / weights.sum()), float(times.min()),
                      float(times.max()), float(weights.sum()), first_kept)  # fmt: skip
    return out


def cal_train_time(path, include_outliers=False):
    """Print the iteration times of ``path``; returns ``{epoch: (avg, fastest, slowest)}``
    and the overall ``(avg, fastest, slowest)``. Each epoch's first record (the data
    loader's warm-up) is left out unless ``include_outliers``."""
    per_epoch = train_times(load_log(path), include_outliers)
    if not per_epoch:
        raise AnalysisError(f"{path}: no training records with 'time'")
    print(f"-----Analyze train time of {path}-----")
    if include_outliers:
        print("every training record counted (--include-outliers)")
    else:
        print(
            "each epoch's first training record (data loader warm-up) left out; "
            "--include-outliers keeps it"
        )
    for epoch, (avg, fast, slow, _, first_kept) in per_epoch.items():
        note = "" if include_outliers or not first_kept else " (its only record, kept)"
        print(
            f"epoch {epoch}: average {avg:.4f} s/iter, fastest {fast:.4f}, slowest {slow:.4f}"
            + note
        )
    total = sum(v[0] * v[3] for v in per_epoch.values())
    iters = sum(v[3] for v in per_epoch.values())
    overall = (
        total / iters,
        min(v[1] for v in per_epoch.values()),
        max(v[2] for v in per_epoch.values()),
    )
    avgs = {e: v[0] for e, v in per_epoch.items()}
    print(
        f"overall: average {overall[0]:.4f} s/iter, fastest {overall[1]:.4f}, slowest "
        f"{overall[2]:.4f}; fastest epoch {min(avgs, key=avgs.get)}, slowest epoch "
        f"{max(avgs, key=avgs.get)}"
    )
    return {e: v[:3] for e, v in per_epoch.items()}, overall


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Analyze json training logs")
    sub = parser.add_subparsers(dest="task", required=True)
    plot = sub.add_parser("plot_curve", help="plot logged values of one or more runs")
    plot.add_argument(
        "logs",
        nargs="+",
        help="one a run: a .log.json file, a resumed run's files joined by commas, or a work dir",
    )
    plot.add_argument("--keys", nargs="+", default=["loss"], help="values to plot")
    plot.add_argument("--legend", nargs="+", help="one name a log (default: file names)")
    plot.add_argument("--out", required=True, help="output picture (.png)")
    plot.add_argument("--x", choices=["epoch", "iter"], default="epoch", help="x axis")
    plot.add_argument("--title")
    times = sub.add_parser("cal_train_time", help="print the iteration times of a log")
    times.add_argument("logs", nargs="+", help="json log files (.log.json)")
    times.add_argument(
        "--include-outliers",
        action="store_true",
        help="count each epoch's first record too (left out by default: data loader warm-up)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.task == "plot_curve":
        plot_curve(args.logs, args.keys, args.out, args.legend, args.x, args.title)
        print(f"curves of {', '.join(args.keys)} written to {args.out}")
    else:
        for path in args.logs:
            cal_train_time(path, args.include_outliers)


if __name__ == "__main__":
    sys.exit(run_tool(main))
