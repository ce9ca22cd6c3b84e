"""What every dense (per-location) head shares: the forward over levels, the training step on
data samples, priors, box decoding and detections.

A dense head runs ``forward_single`` on each pyramid level; its outputs are per-level lists:
class scores, box predictions and, for heads with ``with_score_factors``, a score factor per
prior (FCOS's centre-ness, an IoU quality). They go as they are to ``loss`` (training) and
``get_bboxes`` (detections) or ``get_proposals`` (proposal heads).

Priors come from ``prior_generator`` (``PRIOR_GENERATORS``: anchors or points, per level in
the order of :func:`flatten_levels`), box predictions are turned into boxes by
``bbox_coder`` (``BBOX_CODERS``). Detections are shared (:meth:`BaseDenseHead.get_bboxes`):
per level the best (prior, class) pairs (:func:`top_pairs`), optionally scored with the score
factor, decoded, then per image :func:`detections_per_image`.
:class:`~mmdet_like.models.dense_heads.AnchorHead` is the base of the anchor-based heads;
anchor-free heads (:class:`~mmdet_like.models.dense_heads.FCOSHead`) subclass this one.
"""

import abc

import torch
from torch import nn

from mmdet_like.models.task_modules.multiclass_nms import nms_of_pairs
from mmdet_like.models.utils.cfg_keys import NMS_SCHEMA
from mmdet_like.structures.bbox import clip_bboxes
from mmdet_like.structures.instance_data import InstanceData
from mmdet_like.structures.instances import unpack_gt_instances

DEFAULT_DETECTION_TEST_CFG = dict(
    nms_pre=1000, score_thr=0.05, nms=dict(type="nms", iou_thr=0.5), max_per_img=100,
    min_bbox_size=0,
)  # fmt: skip
DETECTION_TEST_CFG_SCHEMA = {"nms_pre": None, "score_thr": None, "nms": NMS_SCHEMA,
                             "max_per_img": None, "min_bbox_size": None}  # fmt: skip


def flatten_levels(per_level, channels):
    """List over levels of (N, A * channels, H, W) -> (N, sum H * W * A, channels), in the
    priors' order (location-major, the A priors of a cell consecutive)."""
    return torch.cat(
        [x.permute(0, 2, 3, 1).reshape(x.size(0), -1, channels) for x in per_level], dim=1
    )


def top_pairs(values, score_thr, nms_pre, activation=None):
    """The ``nms_pre`` best (location, class) pairs of each image scoring above ``score_thr``,
    without a host sync.

    Args:
        values: (N, K, C) scores of one level's K locations (anchors or points), or, with
            ``activation``, the logits that ``activation`` (a monotonic increasing function
            such as ``torch.sigmoid``) turns into scores. The pairs are ranked on ``values``
            and only the selected ones are activated: no (N, K, C) copy is made, which at
            RetinaNet's finest level is 50 MB an image.

    Returns:
        (N, k) scores (pairs at or below ``score_thr`` fill up short levels with -1, in
        descending order), (N, k) location indices and (N, k) labels.
    """
    num_classes = values.size(-1)
    flat = values.reshape(values.size(0), -1)
    if activation is None:
        flat = flat.masked_fill(flat <= score_thr, -1.0)
    count = flat.size(1) if not nms_pre or nms_pre <= 0 else min(nms_pre, flat.size(1))
    top_scores, top = flat.topk(count, dim=1)
    if activation is not None:
        top_scores = activation(top_scores)
        top_scores = top_scores.masked_fill(top_scores <= score_thr, -1.0)
    return top_scores, torch.div(top, num_classes, rounding_mode="floor"), top % num_classes


