"""Optimizer parameter groups: paramwise_cfg's custom_keys with the bias / norm multipliers,
layer-wise and stage-wise learning-rate decay, and the errors of a bad config."""

import pytest
import torch
from torch import nn

from mmdet_like.engine import (
    LearningRateDecayOptimizerConstructor,
    OptimizerConfigError,
    build_optimizer,
    param_group_settings,
)
from mmdet_like.models.backbones import BaseBackbone, Block, ResNet
from mmdet_like.registry import RegistryError

LR, WD = 1e-3, 0.05


class Toy(nn.Module):
    """backbone (conv, BN), neck (conv, BN), head (linear): every kind of parameter."""

    def __init__(self, backbone=None):
        super().__init__()
        self.backbone = backbone or nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.neck = nn.Conv2d(4, 4, 1)
        self.neck_norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)


def settings(model, **cfg):
    optimizer = build_optimizer(model, dict(type="AdamW", lr=LR, **cfg))
    assert isinstance(optimizer, torch.optim.AdamW)
    return {
        name: (pytest.approx(s["lr"]), pytest.approx(s["weight_decay"]))
        for name, s in param_group_settings(model, optimizer).items()
    }


def approx(lr_mult, decay_mult):
    return (LR * lr_mult, WD * decay_mult)


def test_bias_and_norm_multipliers():
    paramwise = dict(bias_lr_mult=2.0, bias_decay_mult=0.0, norm_decay_mult=0.5)
    got = settings(Toy(), weight_decay=WD, paramwise_cfg=paramwise)
    assert got == {
        "backbone.0.weight": approx(1, 1),
        "backbone.0.bias": approx(2, 0),
        "backbone.1.weight": approx(1, 0.5),
        "backbone.1.bias": approx(1, 0.5),  # a norm's bias: the norm rule, not the bias rule
        "neck.weight": approx(1, 1),
        "neck.bias": approx(2, 0),
        "neck_norm.weight": approx(1, 0.5),
        "neck_norm.bias": approx(1, 0.5),
        "head.weight": approx(1, 1),
        "head.bias": approx(2, 0),
    }


def test_custom_keys_take_precedence_and_the_longest_key_wins():
    paramwise = dict(
        custom_keys={
            "backbone": dict(lr_mult=0.1),
            "backbone.1": dict(decay_mult=0.0),  # longer than "backbone": wins on the BN
            "head.bias": dict(lr_mult=3.0),
            "neck": dict(lr_mult=0.5),  # "neck" and "bias" tie on neck.bias: "bias" comes first
            "bias": dict(lr_mult=4.0, decay_mult=0.25),
        },
        bias_lr_mult=2.0,
        bias_decay_mult=0.0,
        norm_decay_mult=0.5,
    )
    got = settings(Toy(), weight_decay=WD, paramwise_cfg=paramwise)
    assert got == {
        "backbone.0.weight": approx(0.1, 1),
        "backbone.0.bias": approx(0.1, 1),  # "backbone" (8) is longer than "bias" (4)
        "backbone.1.weight": approx(1, 0),
        "backbone.1.bias": approx(1, 0),
        "neck.weight": approx(0.5, 1),
        "neck.bias": approx(4, 0.25),
        "neck_norm.weight": approx(0.5, 1),  # "neck" matches: the norm rule does not apply
        "neck_norm.bias": approx(4, 0.25),
        "head.weight": approx(1, 1),
        "head.bias": approx(3, 1),
    }


def test_frozen_and_shared_parameters():
    model = Toy()
    model.backbone[0].weight.requires_grad_(False)
    model.tied = model.head  # one module under two names: its parameters go in once
    optimizer = build_optimizer(
        model, dict(type="SGD", lr=LR, paramwise_cfg=dict(custom_keys={"head": dict(lr_mult=2)}))
    )
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(params) == len({id(p) for p in params}) == 9
    assert all(p is not model.backbone[0].weight for p in params)
    assert param_group_settings(model, optimizer)["head.weight"]["lr"] == pytest.approx(2 * LR)
    # without weight_decay the optimizer's default is left alone
    assert optimizer.param_groups[0]["weight_decay"] == 0


