"""tools/benchmark_accuracy.py: torchvision's model built to the config's sizes, its LR
schedule equal to ours, an end-to-end run of both sides on a tiny dataset, and the errors."""

import json
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from mmdet_like.engine import build_optimizer, load_config
from mmdet_like.engine.hooks.lr_updater import build_lr_updater_hook
from tests.datasets.tiny_data import rect_poly
from tests.engine.cli_utils import ROOT, env, load_tool

MASK_CONFIG = str(ROOT / "configs/small_data/mask_rcnn_r18_fpn_small.py")
FASTER_CONFIG = str(ROOT / "configs/small_data/faster_rcnn_r18_fpn_small.py")
TOOL = str(ROOT / "tools/benchmark_accuracy.py")
# the small config at 64 px, 2 images a batch, fewer proposals: a CPU-light end-to-end run
TINY_OPTIONS = [
    "data.train.pipeline.2.img_scale=(64,64)",
    "data.val.pipeline.1.img_scale=(64,64)",
    "data.imgs_per_gpu=2",
    "data.workers_per_gpu=0",
    "train_cfg.rpn_proposal.nms_pre=200",
    "train_cfg.rpn_proposal.nms_post=100",
    "train_cfg.rpn_proposal.max_num=100",
    "test_cfg.rpn.nms_pre=100",
    "test_cfg.rpn.nms_post=50",
    "test_cfg.rpn.max_num=50",
    "train_cfg.rcnn.sampler.num=32",
    "log_config.interval=1",
]


@pytest.fixture(scope="module")
def tool():
    return load_tool("benchmark_accuracy")


def _rect_dataset(root, num_images=6, size=64):
    """``num_images`` images of ``size`` px, each with 2 filled shapes (a rectangle of class
    "box", a triangle of class "wedge") on grey noise, annotated with boxes and polygons."""
    rng = np.random.default_rng(0)
    images, anns = [], []
    (root / "images").mkdir(parents=True)
    for i in range(num_images):
        img = rng.integers(90, 140, (size, size, 3), dtype=np.uint8)
        x1, y1 = (int(v) for v in rng.integers(2, 20, 2))
        w, h = (int(v) for v in rng.integers(14, 26, 2))
        cv2.rectangle(img, (x1, y1), (x1 + w - 1, y1 + h - 1), (30, 30, 220), -1)
        tri = np.array([[40, 60], [62, 60], [51, 38]], np.int32) - [int(i % 3) * 4, 0]
        cv2.fillPoly(img, [tri], (220, 200, 20))
        cv2.imwrite(str(root / "images" / f"{i}.png"), img)
        images.append(dict(id=i + 1, file_name=f"{i}.png", width=size, height=size))
        tx, ty = tri[:, 0], tri[:, 1]
        tri_box = [int(tx.min()), int(ty.min()), int(np.ptp(tx)), int(np.ptp(ty))]
        shapes = [
            (3, [x1, y1, w, h], rect_poly(x1, y1, x1 + w, y1 + h)),
            (5, tri_box, [float(v) for v in tri.reshape(-1)]),
        ]
        for k, (cat, box, poly) in enumerate(shapes):
            record = dict(id=2 * i + k + 1, image_id=i + 1, category_id=cat, bbox=box)
            anns.append(dict(record, iscrowd=0, area=box[2] * box[3], segmentation=[poly]))
    cats = [dict(id=5, name="wedge"), dict(id=3, name="box")]  # ids out of order
    ann = root / "ann.json"
    ann.write_text(json.dumps(dict(images=images, annotations=anns, categories=cats)))
    return ann, root / "images"


def _run(*args, timeout=120):
    cmd = [sys.executable, TOOL, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)


