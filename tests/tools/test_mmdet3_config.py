"""mmdetection 3.x configs: refused by our loaders with one line naming the converter, and
tools/misc/mmdet3_config_to_ours.py writes an equivalent config of ours.

The 3.x configs (tests/tools/mmdet3_configs/, in mmdetection 3.3's layout, written by hand)
are converted and the result is checked three ways: it passes ``check_config`` and builds;
its numbers are the 3.x config's (read with mmengine, independently of the converter); and
its model and data are those of our own shipped config of the same family (same parameter
shapes, same pipelines and files)."""

import os.path as osp
import shutil

import pytest
import torch
from mmengine.config import Config

from mmdet_like.apis.config_check import check_config
from mmdet_like.apis.mmdet3_config import (
    Conversion,
    Mmdet3ConversionError,
    convert_mmdet3_config,
    format_config,
    load_mmdet3_config,
)
from mmdet_like.datasets.pipelines import Compose
from mmdet_like.engine import load_config
from mmdet_like.engine.mmdet3_config import CONVERTER, Mmdet3ConfigError
from mmdet_like.models import build_detector
from mmdet_like.models.task_modules import HungarianAssigner
from mmdet_like.registry import BBOX_ASSIGNERS, HEADS, build_from_cfg
from mmdet_like.structures import InstanceData
from tests.engine.cli_utils import ROOT, call_tool

CONFIGS = ROOT / "tests" / "tools" / "mmdet3_configs"
TOOL = "misc/mmdet3_config_to_ours.py"

# 3.x config -> our shipped config of the same model
FAMILIES = {
    "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py": "faster_rcnn_r50_fpn_1x.py",
    "mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py": "mask_rcnn_r50_fpn_1x.py",
    "cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py": "cascade_mask_rcnn_r50_fpn_1x.py",
    "retinanet/retinanet_r50_fpn_1x_coco.py": "retinanet_r50_fpn_1x.py",
    "fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py": "fcos_r50_caffe_fpn_gn-head_1x.py",
    "atss/atss_r50_fpn_1x_coco.py": "atss/atss_r50_fpn_1x_coco.py",
    "gfl/gfl_r50_fpn_1x_coco.py": "gfl/gfl_r50_fpn_1x_coco.py",
}


def convert(source, tmp_path, name="ours.py"):
    """Run the converter on ``source`` in this process; (the written config, the output)."""
    out = tmp_path / name
    run = call_tool(TOOL, source, out, cwd=tmp_path)
    assert run.status == 0, run.output
    return str(out), run.output


def shapes(model):
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def step(pipeline, kind):
    return next(s for s in pipeline if s["type"] == kind)


def heads(model):
    """The 3.x / our model dict's box heads with classes (a cascade's first stage)."""
    if "bbox_head" in model:
        return [model["bbox_head"]]
    roi = model["roi_head"]
    box = roi["bbox_head"][0] if isinstance(roi["bbox_head"], list) else roi["bbox_head"]
    return [box] + ([roi["mask_head"]] if "mask_head" in roi else [])


def assigner_cfgs(train_cfg):
    """The train_cfg entries with an assigner: a single-stage head's, or the RPN's and each
    R-CNN stage's (none without a train_cfg: FCOS assigns by geometry)."""
    if not train_cfg:
        return []
    if "assigner" in train_cfg:
        return [train_cfg]
    rcnn = train_cfg.get("rcnn", [])
    return [train_cfg["rpn"]] + (list(rcnn) if isinstance(rcnn, (list, tuple)) else [rcnn])