@pytest.mark.parametrize(
    "cfg, message",
    [
        (dict(paramwise_cfg=dict(bias_lr_mul=2.0)),
         r"paramwise_cfg\.bias_lr_mul: not a key mmdet_like reads; did you mean "
         r"optimizer\.paramwise_cfg\.bias_lr_mult\?"),
        (dict(paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mul=0.1)})),
         r"custom_keys\['backbone'\]\.lr_mul: not a key mmdet_like reads; did you mean "
         r"optimizer\.paramwise_cfg\.custom_keys\['backbone'\]\.lr_mult\?"),
        (dict(paramwise_cfg=dict(custom_keys=["backbone"])),
         r"custom_keys: must be a dict \{name part: dict\(lr_mult=\.\.\., decay_mult=\.\.\.\)\}"),
        (dict(paramwise_cfg=dict(custom_keys={"backbone": 0.1})),
         r"custom_keys\['backbone'\]: must be dict\(lr_mult=\.\.\., decay_mult=\.\.\.\)"),
        (dict(paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult="0.1")})),
         r"custom_keys\['backbone'\]\.lr_mult: must be a number, got '0\.1'"),
        (dict(paramwise_cfg=dict(norm_decay_mult=None)),
         r"paramwise_cfg\.norm_decay_mult: must be a number"),
        (dict(paramwise_cfg=dict(custom_keys={"head": dict(decay_mult=0.0)})),
         r"custom_keys\['head'\]\.decay_mult: needs optimizer\.weight_decay"),
    ],
)  # fmt: skip
def test_bad_paramwise_cfg_names_the_field(cfg, message):
    with pytest.raises(OptimizerConfigError, match=message):
        build_optimizer(Toy(), dict(type="AdamW", lr=LR, **cfg))


def test_unknown_constructor_names_the_closest():
    cfg = dict(type="AdamW", lr=LR, constructor="LearningRateDecayOptimiserConstructor")
    with pytest.raises(RegistryError, match="Did you mean 'LearningRateDecayOptimizerConstructor'"):
        build_optimizer(Toy(), cfg)


# ------------------------------------------------------------------ learning-rate decay
def decay_cfg(**paramwise):
    return dict(constructor="LearningRateDecayOptimizerConstructor", weight_decay=WD,
                paramwise_cfg=dict(decay_rate=0.5, **paramwise))  # fmt: skip


def resnet_toy():
    model = Toy(ResNet(18, base_channels=4))  # 8 blocks, 2 a stage
    model.neck = nn.Conv2d(32, 4, 1)
    return model


@pytest.mark.parametrize(
    "decay_type, num_layers, ids",
    [
        # (stem, layer1.0, layer1.1, layer2.0, layer3.1, layer4.1)
        ("layer_wise", 4, (0, 1, 1, 2, 3, 4)),  # two blocks a layer
        ("layer_wise", 8, (0, 1, 2, 3, 6, 8)),  # a layer per block
        ("layer_wise", 3, (0, 1, 1, 1, 2, 3)),  # 1 + k * 3 // 8
        ("stage_wise", 4, (0, 1, 1, 2, 3, 4)),
        ("stage_wise", 6, (0, 1, 1, 2, 3, 4)),
    ],
)
def test_layer_wise_decay_over_a_resnet(decay_type, num_layers, ids):
    model = resnet_toy()
    got = settings(model, **decay_cfg(decay_type=decay_type, num_layers=num_layers))
    names = ("conv1", "layer1.0", "layer1.1", "layer2.0", "layer3.1", "layer4.1")
    for name, layer_id in zip(names, ids, strict=True):
        scale = 0.5 ** (num_layers + 1 - layer_id)
        weight = next(n for n in got if n.startswith(f"backbone.{name}.") and "conv" in n)
        assert got[weight] == (pytest.approx(LR * scale), pytest.approx(WD)), weight
    # norms and biases: no weight decay; outside the backbone the full learning rate
    assert got["backbone.layer2.0.bn1.weight"][1] == pytest.approx(0)
    assert got["neck.weight"] == approx(1, 1)
    assert got["neck.bias"] == approx(1, 0)
    assert got["head.weight"] == approx(1, 1)


