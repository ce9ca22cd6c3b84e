"""The per-image instance container and data sample."""

import numpy as np
import pytest
import torch

from mmdet_like.structures import BitmapMasks, DetDataSample, InstanceData, PolygonMasks


def instances(n=4, offset=0.0):
    masks = np.zeros((n, 8, 8), np.uint8)
    for i in range(n):
        masks[i, i, i] = 1
    polys = PolygonMasks([[[i, i, i + 2, i, i + 2, i + 2]] for i in range(n)], 8, 8)
    return InstanceData(
        bboxes=torch.arange(n * 4, dtype=torch.float32).view(n, 4) + offset,
        labels=torch.arange(n),
        names=[f"obj{i}" for i in range(n)],
        areas=np.arange(n, dtype=np.float64),
        masks=BitmapMasks(masks, 8, 8),
        polygons=polys,
    )


@pytest.mark.parametrize(
    "index, expected",
    [
        (torch.tensor([True, False, True, False]), [0, 2]),
        (np.array([3, 1]), [3, 1]),
        (torch.tensor([2]), [2]),
        (slice(1, 3), [1, 2]),
        (-1, [3]),
    ],
)
def test_indexing_selects_the_same_instances_in_every_field(index, expected):
    inst = instances()
    picked = inst[index]
    assert len(picked) == len(expected)
    assert picked.labels.tolist() == expected
    assert picked.names == [f"obj{i}" for i in expected]
    assert picked.areas.tolist() == [float(i) for i in expected]
    assert [int(np.flatnonzero(m.any(0))[0]) for m in picked.masks.masks] == expected
    assert [int(p[0][0]) for p in picked.polygons.masks] == expected


def test_fields_keep_one_length_and_errors_name_the_field():
    inst = instances()
    inst.scores = torch.rand(4)
    assert "scores" in inst and sorted(inst.keys())[-1] == "scores"
    with pytest.raises(ValueError, match="field 'keypoints' has 3 entries, the others"):
        inst.keypoints = torch.zeros(3, 17, 3)
    with pytest.raises(TypeError, match="one entry per instance"):
        inst.score_thr = 0.5
    with pytest.raises(AttributeError, match="no field 'boxes'; it has"):
        _ = inst.boxes
    with pytest.raises(IndexError, match="boolean mask of 3 for 4"):
        inst[torch.tensor([True, False, True])]
    assert len(InstanceData()) == 0


def test_cat_and_to():
    a, b = instances(2), instances(3, offset=100.0)
    joined = InstanceData.cat([a, b])
    assert len(joined) == 5 and joined.labels.tolist() == [0, 1, 0, 1, 2]
    assert torch.equal(joined.bboxes[2:], b.bboxes)
    assert len(joined.masks) == len(joined.polygons) == 5 and joined.names[2] == "obj0"
    with pytest.raises(ValueError, match="fields differ"):
        InstanceData.cat([a, InstanceData(bboxes=torch.zeros(1, 4))])
    moved = joined.to("cpu")
    assert moved.bboxes.device.type == "cpu" and moved.masks is joined.masks


def test_data_sample_holds_one_image():
    sample = DetDataSample(
        metainfo=dict(img_shape=(8, 8, 3)), gt_instances=instances(2),
        ignored_instances=InstanceData(bboxes=torch.zeros(1, 4)),
    )  # fmt: skip
    assert len(sample.gt_instances) == 2 and len(sample.ignored_instances) == 1
    assert sample.proposals is None and sample.pred_instances is None
    sample.pred_instances = InstanceData(bboxes=torch.zeros(3, 4), scores=torch.ones(3))
    moved = sample.to("cpu")
    assert len(moved.pred_instances) == 3 and moved.metainfo["img_shape"] == (8, 8, 3)
    assert "pred=3" in repr(moved)
