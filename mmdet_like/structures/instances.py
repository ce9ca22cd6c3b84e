"""The edges of the data-sample design: the one place where data samples meet mmdetection's
per-image lists.

Inside the package, ground truth and predictions travel as :class:`DetDataSample` (with
:class:`InstanceData` fields); the metrics read the predictions' ``pred_instances``. Older
interfaces keep their formats here, converted once:

* :func:`samples_from_lists`: the per-image lists of a ``Collect`` pipeline
  (``img_metas``, ``gt_bboxes``, ``gt_labels``, ``gt_masks``, ``gt_bboxes_ignore``,
  ``proposals``) -> data samples;
* :func:`to_legacy_result`: predictions -> mmdetection's result of one image (per-class
  box arrays, with per-class masks, or one proposal array), the format of
  ``inference_detector``'s return, ``results.pkl`` and ``show_result``;
* :func:`from_legacy_result`: the way back, for results in that format given to the
  metrics (a ``results.pkl`` evaluated again, ``dataset.evaluate`` on per-class lists);
  :func:`pred_instances_of` takes either;
* :func:`compact_prediction`: a predicted sample reduced to what evaluation keeps (CPU
  tensors, masks as compressed RLE), so a whole test set's predictions fit in memory.

Inside the models, :func:`unpack_gt_instances` gives the heads the per-image containers.
"""

import numpy as np
import torch

from mmdet_like.structures.instance_data import DetDataSample, InstanceData
from mmdet_like.structures.mask import bitmap_to_rle


def _instances_of(result):
    """A DetDataSample's ``pred_instances``, or the InstanceData itself."""
    pred = result.pred_instances if isinstance(result, DetDataSample) else result
    if not isinstance(pred, InstanceData) or "bboxes" not in pred:
        raise ValueError(
            f"{type(result).__name__} holds no predictions (needs pred_instances with "
            "bboxes and scores, and labels for detections)"
        )
    return pred


def _tensor(value):
    """A field as a tensor (numpy fields, e.g. of :func:`from_legacy_result`, as tensors)."""
    return value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(value)


def detection_to_per_class(result, num_classes):
    """mmdetection's result format of one image's detections.

    Args:
        result: a predicted :class:`DetDataSample`, or its ``pred_instances``
            (``bboxes`` (n, 4), ``scores`` (n,), ``labels`` (n,) [, ``masks``: (n, H, W)
            bool tensor, or a list of n RLE dicts (:func:`compact_prediction`)]).
        num_classes: the number of object classes.

    Returns:
        ``bbox_results``: list of ``num_classes`` float32 (n_c, 5) arrays
        ``[x1, y1, x2, y2, score]``; with masks, the tuple ``(bbox_results, segm_results)``,
        ``segm_results`` a list over classes of lists of (H, W) bool arrays (or RLE dicts);
        with keypoints (``keypoints`` (n, K, 2), ``keypoint_scores`` (n, K)), the 3-tuple
        ``(bbox_results, segm_results or None, keypoint_results)``, ``keypoint_results`` a
        list over classes of float32 (n_c, K, 3) arrays ``[x, y, score]``.
    """
    pred = _instances_of(result)
    labels = _tensor(pred.labels).long().cpu()
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes)[:num_classes].tolist()
    splits = np.cumsum(counts)[:-1]
    boxes, scores = _tensor(pred.bboxes).float(), _tensor(pred.scores).float()
    dets = torch.cat([boxes, scores[:, None]], 1).cpu()[order].numpy()
    bbox_results = list(np.split(dets.reshape(-1, 5).astype(np.float32), splits))
    masks = pred.get("masks")
    keypoints = pred.get("keypoints")
    segm_results = None
    if masks is not None:
        if isinstance(masks, torch.Tensor):
            per_instance = list(masks.detach().cpu()[order].numpy().astype(bool))
        else:  # RLE dicts
            per_instance = [masks[i] for i in order.tolist()]
        bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()
        segm_results = [per_instance[bounds[c] : bounds[c + 1]] for c in range(num_classes)]
    if keypoints is None:
        return bbox_results if segm_results is None else (bbox_results, segm_results)
    points = torch.cat(
        [_tensor(keypoints).float(), _tensor(pred.keypoint_scores).float()[..., None]], 2
    ).cpu()[order]
    k = points.shape[1]
    keypoint_results = list(np.split(points.numpy().reshape(-1, k, 3).astype(np.float32), splits))
    return bbox_results, segm_results, keypoint_results


