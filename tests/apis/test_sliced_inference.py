"""Sliced inference (mmdet_like/apis/slicing.py): the tiles, merging by NMS and NMM on
hand-made detections, end to end with a detector of one object size (tests/apis/
blob_detector.py: hand-set weights, no training) through ``inference_detector(...,
slice=...)`` and ``tools/test.py --slice-size``, and the masks of a tiny Mask R-CNN."""

import json
import pickle
import re

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch

from mmdet_like.apis import (
    SlicedDetector,
    inference_detector,
    inference_detector_samples,
    init_detector,
    merge_detections,
    slice_windows,
)
from mmdet_like.apis.slicing import (
    SliceOptionsError,
    check_slice_options,
    match_scores,
    merge_sliced_predictions,
)
from mmdet_like.engine import load_config
from mmdet_like.models import build_detector
from mmdet_like.ops import batched_nms
from mmdet_like.structures import DetDataSample, InstanceData
from tests.apis import blob_detector
from tests.apis.test_inference import image, tiny_cfg
from tests.engine.cli_utils import ROOT, call_tool, run_tool_here

# ---------------------------------------------------------------------------- windows


def _expected_starts(length, size, overlap):
    """Tile starts along one side, written out step by step."""
    if length <= size:
        return [0]
    step = size - round(overlap * size)
    starts = [0]
    while starts[-1] + size < length:
        starts.append(min(starts[-1] + step, length - size))
    return starts


@pytest.mark.parametrize(
    "height, width, size, overlap",
    [
        (1024, 1024, 256, 0.2),
        (100, 300, (640, 128), 0.25),  # shorter than the tile in height
        (50, 40, 64, 0.2),  # smaller than a tile: one tile, the image
        (640, 640, 640, 0.2),  # exactly one tile
        (641, 1000, (320, 200), (0.5, 0.1)),
        (333, 517, 100, 0.0),
    ],
)
def test_slice_windows_cover_the_image_with_the_overlap(height, width, size, overlap):
    windows = slice_windows(height, width, size, overlap)
    size_h, size_w = size if isinstance(size, tuple) else (size, size)
    overlap_h, overlap_w = overlap if isinstance(overlap, tuple) else (overlap, overlap)
    ys = _expected_starts(height, size_h, overlap_h)
    xs = _expected_starts(width, size_w, overlap_w)
    assert windows.dtype == torch.int64 and windows.shape == (len(ys) * len(xs), 4)
    # row by row, each window the tile's size (or the image's side where that is smaller)
    expected = [
        [x, y, x + min(size_w, width), y + min(size_h, height)] for y in ys for x in xs
    ]  # fmt: skip
    assert windows.tolist() == expected
    assert (windows[:, :2] >= 0).all()
    assert (windows[:, 2] <= width).all() and (windows[:, 3] <= height).all()
    covered = np.zeros((height, width), dtype=int)
    for x1, y1, x2, y2 in windows.tolist():
        covered[y1:y2, x1:x2] += 1
    assert covered.min() >= 1  # every pixel
    # neighbours overlap by the asked share (the last one, moved inside, by more)
    for starts, tile, ratio in ((ys, size_h, overlap_h), (xs, size_w, overlap_w)):
        overlaps = [tile - (b - a) for a, b in zip(starts, starts[1:])]
        assert all(o >= round(ratio * tile) for o in overlaps)
        assert all(o == round(ratio * tile) for o in overlaps[:-1])


def test_slice_options_are_checked():
    options = check_slice_options(dict(size=64))
    assert options["size"] == (64, 64) and options["overlap"] == (0.2, 0.2)
    assert options["merge"] == "nms" and options["match_metric"] == "iou"
    bad = [
        (dict(overlap=0.2), "give the tile size"),
        (dict(size=64, overlp=0.2), r"unknown option\(s\) \['overlp'\]"),
        (dict(size=(64, 0)), "slice size"),
        (dict(size=64, overlap=1.0), "slice overlap"),
        (dict(size=64, merge="wbf"), "slice merge"),
        (dict(size=64, match_metric="giou"), "slice match_metric"),
        (dict(size=64, match_threshold=1.5), "slice match_threshold"),
        (dict(size=64, batch_size=0), "slice batch_size"),
    ]
    for given, message in bad:
        with pytest.raises(SliceOptionsError, match=message):
            check_slice_options(given)


