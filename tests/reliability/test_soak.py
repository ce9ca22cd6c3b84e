"""Soak test: the demo Mask R-CNN trained for 2,000 iterations with two data-loader workers
keeps its host memory steady.

``tools/train.py`` trains ``configs/demo/mask_rcnn_r18_fpn_demo.py`` (2 images a batch, no
evaluation) on a demo dataset drawn by ``tools/make_demo_dataset.py`` into a temporary
folder. ``MemoryProbeHook`` (``tests/reliability/memory_probe.py``) records the memory of
the training process and its worker processes every 100 iterations (RSS, PSS and USS
summed over the process tree). After a warm-up of the first epoch and the first 100
iterations of the second (600 iterations; see plan()):

- RSS summed over the tree may not grow by more than 5 % over its value at iteration 600;
- PSS (the memory the tree really holds: pages shared between processes divided among
  them) at the end of each later epoch may not grow by more than 5 % over its value at the
  end of the second epoch (within an epoch PSS rises as the training process writes to
  pages it shares with the workers it forked for that epoch; see summarize()).

Epochs are 500 iterations (1,000 images), so the run crosses three epoch ends (the workers
are started again each epoch) and writes four checkpoints.

Marked ``slow`` (about 10 minutes on 2 CPU cores): run by ``make test-slow``. A quicker
check with fewer iterations::

    SOAK_ITERS=200 .venv/bin/python -m pytest -q -m slow tests/reliability/test_soak.py -s
    .venv/bin/python tests/reliability/test_soak.py --iters 200   # as a script: prints a table

(up to 500 iterations, a single epoch: the warm-up is the first 100 iterations and only RSS
is checked).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "configs" / "demo" / "mask_rcnn_r18_fpn_demo.py"

ITERS = int(os.environ.get("SOAK_ITERS", "2000"))
INTERVAL = 100  # iterations between memory samples
MAX_GROWTH = 0.05  # allowed growth of RSS and PSS over the baseline
IMGS_PER_GPU = 2
WORKERS = 2
MAX_ITERS_PER_EPOCH = 500
SECONDS_PER_ITER_LIMIT = 6.0  # timeout of the training run, per iteration (~0.25 s here)

CONFIG = """\
_base_ = [{base!r}]
custom_imports = dict(imports=["tests.reliability.memory_probe"])
data = dict(
    imgs_per_gpu={imgs_per_gpu},
    workers_per_gpu={workers},
    train=dict(ann_file={train_ann!r}, img_prefix={train_img!r}),
    val=dict(ann_file={val_ann!r}, img_prefix={val_img!r}),
    test=dict(ann_file={val_ann!r}, img_prefix={val_img!r}),
)
total_epochs = {epochs}
checkpoint_config = dict(interval=1, max_keep_ckpts=1)
log_config = dict(interval=50, hooks=[dict(type="TextLoggerHook")])
custom_hooks = [dict(type="MemoryProbeHook", out_file={probe!r}, interval={interval})]
"""


def plan(iters):
    """``(iterations per epoch, epochs, warm-up)`` for a run of at least ``iters`` iterations
    (rounded up to whole epochs).

    The warm-up is the first epoch and the first sample of the second: the workers of the
    first epoch are forked from a process that has not trained yet (no optimizer state, no
    allocator caches); those of later epochs from the trained process, whose memory then
    counts in their RSS and is shared with them copy-on-write. With a single epoch it is the
    first sample.
    """
    if iters < 2 * INTERVAL:
        raise ValueError(f"a soak needs at least {2 * INTERVAL} iterations, got {iters}")
    per_epoch = min(iters, MAX_ITERS_PER_EPOCH)
    epochs = math.ceil(iters / per_epoch)
    warmup = per_epoch + INTERVAL if epochs > 1 else INTERVAL
    return per_epoch, epochs, warmup


def _env():
    environ = dict(os.environ)
    environ["PYTHONPATH"] = str(ROOT) + os.pathsep + environ.get("PYTHONPATH", "")
    return environ


def _trend(samples, key):
    """``{baseline, peak, peak_growth, final_growth, slope}`` of ``key`` over ``samples``
    (the first is the baseline; slope: least squares, MiB per 1,000 iterations)."""
    iters = [s["iter"] for s in samples]
    values = [s[key] for s in samples]
    base = values[0]
    mean_iter, mean_value = sum(iters) / len(iters), sum(values) / len(values)
    var = sum((i - mean_iter) ** 2 for i in iters)
    cov = sum((i - mean_iter) * (v - mean_value) for i, v in zip(iters, values))
    return {
        "baseline": base,
        "peak": max(values),
        "peak_growth": max(values) / base - 1,
        "final_growth": values[-1] / base - 1,
        "slope": 1000 * cov / var if var else 0.0,
    }


def summarize(samples, warmup, per_epoch):
    """Growth after the warm-up, as the test checks it.

    - ``rss`` (and ``main_rss``, ``gc_objects``): every sample from iteration ``warmup`` on,
      against the one at ``warmup``.
    - ``pss`` (and ``uss``): the samples taken at the end of an epoch, from ``warmup`` on,
      against the first of them. Within an epoch PSS climbs as the main process writes to
      memory it still shares with the workers it forked for that epoch (copy-on-write: each
      worker keeps the old page), and drops when the workers exit; at the end of an epoch
      that rise has levelled off, so those samples compare like with like (None when the run
      has fewer than two such samples).
    """
    after = [s for s in samples if s["iter"] >= warmup]
    if len(after) < 2:
        raise ValueError(f"need two samples from iteration {warmup} on, got {len(after)}")
    out = {"baseline_iter": after[0]["iter"], "last_iter": after[-1]["iter"]}
    for key in ("rss", "main_rss", "gc_objects"):
        out[key] = _trend(after, key)
    ends = [s for s in after if s["iter"] % per_epoch == 0]
    out["epoch_end_iters"] = [s["iter"] for s in ends]
    for key in ("pss", "uss"):
        out[key] = _trend(ends, key) if len(ends) >= 2 else None
    out["pss_all"] = {"min": min(s["pss"] for s in after), "max": max(s["pss"] for s in after)}
    return out


def growth_failures(summary):
    """Messages for each measure that grew by more than ``MAX_GROWTH``."""
    failures = []
    for key, what in (("rss", "RSS, all samples"), ("pss", "PSS, at epoch ends")):
        trend = summary[key]
        if trend is not None and trend["peak_growth"] > MAX_GROWTH:
            failures.append(
                f"{what}: grew by {100 * trend['peak_growth']:.1f} % after the warm-up, from "
                f"{trend['baseline']} MiB to a peak of {trend['peak']} MiB"
            )
    return failures


def table(samples):
    """The samples as a markdown table (MiB)."""
    rows = [
        "| iter | epoch | time (s) | RSS total | PSS total | USS total | main RSS | main PSS "
        "| workers | gc objects |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in samples:
        rows.append(
            f"| {s['iter']} | {s['epoch']} | {s['time']:.0f} | {s['rss']:.0f} | {s['pss']:.0f} "
            f"| {s['uss']:.0f} | {s['main_rss']:.0f} | {s['main_pss']:.0f} | {s['children']} "
            f"| {s['gc_objects']} |"
        )
    return "\n".join(rows)


def _read_samples(path):
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def run_soak(root, iters=ITERS, echo=print):
    """Draw the demo data into ``root``, train there, return ``(samples, info)``.

    ``info`` holds ``per_epoch``, ``epochs``, ``warmup``, ``wall_time`` (s), ``returncode``,
    ``work_dir`` and ``log`` (the training output).
    """
    root = Path(root)
    per_epoch, epochs, warmup = plan(iters)
    data = root / "data"
    start = time.monotonic()
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_demo_dataset.py"), str(data),
         "--num-train", str(per_epoch * IMGS_PER_GPU), "--num-val", "8"],
        check=True, cwd=ROOT, env=_env(), capture_output=True, text=True,
    )  # fmt: skip
    echo(f"demo data: {per_epoch * IMGS_PER_GPU} train images ({time.monotonic() - start:.0f} s)")
    probe = root / "memory.jsonl"
    config = root / "soak.py"
    config.write_text(
        CONFIG.format(
            base=str(DEMO_CONFIG),
            imgs_per_gpu=IMGS_PER_GPU,
            workers=WORKERS,
            train_ann=str(data / "annotations" / "instances_train.json"),
            train_img=str(data / "train") + "/",
            val_ann=str(data / "annotations" / "instances_val.json"),
            val_img=str(data / "val") + "/",
            epochs=epochs,
            probe=str(probe),
            interval=INTERVAL,
        )
    )
    work_dir = root / "work"
    log = root / "train.log"
    timeout = 120 + SECONDS_PER_ITER_LIMIT * per_epoch * epochs
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "train.py"), str(config),
             "--work-dir", str(work_dir), "--no-validate", "--seed", "0"],
            cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        shown = 0
        while proc.poll() is None:
            if time.monotonic() - start > timeout:
                proc.kill()
                proc.wait()
                break
            time.sleep(2)
            samples = _read_samples(probe)
            for s in samples[shown:]:
                echo(
                    f"iter {s['iter']:5d}  {s['time']:7.0f} s  RSS {s['rss']:7.0f} MiB  "
                    f"PSS {s['pss']:7.0f} MiB  main RSS {s['main_rss']:6.0f} MiB  "
                    f"workers {s['children']}"
                )
            shown = len(samples)
    info = {
        "per_epoch": per_epoch,
        "epochs": epochs,
        "warmup": warmup,
        "wall_time": time.monotonic() - start,
        "returncode": proc.returncode,
        "work_dir": work_dir,
        "log": log.read_text(errors="replace"),
    }
    return _read_samples(probe), info


@pytest.mark.slow
def test_host_memory_steady_over_soak(tmp_path):
    samples, info = run_soak(tmp_path, ITERS)
    assert info["returncode"] == 0, info["log"][-5000:]
    total = info["per_epoch"] * info["epochs"]
    final = torch.load(info["work_dir"] / "latest.pth", weights_only=True, mmap=True)
    assert (final["meta"]["epoch"], final["meta"]["iter"]) == (info["epochs"], total)
    # one sample every INTERVAL iterations, each with both data-loader workers alive
    assert [s["iter"] for s in samples] == list(range(INTERVAL, total + 1, INTERVAL))
    assert all(s["children"] == WORKERS for s in samples), [s["children"] for s in samples]

    summary = summarize(samples, info["warmup"], info["per_epoch"])
    print(f"\n{table(samples)}\n{json.dumps(summary, indent=1)}")
    print(f"{total} iterations in {info['wall_time']:.0f} s")
    failures = growth_failures(summary)
    assert not failures, (
        "host memory of the training process and its workers grew:\n"
        + "\n".join(failures)
        + f"\n{table(samples)}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description="Soak the demo training and print its memory")
    parser.add_argument("--iters", type=int, default=ITERS, help="training iterations")
    parser.add_argument("--work-dir", help="folder for the data and run (default: a temp dir)")
    parser.add_argument("--json", help="also write the samples and summary to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        samples, info = run_soak(args.work_dir or tmp, args.iters)
        if info["returncode"] != 0:
            print(info["log"][-5000:])
            return 1
        summary = summarize(samples, info["warmup"], info["per_epoch"])
        print(table(samples))
        print(json.dumps(summary, indent=1))
        total = info["per_epoch"] * info["epochs"]
        print(f"{total} iterations in {info['wall_time']:.0f} s")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"samples": samples, "summary": summary, "iters": total,
                           "wall_time": info["wall_time"]}, f, indent=1)  # fmt: skip
        failures = growth_failures(summary)
        print("\n".join(failures) or "steady")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
