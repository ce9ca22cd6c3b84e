"""Region Proposal Network as a stand-alone detector (proposal recall / precomputing)."""

import torch

from mmdet_like.models.detectors.base import BaseDetector, pad_images
from mmdet_like.ops import nms
from mmdet_like.registry import DETECTORS, HEADS, build_from_cfg
from mmdet_like.structures.bbox import bbox_mapping_back


@DETECTORS.register()
class RPN(BaseDetector):
    """Backbone, optional neck and an RPN head.

    Training returns ``dict(loss_rpn_cls, loss_rpn_bbox)``; inference returns, per image, an
    (n, 5) float32 numpy array of proposals ``[x1, y1, x2, y2, score]`` (in the original
    image when ``rescale``).
    """

    def __init__(
        self, backbone, rpn_head, neck=None, train_cfg=None, test_cfg=None, pretrained=None
    ):
        super().__init__()
        self._init_backbone_neck(backbone, neck, pretrained)
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        rpn_train = None if train_cfg is None else train_cfg.get("rpn")
        rpn_test = None if test_cfg is None else test_cfg.get("rpn")
        self.rpn_head = build_from_cfg(
            dict(rpn_head, train_cfg=rpn_train, test_cfg=rpn_test), HEADS
        )

    def init_weights(self):
        """Backbone weights (loading ``pretrained``), then the heads' initialisation."""
        self.init_backbone_neck()
        self.rpn_head.init_weights()

    def forward_train(self, img, img_metas, gt_bboxes, gt_bboxes_ignore=None, **kwargs):
        """Unused keys (``gt_labels``, ``gt_masks``) are accepted and ignored."""
        x = self.extract_feat(img)
        losses, _ = self.rpn_head.forward_train(
            x, img_metas, gt_bboxes, gt_bboxes_ignore=gt_bboxes_ignore
        )
        return losses

    @torch.no_grad()
    def simple_test(self, img, img_metas, rescale=False, **kwargs):
        x = self.extract_feat(img)
        proposals = self.rpn_head.get_proposals(*self.rpn_head(x), img_metas)
        results = []
        for props, meta in zip(proposals, img_metas):
            props = props.float()
            results.append((_to_original(props, meta) if rescale else props).cpu().numpy())
        return results

    @torch.no_grad()
    def aug_test(self, imgs, img_metas, **kwargs):
        """Test-time augmentation: per image, the proposals of every augmentation mapped
        back to the original image, merged by one NMS (``test_cfg.rpn.nms_thr``) and cut to
        ``max_num``; an (n, 5) float32 array per image."""
        cfg = self.rpn_head.test_cfg
        results = []
        for image_augs, metas in zip(imgs, img_metas):
            merged = []
            for aug_img, meta in zip(image_augs, metas):
                x = self.extract_feat(pad_images(aug_img, self.size_divisor))
                props = self.rpn_head.get_proposals(*self.rpn_head(x), [meta])[0].float()
                merged.append(_to_original(props, meta))
            merged = torch.cat(merged)
            keep = nms(merged[:, :4], merged[:, 4], cfg["nms_thr"])[: cfg["max_num"]]
            results.append(merged[keep].cpu().numpy())
        return results


def _to_original(proposals, img_meta):
    """(n, 5) proposals of an input (resized, maybe flipped) -> the original image."""
    return torch.cat([bbox_mapping_back(proposals[:, :4], img_meta), proposals[:, 4:]], 1)
