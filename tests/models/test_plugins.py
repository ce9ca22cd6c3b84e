"""Backbone plugins: the ResNet mechanism (positions, channels, names, errors, pretrained
loading) and the built-in NonLocal2d, ContextBlock and StageFusion."""

import logging
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models import build_backbone
from mmdet_like.models.backbones import ResNet, ResNeXt
from mmdet_like.models.plugins import ContextBlock, NonLocal2d, StageFusion
from mmdet_like.models.utils import load_pretrained, load_state_dict_report
from mmdet_like.registry import PLUGIN_LAYERS, BuildError, RegistryError

SMALL = dict(base_channels=8, zero_init_residual=False)  # stages of 32, 64, 128, 256


class Recorder(nn.Module):
    """Passes its input through and logs (tag, in_channels, channels seen, min value)."""

    log = []

    def __init__(self, in_channels, tag=""):
        super().__init__()
        self.in_channels = in_channels
        self.tag = tag

    def forward(self, x):
        if isinstance(x, tuple):
            Recorder.log.append((self.tag, self.in_channels, [f.shape[1] for f in x], None))
        else:
            Recorder.log.append((self.tag, self.in_channels, x.shape[1], x.min().item()))
        return x


class Zeroing(nn.Module):
    """Outputs zeros: placed before a residual add, the block returns relu(shortcut)."""

    def __init__(self, in_channels):
        super().__init__()

    def forward(self, x):
        return torch.zeros_like(x)


@pytest.fixture
def registered(monkeypatch):
    """``Recorder`` and ``Zeroing`` in PLUGIN_LAYERS for this test only."""
    monkeypatch.setitem(PLUGIN_LAYERS._entries, "TestRecorder", Recorder)
    monkeypatch.setitem(PLUGIN_LAYERS._entries, "TestZeroing", Zeroing)
    Recorder.log = []
    yield
    Recorder.log = []


def randomise_norms(model):
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def plain_and_plugged(plugins, depth=50, **kwargs):
    """The same backbone without and with ``plugins``, the plain one's weights in both."""
    args = dict(SMALL, **kwargs)
    torch.manual_seed(0)
    plain = ResNet(depth, **args)
    randomise_norms(plain)
    plugged = ResNet(depth, plugins=plugins, **args)
    result = plugged.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all("_plugins." in k for k in result.missing_keys)
    return plain.eval(), plugged.eval()


