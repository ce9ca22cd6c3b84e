"""Weights of Detectron (caffe2), detectron2 and mmdetection v1 / v2 in our layouts.

Used by ``tools/model_converters/detectron2pytorch.py`` and ``mmdet2ours.py``; the functions
here only map names and tensors (reading a Detectron pickle included), the tools write the
result with the engine's atomic checkpoint writer.

Detectron / detectron2 -> ours (``s`` a ResNet stage 2..5, ``b`` a block, ``B`` the
backbone prefix: ``backbone.`` in a detector, none in an ImageNet ResNet file, whose names
are then torchvision's, the names ``model.pretrained`` reads):

Each entry: Detectron (caffe2 blob) | detectron2 (``backbone.bottom_up.`` optional before
the backbone's names) -> ours.

- ``conv1_w`` | ``stem.conv1.weight`` -> ``B conv1.weight``
- ``res_conv1_bn_{s,b}`` | ``stem.conv1.norm.*`` -> ``B bn1.*``
- ``res{s}_{b}_branch2{a,b,c}_w`` | ``res{s}.{b}.conv{1,2,3}.weight``
  -> ``B layer{s-1}.{b}.conv{1,2,3}.weight``
- ``res{s}_{b}_branch2{a,b,c}_bn_{s,b}`` | ``res{s}.{b}.conv{1,2,3}.norm.*``
  -> ``B layer{s-1}.{b}.bn{1,2,3}.*``
- ``res{s}_{b}_branch1_w`` / ``_bn_{s,b}`` | ``res{s}.{b}.shortcut.weight`` / ``.norm.*``
  -> ``B layer{s-1}.{b}.downsample.0`` / ``.1``
- ``fc1000_*`` or ``pred_*`` | ``linear.*`` -> ``fc.*`` (the ImageNet classifier)
- ``fpn_inner_res{s}_{n}_sum[_lateral]`` | ``backbone.fpn_lateral{s}``
  -> ``neck.lateral_convs.{s-2}``
- ``fpn_res{s}_{n}_sum`` | ``backbone.fpn_output{s}`` -> ``neck.fpn_convs.{s-2}``
- ``conv_rpn_fpn2`` | ``proposal_generator.rpn_head.conv`` -> ``rpn_head.rpn_conv``
- ``rpn_cls_logits_fpn2`` | ``proposal_generator.rpn_head.objectness_logits``
  -> ``rpn_head.rpn_cls``
- ``rpn_bbox_pred_fpn2`` | ``proposal_generator.rpn_head.anchor_deltas`` -> ``rpn_head.rpn_reg``
  (Detectron's copies for levels 3-6, if stored, must equal level 2's and are dropped)
- ``fc6`` / ``fc7`` | ``roi_heads.box_head.fc1`` / ``fc2``
  -> ``roi_head.bbox_head.shared_fcs.0`` / ``.2``
- ``cls_score`` | ``roi_heads.box_predictor.cls_score`` -> ``roi_head.bbox_head.fc_cls``
- ``bbox_pred`` | ``roi_heads.box_predictor.bbox_pred`` -> ``roi_head.bbox_head.fc_reg``
- ``_[mask]_fcn{i}`` (or ``mask_fcn{i}``) | ``roi_heads.mask_head.mask_fcn{i}``
  -> ``roi_head.mask_head.convs.{2 (i-1)}``
- ``conv5_mask`` | ``roi_heads.mask_head.deconv`` -> ``roi_head.mask_head.upsample``
- ``mask_fcn_logits`` | ``roi_heads.mask_head.predictor`` -> ``roi_head.mask_head.conv_logits``
- dropped: Detectron's ``*_momentum`` (optimizer state); detectron2's ``pixel_mean``,
  ``pixel_std``, anchor-generator buffers.

Class layouts. Ours (mmdetection v2's): ``fc_cls`` has ``C + 1`` rows, the background
LAST; a class-specific ``fc_reg`` has ``4 C`` rows (class ``k`` at rows ``4k..4k+3``, none
for the background); ``conv_logits`` has ``C`` channels. Detectron puts the background at
index 0 everywhere: ``cls_score`` row 0 is moved last, ``bbox_pred``'s first 4 rows
(``4 (C + 1)`` rows; 8 when class-agnostic) and ``mask_fcn_logits``' channel 0 are dropped.
detectron2 already has our layout. The RPNs are sigmoid ones with one objectness channel and
4 deltas per anchor, anchors in the same (ratio 0.5, 1, 2) order as ours.

Detectron's BN is an affine channel (``_bn_s`` scale, ``_bn_b`` bias, no statistics): it is
written as a BN with ``running_mean = 0`` and ``running_var = 1 - eps`` (eps = 1e-5, our
norms' default), so that ``(x - 0) / sqrt(running_var + eps)`` is ``x`` exactly in float32
and our BN equals the affine. A conv bias before such a BN (``conv1_b`` in some ImageNet
files) is folded into its ``running_mean`` (``-bias``). detectron2's FrozenBN statistics are
copied as they are.

Input channels: Detectron's and detectron2's MSRA (caffe) ResNets read BGR images with the
caffe mean subtracted and no std, which is what our ``*_caffe`` configs feed
(``to_rgb=False``, mean ``[102.98, 115.95, 122.77]``): conv1 is kept as it is. With
``to_rgb=True`` its input channels are reversed, for a config that feeds RGB (the same mean
in RGB order, std 1).

mmdetection -> ours: mmdetection v2's names are ours except where mmcv's ``ConvModule``
(``X.i.conv`` / ``X.i.bn|gn``) is flattened in our ``Sequential`` layout, and the FPN's
extra convs: ``neck.lateral_convs.i.conv`` -> ``neck.lateral_convs.i`` (``.0`` conv and
``.1`` norm with a norm), ``neck.fpn_convs.j`` for ``j >=`` the number of laterals ->
``neck.extra_convs.{j - laterals}``; in a tower (``cls_convs``, ``reg_convs``, the mask
head's ``convs``, the box head's ``shared_convs``) conv ``i`` -> ``{2 i}`` (``{3 i}``, its
norm ``{3 i + 1}`` with a norm: conv, norm, ReLU); ``shared_fcs.i`` -> ``shared_fcs.{2 i}``
(Linear, ReLU); ResNet's GroupNorms ``gn{k}`` -> ``bn{k}``. mmdetection v1 had the RoI heads
at the top level (``bbox_head.*``, ``mask_head.*`` -> ``roi_head.bbox_head.*``, ...), FCOS's
``fcos_{cls,reg,centerness}`` (-> ``conv_*``), and the background at class index 0 of a
softmax classifier (``fc_cls`` row 0 moved last, a class-specific ``fc_reg``'s first 4 rows
and ``conv_logits``' channel 0 dropped); RPN, RetinaNet and FCOS classifiers are sigmoid
ones without a background in both versions. mmdetection's Cascade Mask R-CNN has a mask head
per stage (its test averages the three); ours has one, on the last stage: the last stage's
is kept. mmdetection's Swin and (mmcls's) ConvNeXt backbones are renamed to timm's names
under ``TimmBackbone`` (``backbone.model.model.``; ``mmdet_timm_backbones.py`` has the
mapping). The DETR family (mmdetection 3.x's DETR, Deformable DETR with or without
refinement and two stages, DINO) has our names except its neck, mmcv's ``ChannelMapper``:
``neck.convs.i.conv`` / ``.gn`` -> ``neck.convs.i.0`` / ``.1`` (``neck.convs.i`` without a
norm, DETR's), ``neck.extra_convs.j.conv`` / ``.gn`` -> ``neck.extra_convs.j.0`` / ``.1``;
its frozen BNs keep a ``num_batches_tracked`` that our ``FrozenBN`` drops on load.
"""

