"""Plot training curves, or print iteration times, from the json logs a training writes.

    python tools/analysis_tools/analyze_logs.py plot_curve LOG.json [LOG2.json ...]
        --keys loss_cls bbox_mAP [--legend run1 run2] --out curves.png [--x epoch|iter]
        [--title TITLE]
    python tools/analysis_tools/analyze_logs.py cal_train_time LOG.json [LOG2.json ...]
        [--include-outliers]

A log is the ``{work_dir}/{timestamp}.log.json`` of ``TextLoggerHook``: one JSON object a
line with ``mode`` ("train" / "val"), ``epoch`` (1-based), ``iter`` (1-based within the
epoch) and the logged values (losses and ``time`` in training records, metrics such as
``bbox_mAP`` in validation records).

``plot_curve`` draws one panel per key, every log's curve in it. Training records are at
``epoch - 1 + iter / N`` (``--x epoch``) or at the global iteration ``(iterations of the
epochs before) + iter`` (``--x iter``); validation records at the end of their epoch. N, an
epoch's iterations, is the largest ``iter`` among its training records.

``cal_train_time`` prints, per epoch and overall, the average time of an iteration (each
record's ``time`` is the average of the iterations since the previous record, weighted so)
and the fastest and slowest of the logged averages. As mmdetection's does, it leaves out
each epoch's first training record, whose iterations include the data loader's warm-up
(starting its workers, filling the prefetch queue) and are much slower than the rest;
``--include-outliers`` keeps them. An epoch with a single record keeps it (nothing else to
average), and the output says so.
"""

import argparse
import json
import os
import os.path as osp
import sys
from collections import OrderedDict

import numpy as np

from mmdet_like.apis.analysis import AnalysisError, check_file
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


def epoch_lengths(records):
    """Epoch -> its number of iterations (the largest ``iter`` of its training records)."""
    lengths = {}
    for r in records:
        if r["mode"] == "train":
            lengths[r["epoch"]] = max(lengths.get(r["epoch"], 0), int(r["iter"]))
    return lengths


def curve(records, key, x="epoch"):
    """``(xs, ys)`` of ``key`` in ``records``, ``x`` "epoch" or "iter" (see the module)."""
    lengths = epoch_lengths(records)
    before, total = {}, 0  # iterations of the epochs before each epoch
    for epoch in sorted(lengths):
        before[epoch] = total
        total += lengths[epoch]
    xs, ys = [], []
    for r in records:
        value = r.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        epoch = r["epoch"]
        length = lengths.get(epoch, 0)
        if r["mode"] == "train":
            pos = (epoch - 1 + r["iter"] / length) if x == "epoch" else before[epoch] + r["iter"]
        elif x == "epoch":
            pos = float(epoch)
        else:
            pos = before.get(epoch, total) + length
        xs.append(pos)
        ys.append(float(value))
    return xs, ys


def logged_keys(records):
    keys = OrderedDict()
    for r in records:
        for k, v in r.items():
            if k not in ("mode", "epoch", "iter") and isinstance(v, int | float):
                keys[k] = None
    return list(keys)


def plot_curve(logs, keys, out, legend=None, x="epoch", title=None):
    """Draw ``keys`` of every log in ``logs`` (paths) into the PNG ``out``; returns the
    curves as ``{(log, key): (xs, ys)}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if legend is None:
        legend = [osp.basename(p).removesuffix(".json") for p in logs]
    if len(legend) != len(logs):
        raise AnalysisError(f"--legend: {len(legend)} names for {len(logs)} logs; give one a log")
    records = {path: load_log(path) for path in logs}
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
    plot.add_argument("logs", nargs="+", help="json log files (.log.json)")
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
