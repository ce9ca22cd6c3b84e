"""tools/analysis_tools/: analyze_logs.py, eval_metric.py, confusion_matrix.py and
analyze_results.py, run as users run them, on a demo dataset, hand-made results (the ground
truth's boxes moved a little) and a json log the test writes in TextLoggerHook's format.

The tools run in this process as their ``__main__`` blocks run them (``call_tool``); one
test runs each script in a subprocess, where the process (one error line, the exit status,
no traceback) is the point."""

import json
import pickle
import re

import cv2
import numpy as np
import pytest

from tests.engine.cli_utils import (
    ROOT,
    call_tool,
    load_tool,
    run_python,
    run_tool_here,
    tool_module,
)

TOOLS = ROOT / "tools" / "analysis_tools"
DEMO_CONFIG = ROOT / "configs" / "demo" / "mask_rcnn_r18_fpn_demo.py"
NUM_VAL = 4
METRIC_LINE = re.compile(r"^(\w[\w@]*): (-?\d+\.\d{4})$", re.M)


def _tool(name, *args, cwd, expect_ok=True):
    """``python tools/analysis_tools/NAME.py ARGS`` in ``cwd``, run in this process; its
    output (a failing run's without a traceback)."""
    status, out = call_tool(TOOLS / f"{name}.py", *args, cwd=cwd)
    assert (status == 0) == expect_ok, out
    return out


def _load(name):
    """``tools/analysis_tools/NAME.py`` imported as a module."""
    return tool_module(TOOLS / f"{name}.py")


def _assert_picture(path, min_size=(100, 100)):
    img = cv2.imread(str(path))
    assert img is not None, path
    assert img.shape[0] >= min_size[0] and img.shape[1] >= min_size[1]
    assert img.std() > 5  # drawn, not blank
    return img


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# ------------------------------------------------------------------ analyze_logs


def _write_log(path, times, losses, maps, iters=4, interval=2):
    """A TextLoggerHook json log: training records every ``interval`` iterations of
    ``iters`` an epoch, a validation record after each epoch."""
    lines, k = [], 0
    for epoch in range(1, len(maps) + 1):
        for it in range(interval, iters + 1, interval):
            lines.append(dict(mode="train", epoch=epoch, iter=it, lr=0.01, memory=100,
                              time=times[k], data_time=0.01, loss_cls=losses[k],
                              loss=2 * losses[k]))  # fmt: skip
            k += 1
        lines.append(dict(mode="val", epoch=epoch, iter=iters, bbox_mAP=maps[epoch - 1]))
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


@pytest.fixture
def logs(tmp_path):
    a = _write_log(tmp_path / "a.log.json", [0.5, 0.3, 0.2, 0.8, 0.4, 0.1],
                   [1.0, 0.8, 0.7, 0.6, 0.5, 0.45], [0.1, 0.3, 0.4])  # fmt: skip
    b = _write_log(tmp_path / "b.log.json", [0.2] * 6, [0.9, 0.7, 0.5, 0.4, 0.3, 0.2],
                   [0.2, 0.35, 0.5])  # fmt: skip
    return a, b


def test_plot_curve_overlays_runs_on_epoch_and_iter_axes(logs, tmp_path):
    a, b = logs
    args = ["plot_curve", a, b, "--keys", "loss_cls", "bbox_mAP", "--legend", "run_a", "run_b"]
    out = _tool("analyze_logs", *args, "--out", tmp_path / "c.png", cwd=tmp_path)
    assert "written to" in out
    width, height = _png_size(tmp_path / "c.png")
    assert (width, height) == (800, 640)  # 8 x 3.2 inches a key at 100 dpi, two keys
    _assert_picture(tmp_path / "c.png")

    tool = _load("analyze_logs")
    records = tool.load_log(str(a))
    xs, ys = tool.curve(records, "loss_cls", "iter")
    assert xs == [2, 4, 6, 8, 10, 12] and ys == [1.0, 0.8, 0.7, 0.6, 0.5, 0.45]
    assert tool.curve(records, "loss_cls", "epoch")[0] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert tool.curve(records, "bbox_mAP", "epoch") == ([1.0, 2.0, 3.0], [0.1, 0.3, 0.4])
    assert tool.curve(records, "bbox_mAP", "iter")[0] == [4, 8, 12]
    curves = tool.plot_curve([str(a), str(b)], ["bbox_mAP"], str(tmp_path / "d.png"), x="iter")
    assert curves[(str(b), "bbox_mAP")] == ([4, 8, 12], [0.2, 0.35, 0.5])


