"""Weights of torchvision's ``fasterrcnn_resnet50_fpn`` / ``maskrcnn_resnet50_fpn`` /
``keypointrcnn_resnet50_fpn`` / ``retinanet_resnet50_fpn`` / ``fcos_resnet50_fpn`` in our
Faster / Mask / Keypoint R-CNN's, RetinaNet's and FCOS's layouts (configs in
``configs/torchvision/``).

Key mapping (``i`` a level or conv index):

==========================================  =============================================
torchvision                                  mmdet_like
==========================================  =============================================
``backbone.body.*``                          ``backbone.*`` (``num_batches_tracked`` dropped)
``backbone.fpn.inner_blocks.i[.0]``          ``neck.lateral_convs.i``
``backbone.fpn.layer_blocks.i[.0]``          ``neck.fpn_convs.i``
``rpn.head.conv[.0.0]``                      ``rpn_head.rpn_conv``
``rpn.head.cls_logits`` / ``bbox_pred``      ``rpn_head.rpn_cls`` / ``rpn_reg``
``roi_heads.box_head.fc6`` / ``fc7``         ``roi_head.bbox_head.shared_fcs.0`` / ``.2``
``roi_heads.box_predictor.cls_score``        ``roi_head.bbox_head.fc_cls`` (background row
                                             0 moved last)
``roi_heads.box_predictor.bbox_pred``        ``roi_head.bbox_head.fc_reg`` (background's 4
                                             rows dropped)
``roi_heads.mask_head.i.0`` / ``mask_fcn{i+1}``  ``roi_head.mask_head.convs.{2 i}``
``roi_heads.mask_predictor.conv5_mask``      ``roi_head.mask_head.upsample``
``roi_heads.mask_predictor.mask_fcn_logits``  ``roi_head.mask_head.conv_logits`` (background
                                             channel dropped)
``roi_heads.keypoint_head.{2 i}``            ``roi_head.keypoint_head.convs.{2 i}``
``roi_heads.keypoint_predictor.kps_score_lowres``  ``roi_head.keypoint_head.deconv``
``backbone.fpn.extra_blocks.p6`` / ``p7``    ``neck.extra_convs.0`` / ``.1``
``head.classification_head.conv.i.0``        ``bbox_head.cls_convs.{2 i}`` (RetinaNet)
``head.classification_head.conv.i``          ``bbox_head.cls_convs.i`` (FCOS: conv, GN, ReLU)
``head.regression_head.conv.*``              ``bbox_head.reg_convs.*`` (as above)
``head.classification_head.cls_logits``      ``bbox_head.retina_cls`` / ``conv_cls`` (each
                                             anchor's background channel 0 dropped)
``head.regression_head.bbox_reg``            ``bbox_head.retina_reg`` / ``conv_reg``
``head.regression_head.bbox_ctrness``        ``bbox_head.conv_centerness``
==========================================  =============================================

torchvision's class ``k`` (1-based, 0 the background) becomes our class ``k - 1``.

:func:`convert_to_torchvision_detection` is the way back, into the layout of a torchvision
state dict given as a template.
"""

import re
from collections import OrderedDict

import torch

from mmdet_like.errors import ProjectError

_RENAMES = (
    (r"^backbone\.body\.", "backbone."),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?", r"neck.lateral_convs.\1."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?", r"neck.fpn_convs.\1."),
    (r"^rpn\.head\.conv\.(?:0\.0\.)?", "rpn_head.rpn_conv."),
    (r"^rpn\.head\.cls_logits\.", "rpn_head.rpn_cls."),
    (r"^rpn\.head\.bbox_pred\.", "rpn_head.rpn_reg."),
    (r"^roi_heads\.box_head\.fc6\.", "roi_head.bbox_head.shared_fcs.0."),
    (r"^roi_heads\.box_head\.fc7\.", "roi_head.bbox_head.shared_fcs.2."),
    (r"^roi_heads\.box_predictor\.cls_score\.", "roi_head.bbox_head.fc_cls."),
    (r"^roi_heads\.box_predictor\.bbox_pred\.", "roi_head.bbox_head.fc_reg."),
    (r"^roi_heads\.mask_predictor\.conv5_mask\.", "roi_head.mask_head.upsample."),
    (r"^roi_heads\.mask_predictor\.mask_fcn_logits\.", "roi_head.mask_head.conv_logits."),
    (r"^roi_heads\.keypoint_head\.(\d+)\.", r"roi_head.keypoint_head.convs.\1."),
    (r"^roi_heads\.keypoint_predictor\.kps_score_lowres\.", "roi_head.keypoint_head.deconv."),
)
_MASK_CONV = re.compile(r"^roi_heads\.mask_head\.(?:(\d+)\.0|mask_fcn(\d+))\.")
_DENSE_RENAMES = (
    (r"^backbone\.body\.", "backbone."),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?", r"neck.lateral_convs.\1."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?", r"neck.fpn_convs.\1."),
    (r"^backbone\.fpn\.extra_blocks\.p6\.", "neck.extra_convs.0."),
    (r"^backbone\.fpn\.extra_blocks\.p7\.", "neck.extra_convs.1."),
)
_HEAD_LAYERS = {
    "retinanet": {"cls_logits": "retina_cls", "bbox_reg": "retina_reg"},
    "fcos": {"cls_logits": "conv_cls", "bbox_reg": "conv_reg", "bbox_ctrness": "conv_centerness"},
}
_TOWER = re.compile(r"^head\.(classification|regression)_head\.conv\.(\d+)\.(?:(0)\.)?")
_HEAD_LAYER = re.compile(r"^head\.(?:classification|regression)_head\.(\w+)\.")


