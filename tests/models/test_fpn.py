"""FPN: output counts and shapes for every extra-level mode, and the top-down sum."""

import pytest
import torch
import torch.nn.functional as F

from mmdet_like.models import build_neck
from mmdet_like.models.necks import FPN
from mmdet_like.registry import BuildError

IN_CHANNELS = [8, 16, 32, 64]
SIZES = [(32, 40), (16, 20), (8, 10), (4, 5)]


def backbone_features(batch=2):
    return tuple(torch.randn(batch, c, h, w) for c, (h, w) in zip(IN_CHANNELS, SIZES))


@pytest.mark.parametrize("add_extra_convs", [False, True, "on_input", "on_lateral", "on_output"])
@pytest.mark.parametrize("num_outs", [4, 5, 6])
def test_output_count_and_shapes(add_extra_convs, num_outs):
    neck = build_neck(
        dict(
            type="FPN",
            in_channels=IN_CHANNELS,
            out_channels=12,
            num_outs=num_outs,
            add_extra_convs=add_extra_convs,
        )
    )
    outs = neck(backbone_features())
    expected = [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3), (1, 2)][:num_outs]
    assert [tuple(o.shape) for o in outs] == [(2, 12, h, w) for h, w in expected]
    num_extra_convs = (num_outs - 4) if add_extra_convs else 0
    assert len(neck.extra_convs) == num_extra_convs


def test_start_level_retinanet_style():
    neck = FPN(IN_CHANNELS, 12, num_outs=5, start_level=1, add_extra_convs="on_input")
    outs = neck(backbone_features())
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]
    assert neck.extra_convs[0].in_channels == 64
    assert len(neck.lateral_convs) == 3


def test_extra_conv_sources():
    feats = backbone_features()
    for mode, expected_in in [("on_input", 64), ("on_lateral", 12), ("on_output", 12)]:
        neck = FPN(IN_CHANNELS, 12, num_outs=5, add_extra_convs=mode)
        assert neck.extra_convs[0].in_channels == expected_in
        outs = neck(feats)
        with torch.no_grad():
            lateral = neck.lateral_convs[3](feats[3])
            source = {"on_input": feats[3], "on_lateral": lateral, "on_output": outs[3]}[mode]
            torch.testing.assert_close(outs[4], neck.extra_convs[0](source))


def test_maxpool_extra_level():
    neck = FPN(IN_CHANNELS, 12, num_outs=5)
    outs = neck(backbone_features())
    torch.testing.assert_close(outs[4], outs[3][:, :, ::2, ::2])


@pytest.mark.parametrize("relu", [False, True])
def test_relu_before_extra_convs(relu):
    neck = FPN(
        IN_CHANNELS, 12, num_outs=6, add_extra_convs="on_output", relu_before_extra_convs=relu
    )
    outs = neck(backbone_features())
    source = F.relu(outs[4]) if relu else outs[4]
    torch.testing.assert_close(outs[5], neck.extra_convs[1](source))


def test_top_down_pathway():
    neck = FPN(IN_CHANNELS[:2], 12, num_outs=2)
    feats = backbone_features()[:2]
    outs = neck(feats)
    with torch.no_grad():
        top = neck.lateral_convs[1](feats[1])
        fine = neck.lateral_convs[0](feats[0]) + F.interpolate(top, scale_factor=2, mode="nearest")
        torch.testing.assert_close(outs[0], neck.fpn_convs[0](fine))
        torch.testing.assert_close(outs[1], neck.fpn_convs[1](top))


def test_norm_cfg_and_errors():
    neck = FPN(
        IN_CHANNELS,
        16,
        num_outs=5,
        add_extra_convs="on_input",
        norm_cfg=dict(type="GN", num_groups=4),
    )
    assert len(neck(backbone_features())) == 5
    with pytest.raises(BuildError, match="num_outs"):
        build_neck(dict(type="FPN", in_channels=IN_CHANNELS, out_channels=8, num_outs=3))
    with pytest.raises(BuildError, match="add_extra_convs"):
        build_neck(
            dict(
                type="FPN",
                in_channels=IN_CHANNELS,
                out_channels=8,
                num_outs=5,
                add_extra_convs="on_top",
            )
        )


@pytest.mark.parametrize(
    "norm_cfg, norm_type",
    [
        (dict(type="BN"), torch.nn.BatchNorm2d),
        (dict(type="SyncBN"), torch.nn.SyncBatchNorm),  # runs as BN without a process group
        (dict(type="GN", num_groups=4, requires_grad=True), torch.nn.GroupNorm),
    ],
)
def test_norms_follow_every_conv_and_train(norm_cfg, norm_type):
    torch.manual_seed(0)
    neck = build_neck(
        dict(
            type="FPN",
            in_channels=IN_CHANNELS,
            out_channels=16,
            num_outs=5,
            add_extra_convs="on_output",
            norm_cfg=norm_cfg,
        )
    )
    convs = [*neck.lateral_convs, *neck.fpn_convs, *neck.extra_convs]
    assert len(convs) == 9
    for block in convs:
        conv, norm = block
        assert isinstance(norm, norm_type)
        assert getattr(norm, "num_features", getattr(norm, "num_channels", None)) == 16
        assert conv.bias is None  # the norm's shift replaces the conv bias
    assert "lateral_convs.0.1.weight" in neck.state_dict()
    neck.train()
    outs = neck(backbone_features())
    assert tuple(outs[-1].shape) == (2, 16, 2, 3)
    # random weights: a plain sum of normalised outputs has no gradient
    sum((o * torch.randn_like(o)).sum() for o in outs).backward()
    for name, param in neck.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    if norm_type is not torch.nn.GroupNorm:
        first_norm = neck.lateral_convs[0][1]
        assert int(first_norm.num_batches_tracked) == 1
        assert first_norm.running_mean.abs().sum() > 0
        neck.eval()
        before = first_norm.running_mean.clone()
        neck(backbone_features())
        torch.testing.assert_close(first_norm.running_mean, before)


def test_norm_output_is_normalised_per_group():
    torch.manual_seed(0)
    neck = FPN(IN_CHANNELS[:1], 8, num_outs=1, norm_cfg=dict(type="GN", num_groups=2))
    with torch.no_grad():
        lateral = neck.lateral_convs[0](backbone_features()[:1][0])
    groups = lateral.view(2, 2, -1)
    torch.testing.assert_close(groups.mean(-1), torch.zeros(2, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(groups.var(-1, unbiased=False), torch.ones(2, 2), atol=1e-3, rtol=0)
