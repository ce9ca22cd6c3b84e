"""DINO: the contrastive denoising queries (CdnQueryGenerator) on hand-made gts with a fixed
generator, DINOHead's denoising targets and losses against a hand computation and its
matching losses against DeformableDETRHead's, the decoder's look-forward-twice gradients,
and configs/dino: each builds (narrow backbone, width 32, 2 + 2 layers, 8 queries, 3
classes), trains one step and infers with denoising off."""

from pathlib import Path

import pytest
import torch
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from mmdet_like.apis.config_check import check_config
from mmdet_like.engine import load_config
from mmdet_like.engine.optimizer import build_optimizer
from mmdet_like.models import build_detector
from mmdet_like.models.dense_heads import DeformableDETRHead, DINOHead
from mmdet_like.models.layers.transformer import CdnQueryGenerator
from mmdet_like.structures import DetDataSample, InstanceData
from mmdet_like.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from tests.models.test_deformable_detr import _shrunk

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "dino").glob("*.py"))
META = dict(img_shape=(100, 200))
FOCAL = dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)


def _gts():
    """Image 0: two gts, image 1: one (boxes in a 200 x 100 image)."""
    return [
        InstanceData(bboxes=torch.tensor([[60.0, 30, 100, 50], [100, 40, 140, 60]]),
                     labels=torch.tensor([1, 2])),
        InstanceData(bboxes=torch.tensor([[80.0, 40, 120, 60]]), labels=torch.tensor([4])),
    ]  # fmt: skip


def _generator(num_groups=None, num_dn=4, matching=3, classes=5, dims=8, seed=0, **kw):
    group_cfg = (dict(dynamic=True, num_dn_queries=num_dn) if num_groups is None
                 else dict(dynamic=False, num_groups=num_groups))  # fmt: skip
    torch.manual_seed(seed)
    gen = CdnQueryGenerator(classes, dims, matching, group_cfg=group_cfg, **kw)
    gen.generator = torch.Generator().manual_seed(seed)
    return gen


def test_cdn_shapes_layout_and_attention_mask():
    gen = _generator()  # 4 // 2 gts = 2 groups
    label_query, bbox_query, mask, meta = gen(_gts(), [META, META])
    assert meta == dict(num_denoising_queries=8, num_denoising_groups=2)
    assert label_query.shape == (2, 8, 8) and bbox_query.shape == (2, 8, 4)
    # image 1 has one gt: slot 1 of each positive and negative part is empty
    empty = torch.tensor([1, 3, 5, 7])
    assert (label_query[1, empty] == 0).all() and (bbox_query[1, empty] == 0).all()
    assert (label_query[0] != 0).any(-1).all() and (label_query[1, [0, 2, 4, 6]] != 0).all()
    rows = [
        "00001111000", "00001111000", "00001111000", "00001111000",  # group 0
        "11110000000", "11110000000", "11110000000", "11110000000",  # group 1
        "11111111000", "11111111000", "11111111000",  # matching queries
    ]  # fmt: skip
    expected = torch.tensor([[c == "1" for c in row] for row in rows])
    assert mask.dtype == torch.bool and torch.equal(mask, expected)
    # same generator seed, same queries; another seed, others
    again = _generator()(_gts(), [META, META])
    assert torch.equal(again[0], label_query) and torch.equal(again[1], bbox_query)
    other = _generator(seed=1)
    other.load_state_dict(gen.state_dict())
    assert not torch.equal(other(_gts(), [META, META])[1], bbox_query)
    # no gts in the batch: one group of none, the matching queries unmasked
    empty_gts = [InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))]
    label_query, bbox_query, mask, meta = gen(empty_gts, [META])
    assert meta == dict(num_denoising_queries=0, num_denoising_groups=1)
    assert label_query.shape == (1, 0, 8) and mask.shape == (3, 3) and not mask.any()


