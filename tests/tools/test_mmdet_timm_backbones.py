"""mmdetection's Swin / ConvNeXt backbone names -> timm's under TimmBackbone
(mmdet_like/models/utils/mmdet_timm_backbones.py, through mmdet2ours.py).

The mmdetection side is written here from timm's actual parameter names of tiny models
(a reduced Swin-T, a reduced ConvNeXt-T, convnext_atto), by an inverse mapping written
independently of the package's: the round trip must give every key back with its tensor
unchanged. Patch merging is checked by what it computes: mmdetection's unfold-ordered
merge (written here with ``F.unfold``) equals timm's with the converted weights. No real
mmdetection checkpoint is used (none can be downloaded here).
"""

import re

import pytest
import torch
import torch.nn.functional as F

from mmdet_like.apis.tool_utils import build_model, load_tool_config
from mmdet_like.models.backbones import TimmBackbone
from mmdet_like.models.utils.foreign_checkpoints import ForeignCheckpointError, convert_mmdet
from mmdet_like.models.utils.mmdet_timm_backbones import split_timm_backbone
from tests.engine.cli_utils import ROOT
from tests.tools.test_model_converters import (
    MMDET_TOOL,
    _check_round_trip,
    _run,
    _same_detections,
    _to_mmdet_v2,
)

timm = pytest.importorskip("timm")

SWIN_KWARGS = dict(strict_img_size=False, always_partition=True, embed_dim=16,
                   depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2))  # fmt: skip
CONVNEXT_T_KWARGS = dict(dims=(16, 32, 64, 128), depths=(1, 2, 3, 1))
PREFIX = "backbone.model.model."
TINY_DETECTOR = """
_base_ = ["{config}"]
model = dict(
    backbone=dict(pretrained=False, model_kwargs=dict({kwargs}, drop_path_rate=0.0)),
    neck=dict(out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(in_channels=16, fc_out_channels=32, num_classes=4),
        mask_roi_extractor=dict(out_channels=16),
        mask_head=dict(in_channels=16, conv_out_channels=16, num_classes=4),
    ),
)
"""


def _distinct(state, seed=0):
    """A copy of ``state`` with random values (every tensor distinct)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) for k, v in state.items()}


def _timm_backbone_state(model_name, kwargs, out_indices=(0, 1, 2, 3), seed=0):
    backbone = TimmBackbone(model_name, out_indices=out_indices, model_kwargs=kwargs,
                            out_norm=dict(type="LN"))  # fmt: skip
    return _distinct({f"backbone.{k}": v for k, v in backbone.state_dict().items()}, seed)


def _mmdet_relative_position_index(window):
    """mmdetection's WindowMSA index: sums of double-step sequences, flipped."""
    steps = (torch.arange(window)[:, None] * (2 * window - 1) + torch.arange(window)).reshape(1, -1)
    return (steps + steps.T).flip(1)