IDENTITY_CASES = {
    "non_local_after_conv2": (
        50,
        [
            dict(
                cfg=dict(type="NonLocal2d"),
                stages=(False, True, True, False),
                position="after_conv2",
            )
        ],
    ),
    "non_local_norm_sub_sample_after_conv3": (
        50,
        [
            dict(
                cfg=dict(type="NonLocal2d", sub_sample=True, norm_cfg=dict(type="BN")),
                stages=(True, True, False, False),
                position="after_conv3",
            )
        ],
    ),
    "non_local_dot_product_after_conv1": (
        50,
        [dict(cfg=dict(type="NonLocal2d", mode="dot_product"), position="after_conv1")],
    ),
    "context_block_add_after_conv3": (
        50,
        [dict(cfg=dict(type="ContextBlock", ratio=1 / 4), position="after_conv3")],
    ),
    "context_block_mul_add_avg_after_stage": (
        50,
        [
            dict(
                cfg=dict(
                    type="ContextBlock",
                    ratio=1 / 4,
                    pooling_type="avg",
                    fusion_types=("channel_mul", "channel_add"),
                ),
                position="after_stage",
            )
        ],
    ),
    "basic_block_after_conv1_and_conv2": (
        18,
        [
            dict(cfg=dict(type="ContextBlock", ratio=1 / 4), position="after_conv1"),
            dict(cfg=dict(type="NonLocal2d", reduction=4), position="after_conv2"),
        ],
    ),
    "stage_fusion_after_backbone": (
        50,
        [dict(cfg=dict(type="StageFusion"), position="after_backbone")],
    ),
    "stage_fusion_bilinear_avg": (
        18,
        [
            dict(
                cfg=dict(type="StageFusion", upsample_mode="bilinear", downsample_mode="avg"),
                position="after_backbone",
            )
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(IDENTITY_CASES))
def test_plugins_are_the_identity_at_initialisation(case):
    depth, plugins = IDENTITY_CASES[case]
    plain, plugged = plain_and_plugged(plugins, depth)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = plain(x), plugged(x)
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a, b)


def test_plugins_leave_the_torchvision_names_and_are_named_apart():
    plugins = [
        dict(
            cfg=dict(type="NonLocal2d"), stages=(False, True, False, False), position="after_conv2"
        ),
        dict(
            cfg=dict(type="ContextBlock", ratio=1 / 4),
            stages=(False, False, True, False),
            position="after_stage",
        ),
        dict(cfg=dict(type="StageFusion"), position="after_backbone"),
    ]
    plain, plugged = ResNet(50, **SMALL), ResNet(50, plugins=plugins, **SMALL)
    own = [k for k in plugged.state_dict() if "_plugins." not in k]
    assert own == list(plain.state_dict())
    plugin_modules = {
        k[: k.index("_plugins.") + len("_plugins")]
        for k in plugged.state_dict()
        if "_plugins." in k
    }
    assert {k for k in plugin_modules if k.startswith("layer2.")} == {
        f"layer2.{i}.after_conv2_plugins" for i in range(4)
    }
    assert "layer3_after_stage_plugins" in plugin_modules
    assert "after_backbone_plugins" in plugin_modules
    assert "layer2.0.after_conv2_plugins.0.conv_out.weight" in plugged.state_dict()
    assert set(plugged.plugin_layers()) == plugin_modules
    assert isinstance(plugged.layer3_after_stage_plugins[0], ContextBlock)


@pytest.mark.parametrize(
    "position, stages, expected",
    [  # ResNet-50 with base_channels 8: blocks (3, 4, 6, 3), widths 8 * 2**i, outputs x 4
        ("after_conv1", (False, True, True, False), [16] * 4 + [32] * 6),
        ("after_conv2", (True, False, False, True), [8] * 3 + [64] * 3),
        ("after_conv3", None, [32] * 3 + [64] * 4 + [128] * 6 + [256] * 3),
        ("after_stage", (True, False, True, True), [32, 128, 256]),
    ],
)
def test_each_position_sees_its_channels_and_runs_once_per_block(
    registered, position, stages, expected
):
    plugin = dict(cfg=dict(type="TestRecorder"), position=position)
    if stages is not None:
        plugin["stages"] = stages
    model = ResNet(50, plugins=[plugin], **SMALL).eval()
    Recorder.log = []
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert [entry[1] for entry in Recorder.log] == expected
    assert all(built == seen for _, built, seen, _ in Recorder.log)
    if position in ("after_conv1", "after_conv2", "after_stage"):  # after a ReLU
        assert all(minimum >= 0 for *_, minimum in Recorder.log)
    else:  # after conv3's norm, before the add and the ReLU
        assert any(minimum < 0 for *_, minimum in Recorder.log)


def test_basic_block_positions_and_order(registered):
    plugins = [
        dict(cfg=dict(type="TestRecorder", tag="b"), position="after_conv2", stages=(False, True)),
        dict(cfg=dict(type="TestRecorder", tag="a"), position="after_conv1", stages=(False, True)),
        dict(cfg=dict(type="TestRecorder", tag="c"), position="after_conv2", stages=(False, True)),
    ]
    model = ResNet(18, num_stages=2, out_indices=(1,), plugins=plugins, **SMALL).eval()
    Recorder.log = []
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    # stage 2 (16 channels), two blocks; in a block: conv1's, then conv2's in list order
    assert [(tag, seen) for tag, _, seen, _ in Recorder.log] == [
        ("a", 16),
        ("b", 16),
        ("c", 16),
    ] * 2
    assert [name for name, _ in model.layer2[0].named_children()][-2:] == [
        "after_conv1_plugins",
        "after_conv2_plugins",
    ]


@pytest.mark.parametrize("depth, position", [(18, "after_conv2"), (50, "after_conv3")])
def test_last_conv_position_is_before_the_residual_add(registered, depth, position):
    # zeros at the last conv leave relu(shortcut): layer1's first block (no downsample at
    # R-18; at R-50 its shortcut is the downsample) then returns relu of its shortcut
    plugins = [dict(cfg=dict(type="TestZeroing"), position=position, stages=(True, False))]
    args = dict(SMALL, num_stages=2, out_indices=(0,))
    model = ResNet(depth, plugins=plugins, **args).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        block = model.layer1[0]
        shortcut = stem if block.downsample is None else block.downsample(stem)
        torch.testing.assert_close(block(stem), torch.relu(shortcut))


def test_after_backbone_gets_the_output_tuple(registered):
    plugins = [dict(cfg=dict(type="TestRecorder"), position="after_backbone")]
    model = ResNet(50, out_indices=(1, 3), plugins=plugins, **SMALL).eval()
    Recorder.log = []
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert Recorder.log == [("", [64, 256], [64, 256], None)]
    assert isinstance(outs, tuple) and [o.shape[1] for o in outs] == [64, 256]


def test_resnext_passes_plugins(registered):
    plugins = [dict(cfg=dict(type="TestRecorder"), position="after_conv2", stages=(True, False))]
    model = build_backbone(
        dict(
            type="ResNeXt",
            depth=50,
            groups=2,
            base_width=16,
            base_channels=16,
            num_stages=2,
            out_indices=(1,),
            plugins=plugins,
        )
    ).eval()
    Recorder.log = []
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    width = 2 * int(16 * 16 / 64)  # groups * floor(planes * base_width / 64)
    assert [entry[1:3] for entry in Recorder.log] == [(width, width)] * 3
    assert isinstance(model, ResNeXt) and model.layer1[0].conv2.groups == 2


@pytest.mark.parametrize(
    "depth, plugins, match",
    [
        (
            18,
            [dict(cfg=dict(type="NonLocal2d"), position="after_conv3")],
            r"after_conv3.*BasicBlock.*after_conv2",
        ),
        (50, [dict(cfg=dict(type="NonLocal2d"), position="after_conv4")], "after_conv4"),
        (
            50,
            [dict(cfg=dict(type="NonLocal2d"), position="after_conv1", stages=(True, False))],
            "stages must be 4 booleans",
        ),
        (
            50,
            [dict(cfg=dict(type="NonLocal2d"), position="after_conv1", stages=(1, 0, 0, 0))],
            "stages must be 4 booleans",
        ),
        (
            50,
            [dict(cfg=dict(type="StageFusion"), position="after_backbone", stages=(True,) * 4)],
            "remove stages",
        ),
        (
            50,
            [dict(cfg=dict(type="NonLocal2d", in_channels=8), position="after_conv1")],
            "sets in_channels",
        ),
        (
            50,
            [dict(cfg=dict(type="NonLocal2d"), position="after_conv1", stage=(True,) * 4)],
            r"unknown key\(s\) \['stage'\]",
        ),
        (50, [dict(type="NonLocal2d", position="after_conv1")], "must be dict"),
        (50, dict(cfg=dict(type="NonLocal2d"), position="after_conv1"), "must be a list"),
        (
            50,
            [dict(cfg=dict(type="StageFusion", out_channels=16), position="after_backbone")],
            "must keep the shapes",
        ),
    ],
)
def test_bad_plugin_configs_are_named(depth, plugins, match):
    with pytest.raises(ValueError, match=match):
        ResNet(depth, plugins=plugins, **SMALL)


def test_unknown_plugin_type_and_argument_through_the_registry():
    with pytest.raises(RegistryError, match="PLUGIN_LAYERS registry. Did you mean 'NonLocal2d'"):
        build_backbone(
            dict(
                type="ResNet",
                depth=18,
                plugins=[dict(cfg=dict(type="NonLocal"), position="after_conv1")],
            )
        )
    with pytest.raises(BuildError, match="reductio"):
        ResNet(18, plugins=[dict(cfg=dict(type="NonLocal2d", reductio=2), position="after_conv1")])


def test_frozen_stages_freeze_their_plugins():
    plugins = [
        dict(cfg=dict(type="ContextBlock", ratio=1 / 4), position="after_conv1"),
        dict(cfg=dict(type="ContextBlock", ratio=1 / 4), position="after_stage"),
    ]
    model = ResNet(18, frozen_stages=1, plugins=plugins, **SMALL).train()
    for name, param in model.named_parameters():
        if "_plugins." in name:
            assert param.requires_grad == (not name.startswith("layer1")), name


def test_init_weights_keeps_the_plugins_initialisation():
    plugins = [
        dict(cfg=dict(type="NonLocal2d"), position="after_conv2"),
        dict(cfg=dict(type="StageFusion"), position="after_backbone"),
    ]
    model = ResNet(18, plugins=plugins, **SMALL)
    model.init_weights()  # Kaiming over every conv, then each plugin's own initialisation
    assert torch.count_nonzero(model.layer1[0].after_conv2_plugins[0].conv_out.weight) == 0
    assert model.layer1[0].after_conv2_plugins[0].theta.weight.std() < 0.02
    assert torch.count_nonzero(model.after_backbone_plugins[0].from_coarser[0].weight) == 0


def perturb(module, std=0.1):
    torch.manual_seed(3)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn_like(param) * std)


