"""RPNHead: shapes, targets on a hand-made case, batched loss, proposals vs a per-level loop."""

import pytest
import torch

from mmdet_like.models import build_head
from mmdet_like.models.dense_heads import RPNHead, anchor_inside_flags, flatten_levels
from mmdet_like.models.dense_heads.rpn_head import add_at_cells, gather_cells
from mmdet_like.ops import nms
from mmdet_like.structures import DetDataSample, InstanceData

TRAIN_CFG = dict(
    assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3),
    sampler=dict(type="RandomSampler", num=64, pos_fraction=0.5, add_gt_as_proposals=False),
    allowed_border=-1,
    pos_weight=-1,
)
ANCHORS = dict(type="AnchorGenerator", scales=[4], ratios=[0.5, 1.0, 2.0], strides=[4, 8])
METAS = [dict(img_shape=(32, 32, 3), pad_shape=(32, 32, 3))] * 2


def instances(gts):
    """Per-image (G, 4) boxes -> gt InstanceData (one class: labels 0)."""
    return [InstanceData(bboxes=g, labels=g.new_zeros(len(g), dtype=torch.long)) for g in gts]


def samples(gts, metas=METAS):
    return [DetDataSample(m, gt_instances=g) for m, g in zip(metas, instances(gts))]


def as_rows(proposals):
    """Proposal InstanceData -> (n, 5) ``[x1, y1, x2, y2, score]``."""
    return torch.cat([proposals.bboxes, proposals.scores[:, None]], 1)


def make_head(**kwargs):
    torch.manual_seed(0)
    cfg = dict(type="RPNHead", in_channels=8, feat_channels=8, anchor_generator=ANCHORS)
    return build_head(dict(cfg, **kwargs))


def features(batch=2):
    return [torch.randn(batch, 8, 8, 8), torch.randn(batch, 8, 4, 4)]


def test_forward_shapes():
    cls_scores, bbox_preds = make_head()(features())
    assert [tuple(c.shape) for c in cls_scores] == [(2, 3, 8, 8), (2, 3, 4, 4)]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 12, 8, 8), (2, 12, 4, 4)]


def test_flatten_levels_follows_anchor_order():
    head = make_head()
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    flat = flatten_levels([x], 1)  # (2, 12, 1)
    # anchor index = (y * W + x) * A + a
    assert flat[1, (1 * 2 + 0) * 3 + 2, 0] == x[1, 2, 1, 0]
    assert head.anchor_generator.grid_priors([(2, 2)] * 2)[0].shape == (12, 4)


def test_targets_on_a_hand_made_case():
    head = make_head(train_cfg=TRAIN_CFG)
    cls_scores, _ = head(features(batch=1))
    anchors, sizes = head._anchors(cls_scores)
    gt = anchors[[40]].clone()  # a gt equal to one anchor: that anchor must be positive
    targets = head.get_targets(anchors, sizes, instances([gt]), METAS[:1])
    assert targets.anchor_inds.numel() == 64  # the sampler's num
    assert (targets.anchor_inds.diff() > 0).all()  # sorted, no anchor twice
    assert (targets.image_inds == 0).all()
    at_gt = (targets.anchor_inds == 40).nonzero().item()
    # class 0 (the one object class) for positives, 1 (the background) for negatives
    assert targets.labels[at_gt] == 0 and targets.label_weights[at_gt] == 1
    torch.testing.assert_close(targets.bbox_targets[at_gt], torch.zeros(4), atol=1e-6, rtol=0)
    assert targets.bbox_weights[at_gt].tolist() == [1.0] * 4
    positives = targets.labels == 0
    assert ((targets.labels == 0) | (targets.labels == 1)).all()
    assert torch.equal(targets.bbox_weights[:, 0].bool(), positives)
    assert (targets.bbox_targets[~positives] == 0).all()


