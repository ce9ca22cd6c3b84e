"""ONNX export of the DETR family (see tests/deployment/test_export.py for the method): DETR
(a transformer, no NMS) and two-stage Deformable DETR (multi-scale deformable attention as
its grid_sample form), each compared with the detector's own PyTorch inference on
scikit-image's ``astronaut`` at two sizes through one dynamic file. A module of their own,
so that pytest-xdist runs them beside the other export tests."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("skimage.data")

from mmdet_like.benchmarking import spread_prediction_layers  # noqa: E402
from mmdet_like.deployment import export_detector  # noqa: E402
from mmdet_like.deployment.export import dynamic_min_side  # noqa: E402
from tests.deployment.test_export import DEMO, _check_same, _photo_bgr  # noqa: E402


def test_detr_onnx_equals_pytorch(tmp_path):
    """A transformer detector (the padding mask and positions built in the graph, no NMS),
    dynamic sizes: measured 1e-7 on scores, 1.5e-5 px on boxes."""
    from tests.models.test_detr import _tiny_detr

    model = spread_prediction_layers(_tiny_detr())
    assert dynamic_min_side(model) == 33
    image = torch.from_numpy(_photo_bgr()[::4, ::4].astype(np.float32) / 60.0 - 2.0)
    image = image.permute(2, 0, 1)[None].contiguous()  # (1, 3, 128, 128)
    path = tmp_path / "detr.onnx"
    assert export_detector(model, image, str(path), "onnx", dynamic=True) == ["dets", "labels"]
    _check_same(model, path, image)
    _check_same(model, path, image[..., 7:103, 10:])  # another size through the same file


def test_deformable_detr_onnx_equals_pytorch(tmp_path):
    """Multi-scale deformable attention exported as its grid_sample form (standard ONNX
    operators: stock onnxruntime runs the file), in the two-stage variant with box
    refinement (the encoder's proposals chosen by top-k in the graph; the plain variant's
    steps are a subset, and exported too when this test was written); dynamic sizes."""
    name = "deformable_detr_twostage_refine_r50_16x2_50e_coco"
    from mmdet_like.engine import load_config
    from mmdet_like.models import build_detector
    from tests.models.test_deformable_detr import _shrunk

    cfg = load_config(str(DEMO.parent / "deformable_detr" / f"{name}.py"))
    torch.manual_seed(0)
    model = build_detector(_shrunk(cfg.model.to_dict()), None, cfg.test_cfg.to_dict())
    model.init_weights()
    model = spread_prediction_layers(model.eval())
    image = torch.from_numpy(_photo_bgr()[::4, ::4].astype(np.float32) / 60.0 - 2.0)
    image = image.permute(2, 0, 1)[None].contiguous()  # (1, 3, 128, 128)
    path = tmp_path / f"{name}.onnx"
    assert export_detector(model, image, str(path), "onnx", dynamic=True) == ["dets", "labels"]
    import onnx

    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "GridSample" in ops and not any("mmdet" in op or "deform" in op.lower() for op in ops)
    _check_same(model, path, image)
    _check_same(model, path, image[..., 7:103, 10:])  # another size through the same file
