"""Same-budget accuracy: our detector against torchvision's of the same sizes, trained alike.

    python tools/benchmark_accuracy.py CONFIG --data ANN_TRAIN ANN_VAL IMG_DIR --iters N
        [--val-img-dir DIR] [--seed 0] [--sides ours torchvision] [--device cpu|cuda]
        [--work-dir DIR] [--out-json FILE] [--recipe config|torchvision-plain]
        [--same-init torchvision|ours] [--cfg-options KEY=VALUE ...]

Trains (1) our two-stage FPN R-CNN of CONFIG through our runner and (2) torchvision's
``MaskRCNN`` (``FasterRCNN`` when the config has no mask head) built to the config's sizes
(:func:`build_torchvision_model`) on the same COCO-format images for the same N iterations,
then evaluates both on ANN_VAL with one COCO evaluation (pycocotools, bbox and segm) of both
sides' detections. Each side runs in its own process, one after the other.

What is the same on both sides: the batch size (``data.imgs_per_gpu``), loader workers
(``data.workers_per_gpu``), the optimizer (built by our ``build_optimizer`` from
``optimizer``, parameter-wise decay included, on each side's own modules), the LR at every
iteration (``lr_config``; our LR hook drives torchvision's optimizer too),
gradient clipping (``optimizer_config.grad_clip``), the augmentation (resize keeping the
ratio to the train ``Resize`` img_scale, horizontal flip), the images used in training
(crowd annotations and images without a box left out, as our ``CocoDataset`` does), the seed
(``--seed``) and the image normalisation. What is not the same (initialisation, RoIAlign
alignment, loss details, ...) is printed under the table.

The number of classes and their names come from ANN_TRAIN (its categories ordered by id);
CONFIG's ``num_classes`` and data paths are replaced. The config's ``total_epochs``,
``workflow``, ``evaluation`` and ``checkpoint_config`` are not used: our side runs exactly N
iterations as one pass of the runner (the loader restarted, with the next epoch's shuffle,
as often as N needs), so that a per-iteration schedule spans the N iterations, as it does on
torchvision's side.

``--recipe torchvision-plain`` gives up that alikeness on torchvision's side on purpose: it
trains with issue 28's plain loop (:data:`PLAIN_RECIPE`, :data:`PLAIN_MODEL_ARGS`): AdamW,
LR 2e-3, weight decay 1e-4 on every parameter, LR linear from 0 over 100 iterations then
cosine to 0 at the end of the run, no gradient clipping, 4 images a batch drawn at random
with replacement (no epochs, no grouping), horizontal flip 0.5; RPN 128 sampled anchors an
image, 600 / 300 proposals before / after NMS in training, 300 / 300 in testing; 64 sampled
RoIs an image; torchvision's defaults for the rest (thresholds, RoIAlign with 2 samples,
normalisation). Only the sizes (ResNet, FPN, anchors, RoI and box FC sizes, mask head,
image size) still come from CONFIG; our side keeps the config's recipe. Under the table
the tool says which recipe each side trained with.

``--same-init torchvision|ours`` starts both sides from one side's random initialisation
(default: each side from its own library's, at the seed): the providing side's model is
built with the run's seed as it is without the option, and its initial state dict (before
any step) is converted into the other side's layout and loaded there before training
(:func:`load_same_init`: ``convert_torchvision_detection`` for ``torchvision``,
``convert_to_torchvision_detection`` for ``ours``). Strict: every parameter and buffer of the
receiving model must come from the providing one (``num_batches_tracked``, a counter that
is 0 at initialisation on both sides, aside); only torchvision's rows without a counterpart
in ours (the background's box regression rows and mask channel, neither trained nor used)
keep torchvision's own initialisation under ``ours``. Where the config has parts that
torchvision's model does not express (plugins, an RPN conv of another width than its input, a
class-agnostic regression, ...) or where our zero-initialised residual norms would land in
torchvision's frozen norms (the branches would stay off), the tool stops with a one-line
error before any training. Design: the parent process builds both models at the seed,
checks the hand-over and writes the providing side's initial state dict to
``WORK_DIR/init_<provider>.pth`` (``torch.save`` of a plain state dict) before either side
starts, whatever the order of ``--sides`` and also for one side alone; the receiving side
loads it (``weights_only=True``) into its model, built as without the option, and the
providing side checks that its own initialisation, built at the seed in its own process,
equals the file. The notes under the table say which initialisation each side started
from.

Smaller images for a quick run (the pipelines' steps are addressed by index):
``--cfg-options data.train.pipeline.2.img_scale="(128,128)"
data.val.pipeline.1.img_scale="(128,128)"``. Output: the table on stdout, each side's logs,
``run.json`` and COCO-format ``detections.json`` under ``WORK_DIR/ours`` and
``WORK_DIR/torchvision``, and with ``--out-json`` all the numbers.
"""

import argparse
import contextlib
import copy
import io
import json
import math
import os
import os.path as osp
import subprocess
import sys
import time

# As tools/train.py: bound oneDNN's per-shape kernel cache (the RoI heads see a new number of
# RoIs at every iteration); before torch is imported. Both sides run with it.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from mmdet_like.errors import ProjectError, run_tool

SIDES = ("ours", "torchvision")
RECIPES = ("config", "torchvision-plain")
# --same-init: the side whose random initialisation both sides start from
SAME_INITS = ("torchvision", "ours")
# issue 28's plain torchvision training loop (--recipe torchvision-plain)
PLAIN_RECIPE = dict(lr=2e-3, weight_decay=1e-4, warmup_iters=100, batch=4, flip_ratio=0.5)
# its model's settings (torchvision constructor arguments); the rest are torchvision's defaults
PLAIN_MODEL_ARGS = dict(
    rpn_batch_size_per_image=128,
    rpn_pre_nms_top_n_train=600,
    rpn_post_nms_top_n_train=300,
    rpn_pre_nms_top_n_test=300,
    rpn_post_nms_top_n_test=300,
    box_batch_size_per_image=64,
)
# constructor arguments read from the config that the plain recipe leaves at their defaults
_CONFIG_ONLY_ARGS = (
    "image_mean", "image_std", "size_divisible", "rpn_nms_thresh", "rpn_fg_iou_thresh",
    "rpn_bg_iou_thresh", "rpn_positive_fraction", "box_score_thresh", "box_nms_thresh",
    "box_detections_per_img", "box_fg_iou_thresh", "box_bg_iou_thresh", "box_positive_fraction",
    "bbox_reg_weights",
)  # fmt: skip
PLAIN_RECIPE_TEXT = (
    "issue 28's plain loop: AdamW LR 2e-3, weight decay 1e-4 on every parameter, LR linear "
    "from 0 over 100 iterations then cosine to 0, no gradient clipping, 4 images a batch drawn "
    "with replacement (no epochs, no grouping), flip 0.5; RPN 128 anchors an image, 600/300 "
    "proposals in training, 300/300 in testing; 64 RoIs an image; torchvision's defaults for "
    "thresholds, RoIAlign (2 samples) and normalisation; sizes from the config"
)
_RESNET_DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
                  50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
                  152: ("bottleneck", (3, 8, 36, 3))}  # fmt: skip


class BenchmarkError(ProjectError):
    """A problem with the inputs or the config, reported as a message (no traceback)."""


# ----------------------------------------------------------------------------- config