# ---------------------------------------------------------------------------- merging


def _boxes(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_nms_merge_keeps_the_best_box_of_each_class():
    bboxes = _boxes(
        [0, 0, 10, 10],  # a
        [1, 1, 11, 11],  # IoU 0.68 with a, class 0: dropped
        [0, 0, 10, 10],  # the same place as a, class 1: kept
        [30, 30, 40, 40],  # apart: kept
        [2, 0, 12, 10],  # IoU 0.67 with a but better than it: suppresses a
    )
    scores = torch.tensor([0.8, 0.7, 0.6, 0.5, 0.9])
    labels = torch.tensor([0, 0, 1, 0, 0])
    merged, kept, group = merge_detections(bboxes, scores, labels, "nms")
    assert kept.tolist() == [4, 2, 3]
    assert merged.tolist() == [[2, 0, 12, 10], [0, 0, 10, 10], [30, 30, 40, 40]]
    assert group.tolist() == [-1, -1, 1, 2, 0]
    # a threshold above their IoU keeps them all
    _, kept, _ = merge_detections(bboxes, scores, labels, "nms", match_threshold=0.7)
    assert kept.tolist() == [4, 0, 1, 2, 3]


def test_nmm_merges_matching_boxes_into_their_union():
    bboxes = _boxes(
        [0, 0, 10, 10],  # a, best
        [4, 0, 14, 10],  # IoU 0.43 with a
        [8, 0, 18, 10],  # IoU 0.43 with b, 0.11 with a: not a's match
        [0, 0, 10, 10],  # class 1
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 0, 1])
    merged, kept, group = merge_detections(bboxes, scores, labels, "nmm", "iou", 0.4)
    # greedy: a takes b; c matches b, not a, so it leads its own group
    assert kept.tolist() == [0, 2, 3]
    assert group.tolist() == [0, 0, 1, 2]
    assert merged.tolist() == [[0, 0, 14, 10], [8, 0, 18, 10], [0, 0, 10, 10]]
    # NMS with the same threshold keeps the same leaders, without the unions
    nms_boxes, nms_kept, _ = merge_detections(bboxes, scores, labels, "nms", "iou", 0.4)
    assert nms_kept.tolist() == kept.tolist() and nms_boxes.tolist()[0] == [0, 0, 10, 10]


def test_ios_matches_a_box_inside_another():
    bboxes = _boxes([0, 0, 40, 40], [10, 10, 20, 20], [35, 35, 45, 45])
    scores = torch.tensor([0.5, 0.9, 0.4])
    labels = torch.zeros(3, dtype=torch.long)
    np.testing.assert_allclose(
        match_scores(bboxes[1], bboxes, "ios").numpy(), [1.0, 1.0, 0.0], atol=1e-6
    )
    np.testing.assert_allclose(
        match_scores(bboxes[0], bboxes, "iou").numpy(), [1.0, 100 / 1600, 25 / 1675], atol=1e-6
    )
    # by IoU nothing matches; by IoS the part (best score) absorbs the whole
    _, kept, _ = merge_detections(bboxes, scores, labels, "nmm", "iou", 0.5)
    assert kept.tolist() == [1, 0, 2]
    merged, kept, group = merge_detections(bboxes, scores, labels, "nmm", "ios", 0.5)
    assert kept.tolist() == [1, 2] and group.tolist() == [0, 0, 1]
    assert merged.tolist() == [[0, 0, 40, 40], [35, 35, 45, 45]]
    merged, kept, group = merge_detections(bboxes, scores, labels, "nms", "ios", 0.5)
    assert kept.tolist() == [1, 2] and group.tolist() == [-1, 0, 1]
    assert merged.tolist() == [[10, 10, 20, 20], [35, 35, 45, 45]]


