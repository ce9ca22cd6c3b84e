"""TimmBackbone's Swin blocks (mmdet_like/models/backbones/timm_swin.py): timm's values, in
eager mode and through a ``torch.export`` program traced with a dynamic image size."""

import copy
import pickle

import pytest
import torch

timm = pytest.importorskip("timm")

from timm.models.swin_transformer import SwinTransformerBlock  # noqa: E402

from mmdet_like.models import build_backbone  # noqa: E402
from mmdet_like.models.backbones.timm_swin import (  # noqa: E402
    MASKED,
    ExportableSwinBlock,
    shifted_window_mask,
)
from mmdet_like.models.detectors.base import pad_images  # noqa: E402

# the configs' Swin (any input size, shifts in every stage), narrow
DYNAMIC = dict(strict_img_size=False, always_partition=True, embed_dim=16, depths=(2, 2, 2, 2),
               num_heads=(1, 1, 2, 2), drop_path_rate=0.0)  # fmt: skip
# timm's default: a fixed input size, its masks precomputed (buffers)
FIXED = dict(img_size=64, window_size=4, embed_dim=16, depths=(2, 2), num_heads=(1, 2))


def _swin(kwargs, out_indices=(0, 1, 2, 3)):
    torch.manual_seed(0)
    return build_backbone(dict(type="TimmBackbone", model_name="swin_tiny_patch4_window7_224",
                               out_indices=out_indices, model_kwargs=kwargs))  # fmt: skip


def _as_timms(backbone):
    """A copy of ``backbone`` whose Swin blocks are timm's own class again."""
    timms = copy.deepcopy(backbone)
    for module in timms.modules():
        if isinstance(module, ExportableSwinBlock):
            module.__class__ = SwinTransformerBlock
    return timms


def _set_fused_attention(model, fused):
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = fused


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_blocks_compute_timms_values_and_gradients(fused):
    """Sizes whose levels are no multiple of the 7x7 window (a single window at the last
    level, several), a batch of two, timm's fused and unfused attention; forward and
    backward against the same backbone with timm's blocks."""
    ours = _swin(DYNAMIC)
    blocks = [m for m in ours.modules() if isinstance(m, SwinTransformerBlock)]
    assert len(blocks) == 8 and all(type(m) is ExportableSwinBlock for m in blocks)
    timms = _as_timms(ours)
    assert ours.state_dict().keys() == timms.state_dict().keys()
    for model in (ours, timms):
        _set_fused_attention(model, fused)
    for shape in [(2, 3, 64, 96), (1, 3, 96, 64), (1, 3, 256, 96)]:
        image = torch.randn(shape)
        ours.train(), timms.train()
        for model in (ours, timms):
            model.zero_grad()
            sum(out.square().mean() for out in model(image)).backward()
        grads = {n: p.grad for n, p in timms.named_parameters()}
        for name, param in ours.named_parameters():
            torch.testing.assert_close(param.grad, grads[name], rtol=1e-5, atol=1e-6)
        ours.eval(), timms.eval()
        with torch.no_grad():
            for mine, theirs in zip(ours(image), timms(image), strict=True):
                torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


def test_fixed_size_swin_keeps_timms_precomputed_masks():
    """timm's default Swin (``strict_img_size``, masks as buffers sized for ``img_size``)."""
    ours = _swin(FIXED, out_indices=(0, 1))
    timms = _as_timms(ours).eval()
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for mine, theirs in zip(ours.eval()(image), timms(image), strict=True):
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows, cols", [(1, 1), (2, 3), (4, 1)])
def test_shifted_window_mask_is_timms(rows, cols):
    block = next(m for m in _swin(DYNAMIC).modules() if isinstance(m, ExportableSwinBlock)
                 and any(m.shift_size))  # fmt: skip
    assert (block.window_size, block.shift_size) == ((7, 7), (3, 3))
    padded = torch.zeros(1, rows * 7, cols * 7, 1)
    timms = SwinTransformerBlock.get_attn_mask(block, padded)
    ours = shifted_window_mask(rows, cols, (7, 7), (3, 3), padded.device, padded.dtype)
    assert ours.shape == timms.shape == (rows * cols, 49, 49)
    assert set(ours.unique().tolist()) == {0.0, MASKED}
    assert torch.equal(ours == MASKED, timms == MASKED)


def test_swin_backbone_exports_with_a_dynamic_size():
    """One ``torch.export`` program of the backbone (after the detector's padding to 32) for
    sides from 65: levels of one window and of several, sides not multiples of 7."""

    class Padded(torch.nn.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

        def forward(self, image):
            return self.backbone(pad_images(image, 32))

    model = Padded(_swin(DYNAMIC)).eval()
    side = dict(min=65, max=4096)
    dims = {"image": {2: torch.export.Dim("height", **side), 3: torch.export.Dim("width", **side)}}
    with torch.no_grad():
        program = torch.export.export(model, (torch.randn(1, 3, 96, 128),), dynamic_shapes=dims,
                                      strict=False).module()  # fmt: skip
        for height, width in [(96, 128), (65, 65), (300, 77), (230, 450)]:
            image = torch.randn(1, 3, height, width)
            outs, expected = program(image), model(image)
            padded_h, padded_w = (height + 31) // 32 * 32, (width + 31) // 32 * 32
            assert [o.shape[-2:] for o in outs] == [
                (padded_h // s, padded_w // s) for s in (4, 8, 16, 32)
            ]
            for out, ref in zip(outs, expected, strict=True):
                torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_the_blocks_survive_copies_and_pickling():
    backbone = _swin(DYNAMIC).eval()
    image = torch.randn(1, 3, 64, 96)
    for other in (copy.deepcopy(backbone), pickle.loads(pickle.dumps(backbone))):
        assert sum(isinstance(m, ExportableSwinBlock) for m in other.modules()) == 8
        with torch.no_grad():
            for mine, theirs in zip(other(image), backbone(image), strict=True):
                torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)
