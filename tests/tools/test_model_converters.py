"""tools/model_converters/detectron2pytorch.py and mmdet2ours.py on checkpoints made here.

Each test builds a tiny model of ours from a config, writes its weights in the foreign
naming scheme and class layout (the inverse mappings below, written independently of the
package's), runs the tool as a user would and checks the round trip: every key back, every
tensor equal, the class-layout moves explicitly, and the same detections from the converted
checkpoint as from the original model. The tools run in this process as their ``__main__``
blocks run them (``call_tool``); each error test runs its script once in a subprocess, where
the process (one error line, exit status 1, no traceback) is the point.

Class layouts (ours: background LAST in ``fc_cls``, ``4 C`` class-specific ``fc_reg`` rows
and ``C`` mask-logit channels, none for the background):
- Detectron (caffe2) and mmdetection v1: background FIRST in the classifier, 4 background
  rows first in a class-specific regressor, a background channel first in the mask logits.
- detectron2 and mmdetection v2: ours.
"""

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdet_like.apis.tool_utils import build_model, load_tool_config
from mmdet_like.engine.checkpoint import load_checkpoint
from mmdet_like.errors import ProjectError
from mmdet_like.models.utils import load_pretrained
from mmdet_like.structures import DetDataSample
from tests.engine.cli_utils import ROOT, run_python, run_tool_here, tool_module

DETECTRON_TOOL = ROOT / "tools" / "model_converters" / "detectron2pytorch.py"
MMDET_TOOL = ROOT / "tools" / "model_converters" / "mmdet2ours.py"
DEMO = ROOT / "configs" / "demo"
EPS = 1e-5
AFFINE_VAR = 1.0 - EPS  # Detectron's affine-channel BN as ours: (x - 0) / sqrt(1 - eps + eps)
R50_BLOCKS = (3, 4, 6, 3)

TINY_CAFFE = """
_base_ = ["{base}"]
model = dict(
    pretrained=None,
    backbone=dict(base_channels=8),  # ResNet-50, stages of 32, 64, 128, 256 channels
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(in_channels=16, fc_out_channels=32, num_classes=3),
        {mask}
    ),
)
"""
TINY_MASK = """mask_roi_extractor=dict(out_channels=16),
        mask_head=dict(in_channels=16, conv_out_channels=16, num_classes=3),"""
TINY_GN_ALL = """
_base_ = ["{root}/configs/demo/mask_rcnn_r18_fpn_demo.py"]
_gn = dict(type="GN", num_groups=4, requires_grad=True)
model = dict(
    backbone=dict(norm_cfg=_gn, norm_eval=False),
    neck=dict(norm_cfg=_gn),
    roi_head=dict(
        bbox_head=dict(type="Shared4Conv1FCBBoxHead", conv_out_channels=16, norm_cfg=_gn),
        mask_head=dict(norm_cfg=_gn),
    ),
)
"""


def _run(args, cwd, expect_rc=0, subprocess=False):
    """``python ARGS`` in ``cwd``: in this process, or with ``subprocess`` in its own; a
    failing run prints one error line and no traceback."""
    out = run_python(args, cwd, expect_rc) if subprocess else run_tool_here(args, cwd, expect_rc)
    if expect_rc:
        errors = [line for line in out.splitlines() if ": error: " in line]
        assert len(errors) == 1, out
    return out


def _caffe_config(tmp_path, with_mask=True):
    name = "mask_rcnn" if with_mask else "faster_rcnn"
    path = tmp_path / f"tiny_{name}_caffe.py"
    base = ROOT / "configs" / f"{name}_r50_caffe_fpn_1x.py"
    path.write_text(TINY_CAFFE.format(base=base, mask=TINY_MASK if with_mask else ""))
    return path