import io
import pickle
import re
from collections import OrderedDict

import numpy as np
import torch

from mmdet_like.errors import ProjectError
from mmdet_like.models.utils.mmdet_timm_backbones import MMDetBackboneError, split_timm_backbone

BN_EPS = 1e-5  # our norm layers' default eps
AFFINE_RUNNING_VAR = 1.0 - BN_EPS  # (1 - eps) + eps == 1 exactly in float32
RESNET_DEPTHS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
DETECTRON_MODELS = ("resnet", "faster_rcnn_fpn", "mask_rcnn_fpn")


class ForeignCheckpointError(ProjectError, ValueError):
    """A Detectron / detectron2 / mmdetection file that cannot be converted, with why."""


def _listed(keys, limit=6):
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


# ------------------------------------------------------------------ reading Detectron pickles

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # the bytes of arrays pickled by Python 3 with protocol 2
    ("collections", "OrderedDict"),
}


class _RefusedGlobal(Exception):
    """A pickle asked for a class outside ``_NUMPY_GLOBALS`` (its ``module.name`` is the
    message); turned into a :class:`ForeignCheckpointError` naming the file."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain types only; any other class is refused unimported."""

    def find_class(self, module, name):
        if (module, name) not in _NUMPY_GLOBALS:
            raise _RefusedGlobal(f"{module}.{name}")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):  # numpy 2's name
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def read_detectron_pickle(path):
    """The weights of a Detectron / detectron2 model-zoo pickle: ``(weights, info)``.

    ``weights`` maps blob names to numpy arrays (the dict itself, or its ``"blobs"``
    (Detectron) or ``"model"`` (detectron2) entry); ``info`` holds the file's other plain
    entries (``__author__``, ``matching_heuristics``, Detectron's ``cfg`` text). Read with
    ``encoding="latin1"`` (Detectron's Python 2 pickles) and only numpy arrays and plain
    types are accepted: any other class is refused before it is imported.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"PK\x03\x04"):
        raise ForeignCheckpointError(
            f"{path}: a PyTorch checkpoint (zip archive), not a Detectron/detectron2 pickle; "
            "for mmdetection checkpoints use tools/model_converters/mmdet2ours.py"
        )
    try:
        obj = _ArraysOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _RefusedGlobal as exc:
        raise ForeignCheckpointError(
            f"{path}: the pickle holds a Python object of class {exc} (only numpy arrays and "
            "plain types are read, so nothing in the file can run code); is it a "
            "Detectron/detectron2 weights file (.pkl)?"
        ) from None
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, ...
        detail = str(exc).strip() or type(exc).__name__
        raise ForeignCheckpointError(
            f"{path}: not a readable pickle ({type(exc).__name__}: {detail}); expected a "
            "Detectron/detectron2 weights file (.pkl), e.g. R-50.pkl or model_final.pkl"
        ) from None
    if not isinstance(obj, dict):
        raise ForeignCheckpointError(
            f"{path}: the pickle holds a {type(obj).__name__}, not a dict of weights"
        )
    info = {}
    for wrapper in ("blobs", "model"):
        if isinstance(obj.get(wrapper), dict):
            info = {k: v for k, v in obj.items() if k != wrapper}
            info["wrapper"] = wrapper
            obj = obj[wrapper]
            break
    info = {
        str(k): v for k, v in info.items() if isinstance(v, (str, int, float, bool, type(None)))
    }
    weights, bad = OrderedDict(), []
    for key, value in obj.items():
        if isinstance(value, np.ndarray) and isinstance(key, str):
            weights[key] = value
        elif isinstance(key, str) and key in ("__author__", "matching_heuristics", "cfg"):
            info.setdefault(key, value if isinstance(value, (str, bool)) else str(value))
        else:
            bad.append(f"{key!r} ({type(value).__name__})")
    if bad:
        raise ForeignCheckpointError(
            f"{path}: entries that are not weight arrays: {_listed(bad)}; expected a dict of "
            "numpy arrays (possibly under 'blobs' or 'model')"
        )
    if not weights:
        raise ForeignCheckpointError(f"{path}: holds no weight arrays")
    return weights, info


# ------------------------------------------------------------------ Detectron / detectron2

_BRANCHES = dict(branch2a="1", branch2b="2", branch2c="3", conv1="1", conv2="2", conv3="3")
_C2_PARAM = {"w": "weight", "b": "bias", "s": "weight"}
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")


def _block(stage, block, branch):
    """(conv name, norm name) of a ResNet block's branch, relative to the backbone."""
    prefix = f"layer{int(stage) - 1}.{int(block)}."
    if branch in ("branch1", "shortcut"):
        return prefix + "downsample.0", prefix + "downsample.1"
    return prefix + "conv" + _BRANCHES[branch], prefix + "bn" + _BRANCHES[branch]


