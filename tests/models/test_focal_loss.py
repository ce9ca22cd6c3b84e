"""FocalLoss against torchvision's ``sigmoid_focal_loss`` (values and gradients, in one chunk
of rows and in many), and its memory: what its backward keeps (only its inputs, where
autograd through the formula keeps about six (N, C) tensors), and the peak of each pass (the
forward no (N, C) temporary, the backward the gradient only)."""

import pytest
import torch
import torch.nn.functional as F

from mmdet_like.models.losses import FocalLoss, focal_loss

ops = pytest.importorskip("torchvision.ops")


def inputs(n=500, c=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, c, generator=g, dtype=torch.float64) * 3).requires_grad_()
    labels = torch.randint(0, c + 1, (n,), generator=g)  # c: background
    return logits, labels


def onehot(labels, c):
    return F.one_hot(labels, c + 1)[:, :c].to(torch.float64)


@pytest.mark.parametrize("chunk", [None, 64])
@pytest.mark.parametrize("gamma, alpha", [(2.0, 0.25), (1.5, 0.5), (0.0, -1.0)])
def test_values_and_gradients_equal_torchvision(gamma, alpha, chunk, monkeypatch):
    if chunk is not None:  # chunks of 9 rows of 7 classes: 56 chunks
        monkeypatch.setattr(focal_loss, "CHUNK_ELEMENTS", chunk)
    logits, labels = inputs()
    weight = torch.rand(len(labels), dtype=torch.float64)
    weight[::7] = 0
    expected = ops.sigmoid_focal_loss(logits, onehot(labels, 7), alpha, gamma, reduction="none")
    # divided by the avg_factor plus the machine eps (float64's for a float64 loss), as every
    # loss of the package does
    expected = (expected * weight[:, None]).sum() / (37.0 + torch.finfo(torch.float64).eps)
    (want,) = torch.autograd.grad(expected, logits)
    loss = FocalLoss(gamma=gamma, alpha=alpha)(logits, labels, weight, avg_factor=37.0)
    (got,) = torch.autograd.grad(loss, logits)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    # the element-wise form, and the ignore label (no loss, no gradient)
    none = FocalLoss(gamma=gamma, alpha=alpha, reduction="none")(logits, labels)
    elementwise = ops.sigmoid_focal_loss(logits, onehot(labels, 7), alpha, gamma)
    torch.testing.assert_close(none, elementwise)
    ignored = labels.clone()
    ignored[:10] = -1
    loss = FocalLoss(gamma=gamma, alpha=alpha, reduction="sum")(logits, ignored)
    (grad,) = torch.autograd.grad(loss, logits)
    assert grad[:10].abs().sum() == 0
    kept = ops.sigmoid_focal_loss(logits[10:], onehot(labels[10:], 7), alpha, gamma).sum()
    torch.testing.assert_close(loss, kept)


def test_float32_logits_and_extreme_values():
    logits = torch.tensor([[-80.0, 0.0, 80.0], [30.0, -30.0, 1e-3]], requires_grad=True)
    labels = torch.tensor([2, 0])
    loss = FocalLoss(reduction="sum")(logits, labels)
    (grad,) = torch.autograd.grad(loss, logits)
    expected = ops.sigmoid_focal_loss(logits, onehot(labels, 3).float(), reduction="sum")
    torch.testing.assert_close(loss, expected)
    assert torch.isfinite(grad).all() and loss.dtype == torch.float32


def saved_bytes(fn, *args):
    """Bytes of the tensors autograd keeps for the backward of ``fn(*args)`` (each storage
    once, the inputs excepted)."""
    seen, total = set(), [0]
    given = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}

    def pack(tensor):
        ptr = tensor.untyped_storage().data_ptr()
        if ptr not in seen and ptr not in given:
            seen.add(ptr)
            total[0] += tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args).backward()
    return total[0]


def test_backward_keeps_no_intermediate_of_the_size_of_the_scores():
    """100,000 anchors x 80 classes (32 MB of float32 logits): autograd through the formula
    (torchvision's) keeps several (N, C) tensors for its backward; ours keeps none but its
    inputs (the logits are the head's output, held by its graph anyway)."""
    n, c = 100_000, 80
    logits = torch.randn(n, c, requires_grad=True)
    labels = torch.randint(0, c + 1, (n,))
    scores_bytes = n * c * 4

    def ours(x):
        return FocalLoss(reduction="sum")(x, labels)

    def reference(x):
        target = F.one_hot(labels, c + 1)[:, :c].float()
        return ops.sigmoid_focal_loss(x, target, reduction="sum")

    assert saved_bytes(ours, logits) <= n * 8  # the (N,) int64 labels, nothing else
    assert saved_bytes(reference, logits) >= 4 * scores_bytes


def peak_bytes(fn):
    """The highest level of CPU memory allocated (above the level at the start) while ``fn``
    runs: the profiler's record of every allocation and free (kineto's memory events), in
    time order."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    changes = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    assert any(change > 0 for _, change in changes), "the profiler recorded no allocations"
    level = peak = 0
    for _, change in changes:
        level += change
        peak = max(peak, level)
    return peak


def test_peak_memory_of_each_pass_is_at_most_the_gradient():
    """The issue's bound: the loss's activation memory at most one (N, C) float tensor (the
    logits, allocated by the head) plus its gradient. Forward: one chunk's temporaries only
    (measured: 0.43 of the logits' size); backward: the gradient plus those. The formula
    through autograd (torchvision's) peaks above four times the logits in its forward."""
    n, c = 100_000, 80
    scores_bytes = n * c * 4
    logits = torch.randn(n, c, requires_grad=True)
    labels = torch.randint(0, c + 1, (n,))
    loss_fn = FocalLoss(reduction="mean")
    holder = {}

    def forward():
        holder["loss"] = loss_fn(logits, labels, avg_factor=100.0)

    def backward():
        holder.pop("loss").backward()

    chunk_temporaries = 16 * focal_loss.CHUNK_ELEMENTS * 4  # the formula's, for one chunk
    assert chunk_temporaries < scores_bytes * 0.6
    assert peak_bytes(forward) <= chunk_temporaries
    assert peak_bytes(backward) <= scores_bytes + chunk_temporaries

    def reference():
        target = F.one_hot(labels, c + 1)[:, :c].float()
        holder["loss"] = ops.sigmoid_focal_loss(logits, target, reduction="sum")

    assert peak_bytes(reference) >= 4 * scores_bytes
