"""tools/benchmark_accuracy.py: torchvision's model built to the config's sizes, its LR
schedule equal to ours, ``--same-init`` (the hand-over of one side's initialisation to the
other, checked in float64 on a photograph), an end-to-end run of both sides on a tiny
dataset, and the errors."""

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
from mmdet_like.models.utils import convert_torchvision_detection
from mmdet_like.structures import DetDataSample
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
    # the plain loop's schedule in our config (issue 28's swaps run it on our side), our hook
    # driving an optimizer as on torchvision's side (HookLrSchedule: equal to our runner's
    # LRs, test_torchvision_lr_schedule_equals_ours)
    num_iters = 300
    lr_config = dict(policy="cosine", by_epoch=False, warmup="linear", warmup_iters=100,
                     warmup_ratio=0.0, min_lr_ratio=0.0, anneal_after_warmup=True)  # fmt: skip
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=2e-3)
    schedule = tool.torchvision_lr_scheduler(optimizer, lr_config, num_iters)
    for i in range(num_iters):
        want = 2e-3 * tool.plain_lr_factor(i, num_iters)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(want, rel=1e-12, abs=1e-18), i
        schedule.step()


def test_table_says_which_recipe_each_side_trained_with(tool):
    cfg = load_config(MASK_CONFIG)
    args = SimpleNamespace(config=MASK_CONFIG, device="cpu", iters=5, seed=0, same_init=None)
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


# ------------------------------------------------------------------ --same-init

# a context block after the last stage: ours has it, torchvision's ResNet cannot
CONTEXT_BLOCK = (
    "model.backbone.plugins=[{'cfg': {'type': 'ContextBlock', 'ratio': 0.25}, "
    "'position': 'after_stage', 'stages': (False, False, False, True)}]"
)


def _same_init_args(tmp_path, same_init, seed=3):
    return SimpleNamespace(seed=seed, recipe="config", same_init=same_init, work_dir=str(tmp_path))


def _small_config(num_classes=2, options=None):
    cfg = load_config(MASK_CONFIG, options)
    cfg.model.roi_head.bbox_head.num_classes = num_classes
    cfg.model.roi_head.mask_head.num_classes = num_classes
    return cfg


def _assert_same_state(got, want):
    assert set(got) == set(want)
    for key, value in want.items():
        assert torch.equal(got[key], value), key


def _without_counters(state):
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def test_same_init_is_parsed(tool):
    base = [MASK_CONFIG, "--data", "a.json", "b.json", "img", "--iters", "1"]
    assert tool.parse_args(base).same_init is None
    for provider in ("torchvision", "ours"):
        assert tool.parse_args([*base, "--same-init", provider]).same_init == provider
    with pytest.raises(SystemExit):
        tool.parse_args([*base, "--same-init", "mmdet"])


@pytest.mark.parametrize("provider", ["torchvision", "ours"])
def test_same_init_hands_one_sides_initialisation_to_the_other(tool, tmp_path, provider):
    """The parent writes the provider's initialisation at the seed (a plain state dict);
    the receiver, built at the seed as without the option, starts from it converted; the
    provider checks that its own equals it."""
    cfg = _small_config()
    args = _same_init_args(tmp_path, provider)
    path = tool.write_same_init(cfg, 2, args)
    assert path == str(tmp_path / f"init_{provider}.pth")
    handed = torch.load(path, weights_only=True)
    assert type(handed) is dict

    ours, theirs = tool.build_ours(cfg, 3), tool.build_torchvision(cfg, 2, "config", 3)
    own = {"ours": ours, "torchvision": theirs}
    _assert_same_state(handed, own[provider].state_dict())  # the provider's, at the seed
    receiver = "ours" if provider == "torchvision" else "torchvision"
    before = {k: v.clone() for k, v in own[receiver].state_dict().items()}
    assert tool.apply_same_init(own[receiver], receiver, args) == provider
    assert tool.apply_same_init(own[provider], provider, args) == provider

    # both now hold the provider's values, in their own layouts
    received = own[receiver].state_dict()
    if provider == "torchvision":
        expected, _ = convert_torchvision_detection(handed, keep_unused=True)
        got = received
    else:
        expected = handed
        got, _ = convert_torchvision_detection(received, keep_unused=True)
    counters = [k for k in handed if k.endswith("num_batches_tracked")]
    assert counters and all(int(handed[k]) == 0 for k in counters)  # 0 on both sides
    _assert_same_state(_without_counters(got), _without_counters(expected))
    # the libraries draw every conv and linear weight differently (norms start alike)
    weights = [k for k, v in received.items() if v.dim() > 1]
    assert len(weights) > 20
    assert not [k for k in weights if torch.equal(received[k], before[k])]

    # without the option each side keeps its own initialisation
    assert tool.apply_same_init(own[receiver], receiver, _same_init_args(tmp_path, None)) == (
        receiver
    )
    # another seed is not the handed-over initialisation
    other = tool.build_ours(cfg, 4) if provider == "ours" else tool.build_torchvision(
        cfg, 2, "config", 4
    )  # fmt: skip
    with pytest.raises(tool.BenchmarkError, match="differs from the one handed over"):
        tool.apply_same_init(other, provider, args)