def test_nmm_groups_are_led_by_the_boxes_nms_keeps():
    """Greedy NMM's leaders are the boxes greedy NMS keeps (the compiled op's), and every box
    joins the best leader that matches it."""
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=generator) * 100
    bboxes = torch.cat([xy, xy + 5 + torch.rand(300, 2, generator=generator) * 20], 1)
    scores = torch.rand(300, generator=generator)
    labels = torch.randint(0, 3, (300,), generator=generator)
    merged, kept, group = merge_detections(bboxes, scores, labels, "nmm", "iou", 0.3)
    assert kept.tolist() == batched_nms(bboxes, scores, labels, 0.3).tolist()
    leaders = kept[group]
    for i in range(len(bboxes)):
        matching = (labels[kept] == labels[i]) & (match_scores(bboxes[i], bboxes[kept]) > 0.3)
        assert leaders[i] == kept[matching.nonzero()[0, 0]]
    # each union holds its members
    assert (merged[group, :2] <= bboxes[:, :2]).all() and (merged[group, 2:] >= bboxes[:, 2:]).all()


def _window_prediction(bboxes, scores, labels, masks, keypoints):
    return InstanceData(
        bboxes=_boxes(*bboxes), scores=torch.tensor(scores), labels=torch.tensor(labels),
        masks=torch.from_numpy(np.array(masks, dtype=bool)), keypoints=torch.tensor(keypoints),
    )  # fmt: skip


def test_merged_predictions_are_moved_into_the_image_with_their_masks():
    """Two 4x4 windows of an 8x4 image (x 0-4 and 3-7); the object at x 3-5 is seen by
    both."""
    windows = torch.tensor([[0, 0, 4, 4], [3, 0, 7, 4]])
    left_mask = np.zeros((4, 4), bool)
    left_mask[1:3, 3] = True  # the object's part in the left window
    right_mask = np.zeros((4, 4), bool)
    right_mask[1:3, 0:2] = True  # the object (x 3-5) in the right window
    other = np.zeros((4, 4), bool)
    other[0, 3] = True
    left = _window_prediction([[3, 1, 4, 3]], [0.6], [0], [left_mask], [[[3.5, 2.0]]])
    right = _window_prediction(
        [[0, 1, 2, 3], [0, 0, 1, 1]], [0.9, 0.3], [0, 1], [right_mask, other],
        [[[1.0, 1.0]], [[0.5, 0.5]]],
    )  # fmt: skip
    shape = (4, 8)
    nms = merge_sliced_predictions([left, right], windows, shape, "nms", "iou", 0.4)
    assert nms.bboxes.tolist() == [[3, 1, 5, 3], [3, 0, 4, 1]]  # the left part dropped
    assert nms.scores.tolist() == pytest.approx([0.9, 0.3]) and nms.labels.tolist() == [0, 1]
    assert nms.keypoints.tolist() == [[[4.0, 1.0]], [[3.5, 0.5]]]
    assert nms.masks.dtype == torch.bool and nms.masks.shape == (2, 4, 8)
    expected = np.zeros((2, 4, 8), bool)
    expected[0, 1:3, 3:5] = True
    expected[1, 0, 6] = True
    np.testing.assert_array_equal(nms.masks.numpy(), expected)

    nmm = merge_sliced_predictions([left, right], windows, shape, "nmm", "ios", 0.4)
    assert nmm.bboxes.tolist() == [[3, 1, 5, 3], [3, 0, 4, 1]]
    assert nmm.keypoints.tolist() == [[[4.0, 1.0]], [[3.5, 0.5]]]  # the best one's
    # the union of both parts; here both cover x 3, the right one x 4 as well
    np.testing.assert_array_equal(nmm.masks.numpy(), expected)
    left.masks[0, 1:3, 2] = True  # the left part now also covers x 2
    nmm = merge_sliced_predictions([left, right], windows, shape, "nmm", "ios", 0.4)
    expected[0, 1:3, 2] = True
    np.testing.assert_array_equal(nmm.masks.numpy(), expected)
    # as RLE (what the test loop keeps): the same masks
    rle = merge_sliced_predictions([left, right], windows, shape, "nmm", "ios", 0.4, True)
    assert isinstance(rle.masks, list) and len(rle.masks) == 2
    decoded = np.stack([mask_utils.decode(m) for m in rle.masks]).astype(bool)
    np.testing.assert_array_equal(decoded, expected)


