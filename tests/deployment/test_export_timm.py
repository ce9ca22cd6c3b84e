"""Mask R-CNN on timm's Swin and ConvNeXt (``TimmBackbone``: configs/swin/ and
configs/convnext/ with narrow widths, as tests/models/test_swin_convnext_configs.py builds
them) exported with a dynamic image size: traced once, written as ONNX and as a
``torch.export`` program, each compared with the detector's own PyTorch inference on
scikit-image's ``astronaut`` (boxes, scores, labels, masks within --verify's bounds, see
tests/deployment/test_export.py) at the traced size and two others. At 96 x 128 Swin's last
level is one 7x7 window, at 230 x 77 two (its levels 64 x 24 ... 8 x 3); none of the sizes
is a multiple of the window at any level. A module of its own, so that pytest-xdist runs it
beside the other export tests.

Measured (these models, 2-thread x86 CPU, 88-100 detections an image): onnxruntime's boxes
within 1.6e-5 px of PyTorch's (the bound: 0.02-0.046 px), scores within 1.4e-6, no mask
pixel differing; the ``torch.export`` program's outputs equal to PyTorch's. About 75 s
(Swin) and 35 s (ConvNeXt) on 2 cores, mostly the ONNX translation, as the other Mask R-CNN
exports."""

import pytest
import torch

# two to three minutes of ONNX translation: `make test-slow`; the default suite exports the
# Swin backbone with a dynamic size in tests/models/test_timm_swin.py
pytestmark = pytest.mark.slow

pytest.importorskip("timm")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("skimage.data")

from mmdet_like.benchmarking import spread_prediction_layers  # noqa: E402
from mmdet_like.deployment import export_program, prepare_input, save_program  # noqa: E402
from mmdet_like.models import build_detector  # noqa: E402
from tests.deployment.test_export import _check_same, _photo_bgr  # noqa: E402
from tests.models.test_swin_convnext_configs import CONVNEXT_T, SWIN_T, tiny_config  # noqa: E402


def _tiny_model(config):
    cfg, model_cfg, train_cfg, test_cfg = tiny_config(config)
    torch.manual_seed(0)
    model = build_detector(model_cfg, train_cfg, test_cfg)
    model.init_weights()
    spread_prediction_layers(model)
    model.cfg = cfg
    return model.eval()


@pytest.mark.parametrize("config", [SWIN_T, CONVNEXT_T], ids=["swin", "convnext"])
def test_timm_mask_rcnn_exports_with_a_dynamic_size(tmp_path, config):
    model = _tiny_model(config)
    image, _ = prepare_input(model.cfg, _photo_bgr(), (96, 128))
    program = export_program(model, image, dynamic=True)
    others = [prepare_input(model.cfg, _photo_bgr(), shape)[0] for shape in [(100, 90), (230, 77)]]
    for fmt, name in [("onnx", "model.onnx"), ("torch-export", "model.pt2")]:
        path = tmp_path / name
        assert save_program(program, model, image, str(path), fmt) == [
            "dets", "labels", "mask_probs",
        ]  # fmt: skip
        report = _check_same(model, path, image)
        assert report["mask_pixels_differing"] <= 1e-3, report
        for other in others:
            report = _check_same(model, path, other)
            assert report["mask_pixels_differing"] <= 1e-3, report