def _timm_to_unfold_order(tensor):
    """timm's merged channels (slot * C + c, slots (0,0) (1,0) (0,1) (1,1) as (dy, dx)) ->
    mmdetection's unfolded ones (c * 4 + 2 dy + dx)."""
    *lead, merged = tensor.shape
    slots = tensor.reshape(*lead, 4, merged // 4)
    by_position = slots[..., [0, 2, 1, 3], :]  # position 2 dy + dx takes slot (dy, dx)
    return by_position.transpose(-1, -2).reshape(*lead, merged)


def to_mmdet_swin(state):
    """Our TimmBackbone Swin weights in mmdetection's SwinTransformer names."""
    out = {}
    for key, value in state.items():
        if key.startswith("backbone.out_norms."):
            k, param = key.split(".")[2:]
            out[f"backbone.norm{k}.{param}"] = value
            continue
        name = key[len(PREFIX) :]
        name = name.replace("patch_embed.proj.", "patch_embed.projection.")
        m = re.match(r"^layers\.(\d+)\.downsample\.(.+)$", name)
        if m:  # timm merges at the start of a stage, mmdetection at the end of the previous
            out[f"backbone.stages.{int(m[1]) - 1}.downsample.{m[2]}"] = _timm_to_unfold_order(value)
            continue
        name = re.sub(r"^layers\.", "stages.", name)
        name = name.replace(".attn.", ".attn.w_msa.")
        name = name.replace(".mlp.fc1.", ".ffn.layers.0.0.").replace(".mlp.fc2.", ".ffn.layers.1.")
        out["backbone." + name] = value
        if name.endswith("relative_position_bias_table"):
            window = (round(value.shape[0] ** 0.5) + 1) // 2
            index_key = "backbone." + name.replace("bias_table", "index")
            out[index_key] = _mmdet_relative_position_index(window)
    return out


def to_mmdet_convnext(state):
    """Our TimmBackbone ConvNeXt weights in mmcls's ConvNeXt names."""
    out = {}
    for key, value in state.items():
        if key.startswith("backbone.out_norms."):
            k, param = key.split(".")[2:]
            out[f"backbone.norm{k}.{param}"] = value
            continue
        name = key[len(PREFIX) :]
        name = re.sub(r"^stem\.", "downsample_layers.0.", name)
        name = re.sub(r"^stages\.(\d+)\.downsample\.", r"downsample_layers.\1.", name)
        name = re.sub(r"^stages\.(\d+)\.blocks\.(\d+)\.", r"stages.\1.\2.", name)
        for theirs, ours in (("depthwise_conv", "conv_dw"), ("pointwise_conv1", "mlp.fc1"),
                             ("pointwise_conv2", "mlp.fc2")):  # fmt: skip
            name = name.replace(f".{ours}.", f".{theirs}.")
        out["backbone." + name] = value
    return out


CASES = {
    "swin": ("swin_tiny_patch4_window7_224", SWIN_KWARGS, to_mmdet_swin),
    "convnext_t": ("convnext_tiny", CONVNEXT_T_KWARGS, to_mmdet_convnext),
    "convnext_atto": ("convnext_atto", {}, to_mmdet_convnext),  # 1x1-conv MLPs
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_backbone_names_round_trip_exactly(case):
    model_name, kwargs, to_mmdet = CASES[case]
    ours = _timm_backbone_state(model_name, kwargs)
    mmdet = to_mmdet(ours)
    assert not any(k.startswith(PREFIX) for k in mmdet)
    head = {"neck.lateral_convs.0.conv.weight": torch.ones(2)}
    backbone, rest, info = split_timm_backbone({**mmdet, **head})
    assert rest == head and info["kind"] == case.split("_")[0]
    assert set(backbone) == set(ours), set(backbone) ^ set(ours)
    for key, value in ours.items():
        assert backbone[key].shape == value.shape and torch.equal(backbone[key], value), key
    # the converted weights load into the TimmBackbone they came from, every shape equal
    model = TimmBackbone(model_name, out_indices=(0, 1, 2, 3), model_kwargs=kwargs,
                         out_norm=dict(type="LN"))  # fmt: skip
    model.load_state_dict({k[len("backbone.") :]: v for k, v in backbone.items()}, strict=True)


def test_swin_names_are_mmdetections():
    mmdet = to_mmdet_swin(_timm_backbone_state("swin_tiny_patch4_window7_224", SWIN_KWARGS))
    for key in ("backbone.patch_embed.projection.weight", "backbone.patch_embed.norm.bias",
                "backbone.stages.0.blocks.1.attn.w_msa.relative_position_bias_table",
                "backbone.stages.0.blocks.1.attn.w_msa.relative_position_index",
                "backbone.stages.2.blocks.0.attn.w_msa.qkv.weight",
                "backbone.stages.3.blocks.1.ffn.layers.0.0.bias",
                "backbone.stages.3.blocks.1.ffn.layers.1.weight",
                "backbone.stages.0.downsample.reduction.weight",
                "backbone.norm3.weight"):  # fmt: skip
        assert key in mmdet, key
    assert "backbone.stages.3.downsample.norm.weight" not in mmdet  # the last stage has none
    index = mmdet["backbone.stages.0.blocks.0.attn.w_msa.relative_position_index"]
    # mmdetection's index is timm's: the bias tables are read as they are
    swin = TimmBackbone("swin_tiny_patch4_window7_224", model_kwargs=SWIN_KWARGS)
    assert torch.equal(index, swin.model.model.layers[2].blocks[1].attn.relative_position_index)


def test_patch_merging_computes_mmdetections_unfolded_merge():
    torch.manual_seed(0)
    merge = timm.models.swin_transformer.PatchMerging(dim=8, out_dim=16).eval()
    theirs = dict(  # mmdetection's: LayerNorm and reduction over unfolded channels
        norm_weight=torch.randn(32), norm_bias=torch.randn(32), reduction=torch.randn(16, 32)
    )
    state = {
        "backbone.stages.0.downsample.norm.weight": theirs["norm_weight"],
        "backbone.stages.0.downsample.norm.bias": theirs["norm_bias"],
        "backbone.stages.0.downsample.reduction.weight": theirs["reduction"],
        "backbone.stages.0.blocks.0.attn.w_msa.qkv.weight": torch.ones(1),
    }
    converted, _, _ = split_timm_backbone(state)
    merge.load_state_dict({k[len(PREFIX + "layers.1.downsample.") :]: v
                           for k, v in converted.items() if ".downsample." in k})  # fmt: skip
    x = torch.randn(2, 6, 10, 8)  # (N, H, W, C)
    unfolded = F.unfold(x.permute(0, 3, 1, 2), kernel_size=2, stride=2).transpose(1, 2)
    normed = F.layer_norm(unfolded, (32,), theirs["norm_weight"], theirs["norm_bias"])
    expected = (normed @ theirs["reduction"].T).reshape(2, 3, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(merge(x), expected, rtol=1e-5, atol=1e-5)
        # unconverted (mmdetection's order as it is), the merge differs
        merge.reduction.weight.copy_(theirs["reduction"])
        merge.norm.weight.copy_(theirs["norm_weight"])
        merge.norm.bias.copy_(theirs["norm_bias"])
        assert not torch.allclose(merge(x), expected, atol=1e-3)


@pytest.mark.parametrize(
    "config, kwargs, to_mmdet",
    [
        ("swin/mask_rcnn_swin-t-p4-w7_fpn_1x_coco.py", SWIN_KWARGS, to_mmdet_swin),
        ("convnext/mask_rcnn_convnext-t_p4_w7_fpn_fp16_ms-crop_3x_coco.py", CONVNEXT_T_KWARGS,
         to_mmdet_convnext),
    ],
    ids=["swin", "convnext"],
)  # fmt: skip
def test_mmdet2ours_converts_a_mask_rcnn_and_detects_the_same(config, kwargs, to_mmdet, tmp_path):
    config_path = tmp_path / "tiny.py"
    arguments = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    config_path.write_text(TINY_DETECTOR.format(config=ROOT / "configs" / config, kwargs=arguments))
    torch.manual_seed(0)
    model = build_model(load_tool_config(str(config_path))).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    backbone = {k: v for k, v in state.items() if k.startswith("backbone.")}
    mmdet = {**to_mmdet(backbone),
             **_to_mmdet_v2({k: v for k, v in state.items() if k not in backbone})}  # fmt: skip
    torch.save({"state_dict": mmdet, "meta": dict(mmdet_version="2.25.0")}, tmp_path / "in.pth")
    out = _run([MMDET_TOOL, "in.pth", "ours.pth", "--config", config_path], tmp_path)
    assert "mmdetection v2 checkpoint, 4 classes" in out and "Not yet checked against" in out
    _check_round_trip(tmp_path / "ours.pth", model)
    _same_detections(model, tmp_path / "ours.pth", config_path)


def test_errors_name_the_weights():
    mmdet = to_mmdet_swin(_timm_backbone_state("swin_tiny_patch4_window7_224", SWIN_KWARGS))
    unknown = {**mmdet, "backbone.stages.0.blocks.0.attn.w_msa.rope.weight": torch.ones(1)}
    with pytest.raises(ForeignCheckpointError, match=r"SwinTransformer: .*w_msa\.rope\.weight"):
        convert_mmdet(unknown, source="x.pth")
    index = "backbone.stages.1.blocks.0.attn.w_msa.relative_position_index"
    flipped = {**mmdet, index: mmdet[index].flip(0)}
    with pytest.raises(ForeignCheckpointError, match="not the standard Swin relative position"):
        convert_mmdet(flipped, source="x.pth")
    with pytest.raises(ForeignCheckpointError, match="absolute position embedding"):
        convert_mmdet({**mmdet, "backbone.absolute_pos_embed": torch.ones(1)}, source="x.pth")
    convnext = to_mmdet_convnext(_timm_backbone_state("convnext_atto", {}))
    with pytest.raises(ForeignCheckpointError, match="both Swin .* and ConvNeXt"):
        convert_mmdet({**mmdet, **convnext}, source="x.pth")