@pytest.mark.parametrize(
    "make, zero_init",
    [
        (lambda: NonLocal2d(16), ["conv_out.weight"]),
        (lambda: NonLocal2d(16, mode="dot_product", sub_sample=True), ["conv_out.weight"]),
        (lambda: NonLocal2d(16, norm_cfg=dict(type="BN")), ["norm.weight"]),
        (lambda: ContextBlock(16, ratio=1 / 4), ["channel_add_conv.3.weight"]),
        (
            lambda: ContextBlock(
                16, ratio=1 / 4, pooling_type="avg", fusion_types=("channel_add", "channel_mul")
            ),
            ["channel_add_conv.3.weight", "channel_mul_conv.3.weight"],
        ),
    ],
)
def test_gradients_reach_every_plugin_parameter(make, zero_init):
    torch.manual_seed(0)
    module = make().train()
    x = torch.randn(2, 16, 6, 8)
    weights = torch.randn(2, 16, 6, 8)
    (module(x) * weights).sum().backward()
    grads = dict(module.named_parameters())
    for name in zero_init:  # the zero-initialised layer learns from the first step
        assert torch.count_nonzero(grads[name]) == 0
        assert grads[name].grad.abs().sum() > 0, name
    module.zero_grad()
    perturb(module)
    (module(x) * weights).sum().backward()
    for name, param in module.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_gradients_reach_plugins_in_the_backbone():
    plugins = [
        dict(
            cfg=dict(type="NonLocal2d"), stages=(False, True, True, False), position="after_conv2"
        ),
        dict(cfg=dict(type="StageFusion"), position="after_backbone"),
    ]
    model = ResNet(50, plugins=plugins, norm_eval=False, **SMALL).train()
    for plugins_module in model.plugin_layers().values():
        perturb(plugins_module, std=0.05)
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.square().mean() for o in outs).backward()
    names = [n for n, _ in model.named_parameters() if "_plugins." in n]
    assert names
    for name, param in model.named_parameters():
        if "_plugins." in name:
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def non_local_reference(module, x, scale, normalise):
    """The non-local formula written out with the P x M pairwise matrix."""
    theta = module.theta(x).flatten(2)  # (N, C', P)
    phi, g = module.phi(x), module.g(x)
    if module.sub_sample:
        phi, g = F.max_pool2d(phi, 2), F.max_pool2d(g, 2)
    phi, g = phi.flatten(2), g.flatten(2)  # (N, C', M)
    pairwise = torch.einsum("ncp,ncm->npm", theta, phi)
    if normalise == "softmax":
        attention = torch.softmax(pairwise * scale, dim=-1)
    else:
        attention = pairwise / phi.shape[-1]
    y = torch.einsum("npm,ncm->ncp", attention, g).reshape(x.shape[0], -1, *x.shape[2:])
    return x + module.conv_out(y)


