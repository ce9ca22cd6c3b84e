"""mmdetection's Swin and ConvNeXt backbone weights in timm's names, for ``TimmBackbone``.

``tools/model_converters/mmdet2ours.py`` (through ``convert_mmdet``) calls
:func:`split_timm_backbone`: the backbone's weights of an mmdetection checkpoint with a
``SwinTransformer`` (mmdetection's own) or a ``ConvNeXt`` (mmcls's, ``type='mmcls.ConvNeXt'``)
backbone are renamed to the timm model's names under ``TimmBackbone``'s prefix,
``backbone.model.model.`` (``S``, ``B``: stage and block numbers, ``p``: ``weight`` /
``bias``):

Swin (mmdetection) -> timm ``swin_*_patch4_window7_224``:

- ``backbone.patch_embed.projection.p`` -> ``patch_embed.proj.p``;
  ``backbone.patch_embed.norm.p`` -> ``patch_embed.norm.p``
- ``backbone.stages.S.blocks.B.`` -> ``layers.S.blocks.B.``, inside it ``norm1``, ``norm2``
  as they are, ``attn.w_msa.qkv`` / ``attn.w_msa.proj`` -> ``attn.qkv`` / ``attn.proj``,
  ``attn.w_msa.relative_position_bias_table`` -> ``attn.relative_position_bias_table``,
  ``ffn.layers.0.0`` / ``ffn.layers.1`` -> ``mlp.fc1`` / ``mlp.fc2``;
  ``attn.w_msa.relative_position_index`` (a buffer timm computes) is checked to be the
  standard Swin index, then dropped
- ``backbone.stages.S.downsample.{norm,reduction}`` (patch merging at the END of stage ``S``)
  -> ``layers.{S+1}.downsample.{norm,reduction}`` (timm merges at the START of the next
  stage). mmdetection gathers each 2x2 patch with ``nn.Unfold``: its ``4 C`` merged channels
  are channel-major (``c * 4 + 2 dy + dx``); timm's (the original Swin's) are position-major
  in the order (0, 0), (1, 0), (0, 1), (1, 1) as (dy, dx). The norm's weight and bias and the
  reduction's input columns are permuted from the first order into the second.

ConvNeXt (mmcls, as mmdetection's ConvNeXt configs build it) -> timm ``convnext_*``:

- ``backbone.downsample_layers.0.{0,1}.p`` -> ``stem.{0,1}.p`` (4x4 conv, LayerNorm)
- ``backbone.downsample_layers.S.{0,1}.p`` (``S >= 1``) -> ``stages.S.downsample.{0,1}.p``
  (LayerNorm, 2x2 conv)
- ``backbone.stages.S.B.`` -> ``stages.S.blocks.B.``, inside it ``depthwise_conv`` ->
  ``conv_dw``, ``norm`` as it is, ``pointwise_conv1`` / ``pointwise_conv2`` -> ``mlp.fc1`` /
  ``mlp.fc2`` (Linear layers on both sides for ConvNeXt-T/S/B), ``gamma`` as it is

Both: the output norms ``backbone.norm{i}`` (one LayerNorm per returned level ``i``) ->
``backbone.out_norms.{k}``, ``k`` the level's position among the returned ones: the config's
``TimmBackbone`` needs ``out_norm=dict(type="LN", eps=...)`` (1e-5 Swin, 1e-6 ConvNeXt) and the
same ``out_indices``.

The mapping is written from the two naming schemes and tested on state dicts made from
timm's parameter names (``tests/tools/test_mmdet_timm_backbones.py``); it has not been checked
against a checkpoint released by mmdetection (none can be downloaded where it was written).
"""

import re
from collections import OrderedDict

import torch

from mmdet_like.errors import ProjectError

