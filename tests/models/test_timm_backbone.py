"""TimmBackbone: a timm model's feature levels, its stages, local pretrained weights, and a
detector and layer-wise decay built on it (tiny timm models, no weights downloaded)."""

import pytest
import torch

from mmdet_like.engine import build_optimizer, param_group_settings
from mmdet_like.models import build_backbone, build_detector
from mmdet_like.models.backbones import FeatureShape, TimmBackbone
from mmdet_like.models.utils.pretrained import PretrainedWeightsError
from mmdet_like.registry import BuildError

timm = pytest.importorskip("timm")

SWIN = dict(img_size=64, window_size=4)


@pytest.mark.parametrize(
    "model_name, out_indices, kwargs, shapes",
    [
        ("resnet18", (1, 2, 3, 4), {}, [(64, 4), (128, 8), (256, 16), (512, 32)]),
        ("convnext_atto", (1, 2, 3), {}, [(80, 8), (160, 16), (320, 32)]),
        ("swin_tiny_patch4_window7_224", (0, 1), SWIN, [(96, 4), (192, 8)]),
    ],
)
def test_outputs_are_nchw_maps_of_the_reported_shapes(model_name, out_indices, kwargs, shapes):
    backbone = build_backbone(dict(type="TimmBackbone", model_name=model_name,
                                   out_indices=out_indices, model_kwargs=kwargs))  # fmt: skip
    assert backbone.output_shape() == [FeatureShape(*s) for s in shapes]
    outs = backbone.eval()(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, c, 64 // s, 64 // s) for c, s in shapes]


def test_stages_are_the_levels_of_stride_4_and_more():
    backbone = TimmBackbone("resnet18", out_indices=(1, 2, 3), frozen_stages=2).train()
    blocks = backbone.blocks()
    assert blocks[0].stage == 0 and blocks[0].names == tuple(
        f"model.model.{n}" for n in ("conv1", "bn1", "act1", "maxpool")
    )
    assert [(b.stage, b.names) for b in blocks[1:3]] == [
        (1, ("model.model.layer1.0",)),
        (1, ("model.model.layer1.1",)),
    ]
    assert backbone.num_stages == 3  # layer4 is pruned: its level is not returned
    for name, param in backbone.named_parameters():
        frozen = name.split(".")[2] in ("conv1", "bn1", "layer1", "layer2")
        assert param.requires_grad == (not frozen), name
    assert not backbone.model.model.layer2.training and backbone.model.model.layer3.training
    # ConvNeXt: a stage's downsample layer goes with its first block
    convnext = TimmBackbone("convnext_atto", out_indices=(0, 1, 2, 3))
    stage2 = [b.names for b in convnext.blocks() if b.stage == 2]
    assert stage2[0] == ("model.model.stages.1.downsample", "model.model.stages.1.blocks.0")
    assert len(stage2) == 2 and convnext.num_stages == 4


def test_norm_eval_and_unknown_models():
    backbone = TimmBackbone("resnet18", out_indices=(1, 2), norm_eval=True).train()
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    with pytest.raises(BuildError, match="timm cannot build 'resnet_18'"):
        build_backbone(dict(type="TimmBackbone", model_name="resnet_18"))


def test_a_local_timm_state_dict_loads_and_a_wrong_one_is_refused(tmp_path):
    torch.manual_seed(0)
    classifier = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": classifier.state_dict()}, path)
    backbone = TimmBackbone("resnet18", out_indices=(1, 2), pretrained=str(path))
    assert not torch.equal(backbone.model.model.layer2[0].conv1.weight,
                           classifier.layer2[0].conv1.weight)  # fmt: skip
    backbone.init_weights()
    own = backbone.model.model.state_dict()
    assert own and all(torch.equal(v, classifier.state_dict()[k]) for k, v in own.items())

    other = tmp_path / "resnet34.pth"
    torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), other)
    with pytest.raises(
        PretrainedWeightsError,
        match=r"resnet34.pth is not a state dict of timm's 'resnet18' \(in_chans=3\): "
        r"96 keys the model lacks \(e\.g\. layer1\.2\.bn1",
    ):
        TimmBackbone("resnet18", out_indices=(1, 2), pretrained=str(other)).init_weights()
    with pytest.raises(PretrainedWeightsError, match="not found: .*missing.pth"):
        TimmBackbone("resnet18", pretrained=str(tmp_path / "missing.pth")).init_weights()
    with pytest.raises(PretrainedWeightsError, match="set model.pretrained=None"):
        TimmBackbone("resnet18", pretrained="torchvision://resnet18").init_weights()


