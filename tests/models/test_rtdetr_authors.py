"""The RT-DETR authors' own checkpoints and computations (lyuwenyu/RT-DETR), from fixtures
their code wrote (tests/fixtures/rtdetr_authors/, by tools/dev/make_rtdetr_authors_fixtures.py
on a checkout of their repository):

- names: every weight of their RT-DETR R18-vd and R50-vd and RT-DETRv2 R18-vd converts
  (mmdet_like/models/utils/rtdetr_authors.py) into exactly our configs' parameters, with
  their shapes; the architecture read from the weights is the configs';
- numbers: their RT-DETR R18-vd (small transformer sizes) with seeded weights, which this
  test makes again from the names and converts: in eval mode its logits and boxes on two
  photographs; in training mode (the same seed before the forward: the same denoising
  queries) every loss term of their criterion, each parameter's gradient sum and absolute
  sum, and the decoder's box-branch gradients (their look forward twice, our config's
  default) equal ours.
"""

import json
from pathlib import Path

import pytest
import torch

from mmdet_like.engine import load_config
from mmdet_like.models import build_detector
from mmdet_like.models.utils.rtdetr_authors import (
    AuthorsConversionError,
    authors_state_dict,
    convert_rtdetr_authors,
    rtdetr_authors_architecture,
)
from mmdet_like.models.utils.transformers_detr import TransformersConversionError
from mmdet_like.structures import DetDataSample, InstanceData
from tests.engine.cli_utils import load_tool

pytest.importorskip("skimage")

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "rtdetr_authors"
MAKER = load_tool("dev/make_rtdetr_authors_fixtures")
SMALL = MAKER.SMALL


def _names():
    with open(FIXTURES / "state_dict_names.json", encoding="utf-8") as f:
        return json.load(f)


def _ours(depth, v2=False, fold_norm=True):
    """Our RTDETR from configs/rtdetr at the fixtures' sizes."""
    cfg = load_config(str(ROOT / "configs" / "rtdetr" / f"rtdetr_r{depth}vd_6x_coco.py"))
    model = cfg.model.to_dict()
    width, heads, ffn = SMALL["hidden_dim"], SMALL["nhead"], SMALL["dim_feedforward"]
    model["backbone"]["fold_norm"] = fold_norm
    model["neck"].update(out_channels=width)
    model["neck"]["encoder"]["layer_cfg"]["self_attn_cfg"].update(embed_dims=width, num_heads=heads)
    model["neck"]["encoder"]["layer_cfg"]["ffn_cfg"].update(embed_dims=width,
                                                           feedforward_channels=ffn)  # fmt: skip
    layers = model["decoder"]["layer_cfg"]
    layers["self_attn_cfg"].update(embed_dims=width, num_heads=heads)
    layers["cross_attn_cfg"].update(embed_dims=width, num_heads=heads,
                                    num_points=[4, 4, 4] if v2 else 4)  # fmt: skip
    layers["ffn_cfg"].update(embed_dims=width, feedforward_channels=ffn)
    model["decoder"]["num_layers"] = SMALL["num_layers"]
    model["bbox_head"].update(num_classes=SMALL["num_classes"], embed_dims=width)
    model["dn_cfg"]["num_dn_queries"] = SMALL["num_denoising"]
    model.update(num_queries=SMALL["num_queries"], multi_scale=None)
    detector = build_detector(model, cfg.train_cfg.to_dict(), cfg.test_cfg.to_dict())
    detector.channels_last_training = False  # NCHW, as the authors' code computes
    return detector


@pytest.mark.parametrize("name", ["rtdetr_r18vd", "rtdetr_r50vd", "rtdetrv2_r18vd"])
def test_authors_names_convert_into_our_configs(name):
    shapes = _names()[name]
    weights = MAKER.fixture_weights(shapes)
    depth = int(name.rsplit("_r", 1)[1][:-2])
    v2 = name.startswith("rtdetrv2")
    if v2:  # their buffer (not a weight): 1 / 4 for each of the 3 levels' 4 points
        scale = {k: torch.full((12,), 0.25) for k in shapes if k.endswith("num_points_scale")}
        weights = dict(weights, **scale)
    arch = rtdetr_authors_architecture(weights)
    assert arch["resnet_depth"] == depth and arch["decoder_layers"] == SMALL["num_layers"]
    assert arch["num_classes"] == SMALL["num_classes"] and arch["d_model"] == SMALL["hidden_dim"]
    assert arch["expansion"] == (0.5 if depth < 50 else 1.0) and arch["denoising"]
    assert arch["points_per_level"] == ([4, 4, 4] if v2 else None)
    converted = convert_rtdetr_authors(weights)
    ours = _ours(depth, v2).state_dict()
    assert sorted(converted) == sorted(ours)
    for key, value in converted.items():
        assert value.shape == ours[key].shape, key
    assert authors_state_dict(dict(ema=dict(module=weights), model={})) is weights
    with pytest.raises(AuthorsConversionError, match="not an RT-DETR authors' checkpoint"):
        authors_state_dict(dict(state_dict={}))
    with pytest.raises(TransformersConversionError, match="of no RT-DETR"):
        convert_rtdetr_authors(dict(weights, **{"decoder.extra.weight": torch.zeros(1)}))


