"""Importing mmdet_like.models registers every built-in; build_* go through the registries."""

import pytest
from torch import nn

from mmdet_like.models import build_backbone, build_detector
from mmdet_like.registry import (
    ANCHOR_GENERATORS,
    BACKBONES,
    BBOX_ASSIGNERS,
    BBOX_CODERS,
    BBOX_SAMPLERS,
    DETECTORS,
    HEADS,
    IOU_CALCULATORS,
    LOSSES,
    NECKS,
    NORM_LAYERS,
    BuildError,
)


def test_builtins_registered():
    assert {"ResNet", "ResNeXt"} <= set(BACKBONES.names)
    assert "FPN" in NECKS
    assert {"CrossEntropyLoss", "SmoothL1Loss", "L1Loss", "GIoULoss"} <= set(LOSSES.names)
    assert "AnchorGenerator" in ANCHOR_GENERATORS
    assert "DeltaXYWHBBoxCoder" in BBOX_CODERS
    assert "MaxIoUAssigner" in BBOX_ASSIGNERS
    assert "RandomSampler" in BBOX_SAMPLERS
    assert "BboxOverlaps2D" in IOU_CALCULATORS
    assert {"BN", "SyncBN", "GN", "FrozenBN"} <= set(NORM_LAYERS.names)
    assert "RPNHead" in HEADS


def test_build_errors_name_the_problem():
    with pytest.raises(BuildError, match="norm_evall"):
        build_backbone(dict(type="ResNet", depth=18, norm_evall=True))


class TinyDetector(nn.Module):
    def __init__(self, backbone, train_cfg=None, test_cfg=None):
        super().__init__()
        self.backbone = build_backbone(backbone)
        self.train_cfg, self.test_cfg = train_cfg, test_cfg


@pytest.fixture
def tiny_detector():
    DETECTORS.register()(TinyDetector)
    yield
    DETECTORS._entries.pop("TinyDetector")


def test_build_detector_passes_train_and_test_cfg(tiny_detector):
    cfg = dict(
        type="TinyDetector", backbone=dict(type="ResNet", depth=18, num_stages=1, out_indices=(0,))
    )
    model = build_detector(cfg, train_cfg=dict(a=1), test_cfg=dict(b=2))
    assert model.train_cfg == dict(a=1) and model.test_cfg == dict(b=2)
    assert build_detector(dict(cfg, test_cfg=dict(c=3))).test_cfg == dict(c=3)
    with pytest.raises(BuildError, match="both"):
        build_detector(dict(cfg, test_cfg=dict(c=3)), test_cfg=dict(b=2))