class ConvNeXtLike(BaseBackbone):
    """mmdetection's ConvNeXt layout (mmcls names): ``downsample_layers.i`` before
    ``stages.i``; the first downsample layer is the stem."""

    def __init__(self, depths=(3, 3, 9, 3)):
        super().__init__()
        self.downsample_layers = nn.ModuleList(nn.Linear(2, 2) for _ in depths)
        self.stages = nn.ModuleList(
            nn.Sequential(*(nn.Linear(2, 2) for _ in range(d))) for d in depths
        )
        self.freeze_stages()

    def blocks(self):
        blocks = [Block(0, ("downsample_layers.0",))]
        for i, stage in enumerate(self.stages):
            entry = (f"downsample_layers.{i}",) if i else ()
            blocks.append(Block(i + 1, (*entry, f"stages.{i}.0")))
            blocks += [Block(i + 1, (f"stages.{i}.{j}",)) for j in range(1, len(stage))]
        return blocks

    def forward(self, x):
        return (x,)


def mmdetection_convnext_layer_id(name, num_layers):
    """mmdetection's ConvNeXt layer id (its get_layer_id_for_convnext), written out."""
    parts = name.split(".")
    stage = int(parts[2])
    if parts[1] == "downsample_layers":
        return {0: 0, 1: 2, 2: 3, 3: num_layers}[stage]
    return {0: 1, 1: 2, 2: 3 + int(parts[3]) // 3, 3: num_layers}[stage]


@pytest.mark.parametrize("depths, num_layers", [((3, 3, 9, 3), 6), ((3, 3, 27, 3), 12)])
def test_layer_ids_of_a_convnext_are_mmdetections(depths, num_layers):
    model = Toy(ConvNeXtLike(depths))
    constructor = LearningRateDecayOptimizerConstructor(
        dict(decay_rate=0.9, decay_type="layer_wise", num_layers=num_layers)
    )
    ids = constructor.layer_ids(model)
    assert len(ids) == 2 * (len(depths) + sum(depths))  # every backbone parameter
    assert ids == {name: mmdetection_convnext_layer_id(name, num_layers) for name in ids}


@pytest.mark.parametrize(
    "paramwise, error, message",
    [
        (dict(decay_rate=0.9), OptimizerConfigError,
         r"optimizer\.paramwise_cfg: needs num_layers, e\.g\. dict\(decay_rate=0\.95"),
        (dict(decay_rate=0.9, num_layers=4, decay_type="block_wise"), OptimizerConfigError,
         r"decay_type: must be one of \('layer_wise', 'stage_wise'\), got 'block_wise'"),
        (dict(decay_rate=1.5, num_layers=4), OptimizerConfigError,
         r"decay_rate: must be a number in \(0, 1\], got 1\.5"),
        (dict(decay_rate=0.9, num_layers=4, custom_keys={}), OptimizerConfigError,
         r"paramwise_cfg\.custom_keys: not a key mmdet_like reads"),
        (dict(decay_rate=0.9, num_layers=9), OptimizerConfigError,
         r"num_layers=9 is more than the 8 blocks of ResNet's stages; set num_layers in 1\.\.8"),
        (dict(decay_rate=0.9, num_layers=3, decay_type="stage_wise"), OptimizerConfigError,
         r"num_layers=3 is fewer than the 4 stages of ResNet"),
    ],
)  # fmt: skip
def test_bad_decay_config_names_the_field(paramwise, error, message):
    cfg = dict(type="AdamW", lr=LR, constructor="LearningRateDecayOptimizerConstructor",
               paramwise_cfg=paramwise)  # fmt: skip
    with pytest.raises(error, match=message):
        build_optimizer(resnet_toy(), cfg)


def test_decay_needs_a_backbone_that_lists_its_blocks():
    cfg = dict(type="AdamW", lr=LR, **decay_cfg(num_layers=2))
    with pytest.raises(OptimizerConfigError, match="model.backbone is Sequential"):
        build_optimizer(Toy(), cfg)