def detections_per_image(scores, labels, boxes, keep, img_metas, cfg, rescale=False,
                         num_classes=None):  # fmt: skip
    """The last step of a dense head's detection: per image, the candidates ``keep`` selects,
    clipped to the image, boxes under ``cfg["min_bbox_size"]`` dropped, class-wise NMS
    (``cfg["nms"]``), the ``cfg["max_per_img"]`` best.

    Args:
        scores, labels: (N, P) candidate scores and labels; boxes: (N, P, 4) decoded boxes in
            the input image; keep: (N, P) bools.
        rescale: boxes divided by each meta's ``scale_factor`` (the original image).
        num_classes: labels are in ``[0, num_classes)`` (:func:`nms_of_pairs`).

    Returns:
        N :class:`InstanceData` with ``bboxes`` (n, 4), ``scores`` (n,), ``labels`` (n,).
    """
    results = []
    for i, meta in enumerate(img_metas):
        image_keep = keep[i]
        image_boxes = clip_bboxes(boxes[i], meta["img_shape"])
        size = cfg.get("min_bbox_size")
        if size is not None and size > 0:
            wh = image_boxes[:, 2:] - image_boxes[:, :2]
            image_keep = image_keep & (wh[:, 0] > size) & (wh[:, 1] > size)
        image_boxes = image_boxes[image_keep]
        if rescale:
            factor = torch.as_tensor(
                meta["scale_factor"], dtype=image_boxes.dtype, device=image_boxes.device
            )
            image_boxes = image_boxes / factor
        dets, image_labels = nms_of_pairs(
            image_boxes, scores[i][image_keep], labels[i][image_keep], cfg["nms"],
            cfg["max_per_img"], num_classes,
        )  # fmt: skip
        results.append(InstanceData(bboxes=dets[:, :4], scores=dets[:, 4], labels=image_labels))
    return results


