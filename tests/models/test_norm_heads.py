"""Norms in the heads: ConvFCBBoxHead (and its fixed layouts Shared2FC, Shared4Conv1FC,
BBoxHead), FCNMaskHead(norm_cfg) and RPNHead(norm_cfg): shapes, norm layers present and
trained, state-dict names unchanged without a norm, and the normed RPN's dense training."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models import build_head
from mmdet_like.models.roi_heads import (
    BBoxHead,
    ConvFCBBoxHead,
    FCNMaskHead,
    Shared2FCBBoxHead,
    Shared4Conv1FCBBoxHead,
)
from mmdet_like.registry import BuildError
from mmdet_like.structures import DetDataSample, InstanceData

NORMS = {
    "none": None,
    "BN": dict(type="BN"),
    "SyncBN": dict(type="SyncBN"),  # a BN without a process group (CPU, one process)
    "GN": dict(type="GN", num_groups=4),
}
NORM_TYPES = {"BN": nn.BatchNorm2d, "SyncBN": nn.SyncBatchNorm, "GN": nn.GroupNorm}
NUM_CLASSES = 3


def norm_layers(module):
    return [
        m for m in module.modules() if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm))
    ]


def random_targets(num_rois, generator):
    labels = torch.randint(0, NUM_CLASSES + 1, (num_rois,), generator=generator)
    labels[:2] = torch.tensor([0, NUM_CLASSES])  # a positive and a background RoI
    positive = (labels < NUM_CLASSES).float()
    bbox_targets = torch.randn(num_rois, 4, generator=generator)
    return labels, torch.ones(num_rois), bbox_targets, positive[:, None].expand(-1, 4)


def check_batch_norm_statistics_train_only(module, run):
    """BN running statistics move in train mode and stay put in eval mode."""
    norms = [m for m in norm_layers(module) if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms
    module.train()
    counts = [int(norm.num_batches_tracked) for norm in norms]
    means = [norm.running_mean.clone() for norm in norms]
    run()
    for norm, count, mean in zip(norms, counts, means):
        assert int(norm.num_batches_tracked) == count + 1
        assert not torch.equal(norm.running_mean, mean)
    before = [norm.running_mean.clone() for norm in norms]
    module.eval()
    run()
    for norm, mean in zip(norms, before):
        torch.testing.assert_close(norm.running_mean, mean, rtol=0, atol=0)


# ----------------------------------------------------------------------------- box heads
def test_shared2fc_state_dict_names_are_unchanged():
    head = build_head(
        dict(type="Shared2FCBBoxHead", in_channels=2, roi_feat_size=3, fc_out_channels=8)
    )
    assert list(head.state_dict()) == [
        "shared_fcs.0.weight",
        "shared_fcs.0.bias",
        "shared_fcs.2.weight",
        "shared_fcs.2.bias",
        "fc_cls.weight",
        "fc_cls.bias",
        "fc_reg.weight",
        "fc_reg.bias",
    ]
    assert head.shared_fcs[0].in_features == 2 * 3 * 3


def test_shared2fc_is_convfc_with_two_fcs():
    kwargs = dict(in_channels=2, roi_feat_size=3, fc_out_channels=8, num_classes=NUM_CLASSES)
    torch.manual_seed(0)
    fixed = Shared2FCBBoxHead(**kwargs)
    torch.manual_seed(0)
    general = ConvFCBBoxHead(num_shared_convs=0, num_shared_fcs=2, **kwargs)
    x = torch.randn(5, 2, 3, 3)
    for ours, expected in zip(fixed(x), general(x)):
        torch.testing.assert_close(ours, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="Shared2FCBBoxHead: num_shared_fcs is fixed"):
        Shared2FCBBoxHead(num_shared_fcs=3, **kwargs)


@pytest.mark.parametrize("norm", list(NORMS))
@pytest.mark.parametrize("with_avg_pool", [False, True])
def test_convfc_head_shapes_and_norms(norm, with_avg_pool):
    torch.manual_seed(0)
    head = build_head(
        dict(
            type="ConvFCBBoxHead",
            num_shared_convs=2,
            num_shared_fcs=1,
            in_channels=6,
            roi_feat_size=5,
            conv_out_channels=8,
            fc_out_channels=16,
            norm_cfg=NORMS[norm],
            with_avg_pool=with_avg_pool,
            num_classes=NUM_CLASSES,
        )
    )
    convs = [m for m in head.shared_convs if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 2
    assert head.shared_fcs[0].in_features == (8 if with_avg_pool else 8 * 5 * 5)
    if norm == "none":
        assert not norm_layers(head) and all(c.bias is not None for c in convs)
    else:
        norms = norm_layers(head)
        assert len(norms) == 2 and all(isinstance(n, NORM_TYPES[norm]) for n in norms)
        assert all(c.bias is None for c in convs)
    x = torch.randn(4, 6, 5, 5)
    cls_score, bbox_pred = head(x)
    assert cls_score.shape == (4, NUM_CLASSES + 1) and bbox_pred.shape == (4, 4 * NUM_CLASSES)
    if norm in ("BN", "SyncBN"):
        check_batch_norm_statistics_train_only(head, lambda: head(x))


def test_convfc_head_class_agnostic_and_conv_init():
    head = ConvFCBBoxHead(
        in_channels=4, roi_feat_size=3, num_shared_convs=1, num_shared_fcs=0,
        conv_out_channels=64, num_classes=NUM_CLASSES, reg_class_agnostic=True,
    )  # fmt: skip
    assert head.fc_cls.in_features == 64 * 9
    assert head(torch.randn(2, 4, 3, 3))[1].shape == (2, 4)
    # kaiming normal, fan_out: std sqrt(2 / (64 * 3 * 3))
    std = head.shared_convs[0].weight.std().item()
    assert abs(std - (2 / (64 * 9)) ** 0.5) < 0.2 * (2 / (64 * 9)) ** 0.5


def test_shared4conv1fc_with_gn_trains_a_step():
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    head = build_head(
        dict(
            type="Shared4Conv1FCBBoxHead",
            in_channels=8,
            roi_feat_size=4,
            conv_out_channels=16,
            fc_out_channels=32,
            norm_cfg=dict(type="GN", num_groups=4, requires_grad=True),
            num_classes=NUM_CLASSES,
        )
    )
    assert isinstance(head, Shared4Conv1FCBBoxHead)
    assert sum(isinstance(m, nn.Conv2d) for m in head.shared_convs) == 4
    assert len(norm_layers(head)) == 4 and len(head.shared_fcs) == 2  # one fc + ReLU
    assert "shared_convs.1.weight" in head.state_dict()  # the first GN
    x = torch.randn(10, 8, 4, 4, generator=generator)
    targets = random_targets(10, generator)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.05)
    first = None
    for _ in range(3):
        optimizer.zero_grad()
        losses = head.loss(*head(x), *targets)
        total = losses["loss_cls"] + losses["loss_bbox"]
        first = total.item() if first is None else first
        total.backward()
        for name, param in head.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        optimizer.step()
    assert head.loss(*head(x), *targets)["loss_cls"].item() < first


def test_bbox_head_average_pools_res5_features():
    torch.manual_seed(0)
    head = build_head(
        dict(
            type="BBoxHead", with_avg_pool=True, in_channels=32, roi_feat_size=7,
            num_classes=NUM_CLASSES,
        )
    )  # fmt: skip
    assert isinstance(head, BBoxHead)
    assert list(head.state_dict()) == [
        "fc_cls.weight",
        "fc_cls.bias",
        "fc_reg.weight",
        "fc_reg.bias",
    ]
    assert head.fc_cls.in_features == 32
    x = torch.randn(3, 32, 7, 7)
    cls_score, bbox_pred = head(x)
    pooled = F.avg_pool2d(x, 7).flatten(1)
    torch.testing.assert_close(cls_score, head.fc_cls(pooled))
    torch.testing.assert_close(bbox_pred, head.fc_reg(pooled))
    flat = BBoxHead(in_channels=32, roi_feat_size=7, num_classes=NUM_CLASSES)
    assert flat.fc_cls.in_features == 32 * 49 and flat(x)[0].shape == (3, NUM_CLASSES + 1)


def test_box_head_config_errors():
    with pytest.raises(BuildError, match="ConvFCBBoxHead: norm_cfg.*num_shared_convs=0"):
        build_head(dict(type="ConvFCBBoxHead", num_shared_convs=0, norm_cfg=dict(type="BN")))
    with pytest.raises(BuildError, match="ConvFCBBoxHead: num_shared_fcs must be an integer"):
        build_head(dict(type="ConvFCBBoxHead", num_shared_fcs=-1))
    with pytest.raises(BuildError, match="BBoxHead: num_shared_convs is fixed"):
        build_head(dict(type="BBoxHead", num_shared_convs=1))
    with pytest.raises(BuildError, match="Shared4Conv1FCBBoxHead: loss_cls must be a softmax"):
        build_head(
            dict(
                type="Shared4Conv1FCBBoxHead",
                loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True),
            )
        )


# ----------------------------------------------------------------------------- mask head
def test_mask_head_state_dict_names_are_unchanged():
    head = FCNMaskHead(num_convs=2, in_channels=4, conv_out_channels=4, num_classes=2)
    assert list(head.state_dict()) == [
        "convs.0.weight",
        "convs.0.bias",
        "convs.2.weight",
        "convs.2.bias",
        "upsample.weight",
        "upsample.bias",
        "conv_logits.weight",
        "conv_logits.bias",
    ]


@pytest.mark.parametrize("norm", list(NORMS))
def test_mask_head_norms(norm):
    torch.manual_seed(0)
    head = build_head(
        dict(
            type="FCNMaskHead", num_convs=3, roi_feat_size=6, in_channels=4,
            conv_out_channels=8, num_classes=NUM_CLASSES, norm_cfg=NORMS[norm],
        )
    )  # fmt: skip
    convs = [m for m in head.convs if isinstance(m, nn.Conv2d)]
    if norm == "none":
        assert not norm_layers(head) and all(c.bias is not None for c in convs)
    else:
        norms = norm_layers(head)
        assert len(norms) == 3 and all(isinstance(n, NORM_TYPES[norm]) for n in norms)
        assert all(c.bias is None for c in convs)
        # conv, norm, ReLU per conv
        first = head.convs[:3]
        assert isinstance(first[0], nn.Conv2d) and isinstance(first[1], NORM_TYPES[norm])
        assert isinstance(first[2], nn.ReLU)
    x = torch.randn(5, 4, 6, 6)
    out = head(x)
    assert out.shape == (5, NUM_CLASSES, 12, 12)
    (out * torch.randn_like(out)).sum().backward()
    for name, param in head.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    if norm in ("BN", "SyncBN"):
        check_batch_norm_statistics_train_only(head, lambda: head(x))


def test_mask_head_without_convs_feeds_the_deconv():
    head = build_head(
        dict(
            type="FCNMaskHead",
            num_convs=0,
            roi_feat_size=7,
            in_channels=32,
            conv_out_channels=8,
            num_classes=2,
        )
    )
    assert len(head.convs) == 0 and head.upsample.in_channels == 32
    x = torch.randn(3, 32, 7, 7)
    out = head(x)
    assert out.shape == (3, 2, 14, 14)
    torch.testing.assert_close(out, head.conv_logits(F.relu(head.upsample(x))))
    with pytest.raises(BuildError, match="FCNMaskHead: norm_cfg.*num_convs=0"):
        build_head(dict(type="FCNMaskHead", num_convs=0, norm_cfg=dict(type="GN", num_groups=4)))
    with pytest.raises(BuildError, match="FCNMaskHead: num_convs must be an integer"):
        build_head(dict(type="FCNMaskHead", num_convs=-1))


# ----------------------------------------------------------------------------- RPN head
RPN_TRAIN_CFG = dict(
    assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3),
    sampler=dict(type="RandomSampler", num=64, pos_fraction=0.5, add_gt_as_proposals=False),
    allowed_border=-1,
    pos_weight=-1,
)
RPN_ANCHORS = dict(type="AnchorGenerator", scales=[4], ratios=[0.5, 1.0, 2.0], strides=[4, 8])
RPN_METAS = [dict(img_shape=(32, 32, 3), pad_shape=(32, 32, 3))] * 2
RPN_GTS = [torch.tensor([[4.0, 4.0, 20.0, 14.0]]), torch.tensor([[0.0, 2.0, 9.0, 30.0]])]


def rpn_head(**kwargs):
    torch.manual_seed(0)
    cfg = dict(type="RPNHead", in_channels=8, feat_channels=8, anchor_generator=RPN_ANCHORS)
    return build_head(dict(cfg, **kwargs))


def rpn_features():
    generator = torch.Generator().manual_seed(3)
    return [
        torch.randn(2, 8, 8, 8, generator=generator),
        torch.randn(2, 8, 4, 4, generator=generator),
    ]


def rpn_instances():
    return [InstanceData(bboxes=g, labels=g.new_zeros(len(g), dtype=torch.long)) for g in RPN_GTS]


def test_rpn_state_dict_names_are_unchanged():
    head = rpn_head()
    assert head.sampled_anchor_training is True and head.rpn_norm is None
    assert list(head.state_dict()) == [
        "rpn_conv.weight",
        "rpn_conv.bias",
        "rpn_cls.weight",
        "rpn_cls.bias",
        "rpn_reg.weight",
        "rpn_reg.bias",
    ]


@pytest.mark.parametrize("norm", ["BN", "SyncBN", "GN"])
def test_rpn_with_norm_trains_densely_with_the_dense_loss(norm):
    head = rpn_head(train_cfg=RPN_TRAIN_CFG, norm_cfg=NORMS[norm])
    assert head.sampled_anchor_training is False
    assert isinstance(head.rpn_norm, NORM_TYPES[norm]) and head.rpn_conv.bias is None
    assert "rpn_norm.weight" in head.state_dict()
    feats = rpn_features()
    cls_scores, bbox_preds = head(feats)
    assert [tuple(c.shape) for c in cls_scores] == [(2, 3, 8, 8), (2, 3, 4, 4)]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 12, 8, 8), (2, 12, 4, 4)]

    def losses_and_grads(compute):
        head.zero_grad()
        torch.manual_seed(7)  # the same sampled anchors
        losses = compute()
        sum(losses.values()).backward()
        return losses, {n: p.grad.clone() for n, p in head.named_parameters()}

    head.train()  # batch statistics: each computation runs the head once, densely
    samples = [DetDataSample(m, gt_instances=g) for m, g in zip(RPN_METAS, rpn_instances())]
    batches = int(getattr(head.rpn_norm, "num_batches_tracked", 0))
    losses, grads = losses_and_grads(lambda: head.forward_train(feats, samples)[0])
    if norm != "GN":  # one pass a level, no extra no-grad pass over the maps
        assert int(head.rpn_norm.num_batches_tracked) == batches + 2
    expected, expected_grads = losses_and_grads(
        lambda: head.loss(*head(feats), rpn_instances(), RPN_METAS)
    )
    for key in expected:
        torch.testing.assert_close(losses[key], expected[key], rtol=0, atol=0)
    for name in expected_grads:
        torch.testing.assert_close(grads[name], expected_grads[name], rtol=0, atol=0)
        assert expected_grads[name].abs().sum() > 0, name


def test_rpn_with_norm_refuses_sampled_anchor_training():
    with pytest.raises(BuildError, match="RPNHead: sampled_anchor_training=True.*norm_cfg"):
        rpn_head(norm_cfg=dict(type="GN", num_groups=4), sampled_anchor_training=True)
    head = rpn_head(norm_cfg=dict(type="GN", num_groups=4), sampled_anchor_training=False)
    with pytest.raises(ValueError, match="RPNHead: predict_at cannot apply norm_cfg"):
        head.predict_at(
            rpn_features(), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)
        )
