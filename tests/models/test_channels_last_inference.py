"""Channels-last inference on the CPU (``BaseDetector.channels_last_inference``): the batch
reaches the backbone channels-last, training stays NCHW, and the detections equal NCHW
inference's up to rounding. Channels-last training (``channels_last_training``): off by
default, on with AVX-512 for the DETR family, the same losses as NCHW up to rounding."""

import numpy as np
import torch

from mmdet_like.engine import load_config
from mmdet_like.models import build_detector
from mmdet_like.structures import DetDataSample, InstanceData
from tests.models.test_configs import ROOT, shrink


def _model():
    cfg = load_config(str(ROOT / "configs" / "retinanet_r50_fpn_1x.py"))
    torch.manual_seed(0)
    model = build_detector(shrink(cfg.model.to_dict()), cfg.train_cfg.to_dict(),
                           dict(cfg.test_cfg.to_dict(), score_thr=0.0))  # fmt: skip
    model.init_weights()
    return model


def _inputs_seen_by_the_stem(model, run):
    seen = []
    handle = model.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        run()
    finally:
        handle.remove()
    return seen[0]


def test_channels_last_inference_matches_nchw_and_training_stays_nchw():
    model = _model().eval()
    img = torch.randn(2, 3, 96, 128)
    meta = dict(ori_shape=(96, 128, 3), img_shape=(96, 128, 3), pad_shape=(96, 128, 3),
                scale_factor=np.ones(4, np.float32), flip=False)  # fmt: skip
    samples = [DetDataSample(dict(meta)) for _ in range(2)]
    outputs = {}
    for flag in (False, True):
        model.channels_last_inference = flag

        def run(flag=flag):
            with torch.no_grad():
                outputs[flag] = model(img=img, data_samples=samples, return_loss=False)

        x = _inputs_seen_by_the_stem(model, run)
        assert x.is_contiguous(memory_format=torch.channels_last) == flag
        assert x.is_contiguous() != flag
    for a, b in zip(outputs[False], outputs[True], strict=True):
        a, b = a.pred_instances, b.pred_instances
        assert len(a) == len(b) > 0
        order_a, order_b = torch.argsort(a.scores), torch.argsort(b.scores)
        torch.testing.assert_close(a.scores[order_a], b.scores[order_b], atol=1e-5, rtol=0)
    # training: NCHW whatever the switch says
    model.train()
    model.channels_last_inference = True
    assert model.channels_last_inference
    train_samples = [
        DetDataSample(dict(meta), gt_instances=InstanceData(
            bboxes=torch.tensor([[10.0, 10.0, 60.0, 50.0]]), labels=torch.tensor([1])))
        for _ in range(2)
    ]  # fmt: skip
    x = _inputs_seen_by_the_stem(model, lambda: model(img=img, data_samples=train_samples))
    assert x.is_contiguous()


def _small_detr():
    cfg = load_config(str(ROOT / "configs" / "transformers" / "detr_r50_transformers.py"))
    attn = dict(embed_dims=32, num_heads=4)
    ffn = dict(embed_dims=32, feedforward_channels=64)
    layer = dict(self_attn_cfg=attn, cross_attn_cfg=attn, ffn_cfg=ffn)
    cfg.merge_from_dict(dict(model=dict(
        num_queries=8, backbone=dict(depth=18), neck=dict(in_channels=[512], out_channels=32),
        encoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=attn, ffn_cfg=ffn)),
        decoder=dict(num_layers=2, layer_cfg=layer), positional_encoding=dict(num_feats=16),
        bbox_head=dict(num_classes=3, embed_dims=32),
    )))  # fmt: skip
    torch.manual_seed(0)
    model = build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)
    model.init_weights()
    return model


def test_channels_last_training_follows_the_switch_and_the_cpu(monkeypatch):
    """``None`` (the DETR family's setting) is channels-last where the CPU has AVX-512;
    ``False`` (the others') never; ``True`` always. The losses equal NCHW's up to rounding."""
    import mmdet_like.models.detectors.base as base
    from mmdet_like.models.detectors import DETR, DeformableDETR, SingleStageDetector

    assert base.BaseDetector.channels_last_training is False
    assert SingleStageDetector.channels_last_training is False
    assert DETR.channels_last_training is None and DeformableDETR.channels_last_training is None
    model = _small_detr().eval()  # dropout off: the losses compare
    meta = dict(ori_shape=(96, 128, 3), img_shape=(96, 128, 3), pad_shape=(96, 128, 3),
                scale_factor=np.ones(4, np.float32), flip=False)  # fmt: skip
    samples = [
        DetDataSample(dict(meta), gt_instances=InstanceData(
            bboxes=torch.tensor([[10.0, 10.0, 60.0, 50.0]]), labels=torch.tensor([1])))
        for _ in range(2)
    ]  # fmt: skip
    img = torch.randn(2, 3, 96, 128)
    totals = {}
    for switch, avx512, channels_last in [(None, True, True), (None, False, False),
                                          (False, True, False), (True, False, True)]:  # fmt: skip
        monkeypatch.setattr(base, "cpu_has_avx512", lambda avx512=avx512: avx512)
        model.channels_last_training = switch
        losses = {}

        def run(losses=losses):
            losses.update(model(img=img, data_samples=samples))

        x = _inputs_seen_by_the_stem(model, run)
        assert x.is_contiguous(memory_format=torch.channels_last) == channels_last
        assert x.is_contiguous() != channels_last
        totals[channels_last] = sum(losses.values())
    # measured: equal (12.0298 both, one thread); other kernels may round differently
    torch.testing.assert_close(totals[True], totals[False], rtol=1e-5, atol=0)