# ----------------------------------------------------------------------------- refusal
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_our_loaders_refuse_a_3x_config_in_one_line_naming_the_converter(family):
    path = str(CONFIGS / family)
    with pytest.raises(Mmdet3ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: an mmdetection 3.x config (train_cfg.type=")
    assert "'EpochBasedTrainLoop'" in message
    for key in ("train_dataloader", "val_evaluator", "optim_wrapper", "param_scheduler",
                "default_hooks", "model.data_preprocessor"):  # fmt: skip
        assert key in message, key
    assert f"python {CONVERTER} {path} OUT.py" in message
    # a config built otherwise is refused by the start-up check alike
    with pytest.raises(Mmdet3ConfigError, match="python tools/misc/mmdet3_config_to_ours.py"):
        check_config(Config.fromfile(path), path)


def test_the_tools_print_the_refusal_as_one_line(tmp_path):
    path = str(CONFIGS / "faster_rcnn" / "faster-rcnn_r50_fpn_1x_coco.py")
    run = call_tool("print_config.py", path, cwd=tmp_path)
    assert run.status == 1
    error = run.stderr.splitlines()[0]
    assert error.startswith("print_config.py: error: ") and CONVERTER in error
    assert "Traceback" not in run.output and "not a key" not in run.output


def test_a_3x_config_without_its_base_files_is_recognised_from_its_own_keys(tmp_path):
    lone = tmp_path / "retinanet_r50_fpn_1x_coco.py"
    shutil.copy(CONFIGS / "retinanet" / lone.name, lone)
    with pytest.raises(Mmdet3ConfigError, match=r"\(optim_wrapper\).*mmdet3_config_to_ours"):
        load_config(str(lone))
    # the converter needs the bases: it says where they come from
    with pytest.raises(Mmdet3ConversionError) as info:
        load_mmdet3_config(str(lone))
    message = str(info.value)
    assert "../_base_/models/retinanet_r50_fpn.py" in message and "does not exist" in message
    assert "mmdetection's own" in message and "copy them next to the config" in message


def test_our_configs_are_not_taken_for_3x_ones():
    path = str(ROOT / "configs" / "mask_rcnn_r50_fpn_1x.py")
    assert check_config(load_config(path), path) == []
    with pytest.raises(Mmdet3ConversionError, match="not an mmdetection 3.x config"):
        load_mmdet3_config(path)


# ----------------------------------------------------------------------------- families
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_converted_family_keeps_the_3x_numbers_and_is_our_shipped_model(family, tmp_path):
    source = str(CONFIGS / family)
    out, output = convert(source, tmp_path)
    assert f"{out} passes the config check" in output
    ours = load_config(out)
    assert check_config(ours, out) == []
    model = build_detector(ours.model, ours.get("train_cfg"), ours.get("test_cfg"))
    three = Config.fromfile(source)

    # the numbers, against the 3.x config as mmengine reads it
    for head, head3 in zip(heads(ours.model), heads(three.model), strict=True):
        assert head["num_classes"] == head3["num_classes"] == 80
        # every loss (ATSS's loss_centerness, GFL's loss_dfl, ...) as it is, and the plain
        # numbers ours takes (GFL's reg_max, ...)
        for key in sorted(head3):
            if key.startswith("loss_"):
                assert head.get(key) == head3[key], key
            elif key in head and not isinstance(head3[key], (dict, list)):
                assert head[key] == head3[key], key
    assigners = assigner_cfgs(ours.get("train_cfg"))
    assigners3 = assigner_cfgs(three.model.get("train_cfg"))
    for ours_cfg, cfg3 in zip(assigners, assigners3, strict=True):
        assert ours_cfg.assigner == cfg3.assigner
    anchor_head = "bbox_head" if "bbox_head" in three.model else "rpn_head"
    if "anchor_generator" in three.model[anchor_head]:
        assert ours.model[anchor_head].anchor_generator == three.model[anchor_head].anchor_generator
    optimizer3 = dict(type="SGD", momentum=0.9, weight_decay=0.0001, lr=0.02)
    optimizer3.update(three.optim_wrapper.optimizer)
    for key in ("type", "lr", "momentum", "weight_decay"):
        assert ours.optimizer[key] == optimizer3[key], key
    assert ours.optimizer.get("paramwise_cfg") == three.optim_wrapper.get("paramwise_cfg")
    assert ours.optimizer_config.grad_clip == three.optim_wrapper.get("clip_grad")
    warmup3, steps3 = three.param_scheduler
    assert ours.lr_config.warmup == {"LinearLR": "linear", "ConstantLR": "constant"}[warmup3.type]
    assert ours.lr_config.warmup_iters == warmup3.end == 500
    assert ours.lr_config.warmup_ratio == warmup3.get("start_factor", warmup3.get("factor"))
    assert ours.lr_config.policy == "step" and ours.lr_config.step == steps3.milestones
    assert ours.total_epochs == three.train_cfg.max_epochs == 12
    assert ours.data.imgs_per_gpu == three.train_dataloader.batch_size
    assert ours.data.workers_per_gpu == three.train_dataloader.num_workers
    resize3 = step(three.train_dataloader.dataset.pipeline, "Resize")
    assert step(ours.data.train.pipeline, "Resize").img_scale == resize3.scale
    flip = step(ours.data.train.pipeline, "RandomFlip")
    assert flip.flip_ratio == step(three.train_dataloader.dataset.pipeline, "RandomFlip").prob
    test_aug = step(ours.data.test.pipeline, "MultiScaleFlipAug")
    assert test_aug.img_scale == step(three.test_dataloader.dataset.pipeline, "Resize").scale
    preprocessor = three.model.data_preprocessor
    for pipeline in (ours.data.train.pipeline, test_aug.transforms):
        normalize = step(pipeline, "Normalize")
        assert normalize.mean == preprocessor.mean and normalize.std == preprocessor.std
        assert normalize.to_rgb == preprocessor.bgr_to_rgb
        assert step(pipeline, "Pad").size_divisor == preprocessor.pad_size_divisor
        assert [s["type"] for s in pipeline][-3:] == ["Normalize", "Pad", "PackDetInputs"]
        Compose(pipeline)  # every transform takes its arguments
    assert not any(s["type"] == "LoadAnnotations" for s in test_aug.transforms)
    assert ours.evaluation.metric == three.val_evaluator.metric
    assert ours.evaluation.interval == three.train_cfg.val_interval
    assert ours.checkpoint_config.interval == three.default_hooks.checkpoint.interval
    assert ours.log_config.interval == three.default_hooks.logger.interval
    if "rpn_head" in three.model:
        for ours_rpn, rpn3 in ((ours.train_cfg.rpn_proposal, three.model.train_cfg.rpn_proposal),
                               (ours.test_cfg.rpn, three.model.test_cfg.rpn)):  # fmt: skip
            assert ours_rpn.max_num == rpn3.max_per_img and ours_rpn.nms_pre == rpn3.nms_pre
            assert ours_rpn.nms_thr == rpn3.nms.iou_threshold and ours_rpn.nms_post is None
    test3 = three.model.test_cfg.get("rcnn", three.model.test_cfg)
    test_ours = ours.test_cfg.get("rcnn", ours.test_cfg)
    assert test_ours.nms.iou_thr == test3.nms.iou_threshold
    assert test_ours.score_thr == test3.score_thr and test_ours.max_per_img == test3.max_per_img

    # the model and data of our shipped config of the same family
    shipped = load_config(str(ROOT / "configs" / FAMILIES[family]))
    shipped_model = build_detector(shipped.model, shipped.get("train_cfg"), shipped.get("test_cfg"))
    assert shapes(model) == shapes(shipped_model)
    assert ours.model.pretrained == shipped.model.pretrained
    for split in ("train", "val", "test"):
        converted, ship = ours.data[split], shipped.data[split]
        assert osp.join(converted.data_root, converted.ann_file) == ship.ann_file
        assert osp.join(converted.data_root, converted.img_prefix) == ship.img_prefix
        assert converted.pipeline == ship.pipeline, split
    assert ours.data.imgs_per_gpu == shipped.data.imgs_per_gpu
    assert ours.evaluation.metric == shipped.evaluation.metric
    assert ours.optimizer.lr == shipped.optimizer.lr


def test_bases_next_to_it_and_a_self_contained_file_convert_alike(tmp_path):
    source = CONFIGS / "mask_rcnn" / "mask-rcnn_r50_fpn_1x_coco.py"
    flat = tmp_path / "mask-rcnn_self_contained.py"
    Config.fromfile(str(source)).dump(str(flat))  # the merged config, one file
    assert "_base_" not in flat.read_text()
    from_bases = convert_mmdet3_config(load_mmdet3_config(str(source)))
    from_flat = convert_mmdet3_config(load_mmdet3_config(str(flat)))  # its keys sorted
    assert from_flat.entries == from_bases.entries
    assert sorted(from_flat.untranslated) == sorted(from_bases.untranslated)
    assert sorted(from_flat.notes) == sorted(from_bases.notes)
    written = tmp_path / "ours.py"
    written.write_text(format_config(from_flat))
    assert Config.fromfile(str(written)).to_dict() == from_bases.entries


# ------------------------------------------------------------------- a user's config
CUSTOM = """
# a self-contained 3.x config for a 3-class dataset, as users write them
_base_ = []
default_scope = "mmdet"
classes = ("cat", "dog", "bird")
data_root = "data/pets/"
model = dict(
    type="RetinaNet",
    data_preprocessor=dict(type="DetDataPreprocessor", mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=64,
                           batch_augments=[dict(type="BatchFixedSizePad", size=(640, 640))]),
    backbone=dict(type="ResNet", depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                  frozen_stages=1, norm_cfg=dict(type="BN", requires_grad=True), norm_eval=True,
                  style="pytorch",
                  init_cfg=dict(type="Pretrained", checkpoint="checkpoints/r50.pth")),
    neck=dict(type="FPN", in_channels=[256, 512, 1024, 2048], out_channels=256, start_level=1,
              add_extra_convs="on_input", num_outs=5, upsample_cfg=dict(mode="nearest")),
    bbox_head=dict(type="RetinaHead", num_classes=3, in_channels=256, stacked_convs=4,
                   feat_channels=256,
                   anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4,
                                         scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                                         strides=[8, 16, 32, 64, 128]),
                   bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4,
                                   target_stds=[1.0] * 4, add_ctr_clamp=True),
                   loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25,
                                 loss_weight=1.0),
                   loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
                   init_cfg=dict(type="Normal", layer="Conv2d", std=0.01)),
    train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4,
                                 min_pos_iou=0, ignore_iof_thr=-1),
                   sampler=dict(type="PseudoSampler"), allowed_border=-1, pos_weight=-1,
                   debug=False),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type="nms", iou_threshold=0.6), max_per_img=100),
)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="RandomChoiceResize", scales=[(1333, 640), (1333, 800)], keep_ratio=True),
    dict(type="PhotoMetricDistortion"),
    dict(type="AutoContrast"),
    dict(type="YOLOXHSVRandomAug"),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(1333, 800), keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape",
                                          "scale_factor", "instances")),
]
train_dataloader = dict(
    batch_size=4, num_workers=3, persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    batch_sampler=dict(type="AspectRatioBatchSampler"),
    dataset=dict(type="RepeatDataset", times=3, dataset=dict(
        type="CocoDataset", data_root=data_root, metainfo=dict(classes=classes,
        palette=[(220, 20, 60), (119, 11, 32), (0, 0, 142)]),
        ann_file="annotations/train.json", data_prefix=dict(img="images/"),
        filter_cfg=dict(filter_empty_gt=False), pipeline=train_pipeline)))
val_dataloader = dict(
    batch_size=1, num_workers=3, drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(type="CocoDataset", data_root=data_root, metainfo=dict(classes=classes),
                 ann_file="annotations/val.json", data_prefix=dict(img="images/"),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type="CocoMetric", ann_file=data_root + "annotations/val.json",
                     metric="bbox", classwise=True, format_only=False)
test_evaluator = val_evaluator
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=24, val_interval=2)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(
    type="AmpOptimWrapper", loss_scale="dynamic",
    optimizer=dict(type="AdamW", lr=0.0001, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={"backbone": dict(lr_mult=0.1)}),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=300),
    dict(type="CosineAnnealingLR", T_max=24, eta_min=1e-06, begin=0, end=24, by_epoch=True),
]
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=20),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", interval=2, max_keep_ckpts=3,
                    save_best="coco/bbox_mAP", rule="greater"),
    sampler_seed=dict(type="DistSamplerSeedHook"),
    visualization=dict(type="DetVisualizationHook", draw=True, interval=5))
custom_hooks = [dict(type="NumClassCheckHook"), dict(type="EmptyCacheHook", after_iter=True)]
env_cfg = dict(cudnn_benchmark=True, dist_cfg=dict(backend="gloo"))
vis_backends = [dict(type="LocalVisBackend"), dict(type="TensorboardVisBackend")]
visualizer = dict(type="DetLocalVisualizer", vis_backends=vis_backends, name="visualizer")
randomness = dict(seed=42, deterministic=True)
auto_scale_lr = dict(enable=False, base_batch_size=8)
work_dir = "work_dirs/pets"
load_from = "work_dirs/pets/epoch_10.pth"
resume = True
"""


def test_a_self_contained_user_config_converts_with_what_is_left_out_listed(tmp_path):
    source = tmp_path / "pets_retinanet_3x.py"
    source.write_text(CUSTOM)
    out, output = convert(str(source), tmp_path)
    ours = load_config(out)
    assert check_config(ours, out) == []
    model = build_detector(ours.model, ours.get("train_cfg"), ours.get("test_cfg"))
    assert model.bbox_head.num_classes == 3
    assert ours.model.pretrained == "checkpoints/r50.pth"
    assert ours.model.neck.upsample_mode == "nearest"
    assert ours.test_cfg.nms == dict(type="nms", iou_thr=0.6)

    train = ours.data.train
    assert train.type == "RepeatDataset" and train.times == 3
    assert train.dataset.classes == ("cat", "dog", "bird") == ours.data.val.classes
    assert train.dataset.filter_empty_gt is False and train.dataset.min_size is None
    assert ours.data.imgs_per_gpu == 4 and ours.data.workers_per_gpu == 3
    assert "sampler" not in ours.data  # AspectRatioBatchSampler: our default GroupSampler
    resize = step(train.dataset.pipeline, "Resize")
    assert resize == dict(type="Resize", img_scale=[(1333, 640), (1333, 800)],
                          multiscale_mode="value", keep_ratio=True)  # fmt: skip
    assert [s["type"] for s in train.dataset.pipeline] == [
        "LoadImageFromFile", "LoadAnnotations", "Resize", "PhotoMetricDistortion",
        "YOLOXHSVRandomAug", "RandomFlip", "Normalize", "Pad", "PackDetInputs",
    ]  # fmt: skip
    assert step(train.dataset.pipeline, "Pad").size_divisor == 64
    Compose(train.dataset.pipeline)
    Compose(ours.data.val.pipeline)

    assert ours.evaluation == dict(interval=2, metric="bbox", classwise=True,
                                   save_best="bbox_mAP", rule="greater")  # fmt: skip
    assert ours.optimizer == dict(
        type="AdamW", lr=0.0001, weight_decay=0.05,
        paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1)}, norm_decay_mult=0.0),
    )  # fmt: skip
    assert ours.optimizer_config == dict(grad_clip=dict(max_norm=10, norm_type=2))
    assert ours.fp16 == dict(dtype="float16", loss_scale="dynamic")
    assert ours.lr_config == dict(policy="cosine", warmup="linear", warmup_iters=300,
                                  warmup_ratio=0.01, min_lr=1e-06)  # fmt: skip
    assert ours.total_epochs == 24
    assert ours.checkpoint_config == dict(interval=2, max_keep_ckpts=3)
    assert ours.log_config == dict(
        interval=20, hooks=[dict(type="TextLoggerHook"), dict(type="TensorboardLoggerHook")]
    )
    assert ours.custom_hooks == [dict(type="EmptyCacheHook", after_iter=True)]
    assert ours.dist_params == dict(backend="gloo")
    assert (ours.seed, ours.deterministic, ours.work_dir) == (42, True, "work_dirs/pets")
    assert ours.resume_from == "work_dirs/pets/epoch_10.pth" and "load_from" not in ours

    left_out = [
        "model.data_preprocessor.batch_augments[0]={'type': 'BatchFixedSizePad'",
        "model.bbox_head.init_cfg=",
        "model.bbox_head.bbox_coder.add_ctr_clamp=True",
        "train_dataloader.dataset.dataset.pipeline[4]={'type': 'AutoContrast'}",
        "train_dataloader.dataset.dataset.metainfo.palette=",
        "val_dataloader.dataset.pipeline[3].meta_keys=",
        "test_dataloader.dataset.pipeline[3].meta_keys=",
        "default_hooks.visualization=",
        "custom_hooks[0]='NumClassCheckHook'",
        "env_cfg.cudnn_benchmark=True",
    ]
    header = open(out).read().split("\nmodel = ")[0]
    assert f"# NOT TRANSLATED ({len(left_out)}): check these by hand" in header
    for item in left_out:
        assert f"#   - {item}" in header, item
        assert f"  - {item}" in output, item
    # auto_scale_lr is read by tools/train.py as mmdetection reads it: carried over as it is
    assert ours.auto_scale_lr == dict(enable=False, base_batch_size=8)
    assert (
        "helper variables of the 3.x config, written where it used them: classes, data_root"
        in header
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ('param_scheduler = [dict(type="OneCycleLR", eta_max=0.01, total_steps=100)]',
         "param_scheduler[0].type='OneCycleLR': mmdet_like has no such LR schedule"),
        ('param_scheduler = [dict(type="CosineAnnealingLR", T_max=12, begin=12, end=24)]',
         "param_scheduler[0]: CosineAnnealingLR from begin=12"),
        ("param_scheduler = [dict(type='CosineAnnealingLR', T_max=12, end=12)]",
         "param_scheduler[0]: CosineAnnealingLR over 12 of the run's 24 epochs/iterations"),
        ('model = dict(bbox_head=dict(_delete_=True, type="RTMDetHead", num_classes=3))',
         "model.bbox_head.type='RTMDetHead' has no counterpart in mmdet_like"),
        ('optim_wrapper = dict(type="DeepSpeedOptimWrapper")',
         "optim_wrapper.type='DeepSpeedOptimWrapper' has no counterpart in mmdet_like"),
        ('train_dataloader = dict(dataset=dict(dataset=dict(type="LVISV1Dataset")))',
         "train_dataloader.dataset.dataset.type='LVISV1Dataset' has no counterpart"),
        ('train_cfg = dict(_delete_=True, type="MyLoop")',
         "train_cfg.type='MyLoop': mmdet_like runs EpochBasedTrainLoop"),
    ],
)  # fmt: skip
def test_what_has_no_counterpart_is_an_error_naming_it(tmp_path, change, message):
    (tmp_path / "base.py").write_text(CUSTOM)
    (tmp_path / "changed.py").write_text(f'_base_ = ["base.py"]\n{change}\n')
    run = call_tool(TOOL, "changed.py", "ours.py", cwd=tmp_path)
    assert run.status == 1
    assert message in run.stderr and "nothing was written" in run.stderr
    assert not (tmp_path / "ours.py").exists()