def _model(config, affine_bn=False, seed=0):
    """The config's model with random weights: every tensor distinct (biases and BN
    statistics too); ``affine_bn``: BN statistics 0 / 1 - eps (a Detectron affine channel)."""
    torch.manual_seed(seed)
    model = build_model(load_tool_config(str(config)))
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if tensor.dim() == 0:  # FCOS's scales
                tensor.fill_(1.0 + 0.1 * torch.randn(()).item())
            elif name.endswith("running_var"):
                tensor.copy_(torch.full_like(tensor, AFFINE_VAR) if affine_bn else
                             torch.rand_like(tensor) + 0.5)  # fmt: skip
            elif name.endswith("running_mean"):
                tensor.copy_(torch.zeros_like(tensor) if affine_bn else torch.randn_like(tensor))
            elif tensor.dim() == 1:  # biases, norm weights, scales: near their usual values
                base = 1.0 if re.search(r"(bn\d|downsample\.1|\.\d+\.1|gn)\.weight$", name) else 0
                tensor.copy_(base + 0.1 * torch.randn_like(tensor))
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn_like(tensor) / fan_in**0.5)
    return model.eval()


def _detect(model, seed=0):
    """Detections (boxes, scores, labels[, masks]) on a random 64x96 image."""
    torch.manual_seed(seed)
    img = torch.randn(3, 64, 96) * 50
    shape = (64, 96, 3)
    meta = dict(ori_shape=shape, img_shape=shape, pad_shape=shape, flip=False, filename="x.jpg")
    meta["scale_factor"] = np.ones(4, dtype=np.float32)
    with torch.no_grad():
        (out,) = model(img=[[img]], data_samples=[[DetDataSample(meta)]], return_loss=False,
                       rescale=True)  # fmt: skip
    pred = out.pred_instances
    return {k: getattr(pred, k) for k in pred.keys()}