def dense_reference_loss(head, cls_scores, bbox_preds, gts, metas):
    """The loss over every anchor, the unsampled ones weighted 0 (what the sampled-anchor
    losses must equal)."""
    anchors, sizes = head._anchors(cls_scores)
    targets = head.get_targets(anchors, sizes, instances(gts), metas)
    num_images = len(metas)
    labels = anchors.new_zeros(num_images, anchors.size(0))
    weights = anchors.new_zeros(num_images, anchors.size(0))
    box_targets = anchors.new_zeros(num_images, anchors.size(0), 4)
    box_weights = anchors.new_zeros(num_images, anchors.size(0), 4)
    where = (targets.image_inds, targets.anchor_inds)
    labels[where] = (targets.labels == 0).to(labels.dtype)  # binary objectness targets
    weights[where] = targets.label_weights
    box_targets[where], box_weights[where] = targets.bbox_targets, targets.bbox_weights
    avg = targets.labels.numel()
    return dict(
        loss_rpn_cls=head.loss_cls(
            flatten_levels(cls_scores, 1).reshape(-1),
            labels.reshape(-1),
            weights.reshape(-1),
            avg_factor=avg,
        ),
        loss_rpn_bbox=head.loss_bbox(
            flatten_levels(bbox_preds, 4).reshape(-1, 4),
            box_targets.reshape(-1, 4),
            box_weights.reshape(-1, 4),
            avg_factor=avg,
        ),
    )


def losses_and_grads(head, feats, compute):
    for p in head.parameters():
        p.grad = None
    feats = [f.detach().clone().requires_grad_() for f in feats]
    torch.manual_seed(7)  # the same sampled anchors in every computation
    losses = compute(feats)
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in head.named_parameters()}
    return losses, grads, [f.grad for f in feats]


@pytest.mark.parametrize("gts_case", ["one_box_each", "no_box_in_second"])
def test_sampled_anchor_training_equals_dense_loss(gts_case):
    """forward_train (head re-run at the sampled anchors' cells only) and loss on forward
    (the whole maps with autograd) give the dense reference's losses and gradients, for the
    head's weights and for the input features."""
    head = make_head(train_cfg=TRAIN_CFG)
    for p in head.parameters():  # away from the near-zero init, so every term matters
        torch.nn.init.normal_(p, std=0.3)
    torch.manual_seed(3)
    feats = features()
    gts = [torch.tensor([[4.0, 4.0, 20.0, 14.0]]), torch.tensor([[0.0, 2.0, 9.0, 30.0]])]
    if gts_case == "no_box_in_second":
        gts[1] = torch.zeros(0, 4)

    def reference(f):
        return dense_reference_loss(head, *head(f), gts, METAS)

    def sampled(f):
        return head.forward_train(f, samples(gts))[0]

    def from_outputs(f):
        return head.loss(*head(f), instances(gts), METAS)

    def dense_forward_train(f):  # RPNHead(sampled_anchor_training=False)
        head.sampled_anchor_training = False
        try:
            return head.forward_train(f, samples(gts))[0]
        finally:
            head.sampled_anchor_training = True

    expected, expected_grads, expected_feat_grads = losses_and_grads(head, feats, reference)
    for compute in (sampled, from_outputs, dense_forward_train):
        losses, grads, feat_grads = losses_and_grads(head, feats, compute)
        assert set(losses) == set(expected)
        for key in expected:
            torch.testing.assert_close(losses[key], expected[key], rtol=1e-5, atol=1e-6)
        for name in expected_grads:
            torch.testing.assert_close(grads[name], expected_grads[name], rtol=1e-4, atol=1e-6)
        for got, want in zip(feat_grads, expected_feat_grads):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
            assert want.abs().sum() > 0


@pytest.mark.cuda
def test_sampled_anchor_training_on_cuda_equals_cpu():
    """On a GPU the features' gradient is added with index_put_ (see add_at_cells)."""
    head = make_head(train_cfg=TRAIN_CFG)
    torch.manual_seed(3)
    feats = features()
    gts = [torch.tensor([[4.0, 4.0, 20.0, 14.0]]), torch.tensor([[0.0, 2.0, 9.0, 30.0]])]
    targets = head.get_targets(*head._anchors(head(feats)[0]), instances(gts), METAS)
    results = []
    for device in ("cpu", "cuda"):
        head.to(device)
        head.zero_grad(set_to_none=True)
        x = [f.to(device).requires_grad_() for f in feats]
        on_device = targets._replace(**{k: v.to(device) for k, v in targets._asdict().items()})
        scores, deltas = head.predict_at(x, on_device.image_inds, on_device.anchor_inds)
        sum(head.loss_of_samples(scores, deltas, on_device).values()).backward()
        results.append([g.cpu() for g in [f.grad for f in x] + [head.rpn_conv.weight.grad]])
    for cpu, cuda in zip(*results):
        torch.testing.assert_close(cuda, cpu, rtol=1e-4, atol=1e-5)