def test_a_3x_run_without_aspect_ratio_batches_gets_our_shuffle_sampler(tmp_path):
    source = tmp_path / "plain_batches.py"
    source.write_text(
        CUSTOM.replace('batch_sampler=dict(type="AspectRatioBatchSampler"),', "batch_sampler=None,")
    )
    out, _ = convert(str(source), tmp_path)
    ours = load_config(out)
    assert ours.data.sampler == dict(type="ShuffleSampler")
    assert check_config(ours, out) == []


def test_an_iteration_based_3x_run_is_written_as_an_iteration_based_runner(tmp_path):
    (tmp_path / "base.py").write_text(CUSTOM)
    (tmp_path / "iters.py").write_text(
        '_base_ = ["base.py"]\n'
        'train_cfg = dict(_delete_=True, type="IterBasedTrainLoop", max_iters=90000, '
        "val_interval=10000)\n"
        "param_scheduler = [\n"
        '    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),\n'
        '    dict(type="MultiStepLR", begin=0, end=90000, by_epoch=False, '
        "milestones=[60000, 80000], gamma=0.1)]\n"
        "default_hooks = dict(checkpoint=dict(by_epoch=False, interval=10000))\n"
    )
    conversion = convert_mmdet3_config(load_mmdet3_config(str(tmp_path / "iters.py")))
    entries = conversion.entries
    assert entries["runner"] == dict(type="IterBasedRunner", max_iters=90000)
    assert "total_epochs" not in entries
    assert entries["lr_config"] == dict(policy="step", warmup="linear", warmup_iters=500,
                                        warmup_ratio=0.001, step=[60000, 80000],
                                        by_epoch=False)  # fmt: skip
    assert entries["checkpoint_config"] == dict(by_epoch=False, interval=10000, max_keep_ckpts=3)
    assert entries["evaluation"]["interval"] == 10000
    assert any("IterBasedRunner" in note for note in conversion.notes)
    # the written config is one of ours that trains by iterations
    run = call_tool(TOOL, "iters.py", "ours.py", cwd=tmp_path)
    assert run.status == 0, run.stderr
    out = str(tmp_path / "ours.py")
    ours = load_config(out)
    # nothing to change; the one note says the run counts iterations
    assert check_config(ours, out) == [
        "runner=dict(type='IterBasedRunner', max_iters=90000): training by iterations "
        "(total_epochs is not read)"
    ]
    assert ours.runner == dict(type="IterBasedRunner", max_iters=90000)
    assert ours.evaluation["by_epoch"] is False and ours.lr_config["by_epoch"] is False