def test_torchvision_model_has_the_config_sizes(tool):
    cfg = load_config(MASK_CONFIG)
    model = tool.build_torchvision_model(cfg, num_classes=3)
    assert type(model).__name__ == "MaskRCNN"
    # anchors: base size (the stride) * scale 8, one size and 3 ratios per level
    assert model.rpn.anchor_generator.sizes == ((32.0,), (64.0,), (128.0,), (256.0,), (512.0,))
    assert model.rpn.anchor_generator.aspect_ratios[0] == (0.5, 1.0, 2.0)
    assert model.rpn.fg_bg_sampler.batch_size_per_image == 256
    assert model.rpn.fg_bg_sampler.positive_fraction == 0.5
    assert model.rpn._pre_nms_top_n == dict(training=1000, testing=1000)
    assert model.rpn._post_nms_top_n == dict(training=1000, testing=1000)
    heads = model.roi_heads
    assert heads.fg_bg_sampler.batch_size_per_image == 128
    assert heads.fg_bg_sampler.positive_fraction == 0.25
    assert heads.box_head.fc6.in_features == 64 * 7 * 7
    assert heads.box_head.fc7.out_features == 256
    assert heads.box_predictor.cls_score.out_features == 4  # background + 3
    assert heads.box_coder.weights == (10.0, 10.0, 5.0, 5.0)  # 1 / target_stds
    assert (heads.score_thresh, heads.nms_thresh, heads.detections_per_img) == (0.05, 0.5, 100)
    convs = [m for m in heads.mask_head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(64, 64), (64, 64)]
    assert heads.mask_predictor.conv5_mask.out_channels == 64
    assert heads.mask_predictor.mask_fcn_logits.out_channels == 4
    assert heads.mask_roi_pool.output_size == (14, 14)
    assert (model.transform.min_size, model.transform.max_size) == ((320,), 320)
    assert model.transform.size_divisible == 32
    np.testing.assert_allclose(model.transform.image_mean, [0.485, 0.456, 0.406], atol=1e-6)
    # full-width ResNet-18 with trained batch norm, 64-channel FPN
    body = model.backbone.body
    assert [body.layer1[0].conv1.in_channels, body.layer4[-1].conv2.out_channels] == [64, 512]
    assert isinstance(body.bn1, torch.nn.BatchNorm2d)
    assert all(p.requires_grad for p in body.parameters())
    assert model.backbone.out_channels == 64
    # a narrower, partly frozen ResNet and smaller anchors follow the config too
    cfg.model.backbone.update(base_channels=32, frozen_stages=1, norm_eval=True)
    cfg.model.neck.in_channels = [32, 64, 128, 256]
    cfg.model.rpn_head.anchor_generator.scales = [4]
    model = tool.build_torchvision_model(cfg, num_classes=1)
    body = model.backbone.body
    assert body.layer4[-1].conv2.out_channels == 256
    assert not any(p.requires_grad for p in body.layer1.parameters())
    assert all(p.requires_grad for p in body.layer2.parameters())
    assert model.rpn.anchor_generator.sizes[0] == (16.0,)
    faster = tool.build_torchvision_model(load_config(FASTER_CONFIG), num_classes=2)
    assert type(faster).__name__ == "FasterRCNN"


def test_plain_recipe_model_has_its_samplers_proposals_and_torchvision_defaults(tool):
    cfg = load_config(MASK_CONFIG)
    cfg.model.roi_head.bbox_roi_extractor.roi_layer.sampling_ratio = 0  # the plain: still 2
    cfg.train_cfg.rpn.assigner.pos_iou_thr = 0.6  # the plain: torchvision's 0.7
    model = tool.build_torchvision_model(cfg, num_classes=2, recipe="torchvision-plain")
    assert model.rpn.fg_bg_sampler.batch_size_per_image == 128
    assert model.rpn._pre_nms_top_n == dict(training=600, testing=300)
    assert model.rpn._post_nms_top_n == dict(training=300, testing=300)
    assert model.rpn.proposal_matcher.high_threshold == 0.7
    heads = model.roi_heads
    assert heads.fg_bg_sampler.batch_size_per_image == 64
    assert heads.fg_bg_sampler.positive_fraction == 0.25
    assert heads.box_roi_pool.sampling_ratio == heads.mask_roi_pool.sampling_ratio == 2
    assert heads.box_coder.weights == (10.0, 10.0, 5.0, 5.0)
    # the sizes still follow the config
    assert heads.box_head.fc7.out_features == 256
    assert heads.mask_predictor.conv5_mask.out_channels == 64
    assert (model.transform.min_size, model.transform.max_size) == ((320,), 320)
    faster = tool.build_torchvision_model(
        load_config(FASTER_CONFIG), num_classes=2, recipe="torchvision-plain"
    )
    assert faster.roi_heads.fg_bg_sampler.batch_size_per_image == 64
    with pytest.raises(tool.BenchmarkError, match="recipe"):
        tool.build_torchvision_model(cfg, num_classes=2, recipe="plain")