@pytest.mark.parametrize("sub_sample", [False, True])
def test_non_local_embedded_gaussian_multiplies_by_the_scale(sub_sample):
    torch.manual_seed(0)
    module = NonLocal2d(32, reduction=2, sub_sample=sub_sample)  # C' = 16: scale 1/4
    with torch.no_grad():
        for conv in (module.theta, module.phi, module.g, module.conv_out):
            conv.weight.normal_(std=0.5)
    # in float64: the module and the written-out formula sum in other orders, which in
    # float32 differ with the CPU's kernels; in float64 by ~1e-14
    module.double()
    x = torch.randn(2, 32, 6, 8, dtype=torch.float64)
    with torch.no_grad():
        out = module(x)
        multiplied = non_local_reference(module, x, 16**-0.5, "softmax")
        divided = non_local_reference(module, x, 16**0.5, "softmax")
        unscaled = non_local_reference(module, x, 1.0, "softmax")
        module.use_scale = False
        out_unscaled = module(x)
    torch.testing.assert_close(out, multiplied, rtol=1e-10, atol=1e-10)
    assert (out - divided).abs().max() > 1e-2  # the old mmdetection bug would match this
    torch.testing.assert_close(out_unscaled, unscaled, rtol=1e-10, atol=1e-10)
    assert (out - unscaled).abs().max() > 1e-2