@pytest.mark.parametrize(
    "schedulers, lr_config",
    [
        ([dict(type="LinearLR", start_factor=0.1, by_epoch=True, begin=0, end=2),
          dict(type="StepLR", step_size=3, gamma=0.5, by_epoch=True)],
         dict(policy="step", warmup="linear", warmup_epochs=2, warmup_ratio=0.1, step=3,
              gamma=0.5)),
        ([dict(type="PolyLR", power=0.9, eta_min=1e-4, begin=0, end=12, by_epoch=True)],
         dict(policy="poly", power=0.9, min_lr=1e-4)),
        ([dict(type="ExponentialLR", gamma=0.9)], dict(policy="exp", gamma=0.9)),
        ([dict(type="ConstantLR", factor=0.5, by_epoch=False, begin=0, end=100)],
         dict(policy="fixed", warmup="constant", warmup_iters=100, warmup_ratio=0.5)),
        ([dict(type="CosineAnnealingLR", T_max=12, eta_min_ratio=0.05, begin=0, end=12,
               by_epoch=True, convert_to_iter_based=True)],
         dict(policy="cosine", min_lr_ratio=0.05)),
    ],
)  # fmt: skip
def test_lr_schedules(schedulers, lr_config):
    cfg = dict(
        train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=12, val_interval=1),
        param_scheduler=schedulers,
    )
    conversion = convert_mmdet3_config(cfg)
    assert conversion.entries["lr_config"] == lr_config
    smooth = schedulers[-1].get("convert_to_iter_based", False)
    assert conversion.untranslated == (
        ["param_scheduler[0].convert_to_iter_based=True: ours computes CosineAnnealingLR at "
         "each epoch's start (by_epoch=True)"] if smooth else []
    )  # fmt: skip


