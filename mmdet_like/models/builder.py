"""``build_*`` helpers: config dict -> model part, through the registries."""

import logging

from mmdet_like.registry import (
    ANCHOR_GENERATORS,
    BACKBONES,
    BBOX_ASSIGNERS,
    BBOX_CODERS,
    BBOX_SAMPLERS,
    DETECTORS,
    HEADS,
    IOU_CALCULATORS,
    LOSSES,
    NECKS,
    ROI_EXTRACTORS,
    SHARED_HEADS,
    BuildError,
    build_from_cfg,
)


def build_backbone(cfg):
    return build_from_cfg(cfg, BACKBONES)


def build_neck(cfg):
    return build_from_cfg(cfg, NECKS)


def build_head(cfg):
    return build_from_cfg(cfg, HEADS)


def build_roi_extractor(cfg):
    return build_from_cfg(cfg, ROI_EXTRACTORS)


def build_shared_head(cfg):
    return build_from_cfg(cfg, SHARED_HEADS)


def build_loss(cfg):
    return build_from_cfg(cfg, LOSSES)


def build_anchor_generator(cfg):
    return build_from_cfg(cfg, ANCHOR_GENERATORS)


def build_bbox_coder(cfg):
    return build_from_cfg(cfg, BBOX_CODERS)


def build_assigner(cfg):
    return build_from_cfg(cfg, BBOX_ASSIGNERS)


def build_sampler(cfg):
    return build_from_cfg(cfg, BBOX_SAMPLERS)


def build_iou_calculator(cfg):
    return build_from_cfg(cfg, IOU_CALCULATORS)


def build_detector(cfg, train_cfg=None, test_cfg=None):
    """Build a detector; ``train_cfg``/``test_cfg`` are passed to it unless ``None``.

    They may be given here or inside ``cfg``, not both. mmdetection's ``init_cfg`` entries
    are read as ours (mmdet_like/models/init_cfg.py).
    """
    from mmdet_like.models.init_cfg import translated_model_cfg

    cfg, notes = translated_model_cfg(cfg)  # mmdetection's init_cfg, read as ours
    for note in notes:
        logging.getLogger("mmdet_like").info("config: %s", note)
    default_args = {}
    for name, value in (("train_cfg", train_cfg), ("test_cfg", test_cfg)):
        if value is None:
            continue
        if name in cfg:
            raise BuildError(f"DETECTORS: {name} is given both in the model config and as argument")
        default_args[name] = value
    return build_from_cfg(cfg, DETECTORS, default_args)