# ------------------------------------------------------------ end to end: blob detector

TILE, SCALE = 256, 256  # the whole image shrinks to SCALE px; a tile is seen at full size


@pytest.fixture(scope="module")
def blob_model(tmp_path_factory):
    """The blob detector (8 px squares at its input's scale) of tests/apis/blob_detector.py,
    loaded by init_detector from its config and hand-set checkpoint."""
    tmp = tmp_path_factory.mktemp("blob")
    config = blob_detector.write_config(tmp / "blob.py", SCALE)
    checkpoint = blob_detector.write_checkpoint(tmp / "blob.pth", load_config(config))
    return init_detector(config, checkpoint)


def _max_corner_error(dets, truth):
    """For each true box the largest coordinate error of the nearest detection, and the
    same for each detection to the nearest true box."""
    errors = np.abs(dets[:, None, :4] - truth[None]).max(-1)
    return errors.min(0), errors.min(1)


def test_sliced_inference_finds_the_small_objects_that_the_whole_image_misses(blob_model):
    img, small, large = blob_detector.draw_blobs(1024, 1024, 60, seed=1, large=32)
    # the whole image, shrunk 4x: the 8 px squares are 2 px, only the 32 px one is found
    (plain,) = inference_detector(blob_model, img)
    assert plain.shape == (1, 5)
    np.testing.assert_allclose(plain[0, :4], large[0], atol=1e-3)

    (sliced,) = inference_detector(blob_model, img, slice=dict(size=TILE, batch_size=5))
    assert sliced.shape == (60, 5)  # each square once, though most lie in several tiles
    to_truth, to_detection = _max_corner_error(sliced, small)
    assert to_truth.max() < 1e-3 and to_detection.max() < 1e-3
    assert (np.diff(sliced[:, 4]) <= 0).all()  # descending score

    # with the whole image's pass too: the large square joins
    options = dict(size=(TILE, TILE), overlap=0.2, batch_size=5, full_image=True)
    (both,) = inference_detector(blob_model, img, slice=options)
    truth = np.concatenate([small, large])
    to_truth, to_detection = _max_corner_error(both, truth)
    assert len(both) == 61 and to_truth.max() < 1e-3 and to_detection.max() < 1e-3

    # NMM: the tiles' partial boxes of a square cut by a tile's edge (they reach at most
    # 2 px beyond it) merge into the whole one's
    options = dict(size=TILE, overlap=0.2, batch_size=5, merge="nmm")
    (merged,) = inference_detector(blob_model, img, slice=options)
    to_truth, to_detection = _max_corner_error(merged, small)
    assert len(merged) == 60 and to_truth.max() <= 2 and to_detection.max() <= 2