@pytest.mark.parametrize("sub_sample", [False, True])
def test_non_local_dot_product_divides_by_the_positions(sub_sample):
    torch.manual_seed(0)
    module = NonLocal2d(16, mode="dot_product", sub_sample=sub_sample, norm_cfg=dict(type="BN"))
    perturb(module, std=0.5)
    module.eval().double()  # float64, as above: float32 differed by up to 3.4e-7 of the output
    x = torch.randn(2, 16, 6, 8, dtype=torch.float64)
    with torch.no_grad():
        expected = non_local_reference(module, x, None, "dot_product")
        # conv_out's norm is part of the output: apply it to the reference's branch
        branch = module.norm(expected - x)
        torch.testing.assert_close(module(x), x + branch, rtol=1e-10, atol=1e-10)


def test_non_local_sub_sample_shapes():
    module = NonLocal2d(8, reduction=4, sub_sample=True)
    seen = []
    module.pool.register_forward_hook(lambda mod, inputs, out: seen.append(tuple(out.shape)))
    x = torch.randn(3, 8, 7, 9)
    assert module(x).shape == x.shape
    assert seen == [(3, 2, 3, 4), (3, 2, 3, 4)]  # phi and g, 2x2 max pooled
    with pytest.raises(ValueError, match="at least 2x2"):
        module(torch.randn(1, 8, 1, 5))
    with pytest.raises(ValueError, match="mode"):
        NonLocal2d(8, mode="gaussian")
    with pytest.raises(ValueError, match="reduction"):
        NonLocal2d(2, reduction=4)


def test_context_block_matches_the_formula():
    torch.manual_seed(0)
    module = ContextBlock(16, ratio=1 / 4, fusion_types=("channel_add", "channel_mul"))
    perturb(module, std=0.3)
    x = torch.randn(2, 16, 5, 7)
    with torch.no_grad():
        mask = torch.softmax(module.conv_mask(x).flatten(2), dim=-1)  # (N, 1, P)
        context = (x.flatten(2) * mask).sum(-1)[..., None, None]  # (N, C, 1, 1)
        scale = 2 * torch.sigmoid(module.channel_mul_conv(context))
        expected = x * scale + module.channel_add_conv(context)
        torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-5)
        avg = ContextBlock(16, ratio=1 / 4, pooling_type="avg")
        torch.testing.assert_close(avg.context(x), x.mean(dim=(2, 3), keepdim=True))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pooling_type="max"), "pooling_type"),
        (dict(fusion_types=()), "fusion_types"),
        (dict(fusion_types=("channel_add", "channel_add")), "fusion_types"),
        (dict(fusion_types="channel_add"), "fusion_types"),
        (dict(ratio=1 / 16), "at least 2"),
    ],
)
def test_context_block_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ContextBlock(16, **dict(dict(ratio=1 / 4), **kwargs))