def test_bases_inside_the_mmdetection_package_and_new_style_configs_are_refused(tmp_path):
    package = tmp_path / "package.py"
    package.write_text('_base_ = "mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"\n')
    with pytest.raises(Mmdet3ConversionError, match="names a config inside an installed package"):
        load_mmdet3_config(str(package))
    new_style = tmp_path / "new_style.py"
    new_style.write_text(
        "from mmengine.config import read_base\n\nwith read_base():\n"
        "    from .._base_.default_runtime import *  # noqa\n"
    )
    with pytest.raises(Mmdet3ConfigError, match=r"\(mmengine.config.read_base\)"):
        load_config(str(new_style))
    with pytest.raises(Mmdet3ConversionError, match="new-style"):
        load_mmdet3_config(str(new_style))


def test_the_optimizer_constructor_and_custom_keys_are_carried_over():
    paramwise = dict(decay_rate=0.95, decay_type="layer_wise", num_layers=6)
    cfg = dict(optim_wrapper=dict(constructor="LearningRateDecayOptimizerConstructor",
                                  optimizer=dict(type="AdamW", lr=1e-4, weight_decay=0.05),
                                  paramwise_cfg=paramwise))  # fmt: skip
    conversion = convert_mmdet3_config(cfg)
    assert conversion.entries["optimizer"] == dict(
        type="AdamW", lr=1e-4, weight_decay=0.05,
        constructor="LearningRateDecayOptimizerConstructor", paramwise_cfg=paramwise,
    )  # fmt: skip
    assert conversion.untranslated == []
    # mmengine's default constructor is ours; another one has no counterpart
    norm_without_decay = dict(custom_keys={"norm": dict(decay_mult=0.0)})
    cfg["optim_wrapper"].update(
        constructor="DefaultOptimWrapperConstructor", paramwise_cfg=norm_without_decay
    )
    conversion = convert_mmdet3_config(cfg)
    assert conversion.entries["optimizer"] == dict(
        type="AdamW", lr=1e-4, weight_decay=0.05, paramwise_cfg=norm_without_decay
    )
    cfg["optim_wrapper"]["constructor"] = "MyConstructor"
    assert convert_mmdet3_config(cfg).untranslated == [
        "optim_wrapper.constructor='MyConstructor': no counterpart here"
    ]