def read_categories(ann_file):
    """``[(category id, name)]`` of a COCO file, ordered by id (our ``CocoDataset`` order)."""
    try:
        with open(ann_file, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise BenchmarkError(f"{ann_file}: not a valid json file ({exc})") from None
    cats = data.get("categories") if isinstance(data, dict) else None
    if not cats or not all(isinstance(c, dict) and "id" in c and "name" in c for c in cats):
        raise BenchmarkError(f"{ann_file}: no 'categories' list of {{'id', 'name'}} records")
    pairs = sorted((int(c["id"]), str(c["name"])) for c in cats)
    names = [name for _, name in pairs]
    if len(set(names)) != len(names):
        raise BenchmarkError(f"{ann_file}: category names are not unique: {names}")
    return pairs


def _one(pipeline, kind, where):
    steps = [s for s in pipeline if s.get("type") == kind]
    if len(steps) != 1:
        raise BenchmarkError(f"{where} needs exactly one {kind} step, found {len(steps)}")
    return steps[0]


def _test_transforms(pipeline):
    """The test pipeline with the steps inside ``MultiScaleFlipAug`` spliced in."""
    out = []
    for step in pipeline:
        out.append(step)
        if step.get("type") == "MultiScaleFlipAug":
            out += list(step.get("transforms", []))
    return out


def check_model(cfg):
    """Raise :class:`BenchmarkError` unless ``cfg.model`` is a two-stage FPN R-CNN on a ResNet
    that torchvision's detection models can be built like. Returns whether it has masks."""
    model = cfg.get("model") or {}
    roi_head = model.get("roi_head") or {}
    neck = model.get("neck") or {}
    backbone = model.get("backbone") or {}
    problems = []
    if model.get("type") not in ("FasterRCNN", "MaskRCNN"):
        problems.append(f"model.type is {model.get('type')!r} (FasterRCNN or MaskRCNN needed)")
    if backbone.get("type") != "ResNet":
        problems.append(f"backbone {backbone.get('type')!r} (ResNet needed)")
    elif backbone.get("depth") not in _RESNET_DEPTHS:
        problems.append(f"ResNet depth {backbone.get('depth')} (18, 34, 50, 101 or 152 needed)")
    if neck.get("type") != "FPN":
        problems.append(f"neck {neck.get('type')!r} (FPN needed)")
    if not model.get("rpn_head"):
        problems.append("no rpn_head")
    if roi_head.get("type", "StandardRoIHead") != "StandardRoIHead":
        problems.append(f"roi_head {roi_head.get('type')!r} (StandardRoIHead needed)")
    if (roi_head.get("bbox_head") or {}).get("type") != "Shared2FCBBoxHead":
        problems.append("roi_head.bbox_head is not a Shared2FCBBoxHead")
    mask_head = roi_head.get("mask_head")
    if mask_head and mask_head.get("type") != "FCNMaskHead":
        problems.append(f"mask head {mask_head.get('type')!r} (FCNMaskHead needed)")
    if problems:
        raise BenchmarkError(
            "the config's model is not a two-stage FPN R-CNN that torchvision's FasterRCNN / "
            "MaskRCNN can be built like: " + "; ".join(problems)
        )
    return bool(mask_head)


def training_settings(cfg):
    """What both sides' training and testing follow, read (and checked) from ``cfg``.

    Returns a dict: ``batch``, ``workers``, ``img_scale`` ``(long, short)``, ``flip_ratio``,
    ``mean`` / ``std`` (0..255, RGB order when ``to_rgb``), ``to_rgb``, ``size_divisor``,
    ``min_size`` / ``filter_empty_gt`` (training image filters), ``grad_clip``,
    ``lr_config``, ``mask_thr``.
    """
    train = cfg.data.train
    resize = _one(train.pipeline, "Resize", "data.train.pipeline")
    scales = resize.get("img_scale")
    if isinstance(scales, list):
        if len(scales) != 1:
            raise BenchmarkError(f"train Resize: one img_scale needed, got {scales}")
        scales = scales[0]
    if not resize.get("keep_ratio", True) or resize.get("ratio_range") or scales is None:
        raise BenchmarkError("train Resize: one img_scale with keep_ratio=True needed")
    flip = _one(train.pipeline, "RandomFlip", "data.train.pipeline")
    if flip.get("direction", "horizontal") != "horizontal":
        raise BenchmarkError("train RandomFlip: only direction='horizontal' is supported")
    norm = _one(train.pipeline, "Normalize", "data.train.pipeline")
    pads = [s for s in train.pipeline if s.get("type") == "Pad"]
    test = cfg.data.val.pipeline
    if any(s.get("type") == "MultiScaleFlipAug" and s.get("flip") for s in test):
        raise BenchmarkError("test pipeline: flip test-time augmentation is not supported")
    test_scale = [s.get("img_scale") for s in test if s.get("type") == "MultiScaleFlipAug"]
    test_scale = test_scale[0] if test_scale else _one(test, "Resize", "data.val").img_scale
    if isinstance(test_scale, list):
        if len(test_scale) != 1:
            raise BenchmarkError(f"test pipeline: one img_scale needed, got {test_scale}")
        test_scale = test_scale[0]
    if tuple(test_scale) != tuple(scales):
        raise BenchmarkError(
            f"train img_scale {tuple(scales)} and test img_scale {tuple(test_scale)} differ; "
            "torchvision's transform has one size for both"
        )
    test_norm = _one(_test_transforms(test), "Normalize", "data.val.pipeline")
    if dict(test_norm) != dict(norm):
        raise BenchmarkError("train and test Normalize differ")
    optimizer_config = dict(cfg.get("optimizer_config") or {})
    if optimizer_config.get("fp16") or cfg.get("fp16"):
        raise BenchmarkError("fp16 is not supported by this benchmark; remove it from the config")
    lr_config = dict(cfg.get("lr_config") or {"policy": "fixed"})
    check_lr_config(lr_config)
    return dict(
        batch=int(cfg.data.imgs_per_gpu),
        workers=int(cfg.data.workers_per_gpu),
        img_scale=(max(scales), min(scales)),
        flip_ratio=float(flip.get("flip_ratio") or 0.0),
        mean=[float(v) for v in norm["mean"]],
        std=[float(v) for v in norm["std"]],
        to_rgb=bool(norm.get("to_rgb", True)),
        size_divisor=int(pads[0].get("size_divisor") or 1) if pads else 1,
        min_size=train.get("min_size", 32),
        filter_empty_gt=train.get("filter_empty_gt", True),
        grad_clip=optimizer_config.get("grad_clip"),
        lr_config=lr_config,
        mask_thr=float((cfg.get("test_cfg") or {}).get("rcnn", {}).get("mask_thr_binary", 0.5)),
    )


def prepare_config(config, cfg_options, ann_train, ann_val, img_dir, val_img_dir):
    """``config`` loaded, with the data paths, the classes of ``ann_train`` (its categories
    ordered by id) and ``num_classes`` set; checked for the benchmark.

    Returns ``(cfg, class names, with_masks)``.
    """
    from mmdet_like.engine import load_config

    try:
        cfg = load_config(config, cfg_options)
    except (FileNotFoundError, ValueError) as exc:
        raise BenchmarkError(f"config {config}: {exc}") from None
    with_masks = check_model(cfg)
    names = [name for _, name in read_categories(ann_train)]
    read_categories(ann_val)
    roi_head = cfg.model.roi_head
    roi_head.bbox_head.num_classes = len(names)
    if with_masks:
        roi_head.mask_head.num_classes = len(names)
    if cfg.model.get("pretrained") or cfg.model.backbone.get("pretrained"):
        raise BenchmarkError(
            f"the config loads pretrained weights ({cfg.model.get('pretrained')}); both sides "
            "train from scratch here: add --cfg-options model.pretrained=None"
        )
    for split, ann, folder in (("train", ann_train, img_dir), ("val", ann_val, val_img_dir)):
        part = cfg.data[split]
        if part.get("type") != "CocoDataset":
            raise BenchmarkError(f"data.{split}: a CocoDataset needed, got {part.get('type')!r}")
        part.ann_file = osp.abspath(ann)
        part.img_prefix = osp.abspath(folder) + os.sep
        part.data_root = None
        part.classes = list(names)
    training_settings(cfg)
    return cfg, names, with_masks


# ------------------------------------------------------------------ LR schedule


def check_lr_config(lr_config):
    """Raise :class:`BenchmarkError` for a schedule the benchmark cannot run per iteration
    on both sides: a by-epoch policy other than ``fixed``, a warmup in epochs, an unknown
    policy."""
    from mmdet_like.engine.hooks.lr_updater import build_lr_updater_hook

    if lr_config.get("warmup_epochs") is not None:
        raise BenchmarkError(
            "lr_config.warmup_epochs: give warmup_iters (the run counts iterations)"
        )
    key = str(lr_config.get("type") or lr_config.get("policy", "fixed")).lower()
    if key not in ("fixed", "fixedlrupdaterhook") and lr_config.get("by_epoch", True):
        raise BenchmarkError(
            "lr_config.by_epoch must be False: the benchmark runs N iterations and both sides "
            "follow the schedule per iteration (--cfg-options lr_config.by_epoch=False, steps "
            "in iterations)"
        )
    try:
        build_lr_updater_hook(lr_config)
    except (ValueError, TypeError, KeyError) as exc:
        raise BenchmarkError(f"lr_config: {exc}") from exc


class HookLrSchedule:
    """Our LR hook of ``lr_config`` driving another optimizer, iteration by iteration: the
    optimizer has iteration 0's LR once built, and iteration ``i``'s after ``i`` calls of
    :meth:`step` (one after every iteration), over a run of ``num_iters`` iterations."""

    def __init__(self, optimizer, lr_config, num_iters):
        from types import SimpleNamespace

        from mmdet_like.engine.hooks.lr_updater import build_lr_updater_hook

        self.hook = build_lr_updater_hook(lr_config)
        self.runner = SimpleNamespace(
            optimizer=optimizer, iter=0, epoch=0, max_iters=num_iters, max_epochs=1,
            data_loader=range(num_iters),
        )  # fmt: skip
        self.hook.before_run(self.runner)
        self.hook.before_train_epoch(self.runner)
        self.hook.before_train_iter(self.runner)

    def step(self):
        self.runner.iter += 1
        self.hook.before_train_iter(self.runner)


def torchvision_lr_scheduler(optimizer, lr_config, num_iters):
    """The schedule of torchvision's side: :class:`HookLrSchedule` (call ``step()`` after
    every iteration)."""
    return HookLrSchedule(optimizer, lr_config, num_iters)


# --------------------------------------------------------------- torchvision model


def _norm_layer(backbone_cfg):
    """torchvision's norm for our backbone: trained ``BatchNorm2d`` for a BN that learns
    (``requires_grad``) and updates its statistics (``norm_eval=False``), else frozen."""
    from torchvision.ops import FrozenBatchNorm2d

    norm_cfg = backbone_cfg.get("norm_cfg") or {"type": "BN"}
    kind = norm_cfg.get("type", "BN")
    if kind not in ("BN", "SyncBN", "FrozenBN"):
        raise BenchmarkError(f"backbone norm {kind!r}: only BN / FrozenBN are supported")
    trained = (
        kind != "FrozenBN"
        and norm_cfg.get("requires_grad", True)
        and not backbone_cfg.get("norm_eval", True)
    )
    return nn.BatchNorm2d if trained else FrozenBatchNorm2d


def _freeze(module):
    """``module`` without gradients, its batch norms (itself included) made frozen copies."""
    from torchvision.ops import FrozenBatchNorm2d

    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        for key in ("weight", "bias", "running_mean", "running_var"):
            getattr(frozen, key).copy_(getattr(module, key).detach())
        return frozen
    for name, child in module.named_children():
        setattr(module, name, _freeze(child))
    for param in module.parameters():
        param.requires_grad_(False)
    return module


def build_torchvision_resnet(backbone_cfg):
    """torchvision's ``ResNet`` with our backbone's block, depth, width (``base_channels``),
    groups, norm and frozen stages (stem and ``layer1..frozen_stages``)."""
    from torchvision.models import resnet

    depth = backbone_cfg["depth"]
    kind, layers = _RESNET_DEPTHS[depth]
    block = resnet.BasicBlock if kind == "basic" else resnet.Bottleneck
    for key, default in (("num_stages", 4), ("strides", (1, 2, 2, 2)), ("dilations", (1, 1, 1, 1))):
        if tuple(np.atleast_1d(backbone_cfg.get(key, default))) != tuple(np.atleast_1d(default)):
            raise BenchmarkError(f"backbone {key}={backbone_cfg[key]}: only {default} is supported")
    if kind == "bottleneck" and backbone_cfg.get("style", "pytorch") != "pytorch":
        raise BenchmarkError("backbone style 'caffe': torchvision's Bottleneck is pytorch style")
    norm = _norm_layer(backbone_cfg)
    # zero-initialised last norm scales of the blocks, as ours, where they can learn: a frozen
    # norm's zero scale would switch the residual branches off for good
    zero_init = bool(backbone_cfg.get("zero_init_residual", True)) and norm is nn.BatchNorm2d
    net = resnet.ResNet(
        block,
        list(layers),
        zero_init_residual=zero_init,
        groups=backbone_cfg.get("groups", 1),
        width_per_group=backbone_cfg.get("base_width", 64),
        norm_layer=norm,
    )
    base = int(backbone_cfg.get("base_channels", 64))
    if base != 64:  # a narrower (or wider) ResNet: rebuild the stem and stages at that width
        net.inplanes = base
        net.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
        net.bn1 = norm(base)
        for i, blocks in enumerate(layers):
            stage = net._make_layer(block, base * 2**i, blocks, stride=1 if i == 0 else 2)
            setattr(net, f"layer{i + 1}", stage)
        for m in net.modules():  # torchvision's ResNet initialisation, for the new layers
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init:
            for m in net.modules():
                last = getattr(m, "bn3" if kind == "bottleneck" else "bn2", None)
                if isinstance(m, block) and isinstance(last, nn.BatchNorm2d):
                    nn.init.zeros_(last.weight)
    del net.fc
    frozen = backbone_cfg.get("frozen_stages", -1)
    names = ["conv1", "bn1"] if frozen >= 0 else []
    for name in names + [f"layer{i}" for i in range(1, frozen + 1)]:
        setattr(net, name, _freeze(getattr(net, name)))
    return net, block.expansion


def _roi_pool(extractor_cfg, strides, plain=False):
    """torchvision's ``MultiScaleRoIAlign`` for our ``SingleRoIExtractor``: same output size,
    sampling ratio and level mapping (``canonical_scale`` from our ``finest_scale``); with
    ``plain``, only the output size: torchvision's 2 samples and level mapping."""
    from torchvision.ops import MultiScaleRoIAlign

    layer = extractor_cfg["roi_layer"]
    extractor_strides = list(extractor_cfg["featmap_strides"])
    names = [str(strides.index(s)) for s in extractor_strides]
    if plain:
        return MultiScaleRoIAlign(names, output_size=layer["output_size"], sampling_ratio=2)
    # torchvision: level floor(4 + log2(s / canonical_scale)) - log2(first stride);
    # ours: floor(log2(s / finest_scale)): equal when canonical = finest * 2 ** (4 - log2 first)
    canonical = extractor_cfg.get("finest_scale", 56) * 2 ** (4 - math.log2(extractor_strides[0]))
    return MultiScaleRoIAlign(
        names,
        output_size=layer["output_size"],
        sampling_ratio=layer.get("sampling_ratio", 0),
        canonical_scale=int(canonical) if float(canonical).is_integer() else canonical,
    )


def build_torchvision_model(cfg, num_classes, recipe="config"):
    """torchvision's ``MaskRCNN`` (``FasterRCNN`` without a mask head) sized as ``cfg.model``,
    with ``num_classes`` object classes (its predictors have ``num_classes + 1`` outputs,
    background first). Raises :class:`BenchmarkError` for a model it cannot mirror.

    ``recipe="torchvision-plain"``: :data:`PLAIN_MODEL_ARGS` for the samplers and proposal
    counts and torchvision's defaults for the other settings; only the sizes follow ``cfg``.
    """
    if recipe not in RECIPES:
        raise BenchmarkError(f"recipe {recipe!r}: one of {', '.join(RECIPES)}")
    plain = recipe == "torchvision-plain"
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    with_masks = check_model(cfg)
    settings = training_settings(cfg)
    model_cfg, train_cfg, test_cfg = cfg.model, cfg.train_cfg, cfg.test_cfg
    backbone_cfg, neck = model_cfg.backbone, model_cfg.neck
    body, expansion = build_torchvision_resnet(backbone_cfg)
    base = int(backbone_cfg.get("base_channels", 64))
    out_indices = list(backbone_cfg.get("out_indices", (0, 1, 2, 3)))
    in_channels = [base * 2**i * expansion for i in out_indices]
    if list(neck.in_channels) != in_channels:
        raise BenchmarkError(
            f"neck.in_channels {list(neck.in_channels)} != backbone's {in_channels}"
        )
    last_level = len(in_channels) - 1
    if neck.get("start_level", 0) != 0 or neck.get("end_level", -1) not in (-1, last_level):
        raise BenchmarkError("FPN start_level / end_level: all backbone levels are needed")
    if neck.get("add_extra_convs") or neck.num_outs != len(in_channels) + 1:
        raise BenchmarkError(
            "FPN: torchvision's LastLevelMaxPool gives exactly one extra level by max pooling "
            f"(num_outs={len(in_channels) + 1}, add_extra_convs=False); got num_outs="
            f"{neck.num_outs}, add_extra_convs={neck.get('add_extra_convs')}"
        )
    if neck.get("norm_cfg"):
        raise BenchmarkError("FPN norm_cfg: only an FPN without norms is supported")
    backbone = BackboneWithFPN(
        body,
        return_layers={f"layer{i + 1}": str(k) for k, i in enumerate(out_indices)},
        in_channels_list=in_channels,
        out_channels=neck.out_channels,
        extra_blocks=LastLevelMaxPool(),
    )

    anchors = model_cfg.rpn_head.get("anchor_generator") or {}
    if anchors.get("type", "AnchorGenerator") != "AnchorGenerator" or not anchors.get("strides"):
        raise BenchmarkError("rpn_head.anchor_generator: an AnchorGenerator config needed")
    if anchors.get("scales") is None:
        raise BenchmarkError("anchor_generator: give scales (octave scales are not supported)")
    strides = [s if isinstance(s, int | float) else min(s) for s in anchors["strides"]]
    base_sizes = anchors.get("base_sizes") or strides
    if len(strides) != neck.num_outs:
        raise BenchmarkError(f"{len(strides)} anchor strides for {neck.num_outs} FPN levels")
    anchor_generator = AnchorGenerator(
        sizes=tuple(tuple(float(b * s) for s in anchors["scales"]) for b in base_sizes),
        aspect_ratios=(tuple(float(r) for r in anchors["ratios"]),) * len(strides),
    )
    num_anchors = len(anchors["scales"]) * len(anchors["ratios"])

    rpn_train, proposal, rpn_test = train_cfg.rpn, train_cfg.rpn_proposal, test_cfg.rpn
    rcnn_train, rcnn_test = train_cfg.rcnn, test_cfg.rcnn
    bbox_head = model_cfg.roi_head.bbox_head
    stds = bbox_head.get("bbox_coder", {}).get("target_stds", (0.1, 0.1, 0.2, 0.2))
    roi_size = model_cfg.roi_head.bbox_roi_extractor.roi_layer.output_size
    common = dict(
        min_size=settings["img_scale"][1],
        max_size=settings["img_scale"][0],
        image_mean=[v / 255 for v in settings["mean"]],
        image_std=[v / 255 for v in settings["std"]],
        size_divisible=settings["size_divisor"],
        rpn_anchor_generator=anchor_generator,
        rpn_head=RPNHead(neck.out_channels, num_anchors),
        rpn_pre_nms_top_n_train=proposal.nms_pre,
        rpn_post_nms_top_n_train=proposal.max_num,
        rpn_pre_nms_top_n_test=rpn_test.nms_pre,
        rpn_post_nms_top_n_test=rpn_test.max_num,
        rpn_nms_thresh=proposal.nms_thr,
        rpn_fg_iou_thresh=rpn_train.assigner.pos_iou_thr,
        rpn_bg_iou_thresh=rpn_train.assigner.neg_iou_thr,
        rpn_batch_size_per_image=rpn_train.sampler.num,
        rpn_positive_fraction=rpn_train.sampler.pos_fraction,
        box_roi_pool=_roi_pool(model_cfg.roi_head.bbox_roi_extractor, strides, plain),
        box_head=TwoMLPHead(neck.out_channels * roi_size**2, bbox_head.fc_out_channels),
        box_predictor=FastRCNNPredictor(bbox_head.fc_out_channels, num_classes + 1),
        box_score_thresh=rcnn_test.get("score_thr", 0.05),
        box_nms_thresh=rcnn_test.get("nms", {}).get("iou_thr", 0.5),
        box_detections_per_img=rcnn_test.get("max_per_img", 100),
        box_fg_iou_thresh=rcnn_train.assigner.pos_iou_thr,
        box_bg_iou_thresh=rcnn_train.assigner.neg_iou_thr,
        box_batch_size_per_image=rcnn_train.sampler.num,
        box_positive_fraction=rcnn_train.sampler.pos_fraction,
        bbox_reg_weights=tuple(1.0 / s for s in stds),
    )
    if plain:
        for key in _CONFIG_ONLY_ARGS:
            del common[key]
        common.update(PLAIN_MODEL_ARGS)
    if not with_masks:
        return FasterRCNN(backbone, **common)
    mask_head = model_cfg.roi_head.mask_head
    width = mask_head.get("conv_out_channels", 256)
    return MaskRCNN(
        backbone,
        mask_roi_pool=_roi_pool(model_cfg.roi_head.mask_roi_extractor, strides, plain),
        mask_head=MaskRCNNHeads(
            mask_head.get("in_channels", neck.out_channels),
            [width] * mask_head.get("num_convs", 4),
            dilation=1,
        ),
        mask_predictor=MaskRCNNPredictor(width, width, num_classes + 1),
        **common,
    )


def init_note(same_init=None):
    """The notes' line on which random initialisation each side started from."""
    if same_init is None:
        return (
            "initial weights: each side starts from its own library's random initialisation "
            "(torchvision: its ResNet, FPN and head defaults)"
        )
    if same_init == "torchvision":
        return (
            "initial weights (--same-init torchvision): both sides start from torchvision's "
            "random initialisation at the seed (its ResNet, FPN and head defaults); ours "
            "gets it converted into our layout"
        )
    if same_init == "ours":
        return (
            "initial weights (--same-init ours): both sides start from our random "
            "initialisation at the seed; torchvision gets it converted into its layout (its "
            "background's box regression rows and mask channel, which ours has no "
            "counterpart of and neither side trains or uses, keep torchvision's own)"
        )
    raise BenchmarkError(f"same_init {same_init!r}: one of {', '.join(SAME_INITS)} or None")


def unmatched_settings(cfg, recipe="config", same_init=None):
    """Short notes on what torchvision's side does differently from ``cfg`` (each a str);
    with ``recipe="torchvision-plain"`` the batching is the recipe's (said with it); the
    first says which initialisation each side started from (``same_init``: ``--same-init``).
    """
    model_cfg, train_cfg, test_cfg = cfg.model, cfg.train_cfg, cfg.test_cfg
    roi_head, rpn_head = model_cfg.roi_head, model_cfg.rpn_head
    notes = [init_note(same_init)]
    norm_cfg = model_cfg.backbone.get("norm_cfg") or {}
    if norm_cfg.get("requires_grad", True) and model_cfg.backbone.get("norm_eval", True):
        notes.append(
            "backbone BN: ours trains scale/shift with fixed statistics (norm_eval=True), "
            "torchvision's FrozenBatchNorm2d fixes both"
        )
    if (
        same_init is None
        and _norm_layer(model_cfg.backbone) is not nn.BatchNorm2d
        and model_cfg.backbone.get("zero_init_residual", True)
    ):
        notes.append(
            "zero_init_residual: off on torchvision's side (its frozen norms would keep the "
            "zero scales and switch the residual branches off)"
        )
    if rpn_head.get("feat_channels", 256) != rpn_head.in_channels:
        notes.append(
            f"RPN conv: ours {rpn_head.feat_channels} channels, torchvision's RPNHead "
            f"{rpn_head.in_channels} (its input width)"
        )
    if not rpn_head.get("anchor_generator", {}).get("round_base_anchors", False):
        notes.append("anchors: torchvision rounds the base anchors to whole pixels, ours not")
    proposal = train_cfg.rpn_proposal
    if proposal.get("nms_post") and proposal.nms_post < proposal.max_num:
        notes.append(
            f"proposals: ours keeps {proposal.nms_post} per level after NMS, torchvision no cap"
        )
    if test_cfg.rpn.get("nms_thr", 0.7) != proposal.get("nms_thr", 0.7):
        notes.append("RPN NMS IoU: torchvision uses the training value in testing too")
    if train_cfg.rpn.get("allowed_border", 0) >= 0:
        notes.append(
            "RPN: ours ignores anchors crossing the image border by more than "
            f"{train_cfg.rpn.get('allowed_border', 0)} px, torchvision trains on all anchors"
        )
    if not train_cfg.rcnn.sampler.get("add_gt_as_proposals", True):
        notes.append("RoI sampling: torchvision always adds the gt boxes to the proposals")
    min_pos = train_cfg.rpn.assigner.get("min_pos_iou", 0.0)
    notes.append(f"RPN low-quality matches: ours only at IoU >= {min_pos}, torchvision at any IoU")
    for name in ("bbox_roi_extractor", "mask_roi_extractor"):
        extractor = roi_head.get(name)
        if extractor and extractor.roi_layer.get("aligned", True):
            notes.append(f"{name}: ours RoIAlign aligned=True, torchvision's is unaligned")
    loss_bbox = roi_head.bbox_head.get("loss_bbox", {})
    if loss_bbox.get("type") != "SmoothL1Loss" or abs(loss_bbox.get("beta", 1.0) - 1 / 9) > 1e-9:
        notes.append(
            f"box head regression loss: ours {loss_bbox.get('type')} "
            f"beta={loss_bbox.get('beta', 1.0):g}, torchvision smooth L1 with beta 1/9"
        )
    if roi_head.get("mask_head"):
        rcnn = train_cfg.rcnn
        if rcnn.get("mask_target_aligned", True) or rcnn.get("mask_target_binarize", True):
            notes.append(
                "mask targets: torchvision cuts them with unaligned RoIAlign and keeps them "
                f"soft; ours aligned={rcnn.get('mask_target_aligned', True)}, "
                f"binarized={rcnn.get('mask_target_binarize', True)}"
            )
    resize = _one(cfg.data.train.pipeline, "Resize", "data.train.pipeline")
    if resize.get("backend", "cv2") != "torch":
        notes.append(
            "resize: ours cv2 in the data pipeline (sizes rounded), torchvision bilinear "
            "interpolation in the model (sizes floored)"
        )
    ours_sampler = (cfg.data.get("sampler") or {}).get("type", "GroupSampler")
    if recipe == "config" and ours_sampler == "GroupSampler":
        notes.append(
            "batches: ours groups landscape and portrait images apart (GroupSampler), "
            "torchvision shuffles all images together"
        )
    elif recipe == "config" and ours_sampler == "ReplacementSampler":
        notes.append(
            "batches: ours draws images with replacement (ReplacementSampler), torchvision "
            "shuffles all images once an epoch"
        )
    return notes


# ------------------------------------------------------- same initialisation


def build_ours(cfg, seed):
    """Our detector of ``cfg`` with its random initialisation at ``seed``, on the CPU."""
    from mmdet_like.apis import build_detector, set_random_seed

    set_random_seed(seed)
    model = build_detector(cfg.model, cfg.get("train_cfg"), cfg.get("test_cfg"))
    model.init_weights()
    return model


def build_torchvision(cfg, num_classes, recipe, seed):
    """:func:`build_torchvision_model` with its random initialisation at ``seed``, on the
    CPU."""
    from mmdet_like.apis import set_random_seed

    set_random_seed(seed)
    return build_torchvision_model(cfg, num_classes, recipe)


def init_file(work_dir, provider):
    """Where a ``--same-init`` run keeps ``provider``'s initial state dict."""
    return osp.join(work_dir, f"init_{provider}.pth")


def _some(items, most=6):
    items = list(items)
    more = f" (and {len(items) - most} more)" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def load_same_init(model, state_dict, provider):
    """Load ``provider``'s (a side) initial ``state_dict`` into the other side's ``model``,
    converted into its layout. Raises :class:`BenchmarkError` (one line, naming the keys)
    unless it gives every parameter and buffer of ``model`` (``num_batches_tracked``, 0 at
    initialisation on both sides, aside), or when it would put zero scales into torchvision's
    frozen norms."""
    from torchvision.ops import FrozenBatchNorm2d

    from mmdet_like.models.utils import (
        TorchvisionConversionError,
        convert_to_torchvision_detection,
        convert_torchvision_detection,
    )

    if provider not in SAME_INITS:
        raise BenchmarkError(f"--same-init {provider!r}: one of {', '.join(SAME_INITS)}")
    target = model.state_dict()
    try:
        if provider == "torchvision":
            converted, _ = convert_torchvision_detection(state_dict, keep_unused=True)
        else:
            converted = convert_to_torchvision_detection(state_dict, target, keep_unused=True)
    except TorchvisionConversionError as exc:
        raise BenchmarkError(
            f"--same-init {provider}: the config has parts torchvision's model does not "
            f"express: {exc}"
        ) from None
    missing = [k for k in target if k not in converted and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in converted if k not in target]
    mismatched = [
        f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}"
        for k, v in converted.items()
        if k in target and v.shape != target[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = [
            f"{what}: {_some(keys)}"
            for what, keys in (
                ("ours without a torchvision counterpart", missing),
                ("torchvision's without ours", unexpected),
                ("shapes differ (torchvision's vs ours)", mismatched),
            )
            if keys
        ]
        raise BenchmarkError(
            "--same-init torchvision: torchvision's initialisation does not cover our model "
            "(the config has parts torchvision's model does not express): " + "; ".join(parts)
        )
    model.load_state_dict(converted, strict=False)
    dead = [
        name
        for name, module in model.named_modules()
        if isinstance(module, FrozenBatchNorm2d) and not module.weight.any()
    ]
    if provider == "ours" and dead:
        raise BenchmarkError(
            "--same-init ours: our initialisation zeroes the last norm of every residual "
            "block (zero_init_residual) and torchvision's side has frozen norms there "
            f"({_some(dead, 3)}): its residual branches would stay off for the whole run; "
            "add --cfg-options model.backbone.zero_init_residual=False"
        )


def write_same_init(cfg, num_classes, args):
    """The parent's part of ``--same-init``: both models built at the seed, the providing
    side's initialisation handed over to the other for a check (:func:`load_same_init`),
    then written to :func:`init_file` (a plain state dict). Returns its path."""
    ours = build_ours(cfg, args.seed)
    theirs = build_torchvision(cfg, num_classes, args.recipe, args.seed)
    provider, receiver = (theirs, ours) if args.same_init == "torchvision" else (ours, theirs)
    state = dict(provider.state_dict())
    load_same_init(receiver, state, args.same_init)
    path = init_file(args.work_dir, args.same_init)
    torch.save(state, path)
    return path


def read_same_init(args):
    """The providing side's initial state dict the parent wrote for this run."""
    path = init_file(args.work_dir, args.same_init)
    if not osp.isfile(path):
        raise BenchmarkError(
            f"{path}: not found; run the tool without --side (it writes the initialisation "
            "before either side starts)"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def apply_same_init(model, side, args):
    """``model`` (``side``'s, just built at the seed, on the CPU) under ``--same-init``:
    the receiving side loads the provider's initialisation; the providing side checks that
    its own equals the one handed over. Returns which side's initialisation it starts
    from."""
    if args.same_init is None:
        return side
    state = read_same_init(args)
    if side != args.same_init:
        load_same_init(model, state, args.same_init)
        return args.same_init
    own = model.state_dict()
    differ = [k for k in own if k not in state or not torch.equal(own[k], state[k])]
    differ += [k for k in state if k not in own]
    if differ:
        raise BenchmarkError(
            f"--same-init {side}: this side's initialisation at seed {args.seed} differs from "
            f"the one handed over ({init_file(args.work_dir, side)}) in {_some(differ)}"
        )
    return side


# ---------------------------------------------------------------- detections


def per_class_to_flat(result):
    """Our per-image result (per-class (n, 5) arrays, optionally with per-class RLE masks)
    -> ``dict(boxes (n, 4) xyxy, scores (n,), labels (n,) 0-based, masks [RLE] or None)``."""
    bbox_results, segm_results = result if isinstance(result, tuple) else (result, None)
    boxes, scores, labels = [], [], []
    masks = None if segm_results is None else []
    for label, dets in enumerate(bbox_results):
        dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
        boxes.append(dets[:, :4])
        scores.append(dets[:, 4])
        labels.append(np.full(len(dets), label, dtype=np.int64))
        if masks is not None:
            masks += list(segm_results[label])
    return dict(
        boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4)),
        scores=np.concatenate(scores) if scores else np.zeros(0),
        labels=np.concatenate(labels) if labels else np.zeros(0, np.int64),
        masks=masks,
    )


def encode_masks(masks):
    """(n, H, W) boolean masks -> n RLE dicts (``bytes`` counts, as pycocotools gives)."""
    import pycocotools.mask as mask_utils

    if len(masks) == 0:
        return []
    return mask_utils.encode(np.asfortranarray(np.transpose(masks, (1, 2, 0)).astype(np.uint8)))


def to_coco_results(detections, img_ids, cat_ids):
    """Per-image flat detections (:func:`per_class_to_flat`'s format) -> COCO result lists
    ``{"bbox": [...], "segm": [...]}`` (``segm`` only with masks): boxes ``[x, y, w, h]`` in
    the original image, ``category_id`` = ``cat_ids[label]``, RLE masks with str counts."""
    out = {"bbox": []}
    with_masks = any(d["masks"] is not None for d in detections)
    if with_masks:
        out["segm"] = []
    for img_id, det in zip(img_ids, detections, strict=True):
        boxes = np.asarray(det["boxes"], dtype=np.float64).reshape(-1, 4)
        for j, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            record = dict(
                image_id=int(img_id),
                category_id=int(cat_ids[int(det["labels"][j])]),
                bbox=[x1, y1, x2 - x1, y2 - y1],
                score=float(det["scores"][j]),
            )
            out["bbox"].append(record)
            if with_masks:
                rle = dict(det["masks"][j])
                if isinstance(rle["counts"], bytes):
                    rle["counts"] = rle["counts"].decode("ascii")
                out["segm"].append(dict(record, segmentation=rle))
    return out


def evaluate_coco_results(ann_file, results, cat_ids):
    """COCO AP of both sides alike: ``results`` ``{"bbox"/"segm": COCO result list}`` against
    ``ann_file`` over ``cat_ids`` -> ``{kind: {"AP", "AP50", "AP75"}}`` (-1 where COCOeval has
    no value, e.g. no ground truth)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(ann_file)
    metrics = {}
    for kind, dets in results.items():
        with contextlib.redirect_stdout(io.StringIO()):
            if dets:
                coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
            else:  # loadRes cannot take an empty list: no detections at all
                coco_dt = COCO()
                coco_dt.dataset = dict(
                    images=list(coco_gt.dataset["images"]),
                    categories=copy.deepcopy(coco_gt.dataset["categories"]),
                    annotations=[],
                )
                coco_dt.createIndex()
            evaluator = COCOeval(coco_gt, coco_dt, kind)
            evaluator.params.catIds = [int(c) for c in cat_ids]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        stats = evaluator.stats
        metrics[kind] = dict(AP=float(stats[0]), AP50=float(stats[1]), AP75=float(stats[2]))
    return metrics


# --------------------------------------------------------------------- our side


class IterationLoader:
    """``num_iters`` batches of ``loader`` as one pass (what our runner sees as an epoch of
    ``len() == num_iters``): the loader is restarted, with the next epoch's shuffle
    (``sampler.set_epoch``), as often as needed, and stops after the last batch."""

    def __init__(self, loader, num_iters):
        self.loader = loader
        self.num_iters = num_iters
        self.dataset = loader.dataset

    def __len__(self):
        return self.num_iters

    def __iter__(self):
        done, epoch = 0, 0
        while done < self.num_iters:
            sampler = self.loader.sampler
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            for batch in self.loader:
                yield batch
                done += 1
                if done == self.num_iters:
                    return
            epoch += 1


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_ours(cfg, args, work_dir):
    """Train our detector for ``args.iters`` iterations and test it on the val set.

    Returns ``(run info dict, per-image flat detections, val image ids, val category ids)``.
    """
    from mmdet_like.apis import single_gpu_test
    from mmdet_like.datasets import build_dataloader, build_dataset
    from mmdet_like.engine import EpochBasedRunner, build_optimizer, get_logger
    from mmdet_like.ops import enable_cpu_caching_allocator_from_env

    device = torch.device(args.device)
    caching = enable_cpu_caching_allocator_from_env() if device.type == "cpu" else False
    logger = get_logger(log_file=osp.join(work_dir, "train.log"), log_level="INFO")
    logger.info("our side: CPU caching allocator %s", "on" if caching else "off")
    cfg.seed = args.seed
    model = build_ours(cfg, args.seed)
    init = apply_same_init(model, "ours", args)
    model = model.to(device)
    dataset = build_dataset(cfg.data.train)
    loader = build_dataloader(
        dataset,
        cfg.data.imgs_per_gpu,
        cfg.data.workers_per_gpu,
        shuffle=True,
        seed=args.seed,
        sampler_cfg=cfg.data.get("sampler"),
    )
    runner = EpochBasedRunner(
        model,
        build_optimizer(model, cfg.optimizer),
        work_dir=work_dir,
        logger=logger,
        meta=dict(CLASSES=list(dataset.CLASSES), seed=args.seed),
        max_epochs=1,
    )
    optimizer_config = dict(cfg.get("optimizer_config") or {})
    runner.register_training_hooks(
        cfg.get("lr_config"),
        optimizer_config,
        None,  # no checkpoints: the model is tested in this process
        cfg.get("log_config"),
        cfg.get("custom_hooks"),
    )
    _sync(device)
    start = time.perf_counter()
    runner.run([IterationLoader(loader, args.iters)], [("train", 1)], 1)
    _sync(device)
    train_time = time.perf_counter() - start

    val_dataset = build_dataset(cfg.data.val, {"test_mode": True})
    val_loader = build_dataloader(val_dataset, 1, cfg.data.workers_per_gpu, shuffle=False)
    start = time.perf_counter()
    results = single_gpu_test(runner.model, val_loader)
    test_time = time.perf_counter() - start
    info = dict(
        cpu_caching_allocator=bool(caching),
        iterations=runner.iter,
        train_time_s=train_time,
        test_time_s=test_time,
        train_images=len(dataset),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        recipe="config",
        batch=int(cfg.data.imgs_per_gpu),
        init=init,
    )
    detections = [per_class_to_flat(r) for r in results]
    img_ids = [int(i) for i in val_dataset.img_ids]
    return info, detections, img_ids, [int(c) for c in val_dataset.cat_ids]


# ------------------------------------------------------------- torchvision side


class TorchvisionCocoTrain(torch.utils.data.Dataset):
    """The training images of a COCO file for torchvision's detectors.

    Item: ``(image (3, H, W) float in [0, 1], dict(boxes (n, 4) float32 xyxy, labels (n,)
    int64, 1-based, masks (n, H, W) uint8))`` (``masks`` only with ``with_masks``), flipped
    horizontally with probability ``flip_ratio``. As our ``CocoDataset`` in training: crowd
    annotations are left out (ours makes them ignore regions, which its assigners do not
    use with ``ignore_iof_thr=-1``), boxes are clipped to the image and dropped when empty,
    images without a box (``filter_empty_gt``) or with a side under ``min_size`` are skipped.
    """

    def __init__(self, ann_file, img_dir, class_names, with_masks, flip_ratio, to_rgb,
                 min_size=32, filter_empty_gt=True):  # fmt: skip
        from pycocotools.coco import COCO

        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(ann_file)
        id_of = {}
        for cat in sorted(self.coco.dataset["categories"], key=lambda c: c["id"]):
            id_of.setdefault(cat["name"], cat["id"])
        self.label_of = {id_of[name]: i + 1 for i, name in enumerate(class_names)}
        self.img_dir = img_dir
        self.with_masks = with_masks
        self.flip_ratio = flip_ratio
        self.to_rgb = to_rgb
        self.items = []
        for img in self.coco.dataset["images"]:
            w, h = img["width"], img["height"]
            if min_size is not None and min(w, h) < min_size:
                continue
            anns = []
            for ann in self.coco.imgToAnns.get(img["id"], []):
                if ann.get("iscrowd", 0) or ann["category_id"] not in self.label_of:
                    continue
                x, y, bw, bh = ann["bbox"]
                box = np.asarray([x, y, x + bw, y + bh], dtype=np.float32)
                if not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
                    continue
                box = np.clip(box, 0, [w, h, w, h]).astype(np.float32)
                if box[2] <= box[0] or box[3] <= box[1]:
                    continue
                anns.append((box, self.label_of[ann["category_id"]], ann))
            if anns or not filter_empty_gt:
                self.items.append((img, anns))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        img, anns = self.items[idx]
        image = read_image(osp.join(self.img_dir, img["file_name"]), self.to_rgb)
        height, width = image.shape[:2]
        boxes = torch.from_numpy(np.stack([a[0] for a in anns]) if anns else np.zeros((0, 4)))
        target = dict(
            boxes=boxes.float(),
            labels=torch.tensor([a[1] for a in anns], dtype=torch.int64),
        )
        if self.with_masks:
            masks = [self.coco.annToMask(a[2]) for a in anns]
            target["masks"] = torch.from_numpy(
                np.stack(masks) if masks else np.zeros((0, height, width), np.uint8)
            )
        tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(255)
        if torch.rand(()) < self.flip_ratio:
            tensor = tensor.flip(-1)
            target["boxes"] = torch.stack(
                [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1
            ).float()
            if self.with_masks:
                target["masks"] = target["masks"].flip(-1)
        return tensor, target


def read_image(path, to_rgb):
    """(H, W, 3) uint8 image, RGB when ``to_rgb`` (as our ``Normalize(to_rgb=True)``)."""
    import cv2

    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise BenchmarkError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if to_rgb else image


class EpochShuffleSampler(torch.utils.data.Sampler):
    """Per epoch a permutation of the ``n`` images (seeded by ``seed + epoch``), padded by
    repeating its start to a multiple of ``batch_size`` (full batches, as our sampler)."""

    def __init__(self, n, batch_size, seed):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return math.ceil(self.n / self.batch_size) * self.batch_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=generator).numpy()
        return iter(np.resize(order, len(self)).tolist())


class ReplacementSampler(torch.utils.data.Sampler):
    """The plain recipe's sampling: ``num_samples`` indices of ``n`` images drawn uniformly
    at random with replacement (seeded by ``seed + epoch``): no epochs, no grouping."""

    def __init__(self, n, num_samples, seed):
        self.n, self.num_samples, self.seed, self.epoch = n, num_samples, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randint(self.n, (self.num_samples,), generator=generator).tolist())


def plain_optimizer(model):
    """The plain recipe's AdamW: one group of every trained parameter (norms and biases
    too), all with weight decay ``PLAIN_RECIPE["weight_decay"]``."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        params, lr=PLAIN_RECIPE["lr"], weight_decay=PLAIN_RECIPE["weight_decay"]
    )