def _records(epoch, iters, iters_per_epoch=None, val=False):
    """Training records at ``iters`` of ``epoch`` (``loss`` = the global iteration, from 8
    iterations an epoch), then an evaluation record when ``val``."""
    records = [dict(mode="train", epoch=epoch, iter=it, loss=float((epoch - 1) * 8 + it))
               for it in iters]  # fmt: skip
    if val:
        records.append(dict(mode="val", epoch=epoch, iter=8, bbox_mAP=0.1 * epoch))
    if iters_per_epoch:
        for r in records:
            r["iters_per_epoch"] = iters_per_epoch
    return records


def _write_records(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.mark.parametrize("iters_per_epoch", [None, 8], ids=["old_log", "new_log"])
def test_plot_curve_places_an_interrupted_and_resumed_runs_records(tmp_path, iters_per_epoch):
    # 8 iterations an epoch, logged every 2; stopped by a signal after iteration 6 of epoch 2
    # (iter_14.pth), resumed from there with --auto-resume: a second log in the work dir
    tool = _load("analyze_logs")
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    first = _write_records(work_dir / "20260101_100000.log.json",
                           _records(1, [2, 4, 6, 8], iters_per_epoch, val=True)
                           + _records(2, [2, 4, 6], iters_per_epoch))  # fmt: skip
    resumed = _write_records(work_dir / "20260101_110000.log.json",
                             _records(2, [8], iters_per_epoch, val=True)
                             + _records(3, [2, 4, 6, 8], iters_per_epoch, val=True))  # fmt: skip
    at_iter = [2.0, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24]
    # each log on its own: its records where they were in the run
    curves = tool.plot_curve([first, resumed], ["loss"], str(tmp_path / "a.png"), x="iter")
    assert curves[(first, "loss")][0] == at_iter[:7]
    assert curves[(resumed, "loss")][0] == at_iter[7:]
    curves = tool.plot_curve([first, resumed], ["loss"], str(tmp_path / "b.png"))
    assert curves[(first, "loss")][0] == pytest.approx([x / 8 for x in at_iter[:7]])
    assert curves[(resumed, "loss")][0] == pytest.approx([x / 8 for x in at_iter[7:]])
    # the work dir, or the logs joined by commas: one run, one curve, losses at their places
    for run in (str(work_dir), f"{first},{resumed}"):
        curves = tool.plot_curve([run], ["loss", "bbox_mAP"], str(tmp_path / "c.png"), x="iter")
        assert curves[(run, "loss")] == (at_iter, at_iter)
        assert curves[(run, "bbox_mAP")] == ([8, 16, 24], pytest.approx([0.1, 0.2, 0.3]))
    out = _tool("analyze_logs", "plot_curve", work_dir, "--keys", "loss", "--out",
                tmp_path / "d.png", cwd=tmp_path)  # fmt: skip
    assert "written to" in out
    _assert_picture(tmp_path / "d.png")

    # resumed from epoch_1.pth instead: epoch 2 redone; its first records are dropped
    redone = _records(2, [2, 4, 6, 8], iters_per_epoch, val=True)
    for r in redone[:4]:
        r["loss"] += 100.0  # told apart from the first run's
    _write_records(work_dir / "20260101_110000.log.json", redone)
    xs, ys = tool.curve(tool.load_run(str(work_dir)), "loss", "epoch")
    assert xs == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0])
    assert ys == [2, 4, 6, 8, 110, 112, 114, 116]


def test_plot_curve_places_a_partial_epoch_by_its_records_length(tmp_path):
    # a log that stops in its first epoch: only iters_per_epoch says how long the epoch is
    tool = _load("analyze_logs")
    log = _write_records(tmp_path / "x.log.json", _records(1, [2, 4, 6], 8))
    assert tool.curve(tool.load_log(log), "loss", "epoch")[0] == [0.25, 0.5, 0.75]
    # an evaluation by iterations (EvalHook(by_epoch=False)) at its iteration, not epoch end
    records = _records(1, [4, 8], 8) + [
        dict(mode="val", epoch=2, iter=4, iters_per_epoch=8, bbox_mAP=0.5)
    ]
    assert tool.curve(records, "bbox_mAP", "iter") == ([12], [0.5])
    assert tool.logged_keys(records) == ["loss", "bbox_mAP"]