def _same_detections(original, converted_path, config):
    converted = build_model(load_tool_config(str(config)))
    load_checkpoint(converted, str(converted_path), strict=True)
    expected, got = _detect(original), _detect(converted.eval())
    assert len(expected["bboxes"]) > 0
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def _check_round_trip(path, model):
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint["state_dict"]
    expected = model.state_dict()
    assert set(state) == set(expected), set(state) ^ set(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    return checkpoint


def _numpy(state):
    return {k: v.detach().numpy().copy() for k, v in state.items()}


# ------------------------------------------------------------------ Detectron (caffe2) names


def _c2_backbone(state, prefix):
    """Detectron blob names of our ResNet-50 weights (BN as affine: scale and bias only)."""
    blobs = {"conv1_w": state[prefix + "conv1.weight"]}
    blobs["res_conv1_bn_s"] = state[prefix + "bn1.weight"]
    blobs["res_conv1_bn_b"] = state[prefix + "bn1.bias"]
    for stage, count in enumerate(R50_BLOCKS, start=2):
        for block in range(count):
            ours = f"{prefix}layer{stage - 1}.{block}."
            theirs = f"res{stage}_{block}_"
            pairs = [(f"conv{k}", f"bn{k}", f"branch2{'abc'[k - 1]}") for k in (1, 2, 3)]
            if block == 0:
                pairs.append(("downsample.0", "downsample.1", "branch1"))
            for conv, norm, branch in pairs:
                blobs[f"{theirs}{branch}_w"] = state[f"{ours}{conv}.weight"]
                blobs[f"{theirs}{branch}_bn_s"] = state[f"{ours}{norm}.weight"]
                blobs[f"{theirs}{branch}_bn_b"] = state[f"{ours}{norm}.bias"]
    return blobs


def _to_detectron(state):
    """A Detectron Mask/Faster R-CNN FPN pickle's blobs (background first)."""
    blobs = _c2_backbone(state, "backbone.")
    last_block = {2: 2, 3: 3, 4: 5, 5: 2}
    for i in range(4):
        s = i + 2
        lateral = f"fpn_inner_res{s}_{last_block[s]}_sum" + ("" if s == 5 else "_lateral")
        for ours, theirs in ((f"lateral_convs.{i}", lateral),
                             (f"fpn_convs.{i}", f"fpn_res{s}_{last_block[s]}_sum")):  # fmt: skip
            blobs[theirs + "_w"] = state[f"neck.{ours}.weight"]
            blobs[theirs + "_b"] = state[f"neck.{ours}.bias"]
    pairs = {"rpn_head.rpn_conv": "conv_rpn_fpn2", "rpn_head.rpn_cls": "rpn_cls_logits_fpn2",
             "rpn_head.rpn_reg": "rpn_bbox_pred_fpn2",
             "roi_head.bbox_head.shared_fcs.0": "fc6", "roi_head.bbox_head.shared_fcs.2": "fc7",
             "roi_head.mask_head.upsample": "conv5_mask"}  # fmt: skip
    for i in range(4):
        pairs[f"roi_head.mask_head.convs.{2 * i}"] = f"_[mask]_fcn{i + 1}"
    for ours, theirs in pairs.items():
        if ours + ".weight" in state:
            blobs[theirs + "_w"] = state[ours + ".weight"]
            blobs[theirs + "_b"] = state[ours + ".bias"]
    head = "roi_head.bbox_head."
    for param, suffix in (("weight", "_w"), ("bias", "_b")):
        cls = state[f"{head}fc_cls.{param}"]
        blobs["cls_score" + suffix] = np.concatenate([cls[-1:], cls[:-1]])  # background first
        reg = state[f"{head}fc_reg.{param}"]
        background = np.random.default_rng(1).normal(size=(4, *reg.shape[1:]))
        blobs["bbox_pred" + suffix] = np.concatenate([background.astype(np.float32), reg])
        logits = state.get(f"roi_head.mask_head.conv_logits.{param}")
        if logits is not None:
            background = np.random.default_rng(2).normal(size=(1, *logits.shape[1:]))
            blobs["mask_fcn_logits" + suffix] = np.concatenate(
                [background.astype(np.float32), logits]
            )
    return blobs


def test_detectron_mask_rcnn_round_trip_and_same_detections(tmp_path):
    config = _caffe_config(tmp_path)
    model = _model(config, affine_bn=True)
    state = _numpy(model.state_dict())
    blobs = _to_detectron(state)
    blobs["conv1_w_momentum"] = np.zeros_like(blobs["conv1_w"])  # optimizer state: dropped
    blobs["rpn_cls_logits_fpn3_w"] = blobs["rpn_cls_logits_fpn2_w"]  # a shared level's copy
    with open(tmp_path / "model_final.pkl", "wb") as f:
        pickle.dump({"blobs": blobs, "cfg": "MODEL:\n  TYPE: generalized_rcnn\n"}, f, protocol=2)

    out = _run([DETECTRON_TOOL, "model_final.pkl", "out/mask.pth", "--config", config], tmp_path)
    assert "detectron ResNet-50 mask_rcnn_fpn, 3 classes (BGR input)" in out, out
    checkpoint = _check_round_trip(tmp_path / "out" / "mask.pth", model)
    meta = checkpoint["meta"]
    assert meta["converted_from"] == "detectron" and meta["source"] == "model_final.pkl"
    assert meta["arch"] == "mask_rcnn_fpn" and meta["num_classes"] == 3
    assert meta["source_config"].startswith("MODEL:")
    assert meta["dropped"] == ["conv1_w_momentum", "rpn_cls_logits_fpn3_w"]
    # the class layout, explicitly: background row 0 moved last, its deltas / mask dropped
    sd = checkpoint["state_dict"]
    assert np.array_equal(
        sd["roi_head.bbox_head.fc_cls.weight"][3].numpy(), blobs["cls_score_w"][0]
    )
    assert np.array_equal(
        sd["roi_head.bbox_head.fc_cls.bias"][:3].numpy(), blobs["cls_score_b"][1:]
    )
    assert np.array_equal(sd["roi_head.bbox_head.fc_reg.weight"].numpy(), blobs["bbox_pred_w"][4:])
    assert np.array_equal(
        sd["roi_head.mask_head.conv_logits.weight"].numpy(), blobs["mask_fcn_logits_w"][1:]
    )
    assert torch.equal(sd["backbone.bn1.running_var"], torch.full((8,), AFFINE_VAR))
    _same_detections(model, tmp_path / "out" / "mask.pth", config)


def _to_detectron2(state):
    """detectron2 model-zoo names (its class layout is ours)."""
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        m = re.match(r"^backbone\.layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.[01])\.(\w+)$", key)
        if m:
            stage, module = int(m[1]) + 1, m[3]
            name = {"downsample.0": "shortcut", "downsample.1": "shortcut.norm"}.get(module)
            name = name or (module if module.startswith("conv") else f"conv{module[2]}.norm")
            out[f"backbone.bottom_up.res{stage}.{m[2]}.{name}.{m[4]}"] = value
            continue
        m = re.match(r"^backbone\.(conv1|bn1)\.(\w+)$", key)
        if m:
            module = "conv1" if m[1] == "conv1" else "conv1.norm"
            out[f"backbone.bottom_up.stem.{module}.{m[2]}"] = value
            continue
        m = re.match(r"^neck\.(lateral|fpn)_convs\.(\d)\.(\w+)$", key)
        if m:
            kind = "fpn_lateral" if m[1] == "lateral" else "fpn_output"
            out[f"backbone.{kind}{int(m[2]) + 2}.{m[3]}"] = value
            continue
        names = {"rpn_head.rpn_conv": "proposal_generator.rpn_head.conv",
                 "rpn_head.rpn_cls": "proposal_generator.rpn_head.objectness_logits",
                 "rpn_head.rpn_reg": "proposal_generator.rpn_head.anchor_deltas",
                 "roi_head.bbox_head.shared_fcs.0": "roi_heads.box_head.fc1",
                 "roi_head.bbox_head.shared_fcs.2": "roi_heads.box_head.fc2",
                 "roi_head.bbox_head.fc_cls": "roi_heads.box_predictor.cls_score",
                 "roi_head.bbox_head.fc_reg": "roi_heads.box_predictor.bbox_pred"}  # fmt: skip
        module, _, param = key.rpartition(".")
        out[f"{names[module]}.{param}"] = value
    out["pixel_mean"] = np.array([103.53, 116.28, 123.675], np.float32).reshape(3, 1, 1)
    out["pixel_std"] = np.ones((3, 1, 1), np.float32)
    return out


def test_detectron2_faster_rcnn_round_trip_and_same_detections(tmp_path):
    config = _caffe_config(tmp_path, with_mask=False)
    model = _model(config)  # FrozenBN with real statistics: copied as they are
    weights = _to_detectron2(_numpy(model.state_dict()))
    zoo = {"model": weights, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True}
    with open(tmp_path / "model_final_d2.pkl", "wb") as f:
        pickle.dump(zoo, f, protocol=4)

    out = _run(
        [DETECTRON_TOOL, "model_final_d2.pkl", "faster.pth", "--model", "faster_rcnn_fpn",
         "--depth", "50"],
        tmp_path,
    )  # fmt: skip
    assert "detectron2 ResNet-50 faster_rcnn_fpn, 3 classes" in out, out
    checkpoint = _check_round_trip(tmp_path / "faster.pth", model)
    meta = checkpoint["meta"]
    assert meta["source_info"]["__author__"] == "Detectron2 Model Zoo"
    assert meta["dropped"] == ["pixel_mean", "pixel_std"]
    _same_detections(model, tmp_path / "faster.pth", config)


def test_detectron_imagenet_resnet_folds_conv_bias_and_reverses_channels(tmp_path):
    """An ImageNet R-50.pkl: torchvision names (what ``pretrained`` reads), the classifier
    as ``fc.*``; its conv1 bias folded into bn1's running mean; ``--to-rgb`` makes conv1
    read RGB (the same output on the channel-reversed image)."""
    config = _caffe_config(tmp_path)
    original = _model(config, affine_bn=True).backbone
    state = _numpy(original.state_dict())
    blobs = _c2_backbone(state, "")
    conv_bias = np.linspace(-1, 1, 8, dtype=np.float32)
    blobs["conv1_b"] = conv_bias  # s * (conv + b) + (bias - s * b) == s * conv + bias
    blobs["res_conv1_bn_b"] = state["bn1.bias"] - state["bn1.weight"] * conv_bias
    blobs["fc1000_w"] = np.ones((10, 256), np.float32)
    blobs["fc1000_b"] = np.zeros(10, np.float32)
    with open(tmp_path / "R-50.pkl", "wb") as f:
        pickle.dump(blobs, f, protocol=2)

    out = _run([DETECTRON_TOOL, "R-50.pkl", "r50.pth", "--to-rgb", "--config", config], tmp_path)
    assert "detectron ResNet-50 (RGB input)" in out, out
    converted = torch.load(tmp_path / "r50.pth", weights_only=True)["state_dict"]
    assert torch.equal(converted["fc.weight"], torch.ones(10, 256))
    assert torch.equal(converted["bn1.running_mean"], -torch.from_numpy(conv_bias))
    assert torch.equal(converted["conv1.weight"], original.conv1.weight.flip(1))
    assert torch.equal(converted["layer3.5.conv2.weight"], original.layer3[5].conv2.weight)

    backbone = _model(config, seed=1).backbone  # other weights, replaced by pretrained=
    missing, unexpected = load_pretrained(backbone, str(tmp_path / "r50.pth"))
    assert not missing and not unexpected
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(original(x), backbone(x.flip(1))):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def _failing(tool, tmp_path):
    """``fails(*args, one_line=False)``: the tool's error message, from the tool run as its
    ``__main__`` block runs it (one line, status 1, no traceback: ``one_line``; in a
    subprocess with ``one_line="subprocess"``) or from its ``main`` called here."""
    module = tool_module(tool)

    def fails(*args, one_line=False):
        if one_line:
            return _run([tool, *args], tmp_path, 1, subprocess=one_line == "subprocess")
        with pytest.raises(ProjectError) as info:
            module.main([str(a) for a in args])
        return str(info.value)

    return fails


def test_detectron_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _caffe_config(tmp_path)
    state = _numpy(_model(config, affine_bn=True).state_dict())
    blobs = _to_detectron(state)

    def write(name, obj):
        with open(tmp_path / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)
        return name

    fails = _failing(DETECTRON_TOOL, tmp_path)

    out = fails(write("unknown.pkl", {**blobs, "res6_0_foo_w": np.ones(2)}), "o.pth", one_line=1)
    assert "res6_0_foo_w" in out and "does not know" in out
    out = fails("missing.pkl", "o.pth", one_line="subprocess")
    assert "missing.pkl" in out and "does not exist" in out
    (tmp_path / "notes.txt").write_text("not weights\n")
    assert "not a readable pickle" in fails("notes.txt", "o.pth")
    torch.save({"state_dict": {}}, tmp_path / "torch.pth")
    assert "mmdet2ours.py" in fails("torch.pth", "o.pth")
    from datetime import date  # any class but numpy arrays is refused, never imported

    assert "datetime.date" in fails(write("object.pkl", {"conv1_w": date(2020, 1, 1)}), "o.pth")
    out = fails(write("mask.pkl", blobs), "o.pth", "--model", "faster_rcnn_fpn", one_line=True)
    assert "Mask R-CNN FPN, not a faster_rcnn_fpn" in out and "--model mask_rcnn_fpn" in out
    assert "not ResNet-101" in fails("mask.pkl", "o.pth", "--depth", "101")
    incomplete = {k: v for k, v in blobs.items() if k != "res4_2_branch2b_w"}
    assert "layer3.2.conv2.weight" in fails(write("cut.pkl", incomplete), "o.pth")
    (tmp_path / "wrong").mkdir()
    wrong = _caffe_config(tmp_path / "wrong")
    wrong.write_text(wrong.read_text().replace("num_classes=3", "num_classes=5"))
    out = fails("mask.pkl", "o.pth", "--config", wrong)
    assert "shape mismatch" in out and "fc_cls.weight (4, 32) vs (6, 32)" in out
    assert not (tmp_path / "o.pth").exists()


# ------------------------------------------------------------------ mmdetection names


def _to_mmdet_v2(state):
    """mmdetection v2 names: mmcv ConvModules (``.conv`` / ``.gn``), the FPN's extra convs
    after its output convs, ``shared_fcs`` without ReLUs."""
    laterals = len({k.split(".")[2] for k in state if k.startswith("neck.lateral_convs.")})
    towers = {}
    for key in state:
        m = re.match(r"^(.+\.(?:cls_convs|reg_convs|convs|shared_convs))\.(\d+)\.", key)
        if m and int(m[2]) % 3 == 1 and key.endswith("weight") and state[key].ndim == 1:
            towers[m[1]] = 3  # conv, norm, ReLU
    out = {}
    for key, value in state.items():
        m = re.match(r"^(.+\.(?:cls_convs|reg_convs|convs|shared_convs))\.(\d+)\.(\w+)$", key)
        if m:
            step = towers.get(m[1], 2)
            part = "conv" if int(m[2]) % step == 0 else "gn"
            out[f"{m[1]}.{int(m[2]) // step}.{part}.{m[3]}"] = value
            continue
        m = re.match(
            r"^neck\.(lateral_convs|fpn_convs|extra_convs)\.(\d+)\.(?:([01])\.)?(\w+)$", key
        )
        if m:
            kind, index = m[1], int(m[2])
            if kind == "extra_convs":
                kind, index = "fpn_convs", index + laterals
            part = "gn" if m[3] == "1" else "conv"
            out[f"neck.{kind}.{index}.{part}.{m[4]}"] = value
            continue
        m = re.match(r"^(.+\.shared_fcs)\.(\d+)\.(\w+)$", key)
        if m:
            out[f"{m[1]}.{int(m[2]) // 2}.{m[3]}"] = value
            continue
        m = re.match(r"^backbone\.(.*)bn(\d)\.(weight|bias)$", key)
        if m and f"backbone.{m[1]}bn{m[2]}.running_mean" not in state:
            out[f"backbone.{m[1]}gn{m[2]}.{m[3]}"] = value  # a GroupNorm: mmdetection's gn{k}
            continue
        out[key] = value
    return out


def _to_mmdet_v1(v2):
    """mmdetection v1: RoI heads at the top level, background first (classifier, a
    class-specific regressor, mask logits), FCOS's ``fcos_*`` layers."""
    out = {}
    for key, value in v2.items():
        key = key[len("roi_head.") :] if key.startswith("roi_head.") else key
        key = re.sub(r"^bbox_head\.conv_(cls|reg|centerness)\.", r"bbox_head.fcos_\1.", key)
        if key.endswith(("fc_cls.weight", "fc_cls.bias")):
            value = torch.cat([value[-1:], value[:-1]])
        elif key.endswith(("fc_reg.weight", "fc_reg.bias")) and value.shape[0] > 4:
            value = torch.cat([torch.randn(4, *value.shape[1:]), value])
        elif re.search(r"conv_logits\.(weight|bias)$", key):
            value = torch.cat([torch.randn(1, *value.shape[1:]), value])
        out[key] = value
    return out


MMDET_CASES = {  # name: (config, mmdetection version, with meta)
    "mask_rcnn_v2": (DEMO / "mask_rcnn_r18_fpn_demo.py", 2, True),
    "gn_all_mask_rcnn_v2": ("gn_all", 2, True),
    "retinanet_v2": (DEMO / "retinanet_r18_fpn_demo.py", 2, False),
    "cascade_mask_rcnn_v2": (DEMO / "cascade_mask_rcnn_r18_fpn_demo.py", 2, True),
    "mask_rcnn_v1": (DEMO / "mask_rcnn_r18_fpn_demo.py", 1, True),
    "fcos_v1": (DEMO / "fcos_r18_fpn_demo.py", 1, False),  # version from the names
    # written by mmengine: no mmdet_version, the classes in dataset_meta; v2's names
    "mask_rcnn_v3": (DEMO / "mask_rcnn_r18_fpn_demo.py", 3, True),
}


@pytest.mark.parametrize("case", sorted(MMDET_CASES))
def test_mmdet_round_trip_and_same_detections(case, tmp_path):
    config, version, with_meta = MMDET_CASES[case]
    if config == "gn_all":
        config = tmp_path / "gn_all.py"
        config.write_text(TINY_GN_ALL.format(root=ROOT))
    model = _model(config)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    mmdet = _to_mmdet_v2(state)
    cascade = "cascade" in case
    if cascade:  # a mask head per stage; ours is the last stage's
        mask = {k: v for k, v in mmdet.items() if k.startswith("roi_head.mask_head.")}
        for k, v in mask.items():
            del mmdet[k]
            tail = k[len("roi_head.mask_head.") :]
            for stage in (0, 1):
                mmdet[f"roi_head.mask_head.{stage}.{tail}"] = torch.randn_like(v)
            mmdet[f"roi_head.mask_head.2.{tail}"] = v
    if version == 1:
        mmdet = _to_mmdet_v1(mmdet)
    checkpoint = {"state_dict": {f"module.{k}": v for k, v in mmdet.items()}}
    classes = ("circle", "rectangle", "triangle", "star")
    if with_meta and version == 3:
        checkpoint["meta"] = dict(mmengine_version="0.10.7", dataset_meta=dict(classes=classes),
                                  epoch=12)  # fmt: skip
    elif with_meta:
        checkpoint["meta"] = dict(mmdet_version=f"{version}.3.0", CLASSES=classes, epoch=12,
                                  config="model = dict(type='MaskRCNN')")  # fmt: skip
    torch.save(checkpoint, tmp_path / "mmdet.pth")

    out = _run([MMDET_TOOL, "mmdet.pth", "ours.pth", "--config", config], tmp_path)
    version = min(version, 2)  # 3.x keeps v2's names and layout
    assert f"mmdetection v{version} checkpoint, 4 classes" in out, out
    converted = _check_round_trip(tmp_path / "ours.pth", model)
    meta = converted["meta"]
    assert meta["converted_from"] == f"mmdetection v{version}" and meta["num_classes"] == 4
    if with_meta:
        assert meta["CLASSES"] == list(classes) and meta["epoch"] == 12
    if cascade:
        assert "stages 0, 1 dropped" in out and len(meta["notes"]) == 1
    if version == 1 and "mask" in case:  # explicitly: v1's background row 0 moved last
        sd = converted["state_dict"]
        assert torch.equal(
            sd["roi_head.bbox_head.fc_cls.weight"][4], mmdet["bbox_head.fc_cls.weight"][0]
        )
        assert torch.equal(sd["roi_head.bbox_head.fc_reg.bias"], mmdet["bbox_head.fc_reg.bias"][4:])
        logits = mmdet["mask_head.conv_logits.weight"]
        assert torch.equal(sd["roi_head.mask_head.conv_logits.weight"], logits[1:])
    _same_detections(model, tmp_path / "ours.pth", config)


def test_mmdet_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = _model(DEMO / "mask_rcnn_r18_fpn_demo.py")
    v2 = _to_mmdet_v2(model.state_dict())
    run = _failing(MMDET_TOOL, tmp_path)

    def fails(state, *args, meta=None, one_line=False):
        torch.save({"state_dict": state, **({"meta": meta} if meta else {})}, tmp_path / "in.pth")
        return run("in.pth", "o.pth", *args, one_line=one_line)

    out = fails({**v2, "roi_head.bbox_head.cls_fcs.0.weight": torch.ones(2)}, one_line=True)
    assert "roi_head.bbox_head.cls_fcs.0.weight" in out and "does not know" in out
    out = fails(_to_mmdet_v1(v2), "--version", "2")
    assert "mmdetection v1's" in out and "--version 1" in out
    out = fails(v2, meta=dict(mmdet_version="1.0.0"))
    assert "mmdet_version 1.0.0 says v1" in out
    out = fails(v2, meta=dict(mmdet_version="4.0.0"))
    assert "mmdetection 4.0.0" in out and "--version 2" in out
    out = run("missing.pth", "o.pth", one_line="subprocess")
    assert "does not exist" in out
    torch.save({"weights": torch.ones(2)}, tmp_path / "foreign.pth")
    assert "no 'state_dict'" in run("foreign.pth", "o.pth")
    (tmp_path / "text.pth").write_text("hello\n")
    assert "a text file" in run("text.pth", "o.pth")
    layout = {**v2, "roi_head.bbox_head.fc_reg.weight": torch.ones(24, 512)}  # 4 * (4 + 2)
    assert "fc_reg has 24 rows" in fails(layout, "--version", "2")
    assert not (tmp_path / "o.pth").exists()


def test_tools_live_in_the_package():
    for tool in (DETECTRON_TOOL, MMDET_TOOL):
        text = Path(tool).read_text()
        assert "sys.path" not in text and "run_tool(main)" in text