TIMM_PREFIX = "backbone.model.model."
OUT_NORM_PREFIX = "backbone.out_norms."
_PARAM = r"(weight|bias)"
_SWIN_BLOCK_PARTS = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attn.w_msa.qkv": "attn.qkv",
    "attn.w_msa.proj": "attn.proj",
    "ffn.layers.0.0": "mlp.fc1",
    "ffn.layers.1": "mlp.fc2",
}
_CONVNEXT_BLOCK_PARTS = {
    "depthwise_conv": "conv_dw",
    "norm": "norm",
    "pointwise_conv1": "mlp.fc1",
    "pointwise_conv2": "mlp.fc2",
}
# mmdetection's unfolded channel position 2 dy + dx -> timm's (dy, dx) slot: (0, 0) 0,
# (0, 1) 2, (1, 0) 1, (1, 1) 3 (the permutation is its own inverse)
_UNFOLD_TO_TIMM_SLOTS = (0, 2, 1, 3)


class MMDetBackboneError(ProjectError, ValueError):
    """An mmdetection Swin / ConvNeXt backbone whose weights cannot be renamed, with why."""


def _listed(keys, limit=6):
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def mmdet_backbone_kind(keys):
    """``"swin"``, ``"convnext"`` or ``None`` (another backbone) from a state dict's names."""
    swin = any(
        k.startswith("backbone.patch_embed.projection.") or ".attn.w_msa." in k for k in keys
    )
    convnext = any(k.startswith("backbone.downsample_layers.") for k in keys)
    if swin and convnext:
        raise MMDetBackboneError(
            "the checkpoint has both Swin (patch_embed.projection, attn.w_msa) and ConvNeXt "
            "(downsample_layers) backbone names"
        )
    return "swin" if swin else "convnext" if convnext else None


def swin_relative_position_index(window):
    """The (window², window²) index of the original Swin (and timm) into a
    ``(2 window - 1)²``-row relative position bias table."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return rel[0] * (2 * window - 1) + rel[1]


def unfold_to_timm_order(tensor):
    """Patch-merging channels (the last dimension, ``4 C``) from mmdetection's unfolded
    order (``c * 4 + 2 dy + dx``) into timm's (``slot * C + c``)."""
    *lead, merged = tensor.shape
    channels = merged // 4
    by_position = tensor.reshape(*lead, channels, 4).transpose(-1, -2)  # (..., 4, C)
    return by_position[..., list(_UNFOLD_TO_TIMM_SLOTS), :].reshape(*lead, merged).contiguous()


def _out_norm_names(state_dict):
    """``{mmdetection name: our name}`` of the output norms ``backbone.norm{i}.p``."""
    levels = sorted(
        {int(m[1]) for k in state_dict if (m := re.match(r"^backbone\.norm(\d+)\.", k))}
    )
    names = {}
    for position, level in enumerate(levels):
        for param in ("weight", "bias"):
            names[f"backbone.norm{level}.{param}"] = f"{OUT_NORM_PREFIX}{position}.{param}"
    return names


def _swin_name(key):
    """timm's name (without the prefix) of a Swin backbone weight, ``"merge"`` marking a patch
    merging weight to reorder, or ``None``."""
    m = re.match(rf"^backbone\.patch_embed\.(projection|norm)\.{_PARAM}$", key)
    if m:
        return f"patch_embed.{'proj' if m[1] == 'projection' else 'norm'}.{m[2]}", None
    parts = "|".join(re.escape(p) for p in _SWIN_BLOCK_PARTS)
    m = re.match(rf"^backbone\.stages\.(\d+)\.blocks\.(\d+)\.({parts})\.{_PARAM}$", key)
    if m:
        return f"layers.{m[1]}.blocks.{m[2]}.{_SWIN_BLOCK_PARTS[m[3]]}.{m[4]}", None
    table = "relative_position_bias_table"
    m = re.match(rf"^backbone\.stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.{table}$", key)
    if m:
        return f"layers.{m[1]}.blocks.{m[2]}.attn.{table}", None
    merging = r"(norm\.weight|norm\.bias|reduction\.weight)"
    m = re.match(rf"^backbone\.stages\.(\d+)\.downsample\.{merging}$", key)
    if m:
        return f"layers.{int(m[1]) + 1}.downsample.{m[2]}", "merge"
    return None