# ------------------------------------------------------------------- parts by contract
def fcos_3x(**bbox_head):
    """The 3.x FCOS config as mmengine reads it, its head's arguments updated."""
    cfg = Config.fromfile(str(CONFIGS / "fcos" / "fcos_r50-caffe_fpn_gn-head_1x_coco.py"))
    cfg.model.bbox_head.update(bbox_head)
    return cfg


def test_the_fcos_bbox_coder_converts_as_a_part():
    coder = dict(type="DistancePointBBoxCoder", clip_border=False)
    conversion = convert_mmdet3_config(fcos_3x(bbox_coder=coder))
    head_cfg = conversion.entries["model"]["bbox_head"]
    assert head_cfg["bbox_coder"] == coder
    assert not any("bbox_coder" in item for item in conversion.untranslated)
    assert build_from_cfg(head_cfg, HEADS).bbox_coder.clip_border is False
    # a coder ours lacks is an error naming its registry
    with pytest.raises(Mmdet3ConversionError) as info:
        convert_mmdet3_config(fcos_3x(bbox_coder=dict(type="TBLRBBoxCoder")))
    assert "model.bbox_head.bbox_coder.type='TBLRBBoxCoder' has no counterpart" in str(info.value)
    assert "(its BBOX_CODERS: DeltaXYWHBBoxCoder, DistancePointBBoxCoder)" in str(info.value)


