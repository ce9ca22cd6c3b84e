"""DETR's head (Carion et al. 2020): class logits and a normalised box per decoder query, a
one-to-one (Hungarian) assignment to the gts, and the losses of every decoder layer.

The head of the DETR family: Deformable DETR's and DINO's heads subclass it and keep its
assignment (:meth:`DETRHead.get_targets`) and its per-layer losses
(:meth:`DETRHead.loss_by_feat_single`, :meth:`DETRHead.loss_of_targets`); a sigmoid
classifier (``loss_cls=dict(type="FocalLoss", use_sigmoid=True, ...)``) works through the
same code.
"""

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models.layers.transformer import FFN
from mmdet_like.registry import BBOX_ASSIGNERS, HEADS, LOSSES, build_from_cfg
from mmdet_like.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmdet_like.structures.instance_data import InstanceData
from mmdet_like.structures.instances import unpack_gt_instances

DETR_MATCH_COSTS = [
    dict(type="ClassificationCost", weight=1.0),
    dict(type="BBoxL1Cost", weight=5.0, box_format="cxcywh"),
    dict(type="IoUCost", iou_mode="giou", weight=2.0),
]
DETR_LOSS_CLS = dict(type="CrossEntropyLoss", bg_cls_weight=0.1, use_sigmoid=False,
                     loss_weight=1.0, class_weight=1.0)  # fmt: skip
DETR_LOSS_BBOX = dict(type="L1Loss", loss_weight=5.0)
DETR_LOSS_IOU = dict(type="GIoULoss", loss_weight=2.0)
DEFAULT_TEST_CFG = dict(max_per_img=100, score_thr=None, clip_bboxes=True)


@dataclasses.dataclass
class QueryTargets:
    """The targets of one decoder layer's queries over a batch of B images of Q queries.

    Attributes:
        labels: (B, Q) int64, the matched gt's class, ``num_classes`` for the others.
        label_weights: (B, Q) classification weights (ones).
        pos_batch_inds, pos_query_inds: (P,) image and query of each matched query.
        pos_gt_inds: (P,) its gt's index among its image's gts.
        pos_gt_bboxes: (P, 4) its gt box, ``[x1, y1, x2, y2]`` in the input image.
        pos_factors: (P, 4) its image's ``(w, h, w, h)`` (``img_shape``), which normalises
            boxes.
        num_pos, num_neg: matched and unmatched queries over the batch (host ints).
    """

    labels: torch.Tensor
    label_weights: torch.Tensor
    pos_batch_inds: torch.Tensor
    pos_query_inds: torch.Tensor
    pos_gt_inds: torch.Tensor
    pos_gt_bboxes: torch.Tensor
    pos_factors: torch.Tensor
    num_pos: int
    num_neg: int


def image_factors(img_metas, dtype, device):
    """(B, 4) ``(w, h, w, h)`` of each meta's ``img_shape`` (the image without padding)."""
    sizes = []
    for i, meta in enumerate(img_metas):
        if "img_shape" not in meta:
            raise ValueError(
                f"image {i}: its meta has no img_shape (h, w), which DETR-style heads normalise "
                "boxes by; the pipeline's Resize (or the data sample) must set it"
            )
        height, width = meta["img_shape"][:2]
        sizes.append([width, height, width, height])
    return torch.tensor(sizes, dtype=dtype, device=device)


