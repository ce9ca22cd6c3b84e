"""DETR's parts: positional encodings, ChannelMapper, the DETR head's targets, losses and
detections against hand computations, the padding masks (an image alone and padded in a
batch detect the same), and configs/detr/ building, training a step and inferring."""

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdet_like.datasets.pipelines import Compose
from mmdet_like.engine import load_config
from mmdet_like.engine.optimizer import build_optimizer
from mmdet_like.models import build_backbone, build_detector
from mmdet_like.registry import HEADS, NECKS, POSITIONAL_ENCODINGS, build_from_cfg
from mmdet_like.structures import DetDataSample, InstanceData

ROOT = Path(__file__).resolve().parents[2]
DETR_CONFIGS = sorted((ROOT / "configs" / "detr").glob("*.py"))


# ------------------------------------------------------------------ positional encodings


def test_sine_positional_encoding_by_hand():
    mask = torch.zeros(1, 2, 3, dtype=torch.bool)
    mask[0, :, 2] = True  # the last column is padding
    enc = build_from_cfg(dict(type="SinePositionalEncoding", num_feats=4, normalize=True),
                         POSITIONAL_ENCODINGS)  # fmt: skip
    pos = enc(mask)
    assert pos.shape == (1, 8, 2, 3)
    # row index 1..2 over height 2, column index 1..2 over width 2 (padding does not count)
    y = torch.tensor([1.0, 2.0]) / (2 + 1e-6) * 2 * math.pi
    x = torch.tensor([1.0, 2.0, 2.0]) / (2 + 1e-6) * 2 * math.pi
    dim_t = 10000 ** (torch.tensor([0.0, 0.0, 2.0, 2.0]) / 4)
    for c in range(4):
        fn = torch.sin if c % 2 == 0 else torch.cos
        torch.testing.assert_close(pos[0, c, :, 0], fn(y / dim_t[c]))
        torch.testing.assert_close(pos[0, 4 + c, 0, :], fn(x / dim_t[c]))
    # the offset (Deformable DETR's -0.5) shifts the index before normalising
    shifted = build_from_cfg(
        dict(type="SinePositionalEncoding", num_feats=4, normalize=True, offset=-0.5),
        POSITIONAL_ENCODINGS,
    )(mask)
    torch.testing.assert_close(shifted[0, 0, :, 0], torch.sin((y * 2 - 0.5 * 2 * math.pi) / 2))


def test_learned_positional_encoding_layout():
    enc = build_from_cfg(dict(type="LearnedPositionalEncoding", num_feats=3, row_num_embed=4,
                              col_num_embed=5), POSITIONAL_ENCODINGS)  # fmt: skip
    pos = enc(torch.zeros(2, 3, 4, dtype=torch.bool))
    assert pos.shape == (2, 6, 3, 4)
    torch.testing.assert_close(pos[1, :3, 2, 1], enc.col_embed.weight[1])
    torch.testing.assert_close(pos[0, 3:, 2, 1], enc.row_embed.weight[2])
    with pytest.raises(ValueError, match="exceeds its 4 x 5 embeddings"):
        enc(torch.zeros(1, 5, 4, dtype=torch.bool))


def test_positional_encodings_equal_transformers():
    detr = pytest.importorskip("transformers.models.detr.modeling_detr")
    mask = torch.zeros(2, 5, 7, dtype=torch.bool)
    mask[1, 3:, :] = True
    mask[1, :, 5:] = True
    ours = build_from_cfg(dict(type="SinePositionalEncoding", num_feats=16, normalize=True),
                          POSITIONAL_ENCODINGS)(mask)  # fmt: skip
    theirs = detr.DetrSinePositionEmbedding(16, normalize=True)(
        shape=(2, 32, 5, 7), device="cpu", dtype=torch.float32, mask=~mask
    )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    learned = build_from_cfg(dict(type="LearnedPositionalEncoding", num_feats=16),
                             POSITIONAL_ENCODINGS)  # fmt: skip
    hf = detr.DetrLearnedPositionEmbedding(16)
    hf.row_embeddings.weight.data.copy_(learned.row_embed.weight)
    hf.column_embeddings.weight.data.copy_(learned.col_embed.weight)
    theirs = hf(shape=(2, 32, 5, 7), device="cpu", dtype=torch.float32, mask=~mask)
    torch.testing.assert_close(learned(mask), theirs, rtol=0, atol=0)