# mmdetection 3.x's DETR-family assigner (box_format "xywh" is ours "cxcywh")
HUNGARIAN_3X = dict(
    type="HungarianAssigner",
    match_costs=[
        dict(type="FocalLossCost", weight=2.0),
        dict(type="BBoxL1Cost", weight=5.0, box_format="xywh"),
        dict(type="IoUCost", iou_mode="giou", weight=2.0),
    ],
)


def hungarian(box_format):
    """Ours, built directly, with the L1 cost on ``box_format`` boxes."""
    return HungarianAssigner(match_costs=[
        dict(type="FocalLossCost", weight=2.0),
        dict(type="BBoxL1Cost", weight=5.0, box_format=box_format),
        dict(type="IoUCost", iou_mode="giou", weight=2.0),
    ])  # fmt: skip


def test_a_hungarian_assigner_with_match_costs_converts_and_assigns_as_ours():
    conversion = Conversion("detr.py")
    # a train_cfg as a query-based head's schema reads it (no detector of ours uses one yet)
    train_cfg = conversion.by_schema(
        "model.train_cfg", dict(assigner=HUNGARIAN_3X, debug=False), {"assigner": None}
    )
    assert conversion.untranslated == []
    costs = train_cfg["assigner"]["match_costs"]
    assert costs[1] == dict(type="BBoxL1Cost", weight=5.0, box_format="cxcywh")
    converted = build_from_cfg(train_cfg["assigner"], BBOX_ASSIGNERS)

    # a case where the L1 cost's box format decides the matching
    pred = InstanceData(
        scores=torch.zeros(3, 3),
        bboxes=torch.tensor([[9.0, 23, 14, 31], [49, 13, 61, 21], [19, 38, 29, 74]]),
    )
    gt = InstanceData(
        bboxes=torch.tensor([[10.0, 10, 50, 30], [40, 20, 60, 90]]), labels=torch.tensor([0, 2])
    )
    meta = dict(img_shape=(100, 100))
    result = converted.assign(pred, gt, img_meta=meta)
    assert result.gt_inds.tolist() == [0, 1, 2]  # prediction 1 to the first gt, 2 to the second
    assert result.labels.tolist() == [-1, 0, 2]
    direct = hungarian("cxcywh").assign(pred, gt, img_meta=meta)
    assert torch.equal(result.gt_inds, direct.gt_inds)
    assert hungarian("xyxy").assign(pred, gt, img_meta=meta).gt_inds.tolist() == [1, 2, 0]


@pytest.mark.parametrize(
    "cost, message",
    [
        (dict(type="DiceCost", weight=5.0),
         "model.train_cfg.assigner.match_costs[0].type='DiceCost' has no counterpart in "
         "mmdet_like (its MATCH_COSTS: BBoxL1Cost, ClassificationCost, FocalLossCost, IoUCost)"),
        (dict(type="FocalLossCost", weight=2.0, binary_input=True),
         "model.train_cfg.assigner.match_costs[0].binary_input=True: mmdetection's focal cost "
         "of binary masks has no counterpart"),
        (dict(type="IoUCost", iou_mode="iof"),
         "model.train_cfg.assigner: HungarianAssigner does not build here: MATCH_COSTS: "
         "building IoUCost failed: IoUCost: iou_mode must be 'iou' or 'giou', got 'iof'"),
    ],
)  # fmt: skip
def test_a_match_cost_ours_lacks_is_an_error_naming_it(cost, message):
    assigner = dict(type="HungarianAssigner", match_costs=[cost])
    with pytest.raises(Mmdet3ConversionError) as info:
        Conversion("detr.py").by_schema("model.train_cfg", dict(assigner=assigner),
                                        {"assigner": None})  # fmt: skip
    assert message in str(info.value) and "nothing was written" in str(info.value)