def plain_lr_factor(i, num_iters, warmup_iters=PLAIN_RECIPE["warmup_iters"]):
    """The plain recipe's LR at iteration ``i`` (0-based) over the base LR: ``i /
    warmup_iters`` while warming up, then cosine from 1 to 0 at ``i == num_iters`` (a run of
    at most ``warmup_iters`` iterations only warms up)."""
    if i < warmup_iters:
        return i / warmup_iters
    return 0.5 * (1 + math.cos(math.pi * (i - warmup_iters) / (num_iters - warmup_iters)))


def plain_lr_scheduler(optimizer, num_iters):
    """The plain recipe's schedule (:func:`plain_lr_factor`) of ``optimizer``: iteration 0's
    LR once built, iteration ``i``'s after ``i`` calls of ``step()``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: plain_lr_factor(i, num_iters))


def tuple_collate(batch):
    """A list of (image, target) -> (images, targets), torchvision's detection batch."""
    return tuple(zip(*batch))


def run_torchvision(cfg, args, names, with_masks):
    """Train torchvision's model for ``args.iters`` iterations and test it on the val set.

    Returns ``(run info dict, per-image flat detections, val image ids, val category ids)``.
    """
    from pycocotools.coco import COCO

    from mmdet_like.engine import build_optimizer

    device = torch.device(args.device)
    settings = training_settings(cfg)
    plain = args.recipe == "torchvision-plain"
    batch = PLAIN_RECIPE["batch"] if plain else settings["batch"]
    to_rgb = True if plain else settings["to_rgb"]  # torchvision's default mean/std are RGB
    model = build_torchvision(cfg, len(names), args.recipe, args.seed)
    init = apply_same_init(model, "torchvision", args)
    model = model.to(device)
    dataset = TorchvisionCocoTrain(
        cfg.data.train.ann_file,
        cfg.data.train.img_prefix,
        names,
        with_masks,
        PLAIN_RECIPE["flip_ratio"] if plain else settings["flip_ratio"],
        to_rgb,
        settings["min_size"],
        settings["filter_empty_gt"],
    )
    if len(dataset) == 0:
        raise BenchmarkError(f"{cfg.data.train.ann_file}: no training image left")
    if plain:
        sampler = ReplacementSampler(len(dataset), args.iters * batch, args.seed)
    else:
        sampler = EpochShuffleSampler(len(dataset), batch, args.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=settings["workers"],
        collate_fn=tuple_collate,
        generator=torch.Generator().manual_seed(args.seed),
    )
    if plain:
        optimizer = plain_optimizer(model)
        scheduler = plain_lr_scheduler(optimizer, args.iters)
        grad_clip = None
    else:
        optimizer = build_optimizer(model, cfg.optimizer)
        scheduler = torchvision_lr_scheduler(optimizer, settings["lr_config"], args.iters)
        grad_clip = settings["grad_clip"]
    interval = (cfg.get("log_config") or {}).get("interval", 50)
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    done, epoch = 0, 0
    _sync(device)
    start = time.perf_counter()
    while done < args.iters:
        sampler.set_epoch(epoch)
        for images, targets in loader:
            images = [image.to(device) for image in images]
            targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
            losses = model(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                terms = {k: float(v) for k, v in losses.items()}
                raise RuntimeError(
                    f"torchvision side: non-finite loss at iteration {done + 1}: {terms}"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in params if p.grad is not None], **grad_clip
                )
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            done += 1
            if done % interval == 0 or done == args.iters:
                parts = ", ".join(f"{k}: {v.item():.4f}" for k, v in losses.items())
                print(f"torchvision iter [{done}/{args.iters}] lr: {lr:.3e}, {parts}, "
                      f"loss: {loss.item():.4f}", flush=True)  # fmt: skip
            if done == args.iters:
                break
        epoch += 1
    _sync(device)
    train_time = time.perf_counter() - start

    with contextlib.redirect_stdout(io.StringIO()):
        coco_val = COCO(cfg.data.val.ann_file)
    id_of = {}
    for cat in sorted(coco_val.dataset["categories"], key=lambda c: c["id"]):
        id_of.setdefault(cat["name"], cat["id"])
    missing = [n for n in names if n not in id_of]
    if missing:
        raise BenchmarkError(f"{cfg.data.val.ann_file}: no categories named {missing}")
    images = coco_val.dataset["images"]
    model.eval()
    detections = []
    start = time.perf_counter()
    with torch.no_grad():
        for img in images:
            path = osp.join(cfg.data.val.img_prefix, img["file_name"])
            image = torch.from_numpy(read_image(path, to_rgb)).permute(2, 0, 1)
            output = model([image.float().div_(255).to(device)])[0]
            det = dict(
                boxes=output["boxes"].cpu().numpy(),
                scores=output["scores"].cpu().numpy(),
                labels=output["labels"].cpu().numpy() - 1,
                masks=None,
            )
            if with_masks:
                det["masks"] = encode_masks(
                    (output["masks"][:, 0] >= settings["mask_thr"]).cpu().numpy()
                )
            detections.append(det)
    test_time = time.perf_counter() - start
    info = dict(
        iterations=done,
        train_time_s=train_time,
        test_time_s=test_time,
        train_images=len(dataset),
        trainable_params=sum(p.numel() for p in params),
        recipe=args.recipe,
        batch=batch,
        init=init,
    )
    return info, detections, [img["id"] for img in images], [id_of[n] for n in names]


