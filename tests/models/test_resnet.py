"""ResNet / ResNeXt: shapes, styles, freezing, norms and options."""

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_like.models import build_backbone
from mmdet_like.models.backbones import Bottleneck, ResNet, ResNeXt
from mmdet_like.models.layers import FrozenBatchNorm2d
from mmdet_like.registry import BuildError

CHANNELS = {18: 64, 34: 64, 50: 256, 101: 256, 152: 256}


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
@pytest.mark.parametrize("style", ["pytorch", "caffe"])
def test_output_shapes_and_strides(depth, style):
    # On the meta device: shapes without the cost of initialising or running deep nets.
    with torch.device("meta"):
        model = build_backbone(dict(type="ResNet", depth=depth, style=style))
        outs = model.eval()(torch.randn(1, 3, 64, 96))
    base = CHANNELS[depth]
    assert [tuple(o.shape) for o in outs] == [
        (1, base, 16, 24),
        (1, base * 2, 8, 12),
        (1, base * 4, 4, 6),
        (1, base * 8, 2, 3),
    ]
    assert model.out_channels == [base, base * 2, base * 4, base * 8]


def test_out_indices_and_num_stages():
    model = ResNet(18, num_stages=3, out_indices=(1, 2))
    assert not hasattr(model, "layer4")
    outs = model(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [128, 256]
    with pytest.raises(ValueError, match="out_indices"):
        ResNet(18, num_stages=3, out_indices=(3,))
    with pytest.raises(BuildError, match="depth"):
        build_backbone(dict(type="ResNet", depth=20))


@pytest.mark.parametrize("style, stride_1x1, stride_3x3", [("pytorch", 1, 2), ("caffe", 2, 1)])
def test_stride_placement(style, stride_1x1, stride_3x3):
    model = ResNet(50, style=style)
    block = model.layer2[0]
    assert isinstance(block, Bottleneck)
    assert block.conv1.stride == (stride_1x1, stride_1x1)
    assert block.conv2.stride == (stride_3x3, stride_3x3)
    assert block.downsample[0].stride == (2, 2)


def test_frozen_stages():
    model = ResNet(18, frozen_stages=2, norm_eval=False)
    model.train()
    frozen = [model.conv1, model.bn1, model.layer1, model.layer2]
    for module in frozen:
        assert all(not p.requires_grad for p in module.parameters())
        assert all(not m.training for m in module.modules())
    for module in (model.layer3, model.layer4):
        assert all(p.requires_grad for p in module.parameters())
        assert all(m.training for m in module.modules())
    # frozen stages get no gradient, the others do
    model(torch.randn(2, 3, 32, 32))[-1].sum().backward()
    assert model.layer1[0].conv1.weight.grad is None
    assert model.layer3[0].conv1.weight.grad is not None


def test_frozen_stem_only():
    model = ResNet(18, frozen_stages=0)
    assert not model.conv1.weight.requires_grad
    assert model.layer1[0].conv1.weight.requires_grad


def test_norm_eval_keeps_statistics():
    torch.manual_seed(0)
    model = ResNet(18, norm_eval=True)
    model.train()
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))
    assert model.layer1[0].conv1.training  # non-norm modules still train
    before = model.bn1.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(before, model.bn1.running_mean)

    model = ResNet(18, norm_eval=False).train()
    model(torch.randn(2, 3, 32, 32))
    assert not torch.equal(before, model.bn1.running_mean)


@pytest.mark.parametrize("zero_init", [True, False])
def test_zero_init_residual(zero_init):
    model = ResNet(50, zero_init_residual=zero_init)
    last_norm_weights = [b.bn3.weight for layer in (model.layer1, model.layer4) for b in layer]
    assert all(bool((w == 0).all()) == zero_init for w in last_norm_weights)
    assert bool((model.layer1[0].bn1.weight == 1).all())


@pytest.mark.parametrize(
    "norm_cfg, norm_type",
    [
        (dict(type="BN", requires_grad=True), nn.BatchNorm2d),
        (dict(type="SyncBN"), nn.SyncBatchNorm),
        (dict(type="GN", num_groups=32), nn.GroupNorm),
        (dict(type="FrozenBN"), FrozenBatchNorm2d),
    ],
)
def test_norm_layers(norm_cfg, norm_type):
    model = ResNet(50, norm_cfg=norm_cfg, num_stages=2, out_indices=(1,))
    assert isinstance(model.bn1, norm_type)
    assert isinstance(model.layer1[0].downsample[1], norm_type)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))[0]
    assert out.shape == (1, 512, 4, 4)
    assert torch.isfinite(out).all()


def test_bn_requires_grad_false():
    model = ResNet(18, norm_cfg=dict(type="BN", requires_grad=False))
    assert not model.bn1.weight.requires_grad
    assert model.conv1.weight.requires_grad


def test_frozen_bn_matches_eval_bn():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(8)
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.normal_()
    bn.bias.data.normal_()
    frozen = FrozenBatchNorm2d(8)
    frozen.load_state_dict(bn.state_dict())  # num_batches_tracked is dropped
    assert list(frozen.parameters()) == []
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(frozen(x), bn.eval()(x))


@pytest.mark.parametrize(
    "depth, groups, base_width, widths",
    [
        (50, 32, 4, [128, 256, 512, 1024]),
        (50, 64, 4, [256, 512, 1024, 2048]),
        (101, 32, 8, [256, 512, 1024, 2048]),
    ],
)
def test_resnext_widths(depth, groups, base_width, widths):
    with torch.device("meta"):
        model = build_backbone(
            dict(type="ResNeXt", depth=depth, groups=groups, base_width=base_width, num_stages=4)
        )
    assert isinstance(model, ResNeXt)
    for i, width in enumerate(widths):
        conv2 = getattr(model, f"layer{i + 1}")[0].conv2
        assert conv2.groups == groups
        assert conv2.in_channels == conv2.out_channels == width
    assert model.out_channels == [256, 512, 1024, 2048]


def test_resnext_forward_and_depth_check():
    model = ResNeXt(50, groups=32, base_width=4).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [256, 512, 1024, 2048]
    with pytest.raises(ValueError, match="depth"):
        ResNeXt(18)


def test_base_channels_narrows_every_stage():
    model = ResNet(18, base_channels=16, out_indices=(0, 1, 2, 3))
    assert model.out_channels == [16, 32, 64, 128]
    outs = model(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [
        (2, 16, 16, 24), (2, 32, 8, 12), (2, 64, 4, 6), (2, 128, 2, 3)
    ]  # fmt: skip
    narrow = sum(p.numel() for p in model.parameters())
    assert narrow < sum(p.numel() for p in ResNet(18).parameters()) / 10
    with pytest.raises(ValueError, match="base_channels"):
        ResNet(18, base_channels=0)