def test_forward_train_proposals_match_get_proposals():
    head = make_head(train_cfg=TRAIN_CFG)
    feats = features()
    gts = [torch.tensor([[4.0, 4.0, 20.0, 14.0]]), torch.zeros(0, 4)]
    cfg = dict(nms_pre=50, max_num=20, nms_thr=0.7)
    losses, proposals = head.forward_train(feats, samples(gts), proposal_cfg=cfg)
    expected = head.get_proposals(*head(feats), METAS, cfg)
    for got, want in zip(proposals, expected):
        assert isinstance(got, InstanceData) and len(got) > 0
        torch.testing.assert_close(as_rows(got), as_rows(want))
    assert head.forward_train(feats, samples(gts))[1] is None
    dense = make_head(train_cfg=TRAIN_CFG, sampled_anchor_training=False)
    losses, proposals = dense.forward_train(feats, samples(gts), proposal_cfg=cfg)
    for got, want in zip(proposals, expected):
        torch.testing.assert_close(as_rows(got), as_rows(want))
        assert not got.bboxes.requires_grad and not got.scores.requires_grad


def test_predict_at_equals_forward_at_every_anchor():
    """Every anchor of both levels, borders included (the 3x3 conv's zero padding)."""
    head = make_head()
    feats = features()
    cls_scores, bbox_preds = head(feats)
    total = sum(c[0].numel() for c in cls_scores)
    image_inds = torch.arange(2).repeat_interleave(total)
    anchor_inds = torch.arange(total).repeat(2)
    order = anchor_inds.argsort(stable=True)
    scores, deltas = head.predict_at(feats, image_inds[order], anchor_inds[order])
    torch.testing.assert_close(
        scores, flatten_levels(cls_scores, 1)[image_inds[order], anchor_inds[order], 0]
    )
    torch.testing.assert_close(
        deltas, flatten_levels(bbox_preds, 4)[image_inds[order], anchor_inds[order]]
    )
    # only some levels sampled, or none
    first_level = anchor_inds[order] < cls_scores[0][0].numel()
    scores, _ = head.predict_at(
        feats, image_inds[order][~first_level], anchor_inds[order][~first_level]
    )
    assert scores.shape == (int((~first_level).sum()),)
    scores, deltas = head.predict_at(feats, image_inds[:0], anchor_inds[:0])
    assert scores.shape == (0,) and deltas.shape == (0, 4) and scores.requires_grad


def test_loss_is_batched_and_finite():
    head = make_head(train_cfg=TRAIN_CFG)
    cls_scores, bbox_preds = head(features())
    gts = [torch.tensor([[4.0, 4.0, 20.0, 14.0]]), torch.zeros(0, 4)]  # second image: no gt
    losses = head.loss(cls_scores, bbox_preds, instances(gts), METAS)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox"}
    total = losses["loss_rpn_cls"] + losses["loss_rpn_bbox"]
    assert torch.isfinite(total)
    total.backward()
    assert head.rpn_cls.weight.grad.abs().sum() > 0
    assert head.rpn_reg.weight.grad.abs().sum() > 0
    # weights from the near-zero init: objectness ~ 0.5 everywhere, loss ~ log 2
    assert abs(losses["loss_rpn_cls"].item() - 0.6931) < 0.05


def test_loss_needs_train_cfg():
    head = make_head()
    cls_scores, bbox_preds = head(features())
    with pytest.raises(ValueError, match="train_cfg"):
        head.loss(cls_scores, bbox_preds, instances([torch.zeros(0, 4)] * 2), METAS)


@pytest.mark.parametrize("fixed_order", [True, False])
def test_add_at_cells_sums_repeated_cells(fixed_order):
    torch.manual_seed(0)
    shape = (2, 5, 6, 7)
    image = torch.randint(0, 2, (300, 1))
    row, col = torch.randint(0, 6, (300, 9)), torch.randint(0, 7, (300, 9))
    values = torch.randn(300, 9, 5, dtype=torch.float64)
    expected = torch.zeros(shape, dtype=torch.float64)
    for i, r, c, v in zip(
        image.expand(-1, 9).reshape(-1), row.reshape(-1), col.reshape(-1), values.reshape(-1, 5)
    ):
        expected[i, :, r, c] += v
    got = add_at_cells(values, image, row, col, shape, fixed_order)
    torch.testing.assert_close(got, expected)


