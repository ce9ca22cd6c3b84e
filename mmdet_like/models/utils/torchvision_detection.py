"""Weights of torchvision's ``fasterrcnn_resnet50_fpn`` / ``maskrcnn_resnet50_fpn`` in our
Faster / Mask R-CNN's layout (configs in ``configs/torchvision/``).

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
==========================================  =============================================

torchvision's class ``k`` (1-based, 0 the background) becomes our class ``k - 1``.
"""

import re
from collections import OrderedDict

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
)
_MASK_CONV = re.compile(r"^roi_heads\.mask_head\.(?:(\d+)\.0|mask_fcn(\d+))\.")


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


def convert_torchvision_detection(state_dict, keep_unused=False):
    """torchvision Faster/Mask R-CNN ResNet-50-FPN state dict -> (our state dict, meta).

    With torchvision's 91 COCO ids (background included) the 10 unused ids (``"N/A"``) are
    dropped unless ``keep_unused``: the 80 classes left are in COCO category-id order, the
    labels of :class:`CocoDataset`. Other class counts keep every class.

    ``meta`` has ``arch`` (``"mask_rcnn"`` or ``"faster_rcnn"``), ``num_classes`` and, for
    the COCO models, ``CLASSES``.
    """
    if "roi_heads.box_predictor.cls_score.weight" not in state_dict:
        raise TorchvisionConversionError(
            "no roi_heads.box_predictor.cls_score.weight: not a torchvision Faster/Mask R-CNN "
            "state dict"
        )
    out = OrderedDict()
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        out[_rename(key)] = value
    with_bg = state_dict["roi_heads.box_predictor.cls_score.weight"].size(0)
    kept = list(range(1, with_bg))  # torchvision indices of our classes, in order
    names = None
    if with_bg == 91:
        from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

        categories = FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
        if not keep_unused:
            kept = [k for k in kept if categories[k] != "N/A"]
        names = [categories[k] for k in kept]
    reg_rows = [4 * k + j for k in kept for j in range(4)]
    for name in ("weight", "bias"):
        head = "roi_head.bbox_head."
        out[f"{head}fc_cls.{name}"] = out[f"{head}fc_cls.{name}"][kept + [0]].clone()
        out[f"{head}fc_reg.{name}"] = out[f"{head}fc_reg.{name}"][reg_rows].clone()
        logits = f"roi_head.mask_head.conv_logits.{name}"
        if logits in out:
            out[logits] = out[logits][kept].clone()
    with_mask = any(k.startswith("roi_head.mask_head.") for k in out)
    meta = dict(arch="mask_rcnn" if with_mask else "faster_rcnn", num_classes=len(kept))
    if names is not None:
        meta["CLASSES"] = names
    return out, meta