@pytest.mark.parametrize("scale", [1.0, 0.4])
def test_cdn_box_noise_bounds(scale):
    """Every corner coordinate of a positive moves by less than ``scale * side / 2`` from
    its gt's; of a negative by at least that and less than twice it (gts far enough from
    the border that the clamp to the image never acts)."""
    groups = 200
    gen = _generator(num_groups=groups, box_noise_scale=scale)
    _, bbox_query, _, meta = gen(_gts(), [META, META])
    assert meta == dict(num_denoising_queries=4 * groups, num_denoising_groups=groups)
    boxes = bbox_cxcywh_to_xyxy(bbox_query.sigmoid()).view(2, groups, 2, 2, 4)  # pos/neg, slot
    factor = torch.tensor([200.0, 100, 200, 100])
    for image, gt in enumerate(_gts()):
        for slot, box in enumerate(gt.bboxes / factor):
            side = (box[2:] - box[:2]).repeat(2) * scale / 2
            pos = (boxes[image, :, 0, slot] - box).abs() / side
            assert pos.max() < 1 + 1e-4 and pos.max() > 0.95
            # a negative whose corners crossed (x1 > x2) has its width clamped to the
            # inverse sigmoid's eps, so its corners are lost: keep the others (most)
            neg_boxes = boxes[image, :, 1, slot]
            kept = ((neg_boxes[:, 2:] - neg_boxes[:, :2]) > 2e-3).all(-1)
            assert kept.float().mean() > 0.5
            neg = (neg_boxes[kept] - box).abs() / side
            assert neg.min() > 1 - 1e-4 and neg.max() < 2 + 1e-4 and neg.min() < 1.05
            # the signs are random: both directions occur
            assert (boxes[image, :, 0, slot] > box).any() and (boxes[image, :, 0, slot] < box).any()


def test_cdn_label_noise_rate():
    """Labels are redrawn (uniformly, possibly to themselves) with probability
    ``label_noise_scale / 2``: over 6000 draws the changed share is within 5 standard
    deviations of ``scale / 2 * (1 - 1 / classes)``."""
    classes, groups = 80, 1500
    for scale in (0.5, 0.2):
        gen = _generator(num_groups=groups, classes=classes, label_noise_scale=scale)
        label_query, _, _, _ = gen(_gts()[:1], [META])
        weight = gen.label_embedding.weight
        labels = (label_query[0, :, None] == weight[None]).all(-1).float().argmax(-1)
        assert torch.equal(gen.label_embedding(labels), label_query[0])
        original = torch.tensor([1, 2]).repeat(2 * groups)
        rate = (labels != original).float().mean().item()
        expected = scale / 2 * (1 - 1 / classes)
        std = (expected * (1 - expected) / labels.numel()) ** 0.5
        assert abs(rate - expected) < 5 * std, (scale, rate, expected)


def _head(**kw):
    return DINOHead(num_classes=5, embed_dims=8, num_pred_layer=3, as_two_stage=True,
                    loss_cls=FOCAL, **kw)  # fmt: skip