def _c2_name(key):
    """Our name of a Detectron blob: ``(name, part)``; part ``"backbone"`` names are relative
    to the backbone, ``"conv_bias"`` a backbone conv's bias (folded into its BN), ``"shared"``
    a per-level copy of the shared RPN conv; ``None`` for an unknown blob."""
    m = re.match(r"^conv1_(w|b)$", key)
    if m:
        return ("conv1.weight", "backbone") if m[1] == "w" else ("conv1", "conv_bias")
    m = re.match(r"^res_conv1_bn_(s|b)$", key)
    if m:
        return "bn1." + _C2_PARAM[m[1]], "backbone"
    m = re.match(r"^res(\d)_(\d+)_(branch1|branch2[abc])_(w|b)$", key)
    if m:
        conv, _ = _block(m[1], m[2], m[3])
        return (conv + ".weight", "backbone") if m[4] == "w" else (conv, "conv_bias")
    m = re.match(r"^res(\d)_(\d+)_(branch1|branch2[abc])_bn_(s|b)$", key)
    if m:
        return _block(m[1], m[2], m[3])[1] + "." + _C2_PARAM[m[4]], "backbone"
    m = re.match(r"^(?:fc1000|pred)_(w|b)$", key)
    if m:
        return "fc." + _C2_PARAM[m[1]], "classifier"
    m = re.match(r"^fpn_inner_res(\d)_\d+_sum(?:_lateral)?_(w|b)$", key)
    if m:
        return f"neck.lateral_convs.{int(m[1]) - 2}.{_C2_PARAM[m[2]]}", "head"
    m = re.match(r"^fpn_res(\d)_\d+_sum_(w|b)$", key)
    if m:
        return f"neck.fpn_convs.{int(m[1]) - 2}.{_C2_PARAM[m[2]]}", "head"
    rpn = {"conv_rpn": "rpn_conv", "rpn_conv": "rpn_conv", "rpn_cls_logits": "rpn_cls"}
    rpn["rpn_bbox_pred"] = "rpn_reg"
    m = re.match(r"^(conv_rpn|rpn_conv|rpn_cls_logits|rpn_bbox_pred)_fpn(\d)_(w|b)$", key)
    if m:
        name = f"rpn_head.{rpn[m[1]]}.{_C2_PARAM[m[3]]}"
        return name, ("head" if m[2] == "2" else "shared")
    fixed = {
        "fc6": "roi_head.bbox_head.shared_fcs.0",
        "fc7": "roi_head.bbox_head.shared_fcs.2",
        "cls_score": "roi_head.bbox_head.fc_cls",
        "bbox_pred": "roi_head.bbox_head.fc_reg",
        "conv5_mask": "roi_head.mask_head.upsample",
        "mask_fcn_logits": "roi_head.mask_head.conv_logits",
    }
    m = re.match(r"^(fc6|fc7|cls_score|bbox_pred|conv5_mask|mask_fcn_logits)_(w|b)$", key)
    if m:
        return f"{fixed[m[1]]}.{_C2_PARAM[m[2]]}", "head"
    m = re.match(r"^(?:_\[mask\]_|mask_)fcn(\d+)_(w|b)$", key)
    if m:
        return f"roi_head.mask_head.convs.{2 * (int(m[1]) - 1)}.{_C2_PARAM[m[2]]}", "head"
    return None