class TorchvisionConversionError(ProjectError, ValueError):
    """The state dict is not one of torchvision's R-CNN ResNet-FPN models."""


def _rename(key):
    match = _MASK_CONV.match(key)
    if match:
        index = int(match.group(1)) if match.group(1) is not None else int(match.group(2)) - 1
        return f"roi_head.mask_head.convs.{2 * index}." + key[match.end() :]
    for pattern, replacement in _RENAMES:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    raise TorchvisionConversionError(f"unexpected torchvision key {key!r}")


def _coco_classes(with_bg, keep_unused):
    """torchvision indices of our classes (background 0 and, for its 91 COCO ids, the unused
    "N/A" ones left out unless ``keep_unused``) and their names (COCO only)."""
    kept = list(range(1, with_bg))
    if with_bg != 91:
        return kept, None
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    categories = FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
    if not keep_unused:
        kept = [k for k in kept if categories[k] != "N/A"]
    return kept, [categories[k] for k in kept]


def _convert_dense(state_dict, keep_unused):
    """torchvision RetinaNet / FCOS -> our RetinaNet / FCOS (see the module table)."""
    arch = "fcos" if "head.regression_head.bbox_ctrness.weight" in state_dict else "retinanet"
    out = OrderedDict()
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        tower = _TOWER.match(key)
        layer = _HEAD_LAYER.match(key)
        if tower:
            branch = "cls_convs" if tower.group(1) == "classification" else "reg_convs"
            index = int(tower.group(2)) * (2 if tower.group(3) is not None else 1)
            out[f"bbox_head.{branch}.{index}." + key[tower.end() :]] = value
        elif layer and layer.group(1) in _HEAD_LAYERS[arch]:
            out[f"bbox_head.{_HEAD_LAYERS[arch][layer.group(1)]}." + key[layer.end() :]] = value
        else:
            for pattern, replacement in _DENSE_RENAMES:
                new, count = re.subn(pattern, replacement, key)
                if count:
                    out[new] = value
                    break
            else:
                raise TorchvisionConversionError(f"unexpected torchvision {arch} key {key!r}")
    logits = "bbox_head." + _HEAD_LAYERS[arch]["cls_logits"]
    rows = out[f"{logits}.weight"].size(0)
    num_anchors = out[f"bbox_head.{_HEAD_LAYERS[arch]['bbox_reg']}.weight"].size(0) // 4
    with_bg = rows // num_anchors
    kept, names = _coco_classes(with_bg, keep_unused)
    channels = [a * with_bg + k for a in range(num_anchors) for k in kept]
    for name in ("weight", "bias"):
        out[f"{logits}.{name}"] = out[f"{logits}.{name}"][channels].clone()
    meta = dict(arch=arch, num_classes=len(kept))
    if names is not None:
        meta["CLASSES"] = names
    return out, meta