def test_gather_cells_gradient_is_reproducible():
    """Overlapping 3x3 patches at 4,000 cells, 64 channels (enough for the CPU to add in
    parallel): the features' gradient is bit for bit the same on every run and equals
    autograd's through indexing (whose own sum, with atomic adds, changes from run to run)."""
    torch.manual_seed(0)
    x = torch.randn(2, 64, 50, 50, requires_grad=True)
    image = torch.randint(0, 2, (4000, 1))
    row, col = torch.randint(0, 50, (4000, 9)), torch.randint(0, 50, (4000, 9))
    weights = torch.randn(4000, 9, 64)
    grads = []
    for _ in range(4):
        x.grad = None
        (gather_cells(x, image, row, col) * weights).sum().backward()
        grads.append(x.grad.clone())
    assert all(torch.equal(grads[0], g) for g in grads[1:])
    x.grad = None
    (x[image, :, row, col] * weights).sum().backward()
    torch.testing.assert_close(grads[0], x.grad)


def test_anchor_inside_flags():
    anchors = torch.tensor([[0.0, 0, 10, 10], [-5, 0, 10, 10], [20, 20, 33, 30]])
    valid = torch.ones(3, dtype=torch.bool)
    assert anchor_inside_flags(anchors, valid, (32, 32), 0).tolist() == [True, False, False]
    assert anchor_inside_flags(anchors, valid, (32, 32), 8).tolist() == [True, True, True]
    assert anchor_inside_flags(anchors, valid, (32, 32), -1).tolist() == [True] * 3


def reference_proposals(head, cls_scores, bbox_preds, meta, cfg):
    """One image, one level at a time: top-k, decode, clip, filter, NMS, cap; then merge."""
    anchors = head.anchor_generator.grid_priors([tuple(c.shape[-2:]) for c in cls_scores])
    all_boxes, all_scores = [], []
    for cls, reg, level_anchors in zip(cls_scores, bbox_preds, anchors):
        scores = cls.permute(1, 2, 0).reshape(-1).sigmoid()
        deltas = reg.permute(1, 2, 0).reshape(-1, 4)
        scores, top = scores.topk(min(cfg["nms_pre"], scores.numel()))
        boxes = head.bbox_coder.decode(level_anchors[top], deltas[top], max_shape=meta["img_shape"])
        wh = boxes[:, 2:] - boxes[:, :2]
        ok = (wh > cfg["min_bbox_size"]).all(1)
        boxes, scores = boxes[ok], scores[ok]
        keep = nms(boxes, scores, cfg["nms_thr"])[: cfg["nms_post"]]
        all_boxes.append(boxes[keep])
        all_scores.append(scores[keep])
    boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
    order = scores.argsort(descending=True, stable=True)[: cfg["max_num"]]
    return torch.cat([boxes[order], scores[order, None]], 1)


@pytest.mark.parametrize("nms_post", [5, 1000])
def test_proposals_match_per_level_reference(nms_post):
    cfg = dict(nms_pre=50, nms_post=nms_post, max_num=30, nms_thr=0.5, min_bbox_size=1.0)
    head = make_head(test_cfg=cfg)
    torch.manual_seed(1)
    cls_scores = [torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4)]
    bbox_preds = [torch.randn(2, 12, 8, 8) * 0.5, torch.randn(2, 12, 4, 4) * 0.5]
    metas = [dict(img_shape=(32, 30, 3)), dict(img_shape=(28, 32, 3))]
    proposals = head.get_proposals(cls_scores, bbox_preds, metas)
    assert len(proposals) == 2
    for i, meta in enumerate(metas):
        expected = reference_proposals(
            head, [c[i] for c in cls_scores], [b[i] for b in bbox_preds], meta, cfg
        )
        rows = as_rows(proposals[i])
        torch.testing.assert_close(rows, expected)
        assert rows.shape[0] <= 30
        assert (rows[:, 2] <= meta["img_shape"][1]).all()
        assert (rows[:, 4].diff() <= 0).all()


def test_rejects_softmax_objectness():
    with pytest.raises(Exception, match="sigmoid"):
        RPNHead(8, loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False))