def test_dino_head_losses():
    """Matching queries: DeformableDETRHead's losses on the same outputs; denoising queries:
    focal (1), L1 (5), GIoU (2) against known targets computed here by hand, averaged by
    the positives (G N = 6)."""
    torch.manual_seed(0)
    head = _head()
    layers, batch, num_dn, num_match = 2, 2, 8, 3
    cls = torch.randn(layers, batch, num_dn + num_match, 5, requires_grad=True)
    boxes = torch.rand(layers, batch, num_dn + num_match, 4) * 0.5 + 0.25
    dn_meta = dict(num_denoising_queries=num_dn, num_denoising_groups=2)
    gts = _gts()
    losses = head.loss(cls, boxes, gts, [META, META], dn_meta=dn_meta)
    ref_head = DeformableDETRHead(num_classes=5, embed_dims=8, num_pred_layer=3,
                                  loss_cls=FOCAL)  # fmt: skip
    reference = ref_head.loss(cls[:, :, num_dn:], boxes[:, :, num_dn:], gts, [META, META])
    for name, value in reference.items():
        torch.testing.assert_close(losses[name], value, rtol=0, atol=0)
    # denoising targets by hand: gt j of image b at queries 4 g + j (positive)
    factor = torch.tensor([200.0, 100, 200, 100])
    onehot = torch.zeros(batch, num_dn, 5)
    pos = []
    for b, gt in enumerate(gts):
        for g in range(2):
            for j in range(len(gt.labels)):
                onehot[b, 4 * g + j, gt.labels[j]] = 1
                pos.append((b, 4 * g + j, gt.bboxes[j]))
    for layer, prefix in ((0, "d0."), (1, "")):
        dn_cls, dn_boxes = cls[layer, :, :num_dn], boxes[layer, :, :num_dn]
        focal = sigmoid_focal_loss(dn_cls, onehot, alpha=0.25, gamma=2.0, reduction="sum") / 6
        pred = torch.stack([dn_boxes[b, q] for b, q, _ in pos])
        target = torch.stack([box for _, _, box in pos])
        l1 = (pred - bbox_xyxy_to_cxcywh(target / factor)).abs().sum() / 6 * 5
        giou = generalized_box_iou_loss(bbox_cxcywh_to_xyxy(pred) * factor, target,
                                        reduction="sum") / 6 * 2  # fmt: skip
        torch.testing.assert_close(losses[prefix + "dn_loss_cls"], focal, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(losses[prefix + "dn_loss_bbox"], l1, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(losses[prefix + "dn_loss_iou"], giou, rtol=1e-5, atol=1e-6)
    # no dn_meta: every query is a matching one
    plain = head.loss(cls, boxes, gts, [META, META])
    assert not any("dn_" in name for name in plain)
    reference = ref_head.loss(cls, boxes, gts, [META, META])
    torch.testing.assert_close(plain["loss_cls"], reference["loss_cls"], rtol=0, atol=0)


def _sample(h, w, n):
    sample = DetDataSample(metainfo=dict(img_shape=(h, w, 3), ori_shape=(h, w, 3),
                                         scale_factor=1.0, pad_shape=(h, w, 3)))  # fmt: skip
    boxes = torch.tensor([[4.0, 5, 40, 50], [10, 20, 30, 60]])[:n]
    sample.gt_instances = InstanceData(bboxes=boxes, labels=torch.tensor([0, 2])[:n])
    return sample


def _dino_shrunk(model_cfg):
    if model_cfg["backbone"]["type"] == "TimmBackbone":
        model_cfg["backbone"].update(pretrained=False)
        model_cfg["backbone"]["model_kwargs"].update(
            embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), drop_path_rate=0.0
        )
        model_cfg["neck"]["in_channels"] = [16, 32, 64, 128]
        in_channels = model_cfg["neck"]["in_channels"]
        model_cfg["backbone"], backbone = dict(depth=18), model_cfg["backbone"]
        _shrunk(model_cfg)
        model_cfg["backbone"] = backbone
        model_cfg["neck"]["in_channels"] = in_channels
    else:
        _shrunk(model_cfg)
    model_cfg["dn_cfg"]["group_cfg"]["num_dn_queries"] = 6  # 3 groups for 2 gts
    return model_cfg


def _build(path):
    cfg = load_config(str(path))
    model = build_detector(_dino_shrunk(cfg.model.to_dict()), cfg.train_cfg.to_dict(),
                           cfg.test_cfg.to_dict())  # fmt: skip
    model.init_weights()
    return cfg, model


def test_configs_are_there():
    assert [p.name for p in CONFIGS] == [
        "dino-4scale_r50_8xb2-12e_coco.py",
        "dino-4scale_r50_8xb2-24e_coco.py",
        "dino-4scale_r50_8xb2-36e_coco.py",
        "dino-5scale_swin-l_8xb2-12e_coco.py",
    ]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_dino_config_builds_trains_and_infers(path):
    if "swin" in path.name:
        pytest.importorskip("timm")
    cfg = load_config(str(path))
    assert check_config(cfg, str(path)) == []
    epochs, step = {"12e": (12, 11), "24e": (24, 20), "36e": (36, 30)}[path.name[-11:-8]]
    assert cfg.total_epochs == epochs and cfg.lr_config["step"] == [step]
    model_cfg = cfg.model.to_dict()
    assert model_cfg["num_queries"] == 900 and cfg.test_cfg["max_per_img"] == 300
    assert model_cfg["dn_cfg"] == dict(label_noise_scale=0.5, box_noise_scale=1.0,
                                       group_cfg=dict(dynamic=True, num_groups=None,
                                                      num_dn_queries=100))  # fmt: skip
    assert cfg.optimizer_config["grad_clip"]["max_norm"] == 0.1
    levels = 5 if "5scale" in path.name else 4
    assert model_cfg["num_feature_levels"] == levels
    cfg, model = _build(path)
    assert model.neck.num_outs == levels and model.decoder.num_levels == levels
    head = model.bbox_head
    assert len(head.reg_branches) == 3 and head.cls_branches[0] is not head.cls_branches[1]
    optimizer = build_optimizer(model, cfg.optimizer)
    names = {id(p): n for n, p in model.named_parameters()}
    trained = [(names[id(p)], g["lr"], g["weight_decay"]) for g in optimizer.param_groups
               for p in g["params"]]  # fmt: skip
    assert any(n == "dn_query_generator.label_embedding.weight" for n, _, _ in trained)
    for name, lr, decay in trained:
        assert lr == pytest.approx(1e-5 if name.startswith("backbone.") else 1e-4), name
        assert decay == pytest.approx(1e-4), name

    torch.manual_seed(0)
    samples = [_sample(64, 96, 2), _sample(80, 64, 1)]
    losses = model(img=[torch.randn(3, 64, 96), torch.randn(3, 80, 64)], data_samples=samples)
    terms = ("loss_cls", "loss_bbox", "loss_iou")
    expected = {*terms, *(f"d0.{t}" for t in terms), *(f"enc_{t}" for t in terms),
                *(f"dn_{t}" for t in terms), *(f"d0.dn_{t}" for t in terms)}  # fmt: skip
    assert set(losses) == expected and all(torch.isfinite(v) for v in losses.values())
    optimizer.zero_grad()
    sum(losses.values()).backward()
    assert model.query_embedding.weight.grad.abs().max() > 0
    label_grad = model.dn_query_generator.label_embedding.weight.grad
    assert label_grad[[0, 2]].abs().amax(1).min() > 0  # the gts' classes (and noise)
    before = model.query_embedding.weight.detach().clone()
    optimizer.step()
    assert (before - model.query_embedding.weight).abs().max() > 1e-6

    model.eval()
    result = model.predict_instances(torch.randn(1, 3, 96, 128), [_sample(96, 128, 0)])[0]
    assert result.bboxes.shape == (24, 4) and result.labels.max() < 3
    assert (result.scores[:-1] >= result.scores[1:]).all()


def test_dn_losses_reach_the_label_embedding_and_look_forward_twice():
    """The denoising losses alone give the label embedding a gradient; the last layer's box
    loss reaches the first layer's box branch (through the undetached refined boxes), while
    the last layer's hidden states do not (their reference boxes are detached); a batch
    without gts trains with no denoising query."""
    _, model = _build(CONFIGS[0])
    torch.manual_seed(0)
    samples = [_sample(64, 96, 2), _sample(80, 64, 1)]
    imgs = [torch.randn(3, 64, 96), torch.randn(3, 80, 64)]
    losses = model(img=imgs, data_samples=samples)
    dn = sum(v for k, v in losses.items() if "dn_" in k)
    dn.backward(retain_graph=True)
    assert model.dn_query_generator.label_embedding.weight.grad.abs().max() > 0
    model.zero_grad()
    losses["dn_loss_bbox"].backward()
    first, last = model.bbox_head.reg_branches[0][-1], model.bbox_head.reg_branches[1][-1]
    assert first.weight.grad.abs().max() > 0 and last.weight.grad.abs().max() > 0

    model.zero_grad()
    model.eval()  # the hidden states of layer 1 do not depend on layer 0's box branch
    batch = torch.randn(1, 3, 64, 96)
    from mmdet_like.models.detectors.detection_transformer import padding_masks

    feats = model.extract_feat(padding_masks(batch, [_sample(64, 96, 0)])[0])
    outputs = model.forward_transformer(feats, None, [_sample(64, 96, 0)])
    outputs["hidden_states"][1].sum().backward()
    assert first.weight.grad is None or first.weight.grad.abs().max() == 0
    assert outputs["references"][1].requires_grad

    model.train()
    model.zero_grad()
    losses = model(img=imgs, data_samples=[_sample(64, 96, 0), _sample(80, 64, 0)])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["dn_loss_bbox"] == 0 and losses["dn_loss_cls"] == 0
    sum(losses.values()).backward()
    assert model.dn_query_generator.label_embedding.weight.grad is not None


def test_cdn_noise_draws_names_its_settings():
    """``noise_draws`` takes "sync_free" or "mmdetection"; both give the same layout, the
    mmdetection order other draws of the same seed."""
    with pytest.raises(ValueError, match="dn_cfg.noise_draws='mmdet'"):
        _generator(noise_draws="mmdet")
    sync_free = _generator()(_gts(), [META, META])
    mmdet = _generator(noise_draws="mmdetection")(_gts(), [META, META])
    assert sync_free[3] == mmdet[3] and torch.equal(sync_free[2], mmdet[2])
    empty = torch.tensor([1, 3, 5, 7])  # image 1's empty slots stay empty either way
    assert (mmdet[1][1, empty] == 0).all() and not torch.equal(sync_free[1], mmdet[1])