def test_plain_recipe_optimizer_schedule_and_sampler(tool):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = tool.plain_optimizer(model)
    assert type(optimizer).__name__ == "AdamW"
    # every parameter (conv and norm weights and biases) decayed by 1e-4, one LR
    grouped = [p for g in optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in grouped} == {id(p) for p in model.parameters()} and len(grouped) == 4
    assert {g["weight_decay"] for g in optimizer.param_groups} == {1e-4}
    num_iters = 300
    scheduler = tool.plain_lr_scheduler(optimizer, num_iters)
    lrs = []
    for _ in range(num_iters):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # linear from 0 over 100 iterations, then cosine from 2e-3 to 0 at iteration 300
    for i, want in ((0, 0.0), (1, 2e-5), (50, 1e-3), (100, 2e-3), (200, 1e-3),
                    (250, 1e-3 * (1 + np.cos(np.pi * 0.75)))):  # fmt: skip
        assert lrs[i] == pytest.approx(want, rel=1e-9, abs=1e-15), i
    assert 0 < lrs[-1] < 1e-6
    assert all(a > b for a, b in zip(lrs[100:], lrs[101:], strict=False))
    # batches of 4 drawn with replacement: repeats inside an epoch-sized window, seeded
    sampler = tool.ReplacementSampler(5, 40, seed=0)
    indices = list(sampler)
    assert len(sampler) == len(indices) == 40 and set(indices) <= set(range(5))
    assert any(len(set(indices[k : k + 5])) < 5 for k in range(0, 40, 5))
    assert list(tool.ReplacementSampler(5, 40, seed=0)) == indices
    assert list(tool.ReplacementSampler(5, 40, seed=1)) != indices


def test_our_lr_hook_gives_the_plain_recipe_schedule(tool):
    # the plain loop's schedule in our config (issue 28's swaps run it on our side)
    num_iters = 300
    hook = build_lr_updater_hook(
        dict(policy="cosine", by_epoch=False, warmup="linear", warmup_iters=100,
             warmup_ratio=0.0, min_lr_ratio=0.0, anneal_after_warmup=True)
    )  # fmt: skip
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=2e-3)
    runner = SimpleNamespace(
        optimizer=optimizer, iter=0, epoch=0, max_iters=num_iters, max_epochs=1,
        data_loader=range(num_iters),
    )  # fmt: skip
    hook.before_run(runner)
    hook.before_train_epoch(runner)
    for i in range(num_iters):
        runner.iter = i
        hook.before_train_iter(runner)
        want = 2e-3 * tool.plain_lr_factor(i, num_iters)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(want, rel=1e-12, abs=1e-18), i


def test_table_says_which_recipe_each_side_trained_with(tool):
    cfg = load_config(MASK_CONFIG)
    args = SimpleNamespace(config=MASK_CONFIG, device="cpu", iters=5, seed=0)
    metrics = dict(AP=0.5, AP50=0.7, AP75=0.4)
    rows = [
        dict(side=side, iterations=5, train_time_s=1.0, trainable_params=1e6, bbox=metrics,
             segm=metrics, train_images=6, val_images=2, recipe=recipe, batch=batch)
        for side, recipe, batch in (("ours", "config", 2), ("torchvision", "torchvision-plain", 4))
    ]  # fmt: skip
    table = tool.render_table(rows, args, cfg, with_masks=True)
    assert "5 iterations of 2 (ours) / 4 (torchvision) images" in table
    recipes = table.split("Recipes (how each side trained):")[1].split("Not matched")[0]
    ours, theirs = [line for line in recipes.splitlines() if line.startswith("- ")]
    assert ours.startswith("- ours: the config's")
    assert theirs.startswith("- torchvision: issue 28's plain loop: AdamW LR 2e-3")
    assert "not trained alike" in theirs
    # the batching is the plain recipe's, not a "not matched" note of the config's
    assert "GroupSampler" not in table.split("Not matched")[1]
    rows[1]["recipe"] = "config"
    assert "GroupSampler" in tool.render_table(rows, args, cfg, with_masks=True)


@pytest.mark.parametrize(
    "lr_config",
    [
        dict(policy="cosine", by_epoch=False, warmup="linear", warmup_iters=10,
             warmup_ratio=0.01, min_lr_ratio=0.01),
        dict(policy="cosine", by_epoch=False, warmup="exp", warmup_iters=5, min_lr=1e-4),
        dict(policy="step", by_epoch=False, step=[12, 25], gamma=0.2, warmup="constant",
             warmup_iters=4, warmup_ratio=0.3),
        dict(policy="poly", by_epoch=False, power=2.0, min_lr=1e-5),
        dict(policy="fixed", warmup="linear", warmup_iters=8),
    ],
)  # fmt: skip
def test_torchvision_lr_schedule_equals_ours(tool, lr_config):
    num_iters = 30
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    # two groups of different base LRs (bias_lr_mult), which an absolute min_lr tells apart
    opt_cfg = dict(type="SGD", lr=0.02, momentum=0.9, paramwise_cfg=dict(bias_lr_mult=2.0))
    ours_opt, tv_opt = build_optimizer(model, opt_cfg), build_optimizer(model, opt_cfg)
    hook = build_lr_updater_hook(lr_config)
    runner = SimpleNamespace(
        optimizer=ours_opt, iter=0, epoch=0, max_iters=num_iters, max_epochs=1,
        data_loader=range(num_iters),
    )  # fmt: skip
    hook.before_run(runner)
    hook.before_train_epoch(runner)
    scheduler = tool.torchvision_lr_scheduler(tv_opt, lr_config, num_iters)
    for i in range(num_iters):
        runner.iter = i
        hook.before_train_iter(runner)
        ours = [g["lr"] for g in ours_opt.param_groups]
        theirs = [g["lr"] for g in tv_opt.param_groups]
        np.testing.assert_allclose(theirs, ours, rtol=1e-12, err_msg=f"iteration {i}")
        tv_opt.step()
        scheduler.step()