def _convnext_name(key):
    """timm's name (without the prefix) of a ConvNeXt backbone weight, or ``None``."""
    m = re.match(rf"^backbone\.downsample_layers\.(\d+)\.([01])\.{_PARAM}$", key)
    if m:
        where = "stem" if int(m[1]) == 0 else f"stages.{int(m[1])}.downsample"
        return f"{where}.{m[2]}.{m[3]}", None
    parts = "|".join(_CONVNEXT_BLOCK_PARTS)
    m = re.match(rf"^backbone\.stages\.(\d+)\.(\d+)\.({parts})\.{_PARAM}$", key)
    if m:
        return f"stages.{m[1]}.blocks.{m[2]}.{_CONVNEXT_BLOCK_PARTS[m[3]]}.{m[4]}", None
    m = re.match(r"^backbone\.stages\.(\d+)\.(\d+)\.gamma$", key)
    if m:
        return f"stages.{m[1]}.blocks.{m[2]}.gamma", None
    return None


def _check_relative_position_index(key, index, source):
    window = round(index.shape[-1] ** 0.5)
    expected = swin_relative_position_index(window)
    if tuple(index.shape) != tuple(expected.shape) or not torch.equal(index.long(), expected):
        raise MMDetBackboneError(
            f"{source}: {key} is not the standard Swin relative position index of a "
            f"{window}x{window} window, so its bias table cannot be read as timm's"
        )


def split_timm_backbone(state_dict, source="checkpoint"):
    """Rename an mmdetection Swin / ConvNeXt backbone for ``TimmBackbone``.

    Returns ``(backbone, rest, info)``: ``backbone`` the renamed backbone weights (our names),
    ``rest`` the other entries (unchanged), ``info`` ``dict(kind, notes)``; for any other
    backbone ``({}, state_dict, None)``.
    """
    kind = mmdet_backbone_kind(state_dict)
    if kind is None:
        return OrderedDict(), state_dict, None
    if "backbone.absolute_pos_embed" in state_dict:
        raise MMDetBackboneError(
            f"{source}: a Swin with an absolute position embedding (use_abs_pos_embed=True); "
            "timm's Swin has none"
        )
    name_of = _swin_name if kind == "swin" else _convnext_name
    out_norms = _out_norm_names(state_dict)
    backbone, rest, unknown = OrderedDict(), OrderedDict(), []
    for key, value in state_dict.items():
        if not key.startswith("backbone."):
            rest[key] = value
            continue
        if key in out_norms:
            backbone[out_norms[key]] = value
            continue
        if kind == "swin" and key.endswith(".attn.w_msa.relative_position_index"):
            _check_relative_position_index(key, value, source)
            continue
        found = name_of(key)
        if found is None:
            unknown.append(key)
            continue
        name, what = found
        backbone[TIMM_PREFIX + name] = unfold_to_timm_order(value) if what == "merge" else value
    if unknown:
        what = "mmdetection's SwinTransformer" if kind == "swin" else "mmcls's ConvNeXt"
        raise MMDetBackboneError(
            f"{source}: backbone names this converter does not know for {what}: {_listed(unknown)}"
        )
    title = "Swin" if kind == "swin" else "ConvNeXt"
    eps = "1e-5" if kind == "swin" else "1e-6"
    notes = [
        f"{title} backbone renamed to timm's names under {TIMM_PREFIX}; its "
        f"{len(out_norms) // 2} output norms backbone.norm{{i}} -> {OUT_NORM_PREFIX}{{k}} "
        f"(the config's TimmBackbone needs out_norm=dict(type='LN', eps={eps})). Not yet "
        "checked against a checkpoint released by mmdetection"
    ]
    if kind == "swin":
        notes.append(
            "timm's Swin pads a feature map to whole windows after the cyclic shift, "
            "mmdetection's before it: where a map's side is not a multiple of the window "
            "(7), the border windows differ from mmdetection's"
        )
    return backbone, rest, dict(kind=kind, notes=notes)