def test_same_init_names_the_keys_torchvision_does_not_cover(tool, tmp_path):
    cfg = _small_config()
    plugin = load_config(MASK_CONFIG, dict(model=dict(backbone=dict(plugins=[dict(
        cfg=dict(type="ContextBlock", ratio=0.25), position="after_stage",
        stages=(False, False, False, True))]))))  # fmt: skip
    plugin.model.roi_head = cfg.model.roi_head
    with pytest.raises(tool.BenchmarkError) as error:
        tool.write_same_init(plugin, 2, _same_init_args(tmp_path, "torchvision"))
    message = str(error.value)
    assert "\n" not in message
    assert "ours without a torchvision counterpart: backbone.layer4_after_stage_plugins.0." in (
        message
    )
    with pytest.raises(tool.BenchmarkError, match=r"ours backbone\.layer4_after_stage_plugins"):
        tool.write_same_init(plugin, 2, _same_init_args(tmp_path, "ours"))
    assert not list(tmp_path.iterdir())  # nothing written
    # an RPN conv narrower than its input (torchvision's is as wide): the shapes differ
    cfg.model.rpn_head.feat_channels = 32
    with pytest.raises(tool.BenchmarkError, match=r"shapes differ.*rpn_head\.rpn_conv\.weight"):
        tool.write_same_init(cfg, 2, _same_init_args(tmp_path, "torchvision"))


def test_same_init_ours_refuses_zero_scales_in_torchvisions_frozen_norms(tool, tmp_path):
    """norm_eval=True: torchvision's side has FrozenBatchNorm2d, where our zero-initialised
    last norms of the blocks would keep its residual branches off."""
    cfg = _small_config()
    cfg.model.backbone.norm_eval = True
    with pytest.raises(tool.BenchmarkError, match="zero_init_residual=False"):
        tool.write_same_init(cfg, 2, _same_init_args(tmp_path, "ours"))
    cfg.model.backbone.zero_init_residual = False
    tool.write_same_init(cfg, 2, _same_init_args(tmp_path, "ours"))
    tool.write_same_init(cfg, 2, _same_init_args(tmp_path, "torchvision"))


# Our switches that make the small config compute torchvision's inference (as in
# configs/torchvision/): rounded anchors, one-sided box clipping, unaligned RoIAlign, its
# mask pasting, its RPN (no per-level cap after NMS, boxes under 1e-3 dropped) and box
# filter (under 1e-2 dropped), every score kept; the norms unfolded (folding rounds
# differently).
TORCHVISION_INFERENCE = dict(
    model=dict(
        backbone=dict(fold_norm=False),
        rpn_head=dict(
            anchor_generator=dict(round_base_anchors=True),
            bbox_coder=dict(symmetric_clip=False),
        ),
        roi_head=dict(
            bbox_roi_extractor=dict(roi_layer=dict(aligned=False)),
            mask_roi_extractor=dict(roi_layer=dict(aligned=False)),
            bbox_head=dict(bbox_coder=dict(symmetric_clip=False)),
            mask_head=dict(paste_mode="torchvision"),
        ),
    ),
    test_cfg=dict(
        rpn=dict(nms_pre=300, nms_post=None, max_num=300, nms_thr=0.7, min_bbox_size=1e-3),
        rcnn=dict(score_thr=0.0, min_bbox_size=1e-2),
    ),
)
PHOTO_SIZE = 128  # the astronaut resized; a multiple of 64 (torchvision's P6 stride is 64)


