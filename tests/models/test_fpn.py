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