# ------------------------------------------------------------------ ChannelMapper


def test_channel_mapper_levels_and_names():
    neck = build_from_cfg(
        dict(type="ChannelMapper", in_channels=[8, 16], out_channels=4, kernel_size=1,
             norm_cfg=dict(type="GN", num_groups=2), act_cfg=None, num_outs=4),
        NECKS,
    )  # fmt: skip
    outs = neck((torch.randn(2, 8, 16, 16), torch.randn(2, 16, 8, 8)))
    assert [tuple(o.shape) for o in outs] == [(2, 4, 16, 16), (2, 4, 8, 8), (2, 4, 4, 4),
                                              (2, 4, 2, 2)]  # fmt: skip
    names = set(neck.state_dict())
    assert {"convs.0.0.weight", "convs.0.1.weight", "extra_convs.0.0.weight"} <= names
    assert "convs.0.0.bias" not in names  # a conv before a norm has no bias
    assert neck.extra_convs[0][0].in_channels == 16 and neck.extra_convs[1][0].in_channels == 4
    plain = build_from_cfg(dict(type="ChannelMapper", in_channels=[8], out_channels=4,
                                kernel_size=1, act_cfg=None), NECKS)  # fmt: skip
    x = torch.randn(1, 8, 3, 3)
    torch.testing.assert_close(plain((x,))[0], torch.nn.functional.conv2d(
        x, plain.convs[0].weight, plain.convs[0].bias))  # fmt: skip
    relu = build_from_cfg(dict(type="ChannelMapper", in_channels=[8], out_channels=4), NECKS)
    assert (relu((x,))[0] >= 0).all() and relu.convs[0][0].kernel_size == (3, 3)
    with pytest.raises(Exception, match="num_outs=1 is fewer than the 2 input levels"):
        build_from_cfg(dict(type="ChannelMapper", in_channels=[8, 8], out_channels=4,
                            num_outs=1), NECKS)  # fmt: skip


# ------------------------------------------------------------------ DETRHead


def _head(**kwargs):
    return build_from_cfg(dict(type="DETRHead", num_classes=3, embed_dims=8, **kwargs), HEADS)


def test_detr_head_targets_and_losses_by_hand():
    head = _head()
    metas = [dict(img_shape=(100, 200, 3)), dict(img_shape=(50, 50, 3))]
    gts = [
        InstanceData(bboxes=torch.tensor([[20.0, 10, 100, 90], [150, 40, 190, 60]]),
                     labels=torch.tensor([2, 0])),
        InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long)),
    ]  # fmt: skip
    torch.manual_seed(0)
    cls_scores = torch.randn(2, 4, 4)
    # query 1 of image 0 sits on gt 0, query 3 on gt 1: the matching is clear
    bbox_preds = torch.rand(2, 4, 4) * 0.2 + 0.4
    bbox_preds[0, 1] = torch.tensor([60 / 200, 50 / 100, 80 / 200, 80 / 100])
    bbox_preds[0, 3] = torch.tensor([170 / 200, 50 / 100, 40 / 200, 20 / 100]) + 0.01
    targets = head.get_targets(cls_scores, bbox_preds, gts, metas)
    assert targets.pos_batch_inds.tolist() == [0, 0]
    assert targets.pos_query_inds.tolist() == [1, 3] and targets.pos_gt_inds.tolist() == [0, 1]
    assert targets.labels.tolist() == [[3, 2, 3, 0], [3, 3, 3, 3]]
    assert (targets.num_pos, targets.num_neg) == (2, 6)
    torch.testing.assert_close(targets.pos_factors, torch.tensor([[200.0, 100, 200, 100]] * 2))

    losses = head.loss_of_targets(cls_scores, bbox_preds, targets)
    weights = torch.tensor([1.0, 1.0, 1.0, 0.1])
    ce = torch.nn.functional.cross_entropy(
        cls_scores.reshape(-1, 4), targets.labels.reshape(-1), reduction="none"
    )
    w = weights[targets.labels.reshape(-1)]
    torch.testing.assert_close(losses["loss_cls"], (ce * w).sum() / (2 + 6 * 0.1))
    l1 = (bbox_preds[0, 3] - torch.tensor([170 / 200, 50 / 100, 40 / 200, 20 / 100])).abs().sum()
    torch.testing.assert_close(losses["loss_bbox"], 5 * l1 / 2, rtol=1e-5, atol=1e-6)
    # query 1 is gt 0 exactly (GIoU 1); query 3 is (151, 40.5, 193, 61.5) in pixels against
    # gt 1's (150, 40, 190, 60): intersection 39 x 19.5, union 42 * 21 + 800 - that,
    # enclosing box 43 x 21.5
    inter = 39 * 19.5
    union = 42 * 21 + 40 * 20 - inter
    giou = inter / union - (43 * 21.5 - union) / (43 * 21.5)
    torch.testing.assert_close(losses["loss_iou"], torch.tensor(2 * (1 - giou) / 2), rtol=1e-4,
                               atol=1e-6)  # fmt: skip

    # every layer gets its own assignment; names as mmdetection's
    all_losses = head.loss(torch.stack([cls_scores, cls_scores.flip(1)]),
                           torch.stack([bbox_preds, bbox_preds]), gts, metas)  # fmt: skip
    assert list(all_losses) == ["loss_cls", "loss_bbox", "loss_iou", "d0.loss_cls",
                                "d0.loss_bbox", "d0.loss_iou"]  # fmt: skip
    torch.testing.assert_close(all_losses["d0.loss_bbox"], losses["loss_bbox"])
    torch.testing.assert_close(all_losses["loss_iou"], losses["loss_iou"])