def test_plot_curve_errors_name_the_log_and_its_keys(logs, tmp_path):
    a, b = logs
    out = _tool("analyze_logs", "plot_curve", a, "--keys", "segm_mAP", "--out",
                tmp_path / "c.png", cwd=tmp_path, expect_ok=False)  # fmt: skip
    assert f"{a}: no records with key(s) ['segm_mAP']" in out
    assert "'loss_cls'" in out and "'bbox_mAP'" in out and "Traceback" not in out
    out = _tool("analyze_logs", "plot_curve", tmp_path / "missing.json", "--out",
                tmp_path / "c.png", cwd=tmp_path, expect_ok=False)  # fmt: skip
    assert "missing.json' does not exist" in out and "Traceback" not in out
    (tmp_path / "text.log").write_text("2026-12-03 INFO Epoch [1][2/4]\n")
    out = _tool("analyze_logs", "cal_train_time", tmp_path / "text.log", cwd=tmp_path,
                expect_ok=False)  # fmt: skip
    assert "line 1: not JSON" in out and "Traceback" not in out
    out = _tool("analyze_logs", "plot_curve", a, b, "--legend", "x", "--out",
                tmp_path / "c.png", cwd=tmp_path, expect_ok=False)  # fmt: skip
    assert "--legend: 1 names for 2 logs" in out


def test_cal_train_time_leaves_out_each_epochs_first_record(tmp_path):
    # three records an epoch, each covering two iterations; the first is the slow warm-up
    times = np.array([2.0, 0.3, 0.5, 1.5, 0.2, 0.4, 1.0, 0.6, 0.1]).reshape(3, 3)
    log = _write_log(tmp_path / "t.log.json", times.ravel().tolist(), [1.0] * 9,
                     [0.1, 0.2, 0.3], iters=6)  # fmt: skip
    out = _tool("analyze_logs", "cal_train_time", log, cwd=tmp_path)
    assert "each epoch's first training record (data loader warm-up) left out" in out
    for epoch, t in enumerate(times[:, 1:], 1):  # averages 0.4, 0.3, 0.35
        assert (f"epoch {epoch}: average {t.mean():.4f} s/iter, fastest {t.min():.4f}, "
                f"slowest {t.max():.4f}\n") in out  # fmt: skip
    assert "overall: average 0.3500 s/iter, fastest 0.1000, slowest 0.6000" in out
    assert "fastest epoch 2, slowest epoch 1" in out

    out = _tool("analyze_logs", "cal_train_time", log, "--include-outliers", cwd=tmp_path)
    assert "every training record counted (--include-outliers)" in out
    for epoch, t in enumerate(times, 1):
        assert (f"epoch {epoch}: average {t.mean():.4f} s/iter, fastest {t.min():.4f}, "
                f"slowest {t.max():.4f}\n") in out  # fmt: skip
    assert f"overall: average {times.mean():.4f} s/iter, fastest 0.1000, slowest 2.0000" in out
    assert "fastest epoch 3, slowest epoch 1" in out  # averages 0.933, 0.7, 0.567

    # records covering different numbers of iterations weigh so; a lone record is kept
    tool = _load("analyze_logs")
    records = [dict(mode="train", epoch=1, iter=it, time=t)
               for it, t in ((1, 5.0), (2, 0.4), (5, 0.2))]  # fmt: skip
    records += [dict(mode="val", epoch=1, iter=5, bbox_mAP=0.1),
                dict(mode="train", epoch=2, iter=5, time=0.7)]  # fmt: skip
    stats = tool.train_times(records)
    assert stats[1] == pytest.approx((0.25, 0.2, 0.4, 4.0, False))  # (0.4 * 1 + 0.2 * 3) / 4
    assert stats[2] == pytest.approx((0.7, 0.7, 0.7, 5.0, True))
    assert tool.train_times(records, include_outliers=True)[1][0] == pytest.approx(1.2)
    out = _tool("analyze_logs", "cal_train_time",
                _write_log(tmp_path / "one.log.json", [0.9], [1.0], [0.1], iters=2),
                cwd=tmp_path)  # fmt: skip
    assert (
        "epoch 1: average 0.9000 s/iter, fastest 0.9000, slowest 0.9000 (its only record, kept)"
        in out
    )


