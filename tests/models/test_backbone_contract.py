"""The backbone contract (BaseBackbone): output shapes, stage freezing, frozen norms; necks
that take their in_channels from the backbone."""

from pathlib import Path

import pytest
import torch
from torch import nn

from mmdet_like.engine import load_config
from mmdet_like.models import build_backbone, build_detector, build_neck
from mmdet_like.models.backbones import BaseBackbone, Block, FeatureShape, ResNet, ResNeXt
from mmdet_like.models.builder import NeckChannelsError
from mmdet_like.registry import BuildError

SMALL = dict(base_channels=8)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class TwoStageToy(BaseBackbone):
    """A stem conv + BN and two stages of two conv blocks: a backbone declares no more."""

    def __init__(self, frozen_stages=-1, norm_eval=False):
        super().__init__(frozen_stages, norm_eval)
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4))
        self.scale = nn.Parameter(torch.ones(4))
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1)
            )
            for _ in range(2)
        )
        self.out_channels, self.out_strides = [4, 4], [4, 8]
        self.freeze_stages()

    def blocks(self):
        blocks = [Block(0, ("stem", "scale"))]
        for i in range(2):
            blocks += [
                Block(i + 1, (f"stages.{i}.0", f"stages.{i}.1")),
                Block(i + 1, (f"stages.{i}.2",)),
            ]
        return blocks

    def forward(self, x):
        x = self.stem(x) * self.scale[:, None, None]
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return tuple(outs)


def test_output_shape_matches_the_outputs():
    # strides (1, 2, 2, 1) with a dilated last stage: strides 4, 8, 16, 16
    model = ResNet(18, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2), out_indices=(0, 2, 3),
                   **SMALL).eval()  # fmt: skip
    outs = model(torch.randn(1, 3, 64, 96))
    shapes = model.output_shape()
    assert shapes == [FeatureShape(8, 4), FeatureShape(32, 16), FeatureShape(64, 16)]
    assert [(o.shape[1], 64 // o.shape[2], 96 // o.shape[3]) for o in outs] == [
        (s.channels, s.stride, s.stride) for s in shapes
    ]
    assert (model.out_channels, model.out_strides) == ([8, 32, 64], [4, 16, 16])
    assert ResNeXt(
        50, groups=4, base_width=16, num_stages=2, out_indices=(1,), **SMALL
    ).output_shape() == [(64, 8)]


def test_resnet_blocks_cover_every_parameter_but_the_after_backbone_plugins():
    plugins = [
        dict(cfg=dict(type="ContextBlock", ratio=1 / 4), position="after_stage"),
        dict(cfg=dict(type="StageFusion"), position="after_backbone"),
    ]
    model = ResNet(18, num_stages=3, out_indices=(0, 1, 2), plugins=plugins, **SMALL)
    blocks = model.blocks()
    assert blocks[0] == Block(0, ("conv1", "bn1"))
    assert [b.names for b in blocks if b.stage == 2] == [
        ("layer2.0",),
        ("layer2.1", "layer2_after_stage_plugins"),
    ]
    assert model.num_stages == 3
    covered = {name for block in blocks for name in block.names}
    outside = {n.split(".")[0] for n, _ in model.named_parameters()} - {
        n.split(".")[0] for n in covered
    }
    assert outside == {"after_backbone_plugins"}


@pytest.mark.parametrize("frozen_stages", [-1, 0, 1, 2])
def test_frozen_stages_of_a_new_backbone(frozen_stages):
    model = TwoStageToy(frozen_stages=frozen_stages).train()
    frozen = {-1: [], 0: ["stem", "scale"], 1: ["stem", "scale", "stages.0"]}.get(
        frozen_stages, ["stem", "scale", "stages"]
    )
    for name, param in model.named_parameters():
        assert param.requires_grad == (not any(name.startswith(f) for f in frozen)), name
    for name, module in model.named_modules():
        if name:
            assert module.training == (not any(name.startswith(f) for f in frozen)), name
    # a stage container is frozen with its blocks, the backbone itself never
    assert model.training
    if frozen_stages < 2:  # something still trains
        model(torch.randn(2, 3, 16, 16))[-1].sum().backward()
        assert (model.stem[0].weight.grad is None) == (frozen_stages >= 0)


def test_norm_eval_keeps_batch_norms_in_eval_mode():
    model = TwoStageToy(norm_eval=True).train()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert model.stages[0][0].training
    assert all(m.training for m in TwoStageToy(norm_eval=False).train().modules())


def test_frozen_stages_out_of_range_and_bad_block_names_are_errors():
    with pytest.raises(ValueError, match=r"frozen_stages must be in -1\.\.2"):
        TwoStageToy(frozen_stages=3)
    with pytest.raises(BuildError, match=r"frozen_stages must be in -1\.\.4"):
        build_backbone(dict(type="ResNet", depth=18, frozen_stages=5, **SMALL))

    class Misnamed(TwoStageToy):
        def blocks(self):
            return [Block(0, ("stem", "sclae")), Block(1, ("stages",))]

    with pytest.raises(ValueError, match="'sclae', which is neither a submodule nor a parameter"):
        Misnamed(frozen_stages=0)
    with pytest.raises(TypeError, match="abstract"):
        BaseBackbone()


# ------------------------------------------------------------------ necks
def neck_cfg(**kwargs):
    return dict(type="FPN", out_channels=16, num_outs=3, **kwargs)


def test_neck_in_channels_default_to_the_backbones():
    backbone = ResNet(18, out_indices=(1, 2, 3), **SMALL)
    neck = build_neck(neck_cfg(), backbone)
    assert neck.in_channels == [16, 32, 64]
    assert build_neck(neck_cfg(in_channels=(16, 32, 64)), backbone).in_channels == [16, 32, 64]
    with pytest.raises(BuildError, match="in_channels"):  # no backbone to take them from
        build_neck(neck_cfg())


def test_neck_in_channels_that_disagree_name_the_field_the_channels_and_the_fix():
    backbone = ResNet(18, out_indices=(1, 2, 3), **SMALL)
    with pytest.raises(NeckChannelsError) as error:
        build_neck(neck_cfg(in_channels=[128, 256, 512]), backbone)
    message = str(error.value)
    assert "model.neck.in_channels=[128, 256, 512] does not match" in message
    assert "ResNet gives 3 output(s) of [16, 32, 64] channels" in message
    assert "Set model.neck.in_channels=[16, 32, 64], or leave in_channels out" in message
    with pytest.raises(NeckChannelsError, match="gives 3 output"):  # one level too many
        build_neck(neck_cfg(in_channels=[8, 16, 32, 64]), backbone)


def test_a_detector_config_without_neck_in_channels_builds():
    cfg = load_config(str(CONFIGS / "demo" / "retinanet_r18_fpn_demo.py"))
    model_cfg = cfg.model
    model_cfg.neck.pop("in_channels")
    model = build_detector(model_cfg, cfg.get("train_cfg"), cfg.get("test_cfg"))
    assert model.neck.in_channels == model.backbone.out_channels == [32, 64, 128, 256]
    model_cfg.neck.in_channels = [64, 128, 256, 512]  # full-width ResNet-18's
    with pytest.raises(NeckChannelsError, match=r"gives 4 output\(s\) of \[32, 64, 128, 256\]"):
        build_detector(model_cfg, cfg.get("train_cfg"), cfg.get("test_cfg"))