def test_stage_fusion_wires_the_neighbours():
    torch.manual_seed(0)
    fusion = StageFusion([4, 8, 16])
    features = (torch.randn(2, 4, 8, 10), torch.randn(2, 8, 4, 5), torch.randn(2, 16, 2, 3))
    with torch.no_grad():
        fusion.from_coarser[0].weight.normal_()
        fusion.from_finer[1].weight.normal_()
        outs = fusion(features)
    up = F.interpolate(fusion.from_coarser[0](features[1]), size=(8, 10), mode="nearest")
    torch.testing.assert_close(outs[0], features[0] + up)
    assert torch.equal(outs[1], features[1])  # its convs are still zero
    down = fusion.from_finer[1](F.max_pool2d(features[1], 2, ceil_mode=True))  # 4x5 -> 2x3
    torch.testing.assert_close(outs[2], features[2] + down)


def test_stage_fusion_out_channels_and_errors():
    fusion = StageFusion([4, 8], out_channels=[4, 6])
    outs = fusion((torch.randn(1, 4, 8, 8), torch.randn(1, 8, 4, 4)))
    assert [tuple(o.shape) for o in outs] == [(1, 4, 8, 8), (1, 6, 4, 4)]
    assert isinstance(fusion.output_projections[0], nn.Identity)
    with pytest.raises(ValueError, match="at least 2"):
        StageFusion([4])
    with pytest.raises(ValueError, match="one per stage"):
        StageFusion([4, 8], out_channels=[4])
    with pytest.raises(ValueError, match="upsample_mode"):
        StageFusion([4, 8], upsample_mode="area")
    with pytest.raises(ValueError, match="built for 2"):
        fusion((torch.randn(1, 4, 8, 8),))


@pytest.fixture
def info_log(caplog):
    """Records of the ``mmdet_like`` logger at INFO (its handlers may not propagate)."""
    logger = logging.getLogger("mmdet_like")
    caplog.set_level(logging.INFO, logger="mmdet_like")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_pretrained_weights_load_with_plugins_newly_initialised(tmp_path, info_log):
    torch.manual_seed(0)
    plain = ResNet(50, **SMALL)
    randomise_norms(plain)
    path = tmp_path / "r50_small.pth"
    torch.save({"state_dict": plain.state_dict()}, path)
    plugins = [
        dict(
            cfg=dict(type="NonLocal2d"), stages=(False, True, True, False), position="after_conv2"
        ),
        dict(cfg=dict(type="ContextBlock", ratio=1 / 4), position="after_stage"),
        dict(cfg=dict(type="StageFusion"), position="after_backbone"),
    ]
    model = ResNet(50, plugins=plugins, pretrained=str(path), **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "weights do not match" warning
        model.init_weights()
    for key, value in plain.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    message = " ".join(r.getMessage() for r in info_log.records)
    assert "newly initialised" in message
    assert "layer2.0.after_conv2_plugins." in message and "after_backbone_plugins." in message
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(plain.eval()(x), model.eval()(x), strict=True):
            assert torch.equal(a, b)


def test_only_new_modules_are_exempt_from_the_mismatch_report(tmp_path):
    plugins = [dict(cfg=dict(type="NonLocal2d"), position="after_conv1")]
    model = ResNet(18, plugins=plugins, **SMALL)
    state = {k: v for k, v in ResNet(18, **SMALL).state_dict().items() if k != "bn1.bias"}
    with pytest.warns(UserWarning, match="bn1.bias"):
        missing, unexpected = load_state_dict_report(
            model, state, new_prefixes=[f"{n}." for n in model.plugin_layers()]
        )
    assert missing == ["bn1.bias"] and unexpected == []
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    with pytest.warns(UserWarning, match="after_conv1_plugins"):  # not declared new
        missing, _ = load_pretrained(model, str(path))
    assert "layer1.0.after_conv1_plugins.0.theta.weight" in missing