def test_tiles_run_in_batches_as_one_by_one(blob_model, tmp_path):
    img, small, _ = blob_detector.draw_blobs(320, 384, 8, seed=2)
    file = tmp_path / "blobs.png"
    cv2.imwrite(str(file), img)
    tiles = [img[:256, :256], img[64:, 128:]]
    one_by_one = inference_detector_samples(blob_model, tiles)
    batched = inference_detector_samples(blob_model, tiles, batch_size=2)
    for a, b in zip(one_by_one, batched):
        assert len(a.pred_instances) > 0
        for field in ("bboxes", "scores"):
            np.testing.assert_allclose(
                getattr(a.pred_instances, field), getattr(b.pred_instances, field), atol=1e-5
            )
    # a path is read as the test pipeline's LoadImageFromFile reads it
    options = dict(size=(TILE, TILE), overlap=0.25, batch_size=3)
    from_file = inference_detector_samples(blob_model, [str(file)], slice=options)[0]
    from_array = inference_detector_samples(blob_model, [img], slice=options)[0]
    assert from_file.metainfo["filename"] == str(file)
    assert from_file.metainfo["ori_shape"] == img.shape
    assert from_file.metainfo["slice_windows"] == 2 * 2
    np.testing.assert_array_equal(from_file.pred_instances.bboxes, from_array.pred_instances.bboxes)
    to_truth, _ = _max_corner_error(from_file.pred_instances.bboxes.numpy(), small)
    assert len(from_file.pred_instances) == 8 and to_truth.max() < 1e-3
    with pytest.raises(SliceOptionsError, match="unknown option"):
        inference_detector(blob_model, img, slice=dict(size=64, tile=64))


def test_sliced_detector_reads_each_image_of_a_batch_from_its_file(blob_model, tmp_path):
    """What the test loops call (tools/test.py --slice-size): model(return_loss=False,
    rescale=True, **batch) with data samples or a Collect pipeline's img_metas."""
    img, small, _ = blob_detector.draw_blobs(256, 384, 6, seed=3)
    file = tmp_path / "blobs.png"
    cv2.imwrite(str(file), img)
    model = SlicedDetector(blob_model, size=TILE, overlap=0.25)
    assert model.num_classes == 1 and model.CLASSES == ("blob",)
    assert next(model.parameters()) is next(blob_model.parameters())
    meta = dict(filename=str(file), ori_shape=img.shape, img_shape=(128, 192, 3))
    (from_samples,) = model(data_samples=[[DetDataSample(metainfo=meta)]], return_loss=False,
                            rescale=True)  # fmt: skip
    (from_metas,) = model(img_metas=[meta], return_loss=False, rescale=True)
    for sample in (from_samples, from_metas):
        assert sample.metainfo == meta  # the batch's meta, predictions in the original image
        to_truth, to_detection = _max_corner_error(sample.pred_instances.bboxes.numpy(), small)
        assert len(sample.pred_instances) == 6 and to_truth.max() < 1e-3
    with pytest.raises(ValueError, match="return_loss=False, rescale=True"):
        model(img_metas=[meta], return_loss=True)
    with pytest.raises(ValueError, match="the image meta has no filename"):
        model(img_metas=[dict(ori_shape=img.shape)], return_loss=False, rescale=True)
    with pytest.raises(TypeError, match=r"cannot slice the inputs \['proposals'\]"):
        model(img_metas=[meta], proposals=[torch.zeros(1, 4)], return_loss=False, rescale=True)
    cfg = blob_model.cfg
    del blob_model.cfg
    try:
        with pytest.raises(ValueError, match="set detector.cfg"):
            SlicedDetector(blob_model, size=TILE)
    finally:
        blob_model.cfg = cfg


# ----------------------------------------------------------- end to end: Mask R-CNN masks


def test_mask_rcnn_masks_are_pasted_into_the_image():
    """A tiny Mask R-CNN (random weights, every detection kept): the sliced result has the
    format of inference_detector's, its masks of the whole image inside their boxes; one
    tile covering the image gives the plain result."""
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = build_detector(cfg.model, test_cfg=cfg.test_cfg).eval()
    model.cfg, model.CLASSES = cfg, ("cat", "dog", "bird")
    img = image(shape=(96, 160))
    plain = inference_detector(model, img)
    whole = inference_detector(model, img, slice=dict(size=(96, 160)))
    for a, b in zip(plain[0], whole[0]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    for a, b in zip(plain[1], whole[1]):
        assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))

    for merge in ("nms", "nmm"):
        options = dict(size=96, overlap=0.3, batch_size=2, merge=merge, match_threshold=0.3)
        boxes, masks = inference_detector(model, img, slice=options)
        assert len(boxes) == len(masks) == 3 and sum(map(len, boxes)) > 0
        for dets, class_masks in zip(boxes, masks):
            assert len(class_masks) == len(dets)
            for box, mask in zip(dets, class_masks):
                assert mask.dtype == bool and mask.shape == img.shape[:2]
                ys, xs = np.nonzero(mask)
                if len(xs):  # inside the box, to a pixel
                    assert xs.min() >= box[0] - 1 and xs.max() + 1 <= box[2] + 1
                    assert ys.min() >= box[1] - 1 and ys.max() + 1 <= box[3] + 1
        assert any(mask[:, 96:].any() for class_masks in masks for mask in class_masks)


