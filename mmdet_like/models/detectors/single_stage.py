"""Single-stage detectors: backbone -> neck -> a dense head that outputs detections."""

import torch

from mmdet_like.models.detectors.base import BaseDetector
from mmdet_like.registry import DETECTORS, HEADS, build_from_cfg
from mmdet_like.structures.instances import DetectionResult, detection_to_per_class


@DETECTORS.register()
class SingleStageDetector(BaseDetector):
    """Backbone, optional neck and a detection head (an ``AnchorHead`` subclass or any head
    with the same ``forward_train`` / ``get_bboxes``).

    Args:
        backbone, neck, bbox_head: part configs.
        train_cfg: the head's training settings (assigner, sampler, ...), the whole
            top-level ``train_cfg`` (single-stage configs have no ``rpn`` / ``rcnn`` keys).
        test_cfg: the head's detection settings (``nms_pre``, ``score_thr``, ``nms``,
            ``max_per_img``).
        pretrained: backbone weights, loaded by :meth:`init_weights`.

    Training returns the head's losses; inference, per image, mmdetection's per-class list of
    (n, 5) float32 arrays.
    """

    def __init__(
        self, backbone, bbox_head, neck=None, train_cfg=None, test_cfg=None, pretrained=None
    ):
        super().__init__()
        self._init_backbone_neck(backbone, neck, pretrained)
        self.train_cfg = None if train_cfg is None else dict(train_cfg)
        self.test_cfg = None if test_cfg is None else dict(test_cfg)
        self.bbox_head = build_from_cfg(
            dict(bbox_head, train_cfg=self.train_cfg, test_cfg=self.test_cfg), HEADS
        )
        self.num_classes = self.bbox_head.num_classes

    def init_weights(self):
        """Backbone weights (loading ``pretrained``), then the neck's and head's."""
        self.init_backbone_neck()
        self.bbox_head.init_weights()

    def forward_train(self, img, img_metas, gt_bboxes, gt_labels, gt_bboxes_ignore=None, **kwargs):
        """The head's losses. Keys a box detector does not use (``gt_masks``) are ignored."""
        x = self.extract_feat(img)
        losses, _ = self.bbox_head.forward_train(
            x, img_metas, gt_bboxes, gt_labels, gt_bboxes_ignore=gt_bboxes_ignore
        )
        return losses

    @torch.no_grad()
    def simple_test_instances(self, img, img_metas, rescale=False):
        """Typed results: list of N :class:`DetectionResult`."""
        x = self.extract_feat(img)
        dets = self.bbox_head.get_bboxes(*self.bbox_head(x), img_metas, rescale=rescale)
        return [
            DetectionResult(boxes=d[:, :4], scores=d[:, 4], labels=labels) for d, labels in dets
        ]

    def simple_test(self, img, img_metas, rescale=False, **kwargs):
        """Per image: list over classes of (n, 5) float32 arrays ``[x1, y1, x2, y2, score]``."""
        results = self.simple_test_instances(img, img_metas, rescale)
        return [detection_to_per_class(r, self.num_classes) for r in results]