def _d2_name(key):
    """As :func:`_c2_name`, for detectron2's names."""
    body = key[len("backbone.bottom_up.") :] if key.startswith("backbone.bottom_up.") else key
    m = re.match(r"^stem\.conv1\.(weight|norm\.(?:weight|bias|running_mean|running_var))$", body)
    if m:
        return ("conv1." + m[1] if m[1] == "weight" else "bn1." + m[1][5:]), "backbone"
    m = re.match(r"^res(\d)\.(\d+)\.(conv[123]|shortcut)\.(weight|norm\.\w+)$", body)
    if m and m[4] in ("weight", *(f"norm.{p}" for p in _BN_PARAMS)):
        conv, norm = _block(m[1], m[2], m[3])
        return (conv + ".weight" if m[4] == "weight" else norm + "." + m[4][5:]), "backbone"
    m = re.match(r"^linear\.(weight|bias)$", key)
    if m:
        return "fc." + m[1], "classifier"
    m = re.match(r"^backbone\.fpn_(lateral|output)(\d)\.(weight|bias)$", key)
    if m:
        kind = "lateral_convs" if m[1] == "lateral" else "fpn_convs"
        return f"neck.{kind}.{int(m[2]) - 2}.{m[3]}", "head"
    names = {
        "proposal_generator.rpn_head.conv": "rpn_head.rpn_conv",
        "proposal_generator.rpn_head.objectness_logits": "rpn_head.rpn_cls",
        "proposal_generator.rpn_head.anchor_deltas": "rpn_head.rpn_reg",
        "roi_heads.box_head.fc1": "roi_head.bbox_head.shared_fcs.0",
        "roi_heads.box_head.fc2": "roi_head.bbox_head.shared_fcs.2",
        "roi_heads.box_predictor.cls_score": "roi_head.bbox_head.fc_cls",
        "roi_heads.box_predictor.bbox_pred": "roi_head.bbox_head.fc_reg",
        "roi_heads.mask_head.deconv": "roi_head.mask_head.upsample",
        "roi_heads.mask_head.predictor": "roi_head.mask_head.conv_logits",
    }
    module, _, param = key.rpartition(".")
    if module in names and param in ("weight", "bias"):
        return f"{names[module]}.{param}", "head"
    m = re.match(r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$", key)
    if m:
        return f"roi_head.mask_head.convs.{2 * (int(m[1]) - 1)}.{m[2]}", "head"
    return None


def _d2_dropped(key):
    """detectron2 entries that are not weights of ours: pixel mean/std, cell anchors, BN
    counters (rewritten)."""
    return (
        key in ("pixel_mean", "pixel_std")
        or ".anchor_generator." in key
        or key.endswith("num_batches_tracked")
    )


def _resnet_keys(counts):
    """Our names (relative to the backbone) of a bottleneck ResNet's weights."""
    keys = ["conv1.weight", *(f"bn1.{p}" for p in _BN_PARAMS)]
    for stage, count in enumerate(counts, start=2):
        for block in range(count):
            branches = ["branch2a", "branch2b", "branch2c"] + (["branch1"] if block == 0 else [])
            for branch in branches:
                conv, norm = _block(stage, block, branch)
                keys += [conv + ".weight", *(f"{norm}.{p}" for p in _BN_PARAMS)]
    return keys


def _check_resnet(backbone, source, depth):
    """The depth of the bottleneck ResNet in ``backbone`` (our names); raises if its stages
    are not ResNet-50/101/152's or a weight is missing."""
    blocks = {}
    for key in backbone:
        m = re.match(r"^layer(\d)\.(\d+)\.", key)
        if m:
            blocks.setdefault(int(m[1]), set()).add(int(m[2]))
    if sorted(blocks) != [1, 2, 3, 4]:
        raise ForeignCheckpointError(
            f"{source}: ResNet stages res{', res'.join(str(s + 1) for s in sorted(blocks))} "
            "found; a ResNet backbone needs res2..res5"
        )
    counts = tuple(max(blocks[s]) + 1 for s in (1, 2, 3, 4))
    found = RESNET_DEPTHS.get(counts)
    if found is None:
        raise ForeignCheckpointError(
            f"{source}: a ResNet with {counts} blocks per stage, not ResNet-50/101/152 "
            f"({', '.join(f'{v}: {k}' for k, v in RESNET_DEPTHS.items())})"
        )
    if depth is not None and int(depth) != found:
        raise ForeignCheckpointError(
            f"{source}: holds a ResNet-{found} ({counts} blocks per stage), not ResNet-{depth}; "
            f"pass --depth {found} (or leave --depth out)"
        )
    missing = [k for k in _resnet_keys(counts) if k not in backbone]
    if missing:
        raise ForeignCheckpointError(
            f"{source}: ResNet-{found} weights missing: {_listed(missing)}; the file is "
            "incomplete or not a ResNet"
        )
    return found


def _detector_required(with_mask):
    keys = [f"neck.{kind}.{i}.{p}" for kind in ("lateral_convs", "fpn_convs")
            for i in range(4) for p in ("weight", "bias")]  # fmt: skip
    heads = ["rpn_head.rpn_conv", "rpn_head.rpn_cls", "rpn_head.rpn_reg"]
    heads += [f"roi_head.bbox_head.{m}" for m in ("shared_fcs.0", "shared_fcs.2")]
    heads += ["roi_head.bbox_head.fc_cls", "roi_head.bbox_head.fc_reg"]
    if with_mask:
        heads += [f"roi_head.mask_head.{m}" for m in ("convs.0", "upsample", "conv_logits")]
    return keys + [f"{h}.{p}" for h in heads for p in ("weight", "bias")]


def _class_layout(out, scheme, source):
    """Our class layout (background last, none in the box deltas and mask logits) from
    Detectron's (background first everywhere) or detectron2's (ours: only checked)."""
    head = "roi_head.bbox_head."
    rows = out[head + "fc_cls.weight"].shape[0]
    num_classes = rows - 1
    reg_rows = out[head + "fc_reg.weight"].shape[0]
    mask_key = "roi_head.mask_head.conv_logits.weight"
    mask_channels = out[mask_key].shape[0] if mask_key in out else None
    if scheme == "detectron2":
        ok_reg, ok_mask = (4 * num_classes, 4), (num_classes, 1)
    else:
        ok_reg, ok_mask = (4 * rows, 8), (rows, 1)
    if reg_rows not in ok_reg:
        raise ForeignCheckpointError(
            f"{source}: box regression has {reg_rows} rows, but the classifier's {rows} "
            f"classes (background included) need {ok_reg[0]} (class-specific) or {ok_reg[1]} "
            f"(class-agnostic) in {scheme}'s layout; the file is inconsistent"
        )
    if mask_channels is not None and mask_channels not in ok_mask:
        raise ForeignCheckpointError(
            f"{source}: mask logits have {mask_channels} channels; the classifier's {rows} "
            f"classes (background included) need {ok_mask[0]} (or 1, class-agnostic) in "
            f"{scheme}'s layout"
        )
    if scheme == "detectron2":
        return num_classes, reg_rows == 4
    for param in ("weight", "bias"):
        cls = out[f"{head}fc_cls.{param}"]
        out[f"{head}fc_cls.{param}"] = torch.cat([cls[1:], cls[:1]]).contiguous()
        out[f"{head}fc_reg.{param}"] = out[f"{head}fc_reg.{param}"][4:].contiguous()
        key = f"roi_head.mask_head.conv_logits.{param}"
        if key in out and mask_channels == rows:
            out[key] = out[key][1:].contiguous()
    return num_classes, reg_rows == 8


def convert_detectron(weights, source="checkpoint", model=None, depth=None, to_rgb=False):
    """A Detectron or detectron2 model-zoo state (blob name -> array) in our names.

    ``model``: ``"resnet"``, ``"faster_rcnn_fpn"``, ``"mask_rcnn_fpn"`` or None (found from
    the names; given, it must match them). ``depth``: 50, 101, 152 or None (found from the
    blocks; given, it must match). ``to_rgb``: reverse conv1's input channels (BGR -> RGB).

    Returns ``(state_dict, meta)``: a ``resnet`` has torchvision's names (``conv1.weight``,
    ``layer1.0.conv1.weight``, ``fc.*``: what ``model.pretrained`` reads), a detector ours
    (``backbone.*``, ``neck.*``, ``rpn_head.*``, ``roi_head.*``). Every BN gets its four
    tensors and ``num_batches_tracked`` (0).
    """
    if model is not None and model not in DETECTRON_MODELS:
        raise ForeignCheckpointError(f"model {model!r}: one of {', '.join(DETECTRON_MODELS)}")
    dotted = [k for k in weights if "." in k]
    scheme = "detectron2" if dotted else "detectron"
    if dotted and len(dotted) != len(weights):
        plain = [k for k in weights if "." not in k and k not in ("pixel_mean", "pixel_std")]
        if plain:
            raise ForeignCheckpointError(
                f"{source}: mixes detectron2 names ({dotted[0]}) and Detectron blob names "
                f"({plain[0]}); not a model-zoo file"
            )
    rename = _d2_name if scheme == "detectron2" else _c2_name
    backbone, heads, conv_bias, shared, classifier = {}, {}, {}, {}, {}
    unknown, dropped = [], []
    for key, array in weights.items():
        if (scheme == "detectron" and key.endswith("_momentum")) or (
            scheme == "detectron2" and _d2_dropped(key)
        ):
            dropped.append(key)
            continue
        named = rename(key)
        if named is None:
            unknown.append(key)
            continue
        name, part = named
        tensor = torch.from_numpy(np.ascontiguousarray(array)).clone()
        target = {"backbone": backbone, "head": heads, "conv_bias": conv_bias}
        target.update(shared=shared, classifier=classifier)
        if part == "shared":  # one per level: keyed by the blob
            shared[key] = (name, tensor)
            continue
        if name in target[part]:
            raise ForeignCheckpointError(f"{source}: two entries for {name} (one is {key})")
        target[part][name] = (tensor, key)
    if unknown:
        raise ForeignCheckpointError(
            f"{source}: {scheme} names this converter does not know: "
            f"{_listed(unknown)}; it converts ResNet-50/101/152 backbones and Faster/Mask "
            "R-CNN FPN models (no C4, GN, keypoint or cascade heads)"
        )
    for key, (name, tensor) in shared.items():  # the RPN is shared by the levels
        if name not in heads or not torch.equal(heads[name][0], tensor):
            raise ForeignCheckpointError(
                f"{source}: {key} differs from the level-2 RPN weights it should share"
            )
        dropped.append(key)
    backbone = {name: value for name, (value, _) in backbone.items()}
    for conv, (bias, key) in conv_bias.items():  # conv bias -> its BN's running mean
        norm = conv.replace("downsample.0", "downsample.1").replace("conv", "bn")
        if norm + ".weight" not in backbone:
            raise ForeignCheckpointError(f"{source}: {key}: a conv bias without a BN after it")
        mean = backbone.get(norm + ".running_mean", torch.zeros_like(bias))
        backbone[norm + ".running_mean"] = mean - bias
    is_norm = re.compile(r"(bn\d|downsample\.1)\.")
    norms = sorted({k.rsplit(".", 1)[0] for k in backbone if is_norm.search(k)})
    for norm in norms:
        for param in ("weight", "bias"):
            if f"{norm}.{param}" not in backbone:
                raise ForeignCheckpointError(f"{source}: the BN {norm} has no {param}")
        size = backbone[norm + ".weight"].shape
        backbone.setdefault(norm + ".running_mean", torch.zeros(size))
        backbone.setdefault(norm + ".running_var", torch.full(size, AFFINE_RUNNING_VAR))
        backbone[norm + ".num_batches_tracked"] = torch.tensor(0)
    found_depth = _check_resnet(backbone, source, depth)
    heads = {name: value for name, (value, _) in heads.items()}
    with_mask = any(k.startswith("roi_head.mask_head.") for k in heads)
    found = ("mask_rcnn_fpn" if with_mask else "faster_rcnn_fpn") if heads else "resnet"
    if model is not None and model != found:
        what = {"resnet": "an ImageNet ResNet (no detection heads)",
                "faster_rcnn_fpn": "a Faster R-CNN FPN (no mask head)",
                "mask_rcnn_fpn": "a Mask R-CNN FPN"}[found]  # fmt: skip
        raise ForeignCheckpointError(
            f"{source}: holds {what}, not a {model}; pass --model {found} (or leave it out)"
        )
    if found != "resnet":
        missing = [k for k in _detector_required(with_mask) if k not in heads]
        if missing:
            raise ForeignCheckpointError(
                f"{source}: {found} weights missing: {_listed(missing)} (our names); the "
                "file is incomplete or another kind of model"
            )
        rpn_cls, rpn_reg = heads["rpn_head.rpn_cls.weight"], heads["rpn_head.rpn_reg.weight"]
        if 4 * rpn_cls.shape[0] != rpn_reg.shape[0]:
            raise ForeignCheckpointError(
                f"{source}: the RPN has {rpn_cls.shape[0]} objectness and {rpn_reg.shape[0]} "
                "delta channels; ours is a sigmoid RPN (one objectness channel, 4 deltas an "
                "anchor)"
            )
    if to_rgb:
        backbone["conv1.weight"] = backbone["conv1.weight"].flip(1).contiguous()
    meta = dict(
        converted_from=scheme,
        arch=found,
        depth=found_depth,
        input_channels="RGB" if to_rgb else "BGR",
        dropped=sorted(dropped),
    )
    out = OrderedDict()
    if found == "resnet":
        out.update(sorted(backbone.items(), key=lambda kv: _order(kv[0])))
        out.update((name, value) for name, (value, _) in classifier.items())
        return out, meta
    out.update(
        ("backbone." + name, value)
        for name, value in sorted(backbone.items(), key=lambda kv: _order(kv[0]))
    )
    out.update(sorted(heads.items(), key=lambda kv: _order(kv[0])))
    if classifier:
        meta["dropped"] += [key for _, key in classifier.values()]
    meta["num_classes"], meta["reg_class_agnostic"] = _class_layout(out, scheme, source)
    return out, meta


def _order(key):
    """A sort key that orders numbers numerically (``layer1.10`` after ``layer1.9``)."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key)]


# ------------------------------------------------------------------ mmdetection v1 / v2

_TOWERS = ("cls_convs", "reg_convs", "convs", "shared_convs")
_CONV_MODULE = re.compile(
    r"^(?P<owner>.+)\.(?P<kind>lateral_convs|fpn_convs|cls_convs|reg_convs|convs|shared_convs"
    r"|extra_convs)\.(?P<index>\d+)\.(?P<part>conv|bn|gn)\.(?P<param>\w+)$"
)
# the DETR family's transformer, queries and heads (mmdetection 3.x): ours already
_LAYER = r"^(?:encoder|decoder)\.layers\.\d+\."
_MMDET_DETR = (
    _LAYER + r"(?:self_attn|cross_attn)\.attn\.(?:in_proj_weight|in_proj_bias|out_proj\.weight"
    r"|out_proj\.bias)$",
    _LAYER + r"(?:self_attn|cross_attn)\.(?:sampling_offsets|attention_weights|value_proj"
    r"|output_proj)\.(?:weight|bias)$",
    _LAYER + r"ffn\.layers\.(?:0\.0|1)\.(?:weight|bias)$",
    _LAYER + r"norms\.\d\.(?:weight|bias)$",
    r"^decoder\.(?:post_norm|norm|ref_point_head\.layers\.\d+)\.(?:weight|bias)$",
    r"^(?:query_embedding\.weight|level_embed|dn_query_generator\.label_embedding\.weight)$",
    r"^(?:reference_points_fc|memory_trans_fc|memory_trans_norm|pos_trans_fc|pos_trans_norm)"
    r"\.(?:weight|bias)$",
    r"^bbox_head\.(?:fc_cls|fc_reg|reg_ffn\.layers\.(?:0\.0|1)|cls_branches\.\d+"
    r"|reg_branches\.\d+\.[024])\.(?:weight|bias)$",
)
_MMDET_PLAIN = (  # names that are ours already (after the ConvModule and fc renames)
    r"^backbone\.(conv1|bn1)\.\w+$",
    r"^backbone\.layer\d+\.\d+\.(conv\d|bn\d|downsample\.[01])\.\w+$",
    r"^rpn_head\.(rpn_conv|rpn_cls|rpn_reg)\.(weight|bias)$",
    r"^roi_head\.bbox_head(\.\d+)?\.(fc_cls|fc_reg)\.(weight|bias)$",
    r"^roi_head\.mask_head(\.\d+)?\.(upsample|conv_logits)\.(weight|bias)$",
    r"^bbox_head\.(retina_cls|retina_reg|conv_cls|conv_reg|conv_centerness|atss_centerness)"
    r"\.(weight|bias)$",
    r"^bbox_head\.integral\.project$",  # GFL's bins (a buffer)
    r"^bbox_head\.scales\.\d+\.scale$",
    *_MMDET_DETR,
)
MMDET_VERSIONS = ("auto", "1", "2")


def _mmdet_key_version(keys):
    """1 or 2 from the names alone, or None where both versions name them alike (RPN,
    RetinaNet, FCOS with v2 names). The DETR family (a transformer ``encoder`` /
    ``decoder``) came after v1: its ``bbox_head.fc_cls`` is not v1's RoI head."""
    if any(k.startswith(("roi_head.", "encoder.", "decoder.")) for k in keys):
        return 2
    v1_heads = r"^(bbox_head(\.\d+)?\.(fc_cls|shared_fcs|shared_convs)|mask_head)\."
    if any(re.match(v1_heads, k) for k in keys) or any("fcos_" in k for k in keys):
        return 1
    return None


def mmdet_version(state_dict, meta, requested="auto", source="checkpoint"):
    """The mmdetection layout (1 or 2) of a checkpoint: ``requested`` if given (and not
    contradicted by the names), else ``meta["mmdet_version"]`` (3.x checkpoints have v2's
    names), else the names."""
    by_keys = _mmdet_key_version(state_dict)
    stored = str((meta or {}).get("mmdet_version", "")) or None
    if requested not in MMDET_VERSIONS:
        raise ForeignCheckpointError(f"--version {requested!r}: one of auto, 1, 2")
    if requested != "auto":
        version = int(requested)
    elif stored is not None:
        major = stored.split(".")[0]
        if major not in ("0", "1", "2", "3"):
            raise ForeignCheckpointError(
                f"{source}: written by mmdetection {stored}; this converter knows the v1 and "
                "v2 layouts (v3 keeps v2's names): pass --version 2 to read it as a v2 one"
            )
        version = 1 if major in ("0", "1") else 2
    else:
        version = by_keys or 2
    if by_keys is not None and by_keys != version:
        example = next(
            k for k in state_dict if k.startswith(("roi_head.", "bbox_head.", "mask_head."))
        )
        why = f"--version {requested}" if requested != "auto" else f"mmdet_version {stored}"
        raise ForeignCheckpointError(
            f"{source}: {why} says v{version}, but its names are mmdetection v{by_keys}'s "
            f"(e.g. {example}); pass --version {by_keys} (or auto)"
        )
    return version


def _mmdet_v1_to_v2(state_dict, source):
    """mmdetection v1 names and class layout -> v2's (see the module docstring)."""
    two_stage = any(
        k.startswith("rpn_head.") or re.match(r"^bbox_head(\.\d+)?\.fc_cls\.", k)
        for k in state_dict
    )
    out = OrderedDict()
    for key, value in state_dict.items():
        if two_stage and key.startswith(("bbox_head.", "mask_head.", "shared_head.")):
            key = "roi_head." + key
        key = re.sub(r"^bbox_head\.fcos_(cls|reg|centerness)\.", r"bbox_head.conv_\1.", key)
        out[key] = value
    cls_key = re.compile(r"^(roi_head\.bbox_head(?:\.\d+)?)\.fc_cls\.weight$")
    heads = [m[1] for k in out if (m := cls_key.match(k))]
    rows = None
    for head in heads:
        rows = out[f"{head}.fc_cls.weight"].shape[0]
        reg_rows = out[f"{head}.fc_reg.weight"].shape[0] if f"{head}.fc_reg.weight" in out else 4
        if reg_rows not in (4 * rows, 4):
            raise ForeignCheckpointError(
                f"{source}: {head}.fc_reg has {reg_rows} rows; v1's {rows} classes "
                f"(background first) need {4 * rows} (class-specific) or 4"
            )
        for param in ("weight", "bias"):
            cls = out[f"{head}.fc_cls.{param}"]
            out[f"{head}.fc_cls.{param}"] = torch.cat([cls[1:], cls[:1]]).contiguous()
            if reg_rows == 4 * rows:
                out[f"{head}.fc_reg.{param}"] = out[f"{head}.fc_reg.{param}"][4:].contiguous()
    for key in [k for k in out if re.match(r"^roi_head\.mask_head(\.\d+)?\.conv_logits\.", k)]:
        channels = out[key].shape[0]
        if rows is not None and channels == rows:
            out[key] = out[key][1:].contiguous()
        elif channels != 1:
            raise ForeignCheckpointError(
                f"{source}: {key} has {channels} channels; v1's {rows} classes (background "
                "first) need as many (or 1)"
            )
    return out


def _mmdet_v2_to_ours(state_dict, source):
    """mmdetection v2 names -> ours; returns ``(state_dict, notes)``."""
    with_norm = {}  # (owner, kind) -> has a norm
    laterals = {}
    for key in state_dict:
        m = _CONV_MODULE.match(key)
        if m:
            group = (m["owner"], m["kind"])
            with_norm[group] = with_norm.get(group, False) or m["part"] != "conv"
            if m["kind"] == "lateral_convs":
                laterals[m["owner"]] = max(laterals.get(m["owner"], 0), int(m["index"]) + 1)
    out, unknown, notes = OrderedDict(), [], []
    for key, value in state_dict.items():
        m = _CONV_MODULE.match(key)
        if m:
            owner, kind, index = m["owner"], m["kind"], int(m["index"])
            normed = with_norm[(owner, kind)]
            sub = "0" if m["part"] == "conv" else "1"
            # mmdetection's ChannelMapper (the DETR family's neck): ``neck.convs.i`` and
            # ``neck.extra_convs.j`` as the FPN's convs, not a tower
            if kind in _TOWERS and not (owner == "neck" and kind == "convs"):
                step = 3 if normed else 2
                slot = str(index * step + int(sub))
            else:
                if kind == "fpn_convs" and index >= laterals.get(owner, index + 1):
                    kind, index = "extra_convs", index - laterals[owner]
                slot = f"{index}.{sub}" if normed else str(index)
            out[f"{owner}.{kind}.{slot}.{m['param']}"] = value
            continue
        m = re.match(r"^(.+\.shared_fcs)\.(\d+)\.(weight|bias)$", key)
        if m:
            out[f"{m[1]}.{2 * int(m[2])}.{m[3]}"] = value
            continue
        new = re.sub(r"^backbone\.((?:layer\d+\.\d+\.)?)gn(\d)\.", r"backbone.\1bn\2.", key)
        # mmdetection 3.x's RPN detector holds its head as bbox_head
        new = re.sub(r"^bbox_head\.(rpn_conv|rpn_cls|rpn_reg)\.", r"rpn_head.\1.", new)
        # ATSS's and GFL's classifier and regressor are RetinaHead's here
        new = re.sub(r"^bbox_head\.(?:atss|gfl)_(cls|reg)\.", r"bbox_head.retina_\1.", new)
        if any(re.match(p, new) for p in _MMDET_PLAIN):
            out[new] = value
        else:
            unknown.append(key)
    if unknown:
        raise ForeignCheckpointError(
            f"{source}: names this converter does not know: {_listed(unknown)}; "
            "it converts mmdetection's RPN, Faster/Mask R-CNN, Cascade (Mask) R-CNN, RetinaNet, "
            "FCOS, ATSS and GFL on ResNet/ResNeXt-FPN (and Swin / ConvNeXt backbones), and "
            "DETR, Deformable DETR and DINO on ResNet"
        )
    stage_key = re.compile(r"^roi_head\.mask_head\.(\d+)\.")
    stages = sorted({int(m[1]) for k in out if (m := stage_key.match(k))})
    if stages:  # Cascade Mask R-CNN: a mask head per stage; ours has the last stage's
        last = f"roi_head.mask_head.{stages[-1]}."
        out = OrderedDict(
            (("roi_head.mask_head." + k[len(last) :]) if k.startswith(last) else k, v)
            for k, v in out.items()
            if k.startswith(last) or not k.startswith("roi_head.mask_head.")
        )
        notes.append(
            f"mask heads of stages {', '.join(map(str, stages[:-1]))} dropped: ours is one "
            f"mask head, stage {stages[-1]}'s (mmdetection averages the stages' masks)"
        )
    return out, notes


def _check_mmdet_layout(out, source):
    """Our class layout in a converted mmdetection state dict; returns the class count."""
    num_classes = None
    for key in [k for k in out if k.endswith("fc_cls.weight")]:
        head = key[: -len("fc_cls.weight")]
        rows = out[key].shape[0]
        num_classes = rows - 1
        reg = out.get(head + "fc_reg.weight")
        if reg is not None and reg.shape[0] not in (4 * num_classes, 4):
            raise ForeignCheckpointError(
                f"{source}: {head}fc_reg has {reg.shape[0]} rows, but {head}fc_cls's {rows} "
                f"classes (background last) need {4 * num_classes} or 4; is it a v1 "
                "checkpoint (pass --version 1)?"
            )
    logits = out.get("roi_head.mask_head.conv_logits.weight")
    if logits is not None and num_classes is not None and logits.shape[0] not in (num_classes, 1):
        raise ForeignCheckpointError(
            f"{source}: roi_head.mask_head.conv_logits has {logits.shape[0]} channels for "
            f"{num_classes} classes; is it a v1 checkpoint (pass --version 1)?"
        )
    rpn_cls, rpn_reg = out.get("rpn_head.rpn_cls.weight"), out.get("rpn_head.rpn_reg.weight")
    if rpn_cls is not None and rpn_reg is not None and 4 * rpn_cls.shape[0] != rpn_reg.shape[0]:
        raise ForeignCheckpointError(
            f"{source}: a softmax RPN ({rpn_cls.shape[0]} objectness channels for "
            f"{rpn_reg.shape[0] // 4} anchors); ours is a sigmoid RPN"
        )
    if "bbox_head.cls_branches.0.weight" in out:  # Deformable DETR, DINO: sigmoid, no background
        num_classes = out["bbox_head.cls_branches.0.weight"].shape[0]
    for key in ("bbox_head.retina_cls.weight", "bbox_head.conv_cls.weight"):
        if key in out:
            num_classes = out[key].shape[0]
            if key.startswith("bbox_head.retina"):
                # 4 numbers per anchor (GFL: a distribution of reg_max + 1 bins per side)
                per_anchor = 4 * out.get("bbox_head.integral.project", torch.ones(1)).numel()
                num_classes //= out["bbox_head.retina_reg.weight"].shape[0] // per_anchor
    return num_classes


def convert_mmdet(state_dict, meta=None, version="auto", source="checkpoint"):
    """An mmdetection v1 / v2 state dict in our names and class layout.

    Returns ``(state_dict, info)``: ``info`` has ``version`` (1 or 2), ``num_classes`` (None
    for an RPN) and ``notes`` (what was dropped, one line each).
    """
    if not isinstance(state_dict, dict) or not state_dict:
        raise ForeignCheckpointError(f"{source}: holds no weights")
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ForeignCheckpointError(f"{source}: entries that are not tensors: {_listed(bad)}")
    state_dict = OrderedDict(
        (k[len("module.") :] if k.startswith("module.") else k, v) for k, v in state_dict.items()
    )
    found = mmdet_version(state_dict, meta, version, source)
    if found == 1:
        state_dict = _mmdet_v1_to_v2(state_dict, source)
    try:
        backbone, state_dict, backbone_info = split_timm_backbone(state_dict, source)
    except MMDetBackboneError as exc:
        raise ForeignCheckpointError(str(exc)) from None
    out, notes = _mmdet_v2_to_ours(state_dict, source)
    out = OrderedDict([*backbone.items(), *out.items()])
    if backbone_info is not None:
        notes = backbone_info["notes"] + notes
    num_classes = _check_mmdet_layout(out, source)
    return out, dict(version=found, num_classes=num_classes, notes=notes)


# ------------------------------------------------------------------ against a model


def compare_with_model(state_dict, model_state, source="checkpoint", where="the model"):
    """Raise if ``state_dict`` misses a weight of ``model_state``, has one it lacks, or one
    of another shape (the converted file against a model built from a config). A BN's
    ``num_batches_tracked`` where the model's norm has statistics but no counter (a
    ``FrozenBN``, which drops it on load: mmdetection's frozen BN keeps it) is not extra."""
    missing = [k for k in model_state if k not in state_dict]
    frozen_counter = re.compile(r"^(.+)\.num_batches_tracked$")
    unexpected = [
        k for k in state_dict
        if k not in model_state
        and not ((m := frozen_counter.match(k)) and f"{m[1]}.running_var" in model_state)
    ]  # fmt: skip
    shapes = [
        f"{k} {tuple(v.shape)} vs {tuple(model_state[k].shape)}"
        for k, v in state_dict.items()
        if k in model_state and tuple(v.shape) != tuple(model_state[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {_listed(missing)}")
    if unexpected:
        problems.append(f"not in {where}: {_listed(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch (converted vs {where}): {_listed(shapes, 3)}")
    if problems:
        raise ForeignCheckpointError(
            f"{source}: the converted weights do not fit {where}: {'; '.join(problems)}. Is "
            "it the config of this model (depth, style, num_classes, class-agnostic "
            "regression, widths)?"
        )
