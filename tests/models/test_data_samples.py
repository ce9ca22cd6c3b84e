"""The data-sample contract: ``PackDetInputs`` gives one ``DetDataSample`` per image, the
detectors train on ``model(img=..., data_samples=[...])`` exactly as on the per-image lists,
and predict ``pred_instances``; the per-class lists are made at the edges."""

import numpy as np
import pytest
import torch

from mmdet_like.datasets import collate
from mmdet_like.datasets.pipelines import Collect, DefaultFormatBundle, PackDetInputs
from mmdet_like.evaluation import build_evaluator
from mmdet_like.structures import (
    BitmapMasks,
    DatasetGroundTruth,
    DetDataSample,
    InstanceData,
    detection_to_per_class,
)
from tests.models.test_detectors import meta, tiny_model

META_KEYS = ("ori_shape", "img_shape", "pad_shape", "scale_factor", "flip")


def results_dict(seed=0):
    rng = np.random.default_rng(seed)
    masks = np.zeros((2, 64, 96), np.uint8)
    masks[0, 10:40, 10:50] = 1
    masks[1, 5:60, 60:90] = 1
    return dict(
        img=rng.random((64, 96, 3)).astype(np.float32),
        gt_bboxes=np.array([[10, 10, 50, 40], [60, 5, 90, 60]], np.float32),
        gt_labels=np.array([0, 2]),
        gt_bboxes_ignore=np.array([[0, 0, 5, 5]], np.float32),
        gt_masks=BitmapMasks(masks, 64, 96),
        **meta(64, 96),
    )


def test_pack_det_inputs_holds_what_collect_gives():
    legacy = Collect(("img", "gt_bboxes", "gt_labels", "gt_bboxes_ignore", "gt_masks"),
                     META_KEYS)(DefaultFormatBundle()(results_dict()))  # fmt: skip
    packed = PackDetInputs(META_KEYS)(results_dict())
    assert set(packed) == {"img", "data_samples"}
    sample = packed["data_samples"]
    assert torch.equal(packed["img"], legacy["img"])
    assert torch.equal(sample.gt_instances.bboxes, legacy["gt_bboxes"])
    assert torch.equal(sample.gt_instances.labels, legacy["gt_labels"])
    assert torch.equal(sample.ignored_instances.bboxes, legacy["gt_bboxes_ignore"])
    assert np.array_equal(sample.gt_instances.masks.masks, legacy["gt_masks"].masks)
    assert sample.metainfo.keys() == legacy["img_metas"].keys()
    batch = collate([packed, PackDetInputs(META_KEYS)(results_dict(1))])
    assert batch["img"].shape == (2, 3, 64, 96) and len(batch["data_samples"]) == 2


def samples_and_lists():
    packed = [PackDetInputs(META_KEYS)(results_dict(s)) for s in (0, 1)]
    samples = [p["data_samples"] for p in packed]
    img = torch.stack([p["img"] for p in packed])
    lists = dict(
        img_metas=[s.metainfo for s in samples],
        gt_bboxes=[s.gt_instances.bboxes for s in samples],
        gt_labels=[s.gt_instances.labels for s in samples],
        gt_bboxes_ignore=[s.ignored_instances.bboxes for s in samples],
        gt_masks=[s.gt_instances.masks for s in samples],
    )
    return img, samples, lists


def test_training_on_data_samples_equals_training_on_lists():
    img, samples, lists = samples_and_lists()
    model = tiny_model()
    torch.manual_seed(3)
    from_lists = model(img=img, **lists)
    torch.manual_seed(3)
    from_samples = model(img=img, data_samples=samples)
    assert set(from_samples) == set(from_lists)
    for key, value in from_lists.items():
        assert torch.equal(from_samples[key], value), key