@HEADS.register()
class DETRHead(nn.Module):
    """Per query: ``fc_cls`` class logits, and a 3-layer MLP (``reg_ffn``, ReLU, ``fc_reg``)
    giving a sigmoid ``[cx, cy, w, h]`` box normalised by the image size.

    Args:
        num_classes: object classes (the softmax classifier adds the no-object class last).
        embed_dims: the decoder's width.
        num_reg_fcs: hidden layers of the box MLP (2: DETR's 3 layers in all).
        loss_cls: ``CrossEntropyLoss`` (softmax; ``bg_cls_weight``: the no-object class's
            weight, DETR's 0.1; ``class_weight``: the object classes', a number) or a
            sigmoid loss (``FocalLoss``, ``use_sigmoid=True``: no no-object class).
        loss_bbox: L1 on the normalised ``[cx, cy, w, h]`` boxes (DETR: weight 5).
        loss_iou: GIoU on the boxes in pixels (DETR: weight 2).
        train_cfg: ``assigner`` (default: ``HungarianAssigner`` with DETR's costs: class 1,
            L1 5 on ``cxcywh``, GIoU 2).
        test_cfg: ``max_per_img`` (100), ``score_thr`` (``None``: keep all of them; a number:
            only scores above it), ``clip_bboxes`` (``True``: boxes clamped to the image).

    ``forward(hidden_states)`` takes the decoder's (L, B, Q, embed_dims) outputs of every
    layer and gives (L, B, Q, cls_out_channels) logits and (L, B, Q, 4) boxes. The losses
    (``loss_cls``, ``loss_bbox``, ``loss_iou`` of the last layer, ``d{i}.loss_*`` of layer
    ``i``, mmdetection's names) are each averaged over the batch: the classification by
    ``max(num_pos + bg_cls_weight * num_neg, 1)`` (the sum of the softmax's class weights),
    the box losses by the matched queries (DETR's ``num_boxes``, the number of gts unless
    an image has more gts than queries), at least 1. Each layer has its own assignment. The
    averages are over this process's batch: mmdetection's and DETR's mean over processes
    needs the engine's collectives, which models do not import.
    """

    train_cfg_schema = {"assigner": None}
    test_cfg_schema = {key: None for key in DEFAULT_TEST_CFG}

    def __init__(
        self,
        num_classes,
        embed_dims=256,
        num_reg_fcs=2,
        loss_cls=DETR_LOSS_CLS,
        loss_bbox=DETR_LOSS_BBOX,
        loss_iou=DETR_LOSS_IOU,
        train_cfg=None,
        test_cfg=None,
    ):  # fmt: skip
        super().__init__()
        if num_reg_fcs != 2:
            raise ValueError(f"DETRHead: num_reg_fcs must be 2 (DETR's box MLP), got {num_reg_fcs}")
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        loss_cls = dict(loss_cls)
        self.use_sigmoid = bool(loss_cls.get("use_sigmoid", False))
        bg_cls_weight = loss_cls.pop("bg_cls_weight", None)
        if self.use_sigmoid:
            if bg_cls_weight:
                raise ValueError(
                    "DETRHead: loss_cls.bg_cls_weight is for the softmax's no-object class; a "
                    "sigmoid classifier has none (remove it)"
                )
            self.bg_cls_weight = 0.0
            self.cls_out_channels = num_classes
        else:
            self.bg_cls_weight = 0.1 if bg_cls_weight is None else float(bg_cls_weight)
            class_weight = loss_cls.get("class_weight", 1.0)
            if not isinstance(class_weight, (int, float)):
                raise ValueError(
                    f"DETRHead: loss_cls.class_weight must be one number (the object classes' "
                    f"weight; bg_cls_weight the no-object one's), got {class_weight!r}"
                )
            loss_cls["class_weight"] = [float(class_weight)] * num_classes + [self.bg_cls_weight]
            self.cls_out_channels = num_classes + 1
        self.loss_cls = build_from_cfg(loss_cls, LOSSES)
        self.loss_bbox = build_from_cfg(dict(loss_bbox), LOSSES)
        self.loss_iou = build_from_cfg(dict(loss_iou), LOSSES)
        train_cfg = dict(train_cfg or {})
        assigner = train_cfg.get(
            "assigner", dict(type="HungarianAssigner", match_costs=DETR_MATCH_COSTS)
        )
        self.assigner = build_from_cfg(assigner, BBOX_ASSIGNERS)
        self.train_cfg = train_cfg
        self.test_cfg = dict(DEFAULT_TEST_CFG, **(test_cfg or {}))
        self._init_layers()

    def _init_layers(self):
        self.fc_cls = nn.Linear(self.embed_dims, self.cls_out_channels)
        self.reg_ffn = FFN(self.embed_dims, self.embed_dims, add_residual=False)
        self.activate = nn.ReLU()
        self.fc_reg = nn.Linear(self.embed_dims, 4)

    def init_weights(self):
        """PyTorch's linear initialisation; a sigmoid classifier's bias at prior 0.01."""
        if self.use_sigmoid:
            nn.init.constant_(self.fc_cls.bias, -4.59511985013459)  # -log((1 - 0.01) / 0.01)

    def box_factors(self, img_metas, dtype, device):
        """(B, 4) ``(w, h, w, h)`` the normalised boxes are relative to: each image's
        ``img_shape`` (:func:`image_factors`; RT-DETR's head: the padded batch)."""
        return image_factors(img_metas, dtype, device)

    # ------------------------------------------------------------------ outputs
    def forward(self, hidden_states):
        """(L, B, Q, C) decoder outputs -> (L, B, Q, cls_out_channels) class logits and
        (L, B, Q, 4) sigmoid ``[cx, cy, w, h]`` boxes normalised by the image size."""
        cls_scores = self.fc_cls(hidden_states)
        bbox_preds = self.fc_reg(self.activate(self.reg_ffn(hidden_states))).sigmoid()
        return cls_scores, bbox_preds

    # ------------------------------------------------------------------ training
    def forward_train(self, hidden_states, data_samples):
        """The losses of :meth:`loss` from the decoder's outputs and the samples' gts."""
        batch_gt_instances, _, batch_img_metas = unpack_gt_instances(data_samples)
        return self.loss(*self(hidden_states), batch_gt_instances, batch_img_metas)

    def loss(self, all_layers_cls_scores, all_layers_bbox_preds, batch_gt_instances,
             batch_img_metas):  # fmt: skip
        """(L, B, Q, ·) outputs of every decoder layer, B images' gts (``bboxes`` in the
        input image, ``labels``) and metas -> ``loss_cls``, ``loss_bbox``, ``loss_iou`` (the
        last layer) and ``d{i}.loss_cls`` ... (layer ``i < L - 1``)."""
        num_layers = all_layers_cls_scores.size(0)
        per_layer = [
            self.loss_by_feat_single(
                all_layers_cls_scores[layer], all_layers_bbox_preds[layer],
                batch_gt_instances, batch_img_metas,
            )
            for layer in range(num_layers)
        ]  # fmt: skip
        losses = dict(per_layer[-1])
        for layer, terms in enumerate(per_layer[:-1]):
            losses.update({f"d{layer}.{name}": value for name, value in terms.items()})
        return losses

    def loss_by_feat_single(self, cls_scores, bbox_preds, batch_gt_instances, batch_img_metas):
        """One decoder layer: (B, Q, cls_out_channels) logits and (B, Q, 4) normalised
        boxes -> dict of ``loss_cls``, ``loss_bbox``, ``loss_iou``, after its own
        assignment (:meth:`get_targets`)."""
        targets = self.get_targets(cls_scores, bbox_preds, batch_gt_instances, batch_img_metas)
        return self.loss_of_targets(cls_scores, bbox_preds, targets)

    def get_targets(self, cls_scores, bbox_preds, batch_gt_instances, batch_img_metas):
        """Match each image's queries to its gts (the assigner, on the host, image by image)
        and gather the batch's targets in one :class:`QueryTargets` (one host transfer of
        the matched queries' indices for the batch)."""
        batch, num_queries = cls_scores.shape[:2]
        device = cls_scores.device
        factors = self.box_factors(batch_img_metas, bbox_preds.dtype, device)
        pred_bboxes = bbox_cxcywh_to_xyxy(bbox_preds.detach()) * factors[:, None]
        gt_inds = []
        for i, (gt, meta) in enumerate(zip(batch_gt_instances, batch_img_metas)):
            pred = InstanceData(scores=cls_scores[i].detach(), bboxes=pred_bboxes[i])
            gt_inds.append(self.assigner.assign(pred, gt, img_meta=meta).gt_inds)
        gt_inds = torch.stack(gt_inds)  # (B, Q): 0 unmatched, g + 1 the image's gt g
        pos_batch_inds, pos_query_inds = (gt_inds > 0).nonzero(as_tuple=True)
        counts = [len(gt.labels) for gt in batch_gt_instances]
        offsets = torch.tensor([0] + counts[:-1], device=device).cumsum(0)
        pos_gt_inds = gt_inds[pos_batch_inds, pos_query_inds] - 1
        flat = pos_gt_inds + offsets[pos_batch_inds]
        all_labels = torch.cat([gt.labels.to(device).long() for gt in batch_gt_instances])
        all_bboxes = torch.cat(
            [gt.bboxes.to(device=device, dtype=bbox_preds.dtype) for gt in batch_gt_instances]
        )
        labels = gt_inds.new_full((batch, num_queries), self.num_classes)
        labels[pos_batch_inds, pos_query_inds] = all_labels[flat]
        num_pos = pos_batch_inds.numel()
        return QueryTargets(
            labels=labels,
            label_weights=cls_scores.new_ones((batch, num_queries)),
            pos_batch_inds=pos_batch_inds,
            pos_query_inds=pos_query_inds,
            pos_gt_inds=pos_gt_inds,
            pos_gt_bboxes=all_bboxes[flat],
            pos_factors=factors[pos_batch_inds],
            num_pos=num_pos,
            num_neg=batch * num_queries - num_pos,
        )

    def loss_of_targets(self, cls_scores, bbox_preds, targets):
        """The losses of one layer's (B, Q, ·) outputs against its :class:`QueryTargets`:
        classification over every query, L1 (normalised ``cxcywh``) and GIoU (pixels) over
        the matched ones."""
        cls_avg_factor = max(targets.num_pos + targets.num_neg * self.bg_cls_weight, 1.0)
        loss_cls = self.loss_cls(
            cls_scores.reshape(-1, self.cls_out_channels), targets.labels.reshape(-1),
            targets.label_weights.reshape(-1), avg_factor=cls_avg_factor,
        )  # fmt: skip
        return dict(loss_cls=loss_cls, **self.box_losses(bbox_preds, targets))

    def box_losses(self, bbox_preds, targets):
        """``loss_bbox`` (L1 on the normalised ``cxcywh``) and ``loss_iou`` (pixels) of the
        matched queries of (B, Q, 4) boxes, averaged by their number (at least 1)."""
        num_boxes = max(targets.num_pos, 1)
        pos_preds = bbox_preds[targets.pos_batch_inds, targets.pos_query_inds]
        pos_targets = bbox_xyxy_to_cxcywh(targets.pos_gt_bboxes / targets.pos_factors)
        loss_bbox = self.loss_bbox(pos_preds, pos_targets, avg_factor=num_boxes)
        loss_iou = self.loss_iou(
            bbox_cxcywh_to_xyxy(pos_preds) * targets.pos_factors, targets.pos_gt_bboxes,
            avg_factor=num_boxes,
        )  # fmt: skip
        return dict(loss_bbox=loss_bbox, loss_iou=loss_iou)

    # ------------------------------------------------------------------ inference
    def predict(self, hidden_states, img_metas, rescale=False):
        """The detections of the last decoder layer: B :class:`InstanceData`."""
        return self.get_bboxes(*self(hidden_states), img_metas, rescale=rescale)

    def get_bboxes(self, all_layers_cls_scores, all_layers_bbox_preds, img_metas, rescale=False):
        """Detections from the last layer's (B, Q, ·) outputs: softmax (no-object dropped),
        each query's best class, the ``max_per_img`` best queries (a sigmoid classifier:
        the best ``max_per_img`` (query, class) pairs); boxes in the input image (clamped
        to it with ``clip_bboxes``), with ``rescale`` divided by ``scale_factor``.

        Returns:
            B :class:`InstanceData` (``bboxes`` (n, 4), ``scores`` (n,), ``labels`` (n,)),
            by descending score.
        """
        cls_scores = all_layers_cls_scores[-1]
        bbox_preds = all_layers_bbox_preds[-1]
        num_queries = cls_scores.size(1)
        max_per_img = int(self.test_cfg["max_per_img"])
        if self.use_sigmoid:
            scores = cls_scores.sigmoid().flatten(1)
            scores, index = scores.topk(min(max_per_img, scores.size(1)), dim=1)
            labels = index % self.num_classes
            query = torch.div(index, self.num_classes, rounding_mode="floor")
        else:
            scores, labels = F.softmax(cls_scores, dim=-1)[..., :-1].max(-1)
            scores, query = scores.topk(min(max_per_img, num_queries), dim=1)
            labels = labels.gather(1, query)
        boxes = bbox_preds.gather(1, query[..., None].expand(-1, -1, 4))
        factors = self.box_factors(img_metas, boxes.dtype, boxes.device)
        boxes = bbox_cxcywh_to_xyxy(boxes) * factors[:, None]
        if self.test_cfg["clip_bboxes"]:
            limits = image_factors(img_metas, boxes.dtype, boxes.device)
            boxes = torch.minimum(boxes.clamp(min=0), limits[:, None])
        results = []
        score_thr = self.test_cfg["score_thr"]
        for i, meta in enumerate(img_metas):
            image_boxes, image_scores, image_labels = boxes[i], scores[i], labels[i]
            if score_thr is not None:
                keep = image_scores > score_thr
                image_boxes, image_scores = image_boxes[keep], image_scores[keep]
                image_labels = image_labels[keep]
            if rescale:
                factor = torch.as_tensor(
                    meta["scale_factor"], dtype=image_boxes.dtype, device=image_boxes.device
                )
                image_boxes = image_boxes / factor
            results.append(InstanceData(bboxes=image_boxes, scores=image_scores,
                                        labels=image_labels))  # fmt: skip
        return results