# ------------------------------------------------------------------ dataset and results


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A demo dataset of NUM_VAL val images in ``cwd/data/demo`` (the demo config's path)
    and hand-made results: each ground-truth box moved by a pixel or two, with a rectangle
    mask, plus a false detection."""
    cwd = tmp_path_factory.mktemp("analysis")
    load_tool("make_demo_dataset").make_dataset(
        str(cwd / "data" / "demo"), num_train=2, num_val=NUM_VAL, seed=5
    )
    ann = json.loads((cwd / "data/demo/annotations/instances_val.json").read_text())
    cat_ids = sorted(c["id"] for c in ann["categories"])
    rng = np.random.default_rng(0)
    results = []
    for img in sorted(ann["images"], key=lambda i: i["id"]):
        boxes = [[] for _ in cat_ids]
        for a in ann["annotations"]:
            if a["image_id"] == img["id"] and not a.get("iscrowd", 0):
                x, y, w, h = a["bbox"]
                box = np.array([x, y, x + w, y + h]) + rng.uniform(-2, 2, 4)
                boxes[cat_ids.index(a["category_id"])].append([*box, rng.uniform(0.5, 1)])
        boxes[0].append([5, 5, 25, 25, 0.4])  # a false detection
        per_class = [np.array(b, np.float32).reshape(-1, 5) for b in boxes]
        masks = []
        for b in per_class:
            ms = []
            for x1, y1, x2, y2, _ in b:
                m = np.zeros((img["height"], img["width"]), bool)
                m[int(max(y1, 0)) : int(y2), int(max(x1, 0)) : int(x2)] = True
                ms.append(m)
            masks.append(ms)
        results.append((per_class, masks))
    with open(cwd / "results.pkl", "wb") as f:
        pickle.dump(results, f)
    return cwd, results, ann


def test_eval_metric_prints_what_test_py_prints(demo, monkeypatch, capsys):
    cwd, results, _ = demo
    out = _tool("eval_metric", DEMO_CONFIG, "results.pkl", "--eval", "bbox", "segm", cwd=cwd)
    ours = dict(METRIC_LINE.findall(out))
    assert 0.5 < float(ours["bbox_mAP"]) < 1 and 0 < float(ours["segm_mAP"]) < 1, out

    # tools/test.py --eval on the same results (its inference replaced by them)
    import torch

    from mmdet_like.apis import build_detector
    from mmdet_like.engine import load_config

    monkeypatch.chdir(cwd)
    cfg = load_config(str(DEMO_CONFIG))
    model = build_detector(cfg.model, cfg.get("train_cfg"), cfg.get("test_cfg"))
    classes = ("circle", "rectangle", "triangle", "star")
    torch.save({"state_dict": model.state_dict(), "meta": {"CLASSES": classes}}, "m.pth")
    test_tool = load_tool("test")
    monkeypatch.setattr(test_tool, "single_gpu_test", lambda *args, **kwargs: results)
    capsys.readouterr()
    test_tool.main([str(DEMO_CONFIG), "m.pth", "--eval", "bbox", "segm"])
    theirs = dict(METRIC_LINE.findall(capsys.readouterr().out))
    assert len(theirs) == 24 and ours == theirs


def test_eval_metric_errors(demo, tmp_path):
    cwd, results, _ = demo
    out = _tool("eval_metric", DEMO_CONFIG, "nothere.pkl", "--eval", "bbox", cwd=cwd,
                expect_ok=False)  # fmt: skip
    assert "results file 'nothere.pkl' does not exist" in out and "Traceback" not in out
    with open(tmp_path / "short.pkl", "wb") as f:
        pickle.dump(results[:2], f)
    out = _tool("eval_metric", DEMO_CONFIG, tmp_path / "short.pkl", "--eval", "bbox", cwd=cwd,
                expect_ok=False)  # fmt: skip
    assert f"results of 2 images, the config's test dataset has {NUM_VAL}" in out
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    out = _tool("eval_metric", DEMO_CONFIG, tmp_path / "bad.pkl", "--eval", "bbox", cwd=cwd,
                expect_ok=False)  # fmt: skip
    assert "cannot be read as a results pickle" in out and "Traceback" not in out


# ------------------------------------------------------------------ confusion_matrix


def test_confusion_matrix_counts_a_hand_made_case(demo, tmp_path):
    cwd, _, ann = demo
    cat_ids = sorted(c["id"] for c in ann["categories"])
    bg = len(cat_ids)
    expected = np.zeros((bg + 1, bg + 1), np.int64)
    results = []
    for i, img in enumerate(sorted(ann["images"], key=lambda m: m["id"])):
        per_class = [[] for _ in cat_ids]
        gts = [a for a in ann["annotations"] if a["image_id"] == img["id"]]
        assert gts and not any(a.get("iscrowd", 0) for a in gts)
        for j, a in enumerate(gts):
            x, y, w, h = a["bbox"]
            label = cat_ids.index(a["category_id"])
            box = [x, y, x + w, y + h, 0.9]
            if i == 1 and j == 0:  # found as the next class
                per_class[(label + 1) % bg].append(box)
                expected[label, (label + 1) % bg] += 1
            elif i == 2 and j == 0:  # missed
                expected[label, bg] += 1
            else:
                per_class[label].append(box)
                expected[label, label] += 1
            if i == 0 and j == 0:  # a duplicate of a matched box: a false positive
                per_class[label].append([x + 1, y, x + w + 1, y + h, 0.8])
                expected[bg, label] += 1
        per_class[2].append([200, 200, 220, 220, 0.5])  # outside the image: background
        expected[bg, 2] += 1
        per_class[3].append([x, y, x + w, y + h, 0.2])  # below --score-thr: not counted
        results.append([np.array(b, np.float32).reshape(-1, 5) for b in per_class])
    with open(tmp_path / "cm.pkl", "wb") as f:
        pickle.dump(results, f)
    out = _tool("confusion_matrix", DEMO_CONFIG, tmp_path / "cm.pkl", tmp_path / "cm",
                "--score-thr", "0.3", cwd=cwd)  # fmt: skip
    assert f"confusion matrix of {NUM_VAL} images written to" in out
    saved = json.loads((tmp_path / "cm" / "confusion_matrix.json").read_text())
    assert saved["classes"] == ["circle", "rectangle", "triangle", "star", "background"]
    assert np.array_equal(np.array(saved["counts"]), expected)
    rows = expected.sum(axis=1, keepdims=True)
    assert np.allclose(saved["normalized"], expected / np.maximum(rows, 1))
    _assert_picture(tmp_path / "cm" / "confusion_matrix.png")


@pytest.mark.parametrize(
    "names",
    [
        ["circle", "background"],  # a figure narrower than the title
        [f"a_rather_long_class_name_{i}" for i in range(12)] + ["background"],
        ["a class name far longer than the matrix is wide, " * 2, "b", "background"],
        [f"class_{i}" for i in range(80)] + ["background"],  # COCO's classes: no numbers
    ],
    ids=["two_classes", "long_names", "very_long_name", "81_classes"],
)
def test_confusion_matrix_picture_holds_its_title_and_class_names(tmp_path, monkeypatch, names):
    import matplotlib.pyplot as plt

    tool = _load("confusion_matrix")
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure the tool draws
    out = tmp_path / "cm.png"
    title = "confusion matrix (score >= 0.3, IoU >= 0.5)"
    tool.plot_matrix(np.eye(len(names)), names, str(out), title)
    (fig,) = figures
    renderer = fig.canvas.get_renderer()  # the saved picture's (saved at the figure's dpi)
    assert _png_size(out) == (round(fig.bbox.width), round(fig.bbox.height))
    ax = fig.axes[0]
    (heading,) = [t for t in fig.findobj(plt.Text) if t.get_text() == title]
    texts = [heading, ax.xaxis.label, ax.yaxis.label]
    texts += ax.get_xticklabels() + ax.get_yticklabels() + fig.axes[1].get_yticklabels()
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    for text in texts:
        box = text.get_window_extent(renderer)
        inside = (box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.width
                  and box.y1 <= fig.bbox.height)  # fmt: skip
        assert inside, (text.get_text()[:30], box.bounds, fig.bbox.bounds)
    assert ax.get_window_extent(renderer).width > 2 * fig.dpi  # the matrix not squeezed
    plt.close(fig)


def test_confusion_matrix_matching_is_greedy_by_score_and_one_to_one():
    tool = _load("confusion_matrix")
    gts = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    dets = np.array([[0, 0, 10, 9], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    pairs, lone_gt, lone_det = tool.match_image(
        gts, np.array([0, 1]), dets, np.array([0.5, 0.9, 0.7]), np.array([0, 0, 1]), 0.5
    )
    assert pairs == [(0, 1)] and lone_gt == [1] and lone_det == [2, 0]


# ------------------------------------------------------------------ analyze_results


def test_analyze_results_ranks_images_by_their_own_ap_and_draws_them(demo, tmp_path):
    cwd, results, ann = demo
    results = list(results)
    worst = 2
    boxes, masks = results[worst]
    results[worst] = ([b + np.array([30, 30, 30, 30, 0], np.float32) for b in boxes], masks)
    with open(tmp_path / "r.pkl", "wb") as f:
        pickle.dump(results, f)
    out = _tool("analyze_results", DEMO_CONFIG, tmp_path / "r.pkl", tmp_path / "show",
                "--topk", "2", cwd=cwd)  # fmt: skip
    assert f"{NUM_VAL} images ranked by bbox AP; the best 2 and worst 2 drawn" in out

    # each image's AP equals pycocotools run on a file holding that image alone
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = sorted(ann["images"], key=lambda m: m["id"])
    cat_ids = sorted(c["id"] for c in ann["categories"])
    aps = json.loads((tmp_path / "show" / "per_image_ap.json").read_text())
    for img, result in zip(images, results):
        own = [a for a in ann["annotations"] if a["image_id"] == img["id"]]
        alone = dict(ann, images=[img], annotations=own)
        gt = COCO()
        gt.dataset = alone
        gt.createIndex()
        dets = [dict(image_id=img["id"], category_id=cat_ids[k],
                     bbox=[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                     score=float(b[4]))
                for k, per in enumerate(result[0]) for b in per]  # fmt: skip
        e = COCOeval(gt, gt.loadRes(dets), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
        assert aps[img["file_name"]] == pytest.approx(max(e.stats[0], 0.0), abs=1e-9)
    assert (
        min(aps, key=aps.get) == images[worst]["file_name"]
        and aps[images[worst]["file_name"]] < 0.2
    )
    best = sorted(images, key=lambda m: -aps[m["file_name"]])

    good = sorted((tmp_path / "show" / "good").glob("*.png"))
    bad = sorted((tmp_path / "show" / "bad").glob("*.png"))
    assert len(good) == 2 and len(bad) == 2
    stem = images[worst]["file_name"].rsplit(".", 1)[0]
    assert bad[0].name.startswith(f"00_{stem}_ap")
    assert good[0].name.startswith("00_" + best[0]["file_name"].rsplit(".", 1)[0])
    img = _assert_picture(bad[0])
    assert img.shape == (128 * 2 + 20, 2 * 128 * 2 + 6, 3)  # a title strip, two 2x pictures
    left, right = img[20:, :256], img[20:, 262:]
    assert not np.array_equal(left, right)  # ground truth and (moved) predictions differ


def test_analysis_tools_refuse_a_wrong_config_path(demo):
    cwd, _, _ = demo
    for name, extra in (("confusion_matrix", ["out"]), ("analyze_results", ["show"]),
                        ("eval_metric", ["--eval", "bbox"])):  # fmt: skip
        out = _tool(name, "nope.py", "results.pkl", *extra, cwd=cwd, expect_ok=False)
        assert "config file 'nope.py' does not exist" in out and "Traceback" not in out


def test_each_script_prints_one_error_line_and_exits_1(demo, logs, tmp_path):
    """Status 1, the error on one line, no traceback: the last script as a process, the
    others through their ``__main__`` block in this process (every script's block is
    ``sys.exit(run_tool(main))``: tests/test_tool_errors.py)."""
    cwd, _, _ = demo
    runs = [
        ("confusion_matrix", "nope.py", "results.pkl", "out"),
        ("analyze_results", "nope.py", "results.pkl", "show"),
        ("eval_metric", DEMO_CONFIG, "nothere.pkl", "--eval", "bbox"),
        ("analyze_logs", "plot_curve", logs[0], "--keys", "segm_mAP", "--out", tmp_path / "c.png"),
    ]
    for i, (name, *args) in enumerate(runs):
        run = run_python if i == len(runs) - 1 else run_tool_here
        out = run([TOOLS / f"{name}.py", *args], cwd, expect_rc=1)
        errors = [line for line in out.splitlines() if ": error: " in line]
        assert len(errors) == 1 and errors[0].startswith(f"{name}.py: error: "), out
        assert "does not exist" in errors[0] or "no records with key(s)" in errors[0], out