def test_timm_download_failures_say_how_to_load_offline(monkeypatch):
    backbone = TimmBackbone("resnet18", out_indices=(1, 2), pretrained=True)
    create_model = timm.create_model

    def offline(*args, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("no network")
        return create_model(*args, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(PretrainedWeightsError, match="set pretrained='weights.pth'"):
        backbone.init_weights()


def test_a_detector_and_layer_wise_decay_on_a_timm_convnext():
    model = build_detector(
        dict(
            type="RetinaNet",
            backbone=dict(type="TimmBackbone", model_name="convnext_atto", out_indices=(1, 2, 3)),
            neck=dict(type="FPN", out_channels=16, num_outs=3),  # in_channels: the backbone's
            bbox_head=dict(
                type="RetinaHead",
                num_classes=2,
                in_channels=16,
                feat_channels=16,
                stacked_convs=1,
                anchor_generator=dict(
                    type="AnchorGenerator",
                    octave_base_scale=4,
                    scales_per_octave=1,
                    ratios=[1.0],
                    strides=[8, 16, 32],
                ),
                bbox_coder=dict(type="DeltaXYWHBBoxCoder"),
                loss_cls=dict(type="FocalLoss", use_sigmoid=True),
                loss_bbox=dict(type="L1Loss"),
            ),
        ),  # fmt: skip
        test_cfg=dict(
            nms_pre=10, score_thr=0.05, nms=dict(type="nms", iou_thr=0.5), max_per_img=5
        ),  # fmt: skip
    )
    assert model.neck.in_channels == [80, 160, 320]
    features = model.eval().extract_feat(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in features] == [(1, 16, 8, 8), (1, 16, 4, 4), (1, 16, 2, 2)]
    decay = dict(decay_rate=0.5, decay_type="stage_wise", num_layers=4)
    optimizer = build_optimizer(model, dict(type="AdamW", lr=1e-3, weight_decay=0.05,
                                            constructor="LearningRateDecayOptimizerConstructor",
                                            paramwise_cfg=decay))  # fmt: skip
    lrs = {name: s["lr"] for name, s in param_group_settings(model, optimizer).items()}
    assert lrs["backbone.model.model.stem.0.weight"] == pytest.approx(1e-3 * 0.5**5)
    assert lrs["backbone.model.model.stages.0.blocks.0.conv_dw.weight"] == pytest.approx(
        1e-3 * 0.5**4
    )
    assert lrs["backbone.model.model.stages.3.blocks.1.conv_dw.weight"] == pytest.approx(
        1e-3 * 0.5**1
    )
    assert lrs["neck.lateral_convs.0.weight"] == pytest.approx(1e-3)


def test_out_norm_normalises_each_level_outside_the_blocks():
    plain = TimmBackbone("convnext_atto", out_indices=(1, 2, 3))
    normed = TimmBackbone("convnext_atto", out_indices=(1, 2, 3), frozen_stages=4,
                          out_norm=dict(type="LN", eps=1e-6))  # fmt: skip
    normed.model.load_state_dict(plain.model.state_dict())
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        raw, outs = plain.eval()(x), normed.eval()(x)
    assert [o.shape for o in outs] == [r.shape for r in raw]
    for r, o in zip(raw, outs):  # a LayerNorm over the channels at each position (weight 1)
        mean, var = r.mean(1, keepdim=True), r.var(1, unbiased=False, keepdim=True)
        torch.testing.assert_close(o, (r - mean) / (var + 1e-6).sqrt(), rtol=1e-4, atol=1e-4)
    norm_params = {n for n, _ in normed.named_parameters() if n.startswith("out_norms.")}
    assert norm_params == {f"out_norms.{k}.{p}" for k in range(3) for p in ("weight", "bias")}
    blocked = {name for block in normed.blocks() for name in block.names}
    assert not any(name.startswith("out_norms") for name in blocked)
    # every stage frozen, the output norms still train
    trainable = {n for n, p in normed.named_parameters() if p.requires_grad}
    assert trainable == norm_params
    with pytest.raises(BuildError, match=r"out_norm must be None or dict\(type='LN'"):
        build_backbone(dict(type="TimmBackbone", model_name="convnext_atto",
                            out_norm=dict(type="BN")))  # fmt: skip
