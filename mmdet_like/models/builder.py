"""``build_*`` helpers: config dict -> model part, through the registries."""

import logging

from mmdet_like.errors import ProjectError
from mmdet_like.registry import (
    BACKBONES,
    BBOX_ASSIGNERS,
    BBOX_CODERS,
    BBOX_SAMPLERS,
    DETECTORS,
    HEADS,
    IOU_CALCULATORS,
    LOSSES,
    NECKS,
    PRIOR_GENERATORS,
    ROI_EXTRACTORS,
    SHARED_HEADS,
    BuildError,
    accepted_arguments,
    build_from_cfg,
)


class NeckChannelsError(ProjectError, ValueError):
    """A neck config whose ``in_channels`` disagree with the backbone's outputs."""


def build_backbone(cfg):
    return build_from_cfg(cfg, BACKBONES)


def _channel_list(value):
    """``value`` as a list of ints when it is a list or tuple of ints, else ``None``."""
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return [int(v) for v in value]
    return None


def build_neck(cfg, backbone=None):
    """Build a neck; with ``backbone``, its ``in_channels`` default to the backbone's
    ``out_channels`` (one per backbone output), and ``in_channels`` given in ``cfg`` must
    equal them (:class:`NeckChannelsError` names the field, both lists and the fix)."""
    channels = _channel_list(getattr(backbone, "out_channels", None))
    if channels is None or not isinstance(cfg, dict):
        return build_from_cfg(cfg, NECKS)
    neck_type = cfg.get("type")
    neck_cls = NECKS.get(neck_type) if isinstance(neck_type, str) else neck_type
    accepted = accepted_arguments(neck_cls) if neck_cls is not None else None
    if accepted is None or not (accepted[1] or "in_channels" in accepted[0]):
        return build_from_cfg(cfg, NECKS)
    given = cfg.get("in_channels")
    if given is None:
        return build_from_cfg(cfg, NECKS, {"in_channels": channels})
    given_list = _channel_list(given)
    if given_list is not None and given_list != channels:
        raise NeckChannelsError(
            f"model.neck.in_channels={given_list} does not match the backbone: "
            f"{type(backbone).__name__} gives {len(channels)} output(s) of {channels} "
            f"channels (its out_channels). Set model.neck.in_channels={channels}, or leave "
            "in_channels out and the neck takes them from the backbone."
        )
    return build_from_cfg(cfg, NECKS)


def build_head(cfg):
    return build_from_cfg(cfg, HEADS)


def build_roi_extractor(cfg):
    return build_from_cfg(cfg, ROI_EXTRACTORS)


def build_shared_head(cfg):
    return build_from_cfg(cfg, SHARED_HEADS)


def build_loss(cfg):
    return build_from_cfg(cfg, LOSSES)


def build_prior_generator(cfg):
    """An anchor or point generator (``PRIOR_GENERATORS``)."""
    return build_from_cfg(cfg, PRIOR_GENERATORS)


build_anchor_generator = build_prior_generator  # the earlier name


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