def convert_torchvision_detection(state_dict, keep_unused=False):
    """torchvision Faster/Mask R-CNN ResNet-50-FPN state dict -> (our state dict, meta).

    With torchvision's 91 COCO ids (background included) the 10 unused ids (``"N/A"``) are
    dropped unless ``keep_unused``: the 80 classes left are in COCO category-id order, the
    labels of :class:`CocoDataset`. Other class counts keep every class.

    ``meta`` has ``arch`` (``"mask_rcnn"``, ``"faster_rcnn"``, ``"keypoint_rcnn"``,
    ``"retinanet"`` or ``"fcos"``), ``num_classes`` and, for the COCO models (and the
    person-only keypoint model), ``CLASSES``. RetinaNet's and
    FCOS's classifiers have a channel for torchvision's background class 0 (never a
    target); it is dropped, as the unused COCO ids are.
    """
    if "head.classification_head.cls_logits.weight" in state_dict:
        return _convert_dense(state_dict, keep_unused)
    if "roi_heads.box_predictor.cls_score.weight" not in state_dict:
        raise TorchvisionConversionError(
            "no roi_heads.box_predictor.cls_score.weight or head.classification_head."
            "cls_logits.weight: not a torchvision Faster/Mask R-CNN, RetinaNet or FCOS state "
            "dict"
        )
    out = OrderedDict()
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        out[_rename(key)] = value
    with_bg = state_dict["roi_heads.box_predictor.cls_score.weight"].size(0)
    kept, names = _coco_classes(with_bg, keep_unused)
    reg_rows = [4 * k + j for k in kept for j in range(4)]
    for name in ("weight", "bias"):
        head = "roi_head.bbox_head."
        out[f"{head}fc_cls.{name}"] = out[f"{head}fc_cls.{name}"][kept + [0]].clone()
        out[f"{head}fc_reg.{name}"] = out[f"{head}fc_reg.{name}"][reg_rows].clone()
        logits = f"roi_head.mask_head.conv_logits.{name}"
        if logits in out:
            out[logits] = out[logits][kept].clone()
    with_mask = any(k.startswith("roi_head.mask_head.") for k in out)
    with_keypoints = any(k.startswith("roi_head.keypoint_head.") for k in out)
    arch = "keypoint_rcnn" if with_keypoints else "mask_rcnn" if with_mask else "faster_rcnn"
    meta = dict(arch=arch, num_classes=len(kept))
    if with_keypoints and with_bg == 2 and names is None:
        names = ["person"]  # keypointrcnn_resnet50_fpn: background and person
    if names is not None:
        meta["CLASSES"] = names
    return out, meta


def _listed(keys, most=6):
    keys = list(keys)
    more = f" (and {len(keys) - most} more)" if len(keys) > most else ""
    return ", ".join(keys[:most]) + more


def convert_to_torchvision_detection(state_dict, torchvision_state_dict, keep_unused=False):
    """Our state dict -> torchvision's layout: the inverse of
    ``convert_torchvision_detection(torchvision_state_dict, keep_unused)``.

    ``torchvision_state_dict`` (the model's own, e.g. its initialisation) gives the keys,
    shapes and dtypes of the result, and the values of what ours has no counterpart of: the
    background's box regression rows and mask channel, the dense heads' background channels,
    the unused COCO ids (without ``keep_unused``) and ``num_batches_tracked``. Every other
    value comes from ``state_dict``, so the round trips torchvision -> ours -> torchvision
    (with the same template) and ours -> torchvision -> ours are exact.

    The mapping is the forward one run on row numbers: each torchvision tensor's rows are
    numbered (all tensors together), and the forward conversion of those numbers says which
    rows of which torchvision tensor each of our tensors is.

    Raises :class:`TorchvisionConversionError` (one line, naming the keys) for a key of ours
    without a torchvision counterpart, a torchvision key without ours, or a shape mismatch.
    """
    numbered, names, starts = OrderedDict(), [], []
    start = 0
    for key, value in torchvision_state_dict.items():
        rows = value.size(0) if value.dim() else 1
        numbered[key] = torch.arange(start, start + rows)
        names.append(key)
        starts.append(start)
        start += rows
    sources, _ = convert_torchvision_detection(numbered, keep_unused)
    ours = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in sources if k not in ours]
    unexpected = [k for k in ours if k not in sources]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"torchvision's keys need ours {_listed(missing)}")
        if unexpected:
            parts.append(f"ours {_listed(unexpected)} have no torchvision counterpart")
        raise TorchvisionConversionError(
            "our state dict does not match the torchvision model's layout: " + "; ".join(parts)
        )
    out = OrderedDict((k, v.detach().clone()) for k, v in torchvision_state_dict.items())
    first_rows = torch.tensor(starts)
    mismatched = []
    for key, numbers in sources.items():
        index = int(torch.searchsorted(first_rows, numbers[:1], right=True)[0]) - 1
        target = out[names[index]]
        rows = numbers - starts[index]
        value = ours[key]
        expected = (len(rows), *target.shape[1:]) if target.dim() else ()
        if tuple(value.shape) != expected:
            mismatched.append(f"{key} {tuple(value.shape)} vs {names[index]} {expected}")
        elif target.dim():
            target[rows] = value.to(target.dtype)
        else:
            target.copy_(value)
    if mismatched:
        raise TorchvisionConversionError(
            f"our state dict's shapes do not match the torchvision model's: {_listed(mismatched)}"
        )
    return out