# ----------------------------------------------------------------------- tools/test.py


@pytest.fixture(scope="module")
def blob_dataset(tmp_path_factory):
    """Two 512x512 images of 12 and 20 small squares as a one-class COCO test set, the blob
    detector's config (images shrunk to 128 px) and checkpoint: the working directory."""
    cwd = tmp_path_factory.mktemp("blob_dataset")
    (cwd / "images").mkdir()
    coco = dict(images=[], annotations=[], categories=[dict(id=1, name="blob")])
    for image_id, count in ((1, 12), (2, 20)):
        img, small, _ = blob_detector.draw_blobs(512, 512, count, seed=image_id)
        cv2.imwrite(str(cwd / "images" / f"{image_id}.png"), img)
        coco["images"].append(dict(id=image_id, file_name=f"{image_id}.png", width=512,
                                   height=512))  # fmt: skip
        for x1, y1, x2, y2 in small.tolist():
            coco["annotations"].append(dict(
                id=len(coco["annotations"]) + 1, image_id=image_id, category_id=1,
                bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1), iscrowd=0,
            ))  # fmt: skip
    (cwd / "ann.json").write_text(json.dumps(coco))
    config = blob_detector.write_config(cwd / "blob.py", 128, "ann.json", "images/")
    blob_detector.write_checkpoint(cwd / "blob.pth", load_config(config))
    return cwd, coco


def _map(out):
    return float(re.search(r"^bbox_mAP: (-?[\d.]+)$", out, flags=re.M).group(1))


def test_test_tool_evaluates_with_sliced_inference(blob_dataset):
    cwd, coco = blob_dataset
    test = [ROOT / "tools" / "test.py", "blob.py", "blob.pth", "--eval", "bbox"]
    out = run_tool_here(test, cwd)  # the whole images: squares of 2 px, none found
    assert "no detections for 'bbox'" in out and "bbox_mAP" not in out
    out = run_tool_here(
        [*test, "--slice-size", 128, 128, "--slice-overlap", 0.25, "--slice-batch-size", 4,
         "--out", "sliced.pkl"],
        cwd,
    )  # fmt: skip
    assert "sliced inference: {'size': (128, 128), 'overlap': (0.25, 0.25)" in out
    assert _map(out) > 0.99
    with open(cwd / "sliced.pkl", "rb") as f:
        results = pickle.load(f)
    for img, (dets,) in zip(coco["images"], results):
        truth = np.array(
            [[x, y, x + w, y + h] for a in coco["annotations"] if a["image_id"] == img["id"]
             for x, y, w, h in [a["bbox"]]], dtype=np.float32,
        )  # fmt: skip
        to_truth, to_detection = _max_corner_error(dets, truth)
        assert len(dets) == len(truth) and to_truth.max() < 1e-3 and to_detection.max() < 1e-3


def test_test_tool_refuses_bad_slice_options(blob_dataset):
    cwd, _ = blob_dataset
    test = ["test.py", "blob.py", "blob.pth", "--eval", "bbox"]
    run = call_tool(*test, "--slice-overlap", "0.3", "--slice-merge", "nmm", cwd=cwd)
    assert run.status == 2 and "--slice-merge --slice-overlap need --slice-size H W" in run.stderr
    run = call_tool(*test, "--slice-size", "128", "128", "--slice-overlap", "1.5", cwd=cwd)
    assert run.status == 2 and "slice overlap: the share of a tile's side" in run.stderr