def test_by_epoch_schedules_are_refused(tool):
    with pytest.raises(tool.BenchmarkError, match="by_epoch"):
        tool.check_lr_config(dict(policy="step", step=[8, 11]))


def test_both_sides_train_the_asked_iterations_and_are_evaluated(tool, tmp_path):
    ann, images = _rect_dataset(tmp_path / "data")
    out_json = tmp_path / "out.json"
    work_dir = tmp_path / "work"
    proc = _run(MASK_CONFIG, "--data", str(ann), str(ann), str(images), "--iters", "3",
                "--device", "cpu", "--work-dir", str(work_dir), "--out-json", str(out_json),
                "--cfg-options", *TINY_OPTIONS)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in table[1:]] == ["ours", "torchvision"]
    assert [row.split("|")[2].strip() for row in table[1:]] == ["3", "3"]
    result = json.loads(out_json.read_text())
    assert set(result["sides"]) == {"ours", "torchvision"}
    for side in result["sides"].values():
        assert side["iterations"] == 3
        assert side["train_images"] == 6 and side["val_images"] == 6
        assert side["cat_ids"] == [3, 5]  # classes in id order: "box", "wedge"
        for kind in ("bbox", "segm"):
            for value in side[kind].values():
                assert value == -1 or 0 <= value <= 1
    # the model was really trained and tested: logs of 3 iterations, detections in COCO form
    assert "Epoch [1][3/3]" in proc.stdout + proc.stderr
    assert "torchvision iter [3/3]" in proc.stdout
    for side in ("ours", "torchvision"):
        dets = json.loads((work_dir / side / "detections.json").read_text())
        assert set(dets) == {"bbox", "segm"}
        for det in dets["bbox"][:5]:
            assert det["category_id"] in (3, 5) and len(det["bbox"]) == 4


def test_missing_annotation_file_is_a_clear_error(tmp_path):
    ann, images = _rect_dataset(tmp_path / "data", num_images=1)
    missing = tmp_path / "nope" / "val.json"
    proc = _run(MASK_CONFIG, "--data", str(ann), str(missing), str(images), "--iters", "1")
    assert proc.returncode != 0
    assert str(missing) in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_config_that_is_not_a_two_stage_fpn_rcnn_is_refused(tmp_path):
    ann, images = _rect_dataset(tmp_path / "data", num_images=1)
    config = str(ROOT / "configs/rpn_r50_fpn_1x.py")
    proc = _run(config, "--data", str(ann), str(ann), str(images), "--iters", "1")
    assert proc.returncode != 0
    assert "not a two-stage FPN R-CNN" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_one_evaluation_scores_detections_of_either_format(tool, tmp_path):
    """The ground truth as detections scores AP 1 whether it comes as our per-class result
    or as torchvision's flat output; no detections score 0."""
    from pycocotools.coco import COCO

    ann, _ = _rect_dataset(tmp_path / "data", num_images=2)
    coco = COCO(str(ann))
    cat_ids = [3, 5]
    ours, theirs = [], []
    for img_id in (1, 2):
        anns = coco.imgToAnns[img_id]
        boxes = np.array([a["bbox"] for a in anns], np.float64)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        labels = np.array([cat_ids.index(a["category_id"]) for a in anns])
        masks = np.stack([coco.annToMask(a) for a in anns]).astype(bool)
        scores = np.ones(len(anns))
        flat = dict(boxes=boxes, scores=scores, labels=labels, masks=tool.encode_masks(masks))
        theirs.append(flat)
        per_class, rles = [], []
        for k in range(len(cat_ids)):
            mine = labels == k
            per_class.append(np.hstack([boxes[mine], scores[mine, None]]).astype(np.float32))
            rles.append(tool.encode_masks(masks[mine]))
        ours.append(tool.per_class_to_flat((per_class, rles)))
    for detections in (ours, theirs):
        results = tool.to_coco_results(detections, [1, 2], cat_ids)
        metrics = tool.evaluate_coco_results(str(ann), results, cat_ids)
        for kind in ("bbox", "segm"):
            assert metrics[kind]["AP"] == pytest.approx(1.0), (kind, metrics)
    empty = tool.evaluate_coco_results(str(ann), dict(bbox=[], segm=[]), cat_ids)
    assert empty == {k: dict(AP=0.0, AP50=0.0, AP75=0.0) for k in ("bbox", "segm")}