DETR_AUGMENTATION = """
_base_ = ["base.py"]
_scales = [(1333, 480), (1333, 640), (1333, 800)]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=[
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="RandomChoice", transforms=[
        [dict(type="RandomChoiceResize", scales=_scales, keep_ratio=True)],
        [dict(type="RandomChoiceResize", scales=[(1333, 400), (1333, 600)], keep_ratio=True),
         dict(type="RandomCrop", crop_type="absolute_range", crop_size=(384, 600),
              allow_negative_crop=True),
         dict(type="RandomChoiceResize", scales=_scales, keep_ratio=True)],
    ]),
    dict(type="PackDetInputs"),
])))
"""


YOLOX_AUGMENTATION = """
_base_ = ["base.py"]
model = dict(data_preprocessor=dict(batch_augments=[
    dict(type="BatchSyncRandomResize", random_size_range=(480, 800), size_divisor=32,
         interval=10)]))
_scale = (640, 640)
train_dataloader = dict(dataset=dict(_delete_=True, type="MultiImageMixDataset",
    dataset=dict(type="CocoDataset", data_root="data/pets/", ann_file="annotations/train.json",
                 data_prefix=dict(img="images/"), filter_cfg=dict(filter_empty_gt=False),
                 pipeline=[dict(type="LoadImageFromFile", backend_args=None),
                           dict(type="LoadAnnotations", with_bbox=True)]),
    pipeline=[
        dict(type="Mosaic", img_scale=_scale, pad_val=114.0),
        dict(type="RandomAffine", scaling_ratio_range=(0.1, 2), border=(-320, -320)),
        dict(type="MixUp", img_scale=_scale, ratio_range=(0.8, 1.6), pad_val=114.0),
        dict(type="YOLOXHSVRandomAug"),
        dict(type="RandomFlip", prob=0.5),
        dict(type="Resize", scale=_scale, keep_ratio=True),
        dict(type="Pad", pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
        dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1), keep_empty=False),
        dict(type="PackDetInputs"),
    ]))
"""


def test_yolox_mixing_dataset_and_batch_resize_convert(tmp_path):
    """mmdetection 3's YOLOX data: MultiImageMixDataset (its dataset only loads; the
    wrapper's pipeline gets the preprocessor's Normalize and Pad) and the preprocessor's
    BatchSyncRandomResize as data.batch_augments."""
    (tmp_path / "base.py").write_text(CUSTOM)
    (tmp_path / "yolox_aug.py").write_text(YOLOX_AUGMENTATION)
    out, _ = convert("yolox_aug.py", tmp_path)
    ours = load_config(out)
    assert check_config(ours, out) == []
    train = ours.data.train
    assert train.type == "MultiImageMixDataset" and train.dataset.type == "CocoDataset"
    assert [s["type"] for s in train.dataset.pipeline] == ["LoadImageFromFile", "LoadAnnotations"]
    assert train.dataset.img_prefix == "images/" and train.dataset.filter_empty_gt is False
    assert [s["type"] for s in train.pipeline] == [
        "Mosaic", "RandomAffine", "MixUp", "YOLOXHSVRandomAug", "RandomFlip", "Resize", "Pad",
        "FilterAnnotations", "Normalize", "PackDetInputs",
    ]  # fmt: skip
    assert step(train.pipeline, "Mosaic") == dict(type="Mosaic", img_scale=(640, 640),
                                                  pad_val=114.0)  # fmt: skip
    assert step(train.pipeline, "Pad").pad_to_square is True
    assert ours.data.batch_augments == [
        dict(type="BatchSyncRandomResize", random_size_range=(480, 800), size_divisor=32,
             interval=10)
    ]  # fmt: skip
    Compose(train.pipeline)


def test_detrs_random_choice_augmentation_converts(tmp_path):
    """mmdetection 3's DETR augmentation (mmcv's RandomChoice of a resize, or a resize, a
    crop of a drawn size and a resize): each sequence converted, the second resize of a
    sequence resizing again (``override=True``)."""
    (tmp_path / "base.py").write_text(CUSTOM)
    (tmp_path / "detr_aug.py").write_text(DETR_AUGMENTATION)
    out, _ = convert("detr_aug.py", tmp_path)
    ours = load_config(out)
    assert check_config(ours, out) == []
    choice = step(ours.data.train.dataset.pipeline, "RandomChoice")
    scales = [(1333, 480), (1333, 640), (1333, 800)]
    assert choice["transforms"] == [
        [dict(type="Resize", img_scale=scales, multiscale_mode="value", keep_ratio=True)],
        [dict(type="Resize", img_scale=[(1333, 400), (1333, 600)], multiscale_mode="value",
              keep_ratio=True),
         dict(type="RandomCrop", crop_type="absolute_range", crop_size=(384, 600),
              allow_negative_crop=True),
         dict(type="Resize", img_scale=scales, multiscale_mode="value", keep_ratio=True,
              override=True)],
    ]  # fmt: skip
    Compose(ours.data.train.dataset.pipeline)