def proposals_to_array(result):
    """One image's proposals (a sample's ``pred_instances`` with ``bboxes`` and ``scores``,
    no ``labels``) -> an (n, 5) float32 array ``[x1, y1, x2, y2, score]``."""
    pred = _instances_of(result)
    dets = torch.cat([_tensor(pred.bboxes).float(), _tensor(pred.scores).float()[:, None]], 1)
    return dets.cpu().numpy().reshape(-1, 5).astype(np.float32)


def to_legacy_result(result, num_classes):
    """One image's predictions in mmdetection's format: :func:`detection_to_per_class` for
    detections (``labels`` set), :func:`proposals_to_array` for proposals (an RPN's)."""
    if "labels" in _instances_of(result):
        return detection_to_per_class(result, num_classes)
    return proposals_to_array(result)


def from_legacy_result(result):
    """One image's result in mmdetection's format -> the :class:`InstanceData` a detector
    predicts, its fields numpy arrays (dtypes kept) in the result's order (class by class).

    Args:
        result: per-class box arrays, ``(bbox_results, segm_results)``, ``(bbox_results,
            segm_results or None, keypoint_results)`` (see :func:`detection_to_per_class`),
            or one (n, 4|5) proposal array.

    Returns:
        detections: ``bboxes`` (n, 4), ``scores`` (n,), ``labels`` (n,) int64 [, ``masks``:
        a list of n RLE dicts or (H, W) arrays] [, ``keypoints`` (n, K, 2),
        ``keypoint_scores`` (n, K)]; proposals: ``bboxes`` [, ``scores``].
    """
    if isinstance(result, (np.ndarray, torch.Tensor)):
        proposals = np.asarray(result)
        proposals = proposals.reshape(-1, proposals.shape[-1] if proposals.ndim == 2 else 5)
        out = InstanceData(bboxes=proposals[:, :4])
        if proposals.shape[1] >= 5:
            out.scores = proposals[:, 4]
        return out
    bbox_results, segm_results, keypoint_results = result_parts(result)
    per_class = [np.asarray(b).reshape(-1, 5) for b in bbox_results]
    dets = np.concatenate(per_class) if per_class else np.zeros((0, 5), np.float32)
    labels = [np.full(len(b), label, dtype=np.int64) for label, b in enumerate(per_class)]
    out = InstanceData(
        bboxes=dets[:, :4], scores=dets[:, 4],
        labels=np.concatenate(labels) if labels else np.zeros(0, np.int64),
    )  # fmt: skip
    if segm_results is not None:
        out.masks = [mask for masks in segm_results for mask in masks]
    if keypoint_results is not None:
        points = np.concatenate([np.asarray(k).reshape(-1, 3) for k in keypoint_results])
        points = points.reshape(len(dets), len(points) // max(len(dets), 1), 3)
        out.keypoints = points[..., :2]
        out.keypoint_scores = points[..., 2]
    return out


def pred_instances_of(result):
    """One image's predictions as :class:`InstanceData`: a predicted sample's
    ``pred_instances``, an :class:`InstanceData` as it is, a result in mmdetection's format
    through :func:`from_legacy_result`."""
    if isinstance(result, DetDataSample):
        return _instances_of(result)
    if isinstance(result, InstanceData):
        return result
    return from_legacy_result(result)


def result_parts(result):
    """``(bbox_results, segm_results or None, keypoint_results or None)`` of one image's
    per-class result: a list of box arrays, ``(bbox, segm)`` or ``(bbox, segm or None,
    keypoints)`` (see :func:`detection_to_per_class`)."""
    if not isinstance(result, tuple):
        return result, None, None
    return result[0], result[1], result[2] if len(result) > 2 else None


def encode_mask_results(result):
    """One image's per-class result with its (H, W) masks replaced by compressed RLE dicts
    (counts as ``bytes``, what ``pycocotools.mask.encode`` returns); other results are
    returned as they are."""
    if not isinstance(result, tuple) or result[1] is None:
        return result
    encoded = [
        [m if isinstance(m, dict) else bitmap_to_rle(m, str_counts=False) for m in masks]
        for masks in result[1]
    ]
    return (result[0], encoded, *result[2:])


def compact_prediction(sample):
    """What evaluation keeps of a predicted sample: a new sample with the image meta and
    ``pred_instances`` only, on the CPU, its (n, H, W) masks as a list of n RLE dicts
    (``bytes`` counts). Anything that is not a predicted sample is returned as it is."""
    if not isinstance(sample, DetDataSample) or sample.pred_instances is None:
        return sample
    pred = sample.pred_instances.to("cpu")
    masks = pred.get("masks")
    if isinstance(masks, torch.Tensor):
        pred.masks = [bitmap_to_rle(m, str_counts=False) for m in masks.numpy()]
    return DetDataSample(metainfo=sample.metainfo, pred_instances=pred)


def _proposal_instances(proposals):
    """(n, 4) or (n, 5) ``[x1, y1, x2, y2(, score)]`` tensor -> InstanceData."""
    proposals = torch.as_tensor(proposals)
    proposals = proposals.reshape(-1, proposals.shape[-1])
    out = InstanceData(bboxes=proposals[:, :4])
    if proposals.shape[1] >= 5:
        out.scores = proposals[:, 4]
    return out


def samples_from_lists(
    img_metas, gt_bboxes=None, gt_labels=None, gt_bboxes_ignore=None, gt_masks=None,
    proposals=None,
):  # fmt: skip
    """The per-image lists of a ``Collect`` pipeline -> one :class:`DetDataSample` per image
    (``gt_instances``: ``bboxes``, ``labels``, ``masks``; ``ignored_instances``:
    ``bboxes``; ``proposals``: ``bboxes`` [, ``scores``]). ``None`` lists are left out."""
    samples = []
    for i, meta in enumerate(img_metas):
        gt = InstanceData()
        if gt_bboxes is not None:
            gt.bboxes = gt_bboxes[i]
        if gt_labels is not None:
            gt.labels = gt_labels[i]
        if gt_masks is not None:
            gt.masks = gt_masks[i]
        ignored = InstanceData()
        if gt_bboxes_ignore is not None and gt_bboxes_ignore[i] is not None:
            ignored.bboxes = gt_bboxes_ignore[i]
        sample_proposals = None
        if proposals is not None and proposals[i] is not None:
            sample_proposals = _proposal_instances(proposals[i])
        samples.append(
            DetDataSample(
                metainfo=meta,
                gt_instances=gt,
                ignored_instances=ignored,
                proposals=sample_proposals,
            )  # fmt: skip
        )
    return samples


def unpack_gt_instances(data_samples):
    """What the heads read of a batch of samples.

    Returns:
        ``(batch_gt_instances, batch_gt_instances_ignore, batch_img_metas)``: N
        ``gt_instances``, N ``ignored_instances`` (empty containers where an image has
        none) and N meta dicts.
    """
    return (
        [s.gt_instances for s in data_samples],
        [s.ignored_instances for s in data_samples],
        [s.metainfo for s in data_samples],
    )


def ignored_bboxes(ignored_instances):
    """(K, 4) boxes of an ``ignored_instances`` container, or ``None`` when it has none."""
    if ignored_instances is None or "bboxes" not in ignored_instances:
        return None
    return ignored_instances.bboxes