class BaseDenseHead(nn.Module, metaclass=abc.ABCMeta):
    """The contract of a dense head.

    A subclass sets, in ``__init__``: ``num_classes``, ``cls_out_channels`` (the class
    channels per prior: ``num_classes``, plus one for the background with a softmax
    classifier, ``use_sigmoid_cls=False``), ``prior_generator`` (``PRIOR_GENERATORS``),
    ``bbox_coder`` (``BBOX_CODERS``) and ``test_cfg``; and implements ``forward_single(x)``
    (one level's outputs, a tuple: class logits, box predictions and, with
    ``with_score_factors``, score factor logits (N, A, H, W); the box predictions have
    ``bbox_pred_channels`` per prior; heads whose layers differ by level override
    :meth:`forward`) and ``loss(*outputs, batch_gt_instances,
    batch_img_metas, batch_gt_instances_ignore)``. Where its priors or boxes need more than
    the generator and the coder give, it overrides :meth:`get_priors` (FCOS: points with
    their strides) and :meth:`decode_bboxes` (FCOS: distances in strides). Detections
    (:meth:`get_bboxes`) are shared; proposal heads add ``get_proposals``.
    ``train_cfg_schema`` / ``test_cfg_schema`` list the config keys the head reads (the
    detector refuses others).
    """

    train_cfg_schema = {}
    test_cfg_schema = DETECTION_TEST_CFG_SCHEMA
    default_test_cfg = DEFAULT_DETECTION_TEST_CFG
    # forward gives a third output: a score factor per prior (its logit), multiplied into
    # the class scores of detections
    with_score_factors = False
    # with score factors: pairs ranked and thresholded on sqrt(class score * factor), which
    # is their score (torchvision's FCOS); else thresholded on the class score and scored
    # class score * factor (mmdetection)
    sqrt_score = False
    use_sigmoid_cls = True
    # channels of one prior's box prediction: 4 (deltas, distances), or more for a head that
    # predicts a distribution per side (GFL: 4 * (reg_max + 1)), which decode_bboxes reads
    bbox_pred_channels = 4

    @abc.abstractmethod
    def forward_single(self, x):
        """One level: (N, C, H, W) -> a tuple of that level's outputs."""

    def forward(self, feats):
        """Tuple of L (N, C, H_l, W_l) features -> a tuple of lists over the levels, one list
        per output of :meth:`forward_single`."""
        per_level = [self.forward_single(x) for x in feats]
        return tuple(list(outputs) for outputs in zip(*per_level))

    def _check_can_train(self):
        """Raise a clear error where the head was built without what training needs."""

    @abc.abstractmethod
    def loss(self, *args, **kwargs):
        """Dict of the head's losses (see the subclass)."""

    # ------------------------------------------------------------------- priors and boxes
    def get_priors(self, featmap_sizes, dtype, device):
        """List over levels of the priors of feature maps of ``featmap_sizes`` [(H, W), ...]:
        (H * W * A, 4) anchors or (H * W, 2) points, in the order of :func:`flatten_levels`."""
        return self.prior_generator.grid_priors(featmap_sizes, dtype=dtype, device=device)

    def decode_bboxes(self, priors, bbox_preds):
        """(..., D) priors (:meth:`get_priors`) and (..., 4) box predictions -> (..., 4)
        boxes in the input image."""
        return self.bbox_coder.decode(priors, bbox_preds)

    def split_outputs(self, args):
        """``args``, the outputs of :meth:`forward` followed by other arguments ->
        (cls_scores, bbox_preds, score_factors (``None`` without ``with_score_factors``),
        the other arguments)."""
        if self.with_score_factors:
            return args[0], args[1], args[2], args[3:]
        return args[0], args[1], None, args[2:]

    # ------------------------------------------------------------------------- detections
    def _level_candidates(self, cls_scores, bbox_preds, nms_pre):
        """Per level, the ``nms_pre`` best priors of each image by their best class score
        (proposal heads).

        Returns:
            per level: (N, k_l, cls_out_channels) scores (sigmoid or softmax), (N, k_l, 4)
            box predictions and (N, k_l, D) priors.
        """
        priors_per_level = self.get_priors(
            [tuple(x.shape[-2:]) for x in cls_scores], cls_scores[0].dtype, cls_scores[0].device
        )
        out = []
        for cls, reg, level_priors in zip(cls_scores, bbox_preds, priors_per_level):
            logits = flatten_levels([cls], self.cls_out_channels)  # (N, K_l, C')
            scores = logits.sigmoid() if self.use_sigmoid_cls else logits.softmax(-1)
            preds = flatten_levels([reg], self.bbox_pred_channels)
            num = scores.size(1)
            tracing = torch.compiler.is_compiling()
            if nms_pre and nms_pre > 0 and (tracing or nms_pre < num):
                # traced (torch.export): the level's size is symbolic, no branch on it; the
                # topk of min(nms_pre, size) priors (all of a small level, reordered)
                count = torch.sym_min(nms_pre, num) if tracing else nms_pre
                object_scores = scores if self.use_sigmoid_cls else scores[..., :-1]
                _, top = object_scores.max(-1).values.topk(count, dim=1)
                scores = scores.gather(1, top[..., None].expand(-1, -1, scores.size(-1)))
                preds = preds.gather(1, top[..., None].expand(-1, -1, preds.size(-1)))
                level_priors = level_priors[top]
            else:
                level_priors = level_priors[None].expand(scores.size(0), -1, -1)
            out.append((scores, preds, level_priors))
        return out

    def _pair_candidates(self, cls_scores, bbox_preds, score_factors, score_thr, nms_pre):
        """Per level, the ``nms_pre`` best (prior, class) pairs of each image among those
        scoring above ``score_thr``, decoded; all images at once, no host sync.

        Returns:
            (N, P) values the pairs were ranked and thresholded on (pairs at or below
            ``score_thr`` fill up short levels and are -1), (N, P) detection scores (those
            values, times the score factor where it is not in them), (N, P) labels and
            (N, P, 4) boxes, P the pairs kept over all levels.
        """
        priors_per_level = self.get_priors(
            [tuple(x.shape[-2:]) for x in cls_scores], cls_scores[0].dtype, cls_scores[0].device
        )
        if score_factors is None:
            score_factors = [None] * len(cls_scores)
        all_ranked, all_scores, all_labels, all_boxes = [], [], [], []
        for cls, reg, factor, level_priors in zip(
            cls_scores, bbox_preds, score_factors, priors_per_level
        ):
            logits = flatten_levels([cls], self.cls_out_channels)  # (N, K, C')
            if factor is not None:
                factor = flatten_levels([factor], 1).sigmoid()  # (N, K, 1)
            if factor is not None and self.sqrt_score:
                if self.use_sigmoid_cls:
                    class_scores = logits.sigmoid()
                else:
                    class_scores = logits.softmax(-1)[..., :-1]
                ranked, prior_inds, labels = top_pairs(
                    (class_scores * factor).sqrt(), score_thr, nms_pre
                )
            elif self.use_sigmoid_cls:  # ranked on the logits, only the kept pairs activated
                ranked, prior_inds, labels = top_pairs(
                    logits, score_thr, nms_pre, activation=torch.sigmoid
                )
            else:
                ranked, prior_inds, labels = top_pairs(
                    logits.softmax(-1)[..., :-1], score_thr, nms_pre
                )
            scores = ranked
            if factor is not None and not self.sqrt_score:
                scores = ranked * factor[..., 0].gather(1, prior_inds)
            preds = flatten_levels([reg], self.bbox_pred_channels)
            preds = preds.gather(1, prior_inds[..., None].expand(-1, -1, preds.size(-1)))
            all_boxes.append(self.decode_bboxes(level_priors[prior_inds], preds))
            all_ranked.append(ranked)
            all_scores.append(scores)
            all_labels.append(labels)
        return tuple(torch.cat(x, 1) for x in (all_ranked, all_scores, all_labels, all_boxes))

    @torch.no_grad()
    def get_bboxes(self, cls_scores, bbox_preds, *args, cfg=None, rescale=False):
        """Detections of every image: per level the ``nms_pre`` best (prior, class) pairs
        scoring above ``score_thr`` (over all classes, as mmdetection and torchvision do),
        with score factors scored as ``sqrt_score`` says, decoded, clipped to the image,
        boxes under ``min_bbox_size`` dropped, then class-wise NMS over the levels and the
        ``max_per_img`` best.

        Args:
            cls_scores, bbox_preds, args: the outputs of :meth:`forward` (with
                ``with_score_factors``, the score factors come third), then the N image
                metas.
            cfg: overrides ``test_cfg`` keys.
            rescale: boxes in the original image (divided by the meta's ``scale_factor``).

        Returns:
            N :class:`InstanceData` with ``bboxes`` (n, 4), ``scores`` (n,), ``labels``
            (n,).
        """
        _, _, score_factors, rest = self.split_outputs((cls_scores, bbox_preds, *args))
        if len(rest) != 1:
            raise TypeError(
                f"{type(self).__name__}.get_bboxes takes the outputs of forward and the image "
                f"metas (cfg and rescale by keyword); got {len(rest)} arguments after the outputs"
            )
        cfg = dict(self.test_cfg, **(cfg or {}))
        ranked, scores, labels, boxes = self._pair_candidates(
            cls_scores, bbox_preds, score_factors, cfg["score_thr"], cfg["nms_pre"]
        )
        return detections_per_image(scores, labels, boxes, ranked > cfg["score_thr"], rest[0],
                                    cfg, rescale, self.num_classes)  # fmt: skip

    # --------------------------------------------------------------------------- training
    def forward_train(self, feats, data_samples, proposal_cfg=None):
        """Training: the losses and, with ``proposal_cfg``, proposals (:meth:`get_proposals`,
        for heads that give them).

        Args:
            feats: tuple of L (N, C, H_l, W_l) features.
            data_samples: N :class:`DetDataSample` (``gt_instances``: ``bboxes``,
                ``labels``; ``ignored_instances``; the image meta).

        Returns:
            (losses dict, N proposal :class:`InstanceData` (``bboxes``, ``scores``) or
            ``None``).
        """
        self._check_can_train()
        batch_gt_instances, batch_gt_ignore, batch_img_metas = unpack_gt_instances(data_samples)
        outputs = self(feats)
        losses = self.loss(*outputs, batch_gt_instances, batch_img_metas, batch_gt_ignore)
        proposals = None
        if proposal_cfg is not None:
            detached = [[x.detach() for x in level] for level in outputs]
            proposals = self.get_proposals(*detached, batch_img_metas, proposal_cfg)
        return losses, proposals

    def get_proposals(self, *args, **kwargs):
        raise NotImplementedError(
            f"{type(self).__name__} is a detection head and gives no proposals; use RPNHead "
            "(or another proposal head) as the rpn_head of a two-stage detector"
        )