def _samples():
    samples = []
    for boxes, labels in MAKER.TARGETS:
        meta = dict(img_shape=(MAKER.SIZE, MAKER.SIZE, 3), ori_shape=(MAKER.SIZE, MAKER.SIZE, 3),
                    scale_factor=1.0)  # fmt: skip
        gts = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                           labels=torch.tensor(labels))  # fmt: skip
        samples.append(DetDataSample(metainfo=meta, gt_instances=gts))
    return samples


def _authors_name(name, layers):
    """Our loss name -> the authors' criterion's."""
    prefix, _, term = name.rpartition(".")
    dn, enc = term.startswith("dn_"), term.startswith("enc_")
    term = term.removeprefix("dn_").removeprefix("enc_")
    base = dict(loss_cls="loss_vfl", loss_bbox="loss_bbox", loss_iou="loss_giou")[term]
    if dn:
        return f"{base}_dn_{int(prefix[1:]) if prefix else layers - 1}"
    if enc:
        return f"{base}_aux_{layers - 1}"
    return f"{base}_aux_{int(prefix[1:])}" if prefix else base


def test_authors_rtdetr_r18vd_computes_as_ours(at_most_4_threads):
    fixture = torch.load(FIXTURES / "r18vd.pth", weights_only=True)
    weights = MAKER.fixture_weights(_names()["rtdetr_r18vd"])
    # unfolded norms: the batch norms run as theirs (folded, the eval logits move by 1e-5)
    model = _ours(18, fold_norm=False)
    model.load_state_dict(convert_rtdetr_authors(weights), strict=True)
    images, _ = MAKER.fixture_inputs()
    samples = _samples()

    model.eval()
    with torch.no_grad():
        batch, shaped = model._batch_with_shape(images, samples)
        head_inputs = model.forward_transformer(model.extract_feat(batch), None, shaped)
        logits, boxes = model.bbox_head(head_inputs["hidden_states"], head_inputs["references"])
    # measured: logits (up to 1.7) 1.1e-6 apart, boxes 2.4e-7
    torch.testing.assert_close(logits[-1], fixture["eval_logits"], rtol=0, atol=1e-4)
    torch.testing.assert_close(boxes[-1], fixture["eval_boxes"], rtol=0, atol=1e-5)

    model.train()
    torch.manual_seed(MAKER.DN_SEED)
    losses = model(img=images, data_samples=samples)
    assert len(losses) == len(fixture["losses"]) == 15
    for name, value in losses.items():  # measured: within 5.7e-6
        want = fixture["losses"][_authors_name(name, SMALL["num_layers"])]
        assert abs(value.item() - want.item()) < 1e-4, (name, value.item(), want.item())
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    arch = rtdetr_authors_architecture(weights)
    sums = convert_rtdetr_authors(fixture["grad_sums"], arch)
    assert set(sums) == set(grads)
    # measured: within 8e-6 of the absolute sum (relative) where it exceeds 1; the norm
    # biases that a batch norm follows have (mathematically) zero gradients, 1e-6 of noise
    for name, (total, absolute) in sums.items():
        got = grads[name]
        tolerance = 1e-4 * absolute.item() + 1e-5
        assert abs(got.sum().item() - total.item()) < tolerance, name
        assert abs(got.abs().sum().item() - absolute.item()) < tolerance, name
    branches = convert_rtdetr_authors(fixture["box_branch_grads"], arch)
    # look forward twice: layer 1's box loss reaches 0's branch; measured: 7.9e-6 (up to 2.7)
    for name, grad in branches.items():
        torch.testing.assert_close(grads[name], grad, rtol=0, atol=5e-5, msg=name)


def test_rtdetr2ours_tool_writes_a_checkpoint_our_model_loads(tmp_path):
    weights = MAKER.fixture_weights(_names()["rtdetr_r18vd"])
    src, dst = tmp_path / "authors.pth", tmp_path / "ours.pth"
    torch.save(dict(ema=dict(module=weights, updates=10), model={}), src)
    meta = load_tool("model_converters/rtdetr2ours").convert(str(src), str(dst))
    assert meta["converted_from"] == "the RT-DETR authors' RT-DETR"
    assert meta["architecture"]["resnet_depth"] == 18 and meta["num_classes"] == 5
    checkpoint = torch.load(dst, weights_only=True)
    model = _ours(18)
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    torch.testing.assert_close(model.backbone.stem[0].weight,
                               weights["backbone.conv1.conv1_1.conv.weight"])  # fmt: skip
