"""Match costs of one-to-one (Hungarian) assignment: each a (P, G) matrix of the cost of
matching prediction ``p`` to gt ``g`` (lower is better), times its ``weight``.

A cost is called as ``cost(pred_instances, gt_instances, img_meta=None)``:
``pred_instances.scores`` (P, C) class logits and ``.bboxes`` (P, 4) predicted
``[x1, y1, x2, y2]`` boxes in the input image; ``gt_instances.labels`` (G,) and ``.bboxes``
(G, 4); ``img_meta["img_shape"]`` ``(h, w)`` where boxes are normalised.
"""

from abc import ABCMeta, abstractmethod

from mmdet_like.registry import MATCH_COSTS
from mmdet_like.structures.bbox import bbox_overlaps, bbox_xyxy_to_cxcywh


class BaseMatchCost(metaclass=ABCMeta):
    """A weighted (P, G) cost; a subclass gives the unweighted one (:meth:`cost`)."""

    def __init__(self, weight=1.0):
        self.weight = float(weight)

    @abstractmethod
    def cost(self, pred_instances, gt_instances, img_meta=None):
        """(P, G) unweighted cost."""

    def __call__(self, pred_instances, gt_instances, img_meta=None):
        return self.cost(pred_instances, gt_instances, img_meta) * self.weight

    def __repr__(self):
        return f"{type(self).__name__}(weight={self.weight})"


@MATCH_COSTS.register()
class ClassificationCost(BaseMatchCost):
    """Minus the softmax probability of the gt's class: ``-softmax(scores)[p, label_g]``
    (DETR; ``scores`` (P, C + 1) with the background last, or (P, C))."""

    def cost(self, pred_instances, gt_instances, img_meta=None):
        probs = pred_instances.scores.softmax(-1)
        return -probs[:, gt_instances.labels.long()]


@MATCH_COSTS.register()
class FocalLossCost(BaseMatchCost):
    """The sigmoid focal loss of calling the gt's class positive minus that of calling it
    negative, at ``q = sigmoid(scores)[p, label_g]`` (Deformable DETR, DINO)::

        alpha * (1 - q) ** gamma * -log(q + eps) - (1 - alpha) * q ** gamma * -log(1 - q + eps)

    Args:
        weight: the cost's weight.
        alpha, gamma: the focal loss's (0.25, 2).
        eps: added inside the logarithms.
    """

    def __init__(self, weight=1.0, alpha=0.25, gamma=2.0, eps=1e-12):
        super().__init__(weight)
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.eps = float(eps)

    def cost(self, pred_instances, gt_instances, img_meta=None):
        probs = pred_instances.scores[:, gt_instances.labels.long()].sigmoid()
        pos = -(probs + self.eps).log() * self.alpha * (1 - probs).pow(self.gamma)
        neg = -(1 - probs + self.eps).log() * (1 - self.alpha) * probs.pow(self.gamma)
        return pos - neg


def normalised_boxes(bboxes, img_meta, name):
    """(n, 4) boxes divided by the image's ``(w, h, w, h)``."""
    if img_meta is None or "img_shape" not in img_meta:
        raise ValueError(f"{name}: normalising boxes needs img_meta with img_shape (h, w)")
    height, width = img_meta["img_shape"][:2]
    return bboxes[:, :4] / bboxes.new_tensor([width, height, width, height])


@MATCH_COSTS.register()
class BBoxL1Cost(BaseMatchCost):
    """L1 distance between the predicted and the gt box, both normalised by the image size
    (``img_meta["img_shape"]``), as ``[x1, y1, x2, y2]`` (``box_format="xyxy"``) or
    ``[cx, cy, w, h]`` (``"cxcywh"``, DETR's; mmdetection calls it ``"xywh"``)."""

    def __init__(self, weight=1.0, box_format="xyxy"):
        super().__init__(weight)
        if box_format not in ("xyxy", "cxcywh"):
            raise ValueError(
                f"BBoxL1Cost: box_format must be 'xyxy' or 'cxcywh' (mmdetection's 'xywh'), "
                f"got {box_format!r}"
            )
        self.box_format = box_format

    def cost(self, pred_instances, gt_instances, img_meta=None):
        pred = normalised_boxes(pred_instances.bboxes, img_meta, "BBoxL1Cost")
        gt = normalised_boxes(gt_instances.bboxes.to(pred), img_meta, "BBoxL1Cost")
        if self.box_format == "cxcywh":
            pred, gt = bbox_xyxy_to_cxcywh(pred), bbox_xyxy_to_cxcywh(gt)
        return (pred[:, None, :] - gt[None, :, :]).abs().sum(-1)


@MATCH_COSTS.register()
class IoUCost(BaseMatchCost):
    """Minus the IoU (``iou_mode="iou"``) or generalised IoU (``"giou"``) of the predicted
    and the gt box (pixels; no normalisation)."""

    def __init__(self, weight=1.0, iou_mode="giou"):
        super().__init__(weight)
        if iou_mode not in ("iou", "giou"):
            raise ValueError(f"IoUCost: iou_mode must be 'iou' or 'giou', got {iou_mode!r}")
        self.iou_mode = iou_mode

    def cost(self, pred_instances, gt_instances, img_meta=None):
        pred = pred_instances.bboxes[:, :4]
        gt = gt_instances.bboxes[:, :4].to(pred)
        return -bbox_overlaps(pred, gt, mode=self.iou_mode)