@pytest.mark.parametrize("provider", ["torchvision", "ours"])
def test_same_init_gives_the_same_outputs_in_float64(tool, provider):
    """Both models from one side's initialisation compute the same function: in float64 on
    scikit-image's astronaut (128 x 128), the same FPN features (within 1e-12 of their
    largest value; measured: 0) and the same 100 detections: labels, boxes within 1e-4 px,
    scores within 1e-6, masks (measured: 1.4e-5 px, 3.2e-8, equal masks; our detections
    come out in float32)."""
    skdata = pytest.importorskip("skimage.data")
    cfg = _small_config(options=TORCHVISION_INFERENCE)
    for step in (cfg.data.train.pipeline[2], cfg.data.val.pipeline[1]):
        step["img_scale"] = (PHOTO_SIZE, PHOTO_SIZE)  # torchvision's min / max size
    ours, theirs = tool.build_ours(cfg, 0), tool.build_torchvision(cfg, 2, "config", 0)
    source, target = (theirs, ours) if provider == "torchvision" else (ours, theirs)
    tool.load_same_init(target, dict(source.state_dict()), provider)
    ours, theirs = ours.double().eval(), theirs.double().eval()
    ours.channels_last_inference = False  # NCHW as torchvision (channels-last rounds otherwise)

    size = (PHOTO_SIZE, PHOTO_SIZE)
    rgb = cv2.resize(skdata.astronaut(), size, interpolation=cv2.INTER_AREA)
    image = torch.from_numpy(rgb).permute(2, 0, 1).double() / 255
    mean = torch.tensor([123.675, 116.28, 103.53], dtype=torch.float64)[:, None, None]
    std = torch.tensor([58.395, 57.12, 57.375], dtype=torch.float64)[:, None, None]
    normalised = ((image * 255 - mean) / std)[None]  # what torchvision's transform computes
    shape = (*size, 3)
    meta = dict(img_shape=shape, pad_shape=shape, ori_shape=shape,
                scale_factor=np.ones(4, dtype=np.float32), flip=False)  # fmt: skip
    with torch.no_grad():
        want_features = list(theirs.backbone(normalised).values())
        got_features = ours.extract_feat(normalised)
        want = theirs([image])[0]
        got = ours.predict(normalised, [DetDataSample(meta)], rescale=True)[0].pred_instances
    assert len(got_features) == len(want_features) == 5
    for level, (g, w) in enumerate(zip(got_features, want_features, strict=True)):
        assert g.shape == w.shape
        assert (g - w).abs().max() <= 1e-12 * w.abs().max(), level

    assert len(want["boxes"]) == 100  # every score kept: enough detections to compare
    want_labels, want_scores = want["labels"].numpy() - 1, want["scores"].numpy()
    got_labels, got_scores = got.labels.numpy(), got.scores.double().numpy()
    want_order = np.lexsort((-want_scores, want_labels))
    got_order = np.lexsort((-got_scores, got_labels))
    np.testing.assert_array_equal(got_labels[got_order], want_labels[want_order])
    np.testing.assert_allclose(
        got.bboxes.double().numpy()[got_order], want["boxes"].numpy()[want_order], atol=1e-4
    )
    np.testing.assert_allclose(got_scores[got_order], want_scores[want_order], atol=1e-6)
    want_masks = want["masks"][:, 0].numpy()[want_order] >= 0.5
    got_masks = got.masks.numpy()[got_order]
    assert want_masks.any()
    assert (got_masks != want_masks).sum() == 0


@pytest.mark.parametrize("same_init", [None, "torchvision", "ours"])
def test_table_says_which_initialisation_each_side_started_from(tool, same_init):
    cfg = load_config(MASK_CONFIG)
    cfg.model.backbone.norm_eval = True  # torchvision's norms frozen: its own has no zeros
    args = SimpleNamespace(config=MASK_CONFIG, device="cpu", iters=5, seed=0, same_init=same_init)
    metrics = dict(AP=0.5, AP50=0.7, AP75=0.4)
    rows = [
        dict(side=side, iterations=5, train_time_s=1.0, trainable_params=1e6, bbox=metrics,
             segm=metrics, train_images=6, val_images=2, recipe="config", batch=2)
        for side in ("ours", "torchvision")
    ]  # fmt: skip
    notes = tool.render_table(rows, args, cfg, with_masks=True).split("Not matched")[1]
    init = [line for line in notes.splitlines() if line.startswith("- initial weights")]
    assert len(init) == 1
    expected = {
        None: "each side starts from its own library's random initialisation",
        "torchvision": "both sides start from torchvision's random initialisation",
        "ours": "both sides start from our random initialisation",
    }
    assert expected[same_init] in init[0]
    # zero_init_residual is one side's only without --same-init
    assert ("zero_init_residual: off on torchvision's side" in notes) == (same_init is None)


def test_same_init_error_is_one_line_before_any_training(tmp_path):
    ann, images = _rect_dataset(tmp_path / "data", num_images=1)
    work_dir = tmp_path / "work"
    proc = _run(MASK_CONFIG, "--data", str(ann), str(ann), str(images), "--iters", "1",
                "--device", "cpu", "--work-dir", str(work_dir), "--same-init", "torchvision",
                "--cfg-options", CONTEXT_BLOCK)  # fmt: skip
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1
    uncovered = "ours without a torchvision counterpart: backbone.layer4_after_stage_plugins"
    assert uncovered in errors[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "==> ours: training" not in proc.stdout
    assert not (work_dir / "init_torchvision.pth").exists()