# --------------------------------------------------------------------- driver


def parse_args(argv=None):
    from mmdet_like.engine import add_cfg_options_argument

    parser = argparse.ArgumentParser(
        description="Same-budget accuracy: our detector and torchvision's trained alike"
    )
    parser.add_argument("config", help="our config (a two-stage FPN R-CNN on a ResNet)")
    parser.add_argument(
        "--data",
        nargs=3,
        required=True,
        metavar=("ANN_TRAIN", "ANN_VAL", "IMG_DIR"),
        help="COCO annotation files of the train and val splits, and the image folder",
    )
    parser.add_argument("--val-img-dir", help="folder of the val images (default: IMG_DIR)")
    parser.add_argument("--iters", type=int, required=True, help="training iterations per side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    parser.add_argument("--work-dir", help="default: work_dirs/benchmark_accuracy/CONFIG_NAME")
    parser.add_argument("--out-json", help="write the numbers to this json file")
    parser.add_argument(
        "--recipe", choices=RECIPES, default="config",
        help="how torchvision's side trains: config (default: as ours, from the config) or "
        "torchvision-plain (issue 28's plain loop; see the module doc)",
    )  # fmt: skip
    parser.add_argument(
        "--same-init", choices=SAME_INITS,
        help="both sides start from this side's random initialisation at the seed, converted "
        "into the other's layout (default: each side its own library's; see the module doc)",
    )  # fmt: skip
    add_cfg_options_argument(parser)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.ann_train, args.ann_val, args.img_dir = args.data
    args.val_img_dir = args.val_img_dir or args.img_dir
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.work_dir is None:
        name = osp.splitext(osp.basename(args.config))[0]
        args.work_dir = osp.join("work_dirs", "benchmark_accuracy", name)
    args.work_dir = osp.abspath(args.work_dir)
    return args


def check_inputs(args):
    """Raise :class:`BenchmarkError` for a missing input or a bad number of iterations."""
    if not osp.isfile(args.config):
        raise BenchmarkError(f"config file not found: {args.config}")
    for path in (args.ann_train, args.ann_val):
        if not osp.isfile(path):
            raise BenchmarkError(f"annotation file not found: {path}")
    for path in dict.fromkeys((args.img_dir, args.val_img_dir)):
        if not osp.isdir(path):
            raise BenchmarkError(f"image folder not found: {path}")
    if args.iters < 1:
        raise BenchmarkError(f"--iters must be at least 1, got {args.iters}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError("--device cuda: no CUDA device is available")


def run_side(args):
    """In a child process: train and test one side, write its run info and detections."""
    cfg, names, with_masks = prepare_config(
        args.config, args.cfg_options, args.ann_train, args.ann_val, args.img_dir, args.val_img_dir
    )
    work_dir = osp.join(args.work_dir, args.side)
    os.makedirs(work_dir, exist_ok=True)
    if args.side == "ours":
        info, detections, img_ids, cat_ids = run_ours(cfg, args, work_dir)
    else:
        info, detections, img_ids, cat_ids = run_torchvision(cfg, args, names, with_masks)
    info.update(device=args.device, val_images=len(img_ids), cat_ids=cat_ids)
    with open(osp.join(work_dir, "detections.json"), "w") as f:
        json.dump(to_coco_results(detections, img_ids, cat_ids), f)
    with open(osp.join(work_dir, "run.json"), "w") as f:
        json.dump(info, f)


def _fmt(value):
    return "-" if value is None else f"{value:.3f}"


def render_table(rows, args, cfg, with_masks):
    """The markdown table (plus a header line and the unmatched settings) of ``rows``."""
    settings = training_settings(cfg)
    first = rows[0]
    batches = sorted({row.get("batch", settings["batch"]) for row in rows})
    batch = " / ".join(
        f"{row.get('batch', settings['batch'])} ({row['side']})" for row in rows
    ) if len(batches) > 1 else str(batches[0])  # fmt: skip
    lines = [
        f"`{args.config}` on {first['train_images']} train / {first['val_images']} val images "
        f"({args.device}), {args.iters} iterations of {batch} images, max side "
        f"{settings['img_scale'][0]}, seed {args.seed}; each side in its own process.",
        "",
        "| side | iterations | train time (s) | trainable params | bbox AP | bbox AP50 "
        "| bbox AP75 | mask AP | mask AP50 | mask AP75 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        bbox, segm = row["bbox"], row.get("segm") or {}
        lines.append(
            f"| {row['side']} | {row['iterations']} | {row['train_time_s']:.1f} "
            f"| {row['trainable_params'] / 1e6:.2f} M "
            f"| {_fmt(bbox['AP'])} | {_fmt(bbox['AP50'])} | {_fmt(bbox['AP75'])} "
            f"| {_fmt(segm.get('AP'))} | {_fmt(segm.get('AP50'))} | {_fmt(segm.get('AP75'))} |"
        )
    model = "MaskRCNN" if with_masks else "FasterRCNN"
    lines += ["", f"torchvision: `torchvision.models.detection.{model}` of the config's sizes."]
    lines += ["", "Recipes (how each side trained):"]
    for row in rows:
        if row.get("recipe") == "torchvision-plain":
            text = f"{PLAIN_RECIPE_TEXT}. NOT the config's recipe: the sides are not trained alike"
        else:
            text = "the config's (optimizer, LR schedule, batch, clipping, samplers, proposals)"
        lines.append(f"- {row['side']}: {text}")
    lines += ["", "Not matched (besides the recipes):"]
    plain = any(row.get("recipe") == "torchvision-plain" for row in rows)
    recipe = "torchvision-plain" if plain else "config"
    lines += [f"- {note}" for note in unmatched_settings(cfg, recipe, args.same_init)]
    if any(row.get("cpu_caching_allocator") for row in rows):
        lines.append("- ours runs with our CPU caching allocator, as tools/train.py does")
    return "\n".join(lines) + "\n"


def run_parent(args, argv):
    check_inputs(args)
    cfg, names, with_masks = prepare_config(
        args.config, args.cfg_options, args.ann_train, args.ann_val, args.img_dir, args.val_img_dir
    )
    # fails here, not after our side trained, if it cannot
    build_torchvision_model(cfg, 1, args.recipe)
    os.makedirs(args.work_dir, exist_ok=True)
    for provider in SAME_INITS:  # never hand over a previous run's
        if osp.exists(init_file(args.work_dir, provider)):
            os.remove(init_file(args.work_dir, provider))
    if args.same_init:
        path = write_same_init(cfg, len(names), args)
        whose = "torchvision's" if args.same_init == "torchvision" else "our"
        print(f"==> both sides start from {whose} initialisation (seed {args.seed}): {path}",
              flush=True)  # fmt: skip
    rows = []
    for side in dict.fromkeys(args.sides):
        print(f"==> {side}: training {args.iters} iterations", flush=True)
        side_dir = osp.join(args.work_dir, side)
        for name in ("run.json", "detections.json"):  # never read a previous run's
            if osp.exists(osp.join(side_dir, name)):
                os.remove(osp.join(side_dir, name))
        cmd = [sys.executable, osp.abspath(__file__), *argv]
        cmd += ["--work-dir", args.work_dir, "--device", args.device, "--side", side]
        code = subprocess.call(cmd)
        if code != 0:
            raise BenchmarkError(f"the {side} side failed (exit code {code}); its output is above")
        with open(osp.join(side_dir, "run.json")) as f:
            info = json.load(f)
        with open(osp.join(side_dir, "detections.json")) as f:
            results = json.load(f)
        metrics = evaluate_coco_results(cfg.data.val.ann_file, results, info["cat_ids"])
        rows.append(dict(side=side, **info, **metrics))
    table = render_table(rows, args, cfg, with_masks)
    print(table)
    if args.out_json:
        out = dict(
            config=args.config,
            iters=args.iters,
            seed=args.seed,
            recipe=args.recipe,
            same_init=args.same_init,
            device=args.device,
            data=dict(
                ann_train=args.ann_train,
                ann_val=args.ann_val,
                img_dir=args.img_dir,
                val_img_dir=args.val_img_dir,
            ),
            sides={row.pop("side"): row for row in rows},
            not_matched=unmatched_settings(cfg, args.recipe, args.same_init),
        )
        os.makedirs(osp.dirname(osp.abspath(args.out_json)), exist_ok=True)
        with open(args.out_json, "w") as f:
            json.dump(out, f, indent=2)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.side:
        run_side(args)
    else:
        run_parent(args, argv)


if __name__ == "__main__":
    sys.exit(run_tool(main))