def test_predict_sets_pred_instances_and_the_edges_convert_them():
    img, samples, lists = samples_and_lists()
    model = tiny_model().eval()
    typed = model.predict_instances(img, samples, rescale=True)
    out = model(img=img, data_samples=samples, return_loss=False, rescale=True)
    assert out is not None and all(isinstance(s, DetDataSample) for s in out)
    for sample, result in zip(out, typed):
        pred = sample.pred_instances
        assert isinstance(pred, InstanceData) and len(pred) == len(result) > 0
        assert torch.equal(pred.bboxes, result.bboxes) and torch.equal(pred.masks, result.masks)
        assert pred.masks.dtype == torch.bool and pred.masks.shape[1:] == (64, 96)
    legacy = model(img=img, img_metas=lists["img_metas"], return_loss=False, rescale=True)
    for sample, per_class in zip(out, legacy):
        converted = detection_to_per_class(sample, model.num_classes)
        for a, b in zip(converted[0], per_class[0]):
            np.testing.assert_array_equal(a, b)
    # the metrics read predicted samples as they read per-class lists
    anns = [dict(bboxes=s.gt_instances.bboxes.numpy(), labels=s.gt_instances.labels.numpy(),
                 bboxes_ignore=np.zeros((0, 4), np.float32)) for s in samples]  # fmt: skip
    gt = DatasetGroundTruth(img_ids=[0, 1], class_names=("a", "b", "c"),
                            get_ann_info=lambda i: anns[i])  # fmt: skip
    evaluator = build_evaluator("mAP")
    assert evaluator(out, gt, "silent") == evaluator([r[0] for r in legacy], gt, "silent")


def test_data_samples_and_lists_together_are_refused():
    img, samples, lists = samples_and_lists()
    with pytest.raises(ValueError, match="give data_samples or img_metas/gt_\\* lists, not both"):
        tiny_model()(img=img, data_samples=samples, gt_bboxes=lists["gt_bboxes"])


def test_compacted_predictions_give_the_same_per_class_results():
    """What the evaluation hooks keep (CPU, RLE masks) converts to the same per-class lists
    as the full prediction, masks equal after decoding."""
    import pycocotools.mask as mask_utils

    from mmdet_like.structures import compact_prediction

    img, samples, _ = samples_and_lists()
    out = tiny_model().eval()(img=img, data_samples=samples, return_loss=False, rescale=True)
    for sample in out:
        compact = compact_prediction(sample)
        assert compact.gt_instances.keys() == [] and isinstance(compact.pred_instances.masks, list)
        full_boxes, full_masks = detection_to_per_class(sample, 3)
        boxes, rles = detection_to_per_class(compact, 3)
        for a, b in zip(full_boxes, boxes):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(full_masks, rles):
            assert len(a) == len(b)
            for mask, rle in zip(a, b):
                np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)


def test_per_class_results_convert_back_to_pred_instances():
    """from_legacy_result is to_legacy_result's inverse (in label order): boxes, masks,
    keypoints; an RPN's proposal array becomes proposals without labels."""
    from mmdet_like.structures import from_legacy_result, to_legacy_result

    gen = torch.Generator().manual_seed(0)
    pred = InstanceData(
        bboxes=torch.rand(5, 4, generator=gen) * 50, scores=torch.rand(5, generator=gen),
        labels=torch.tensor([2, 0, 2, 1, 0]), masks=torch.rand(5, 6, 7, generator=gen) > 0.5,
        keypoints=torch.rand(5, 3, 2, generator=gen), keypoint_scores=torch.rand(5, 3),
    )  # fmt: skip
    legacy = to_legacy_result(pred, 4)
    back = from_legacy_result(legacy)
    order = torch.argsort(pred.labels, stable=True)
    np.testing.assert_array_equal(back.labels, pred.labels[order].numpy())
    np.testing.assert_array_equal(back.bboxes, pred.bboxes[order].numpy())
    np.testing.assert_array_equal(back.scores, pred.scores[order].numpy())
    np.testing.assert_array_equal(np.stack(back.masks), pred.masks[order].numpy())
    np.testing.assert_array_equal(back.keypoints, pred.keypoints[order].numpy())
    np.testing.assert_array_equal(back.keypoint_scores, pred.keypoint_scores[order].numpy())
    for a, b in zip(to_legacy_result(back, 4)[0], legacy[0]):
        np.testing.assert_array_equal(a, b)
    proposals = from_legacy_result(np.arange(10, dtype=np.float32).reshape(2, 5))
    assert "labels" not in proposals and proposals.scores.tolist() == [4.0, 9.0]


def test_rpn_predicts_proposals_and_the_edge_gives_arrays():
    from mmdet_like.structures import to_legacy_result

    img, samples, lists = samples_and_lists()
    model = tiny_model("RPN").eval()
    out = model(img=img, data_samples=samples, return_loss=False, rescale=True)
    legacy = model(img=img, img_metas=lists["img_metas"], return_loss=False, rescale=True)
    for sample, array in zip(out, legacy):
        assert "labels" not in sample.pred_instances and len(sample.pred_instances) > 0
        assert isinstance(array, np.ndarray) and array.shape[1] == 5
        np.testing.assert_array_equal(to_legacy_result(sample, None), array)