def test_detr_head_without_gts_keeps_box_losses_in_the_graph():
    head = _head()
    hidden = torch.randn(2, 1, 5, 8, requires_grad=True)
    cls_scores, bbox_preds = head(hidden)
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    losses = head.loss(cls_scores, bbox_preds, [empty], [dict(img_shape=(32, 32, 3))])
    assert losses["loss_bbox"].item() == 0 and losses["loss_iou"].item() == 0
    sum(losses.values()).backward()
    assert hidden.grad is not None and torch.isfinite(hidden.grad).all()
    # every query a no-object target (weight 0.1): the weighted sum over mmdetection's
    # average factor, num_pos + 0.1 * num_neg = 0.5, raised to 1
    ce = torch.nn.functional.cross_entropy(cls_scores[-1, 0], torch.full((5,), 3), reduction="sum")
    torch.testing.assert_close(losses["loss_cls"], 0.1 * ce / 1.0)


def test_detr_head_detections():
    head = _head(test_cfg=dict(max_per_img=2))
    logits = torch.full((1, 1, 3, 4), -5.0)
    logits[0, 0, 0, 1] = 5.0  # query 0: class 1, confident
    logits[0, 0, 1, 3] = 5.0  # query 1: no object
    logits[0, 0, 2, 2] = 1.0  # query 2: class 2, less so
    boxes = torch.tensor([[[[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1], [0.95, 0.5, 0.3, 0.2]]]])
    meta = dict(img_shape=(100, 200, 3), scale_factor=np.array([2.0, 2.0, 2.0, 2.0], np.float32))
    result = head.get_bboxes(logits, boxes, [meta], rescale=True)[0]
    assert result.labels.tolist() == [1, 2]
    probs = torch.softmax(logits[0, 0], -1)
    torch.testing.assert_close(result.scores, torch.stack([probs[0, 1], probs[2, 2]]))
    # pixels: query 0 (80, 30, 120, 70); query 2 (160, 40, 220 -> clipped 200, 60); / 2
    torch.testing.assert_close(result.bboxes, torch.tensor([[40.0, 15, 60, 35], [80, 20, 100, 30]]))
    unclipped = _head(test_cfg=dict(max_per_img=3, clip_bboxes=False, score_thr=0.5))
    result = unclipped.get_bboxes(logits, boxes, [meta], rescale=False)[0]
    assert result.labels.tolist() == [1, 2]  # query 1's best object class scores < 0.5
    torch.testing.assert_close(result.bboxes[1], torch.tensor([160.0, 40, 220, 60]))
    # a sigmoid classifier: the best (query, class) pairs
    sigmoid = _head(loss_cls=dict(type="FocalLoss", use_sigmoid=True, loss_weight=2.0),
                    test_cfg=dict(max_per_img=2))  # fmt: skip
    assert sigmoid.cls_out_channels == 3 and sigmoid.bg_cls_weight == 0
    result = sigmoid.get_bboxes(logits[..., :3], boxes, [meta])[0]
    assert result.labels.tolist() == [1, 2]
    torch.testing.assert_close(result.scores, torch.sigmoid(torch.tensor([5.0, 1.0])))


