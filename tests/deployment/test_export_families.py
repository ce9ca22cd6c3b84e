"""ONNX export of the other families (see tests/deployment/test_export.py for the
method): Cascade Mask R-CNN, C4 Mask R-CNN (a shared res5 head, one RPN level), Keypoint
R-CNN (heatmaps decoded outside the graph), FCOS (anchor-free: points), GFL (distance
distributions, anchors with their strides), each compared
with the detector's own PyTorch inference on scikit-image's ``astronaut``. A module of
their own, so that pytest-xdist runs them beside the other export tests."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("skimage.data")

from mmdet_like.benchmarking import spread_prediction_layers  # noqa: E402
from mmdet_like.deployment import (  # noqa: E402
    DeploymentError,
    export_detector,
    prepare_input,
    run_exported,
    to_instances,
)
from mmdet_like.deployment.export import box_tolerance_px, dynamic_min_side  # noqa: E402
from tests.deployment.test_export import DEMO, _check_same, _model, _photo_bgr  # noqa: E402


def test_cascade_mask_rcnn_onnx_equals_pytorch(tmp_path):
    model = _model(DEMO / "cascade_mask_rcnn_r18_fpn_demo.py")
    image, _ = prepare_input(model.cfg, _photo_bgr(), (128, 160))
    path = tmp_path / "cascade.onnx"
    export_detector(model, image, str(path), "onnx", dynamic=True)
    report = _check_same(model, path, image)
    assert report["mask_pixels_differing"] <= 1e-3
    other, _ = prepare_input(model.cfg, _photo_bgr(), (100, 90))
    _check_same(model, path, other)


def test_c4_mask_rcnn_onnx_equals_pytorch(tmp_path):
    """A shared res5 head, one RPN level (stride 16: any side from 17 px exports)."""
    from tests.models.test_c4 import tiny

    model = spread_prediction_layers(tiny("mask_rcnn_r50_caffe_c4").eval())
    assert dynamic_min_side(model) == 17
    image = torch.from_numpy(_photo_bgr()[::4, ::3].astype(np.float32) / 50.0 - 2.0)
    image = image.permute(2, 0, 1)[None].contiguous()  # (1, 3, 128, 171), caffe-like scale
    path = tmp_path / "c4.onnx"
    export_detector(model, image, str(path), "onnx", dynamic=True)
    _check_same(model, path, image)
    _check_same(model, path, image[..., 5:101, 20:])  # another size through the same file


def test_keypoint_rcnn_onnx_heatmaps_decode_to_pytorchs_keypoints(tmp_path):
    model = _model(DEMO / "keypoint_rcnn_r18_fpn_demo.py")
    image, meta = prepare_input(model.cfg, _photo_bgr())
    path = tmp_path / "keypoint_rcnn.onnx"
    names = export_detector(model, image, str(path), "onnx", dynamic=False)
    assert names == ["dets", "labels", "keypoint_heatmaps"]
    report = _check_same(model, path, image)
    assert report["max_keypoint_diff_px"] <= report["box_tolerance_px"]
    # a fixed-size file refuses another size, saying which it takes
    height, width = image.shape[-2:]
    with pytest.raises(
        DeploymentError, match=rf"takes an image of shape \[1, 3, {height}, {width}\]"
    ):
        run_exported(str(path), torch.zeros(1, 3, height + 32, width))
    # in the original image: points divided by the scale factor, as predict(rescale=True)
    result = to_instances(run_exported(str(path), image), meta, model)
    from mmdet_like.structures.instance_data import DetDataSample

    expected = model.predict(image, [DetDataSample(metainfo=meta)], rescale=True)[0]
    torch.testing.assert_close(result.keypoints, expected.pred_instances.keypoints,
                               atol=box_tolerance_px(meta["ori_shape"]), rtol=0)  # fmt: skip


def test_fcos_onnx_equals_pytorch(tmp_path):
    """Anchor-free single-stage (points, centre-ness); for the input's size only, the
    quickest export (RetinaNet's is proven by the pytorch2onnx and benchmark tests)."""
    model = _model(DEMO / "fcos_r18_fpn_demo.py")
    assert dynamic_min_side(model) == 33  # points of the coarsest level: stride 32
    image, _ = prepare_input(model.cfg, _photo_bgr(), (96, 128))
    path = tmp_path / "fcos.onnx"
    names = export_detector(model, image, str(path), "onnx", dynamic=False)
    assert names == ["dets", "labels"]
    _check_same(model, path, image)


def test_gfl_onnx_equals_pytorch(tmp_path):
    """A dense head with box distributions (the softmax expectation in the graph) and a
    joint class-quality score, exported by the generic single-stage path; fixed size."""
    model = _model(DEMO / "gfl_r18_fpn_demo.py")
    image, _ = prepare_input(model.cfg, _photo_bgr(), (96, 128))
    path = tmp_path / "gfl.onnx"
    names = export_detector(model, image, str(path), "onnx", dynamic=False)
    assert names == ["dets", "labels"]
    _check_same(model, path, image)