# ------------------------------------------------------------------ the detector

D = 16


def _tiny_detr(**head):
    attn = dict(embed_dims=D, num_heads=2, dropout=0.0)
    ffn = dict(embed_dims=D, feedforward_channels=32, ffn_drop=0.0)
    model = dict(
        type="DETR",
        num_queries=6,
        backbone=dict(type="ResNet", depth=18, base_channels=8, out_indices=(3,),
                      norm_cfg=dict(type="FrozenBN")),
        neck=dict(type="ChannelMapper", kernel_size=1, out_channels=D, act_cfg=None),
        encoder=dict(num_layers=2, layer_cfg=dict(self_attn_cfg=attn, ffn_cfg=ffn)),
        decoder=dict(num_layers=2, layer_cfg=dict(self_attn_cfg=attn, cross_attn_cfg=attn,
                                                  ffn_cfg=ffn)),
        positional_encoding=dict(num_feats=D // 2, normalize=True),
        bbox_head=dict(type="DETRHead", num_classes=3, embed_dims=D, **head),
    )  # fmt: skip
    torch.manual_seed(0)
    detector = build_detector(model, None, dict(max_per_img=6))
    detector.init_weights()
    return detector.eval()


def _sample(h, w):
    meta = dict(img_shape=(h, w, 3), ori_shape=(h, w, 3), pad_shape=(h, w, 3), scale_factor=1.0,
                flip=False)  # fmt: skip
    return DetDataSample(metainfo=meta)


def test_padded_image_detects_as_alone():
    """The padding masks (encoder, cross-attention, positions): an image padded in a batch
    with a larger one gives the detections it gives alone."""
    model = _tiny_detr()
    torch.manual_seed(1)
    small, large = torch.randn(3, 64, 96), torch.randn(3, 128, 128)
    alone = model.predict([small], [_sample(64, 96)])[0].pred_instances
    batched = model.predict([small, large], [_sample(64, 96), _sample(128, 128)])
    padded = batched[0].pred_instances
    torch.testing.assert_close(padded.scores, alone.scores, rtol=0, atol=1e-5)
    torch.testing.assert_close(padded.bboxes, alone.bboxes, rtol=0, atol=1e-3)
    assert torch.equal(padded.labels, alone.labels)
    # without the mask the padding changes the result: the test can tell
    batch, masks = torch.zeros(1, 3, 128, 128), None
    batch[0, :, :64, :96] = small
    from mmdet_like.models.detectors.detection_transformer import padding_masks

    _, masks = padding_masks(batch, [_sample(64, 96)])
    assert masks is not None and masks[0, 64:].all() and not masks[0, :64, :96].any()
    unmasked = model.forward_transformer(model.extract_feat(batch), None)["hidden_states"]
    masked = model.forward_transformer(model.extract_feat(batch), masks)["hidden_states"]
    assert (unmasked - masked).abs().max() > 1e-3


def test_detr_rejects_mismatched_widths():
    attn = dict(embed_dims=D, num_heads=2)
    ffn = dict(embed_dims=D, feedforward_channels=32)
    model = dict(
        type="DETR", num_queries=4,
        backbone=dict(type="ResNet", depth=18, base_channels=8, out_indices=(3,)),
        neck=dict(type="ChannelMapper", kernel_size=1, out_channels=D, act_cfg=None),
        encoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=attn, ffn_cfg=ffn)),
        decoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=attn, cross_attn_cfg=attn,
                                                  ffn_cfg=ffn)),
        positional_encoding=dict(num_feats=D),
        bbox_head=dict(type="DETRHead", num_classes=2, embed_dims=D),
    )  # fmt: skip
    with pytest.raises(Exception, match=f"set num_feats={D // 2}"):
        build_detector(model)
    model.update(
        positional_encoding=dict(num_feats=D // 2), neck=dict(model["neck"], out_channels=2 * D)
    )
    with pytest.raises(Exception, match=f"set model.neck.out_channels={D}"):
        build_detector(model)


def test_detr_export_outputs_are_its_detections():
    model = _tiny_detr()
    img = torch.randn(1, 3, 64, 96)
    spec = model.export_spec()
    assert spec.output_names == ("dets", "labels") and spec.coarsest_stride == 32
    dets, labels = model.export_forward(img)
    want = model.predict(img, [_sample(64, 96)])[0].pred_instances
    torch.testing.assert_close(dets[:, :4], want.bboxes)
    torch.testing.assert_close(dets[:, 4], want.scores)
    assert torch.equal(labels, want.labels)


# ------------------------------------------------------------------ configs/detr


def _shrunk(model_cfg):
    """A DETR config's model with a narrow ResNet-18, width 16, one layer each, 8 queries
    and 3 classes (its structure, losses and assigner as they are)."""
    model_cfg["pretrained"] = None
    model_cfg["backbone"].update(depth=18, base_channels=8)
    model_cfg["neck"].update(in_channels=[64], out_channels=D)
    for part in ("encoder", "decoder"):
        model_cfg[part]["num_layers"] = 2
        for key, sub in model_cfg[part]["layer_cfg"].items():
            sub.update(embed_dims=D)
            if key == "ffn_cfg":
                sub.update(feedforward_channels=32)
            else:
                sub.update(num_heads=2)
    model_cfg["positional_encoding"]["num_feats"] = D // 2
    model_cfg["num_queries"] = 8
    model_cfg["bbox_head"].update(num_classes=3, embed_dims=D)
    return model_cfg


@pytest.mark.parametrize("path", DETR_CONFIGS, ids=[p.name for p in DETR_CONFIGS])
def test_detr_config_builds_trains_and_infers(path):
    cfg = load_config(str(path))
    model_cfg = cfg.model.to_dict()
    assert cfg.total_epochs == 150 and cfg.lr_config["step"] == [100]
    with torch.device("meta"):  # the real backbone: its channels feed the neck
        real = build_backbone(model_cfg["backbone"])
    assert real.out_channels == model_cfg["neck"]["in_channels"] == [2048]
    assert all(not p.requires_grad for n, p in real.named_parameters()
               if n.startswith(("conv1", "layer1")))  # fmt: skip

    model = build_detector(_shrunk(model_cfg), cfg.train_cfg.to_dict(), cfg.test_cfg.to_dict())
    model.init_weights()
    optimizer = build_optimizer(model, cfg.optimizer)
    lrs = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert lrs[id(param)] == pytest.approx(1e-5 if name.startswith("backbone.") else 1e-4)
    shapes = [(64, 96), (80, 64)]
    samples = []
    for (h, w), n in zip(shapes, (2, 0)):
        sample = _sample(h, w)
        boxes = torch.tensor([[4.0, 6, 40, 50], [30, 10, 90, 60]])[:n]
        sample.gt_instances = InstanceData(bboxes=boxes, labels=torch.arange(n))
        samples.append(sample)
    model.train()
    losses = model(img=[torch.randn(3, h, w) for h, w in shapes], data_samples=samples)
    assert set(losses) == {f"{p}loss_{t}" for p in ("", "d0.") for t in ("cls", "bbox", "iou")}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optimizer_config.grad_clip.max_norm)
    optimizer.step()
    model.eval()
    results = model.predict([torch.randn(3, 40, 56)], [_sample(40, 56)], rescale=True)
    pred = results[0].pred_instances
    assert len(pred) == 8 and (pred.bboxes[:, 2] <= 56).all() and (pred.labels < 3).all()

    # the train pipeline (DETR's resize-or-crop choice) on a synthetic image
    pipeline = Compose(cfg.data.train.pipeline[2:])  # after loading
    rng = np.random.default_rng(0)
    sizes = set()
    random.seed(0)
    for _ in range(12):
        img = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        results = dict(
            img=img, img_shape=img.shape, ori_shape=img.shape, img_fields=["img"],
            gt_bboxes=np.array([[100, 100, 300, 400]], np.float32), gt_labels=np.array([0]),
            bbox_fields=["gt_bboxes"], filename="x.jpg", ori_filename="x.jpg",
        )  # fmt: skip
        out = pipeline(results)
        h, w = out["data_samples"].metainfo["img_shape"][:2]
        sizes.add((h, w))
        assert min(h, w) in range(480, 801, 32) or max(h, w) == 1333
    assert len(sizes) > 3
