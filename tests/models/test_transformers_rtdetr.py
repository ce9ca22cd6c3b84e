"""Proof that configs/transformers/rtdetr_r50vd_transformers.py computes what Hugging Face
transformers' RT-DETR computes, at inference and in a training step.

transformers' ``RTDetrForObjectDetection`` is built small (its RT-DETR ResNet-18-vd at 16
base channels giving C3-C5, a hybrid encoder 32 wide with AIFI on C5 (4 heads, FFN 64) and
half-width CSP layers, 2 decoder layers, 4 heads, 4 points, 20 queries, 5 classes) with a
fixed seed and random weights (every linear layer xavier, random batch-norm statistics in
the backbone, the neck and the projections, two classes' logits raised);
``save_pretrained`` writes it, tools/model_converters/transformers2ours.py converts it, and
our model from the config (the same sizes set) loads it. transformers runs its
plain-PyTorch multi-scale attention (``grid_sample``), ours the compiled
``ms_deform_attn``.

- The backbone alone: our ResNet(deep_stem, avg_down, conv_shortcut_first_block) on the
  converted weights gives transformers' RTDetrResNetBackbone's C3-C5.
- Inference (``coffee``, 400 x 600 -> 320 x 320): detections above transformers' 0.5
  threshold (its post-processing, the 20 best (query, class) pairs, in the original
  image): same count and labels, boxes within 1e-2 px, scores within 1e-4.
- Training (``astronaut`` and ``coffee`` at 320 x 320, hand-placed boxes), without
  denoising (``num_denoising=0``) and with it (the same global RNG state before each
  model's forward: the same denoising queries): every decoder layer's and the encoder
  selection's Hungarian assignment equal to transformers' matcher's, every loss term
  within 1e-4 of its ``loss_dict``, one AdamW step (the config's: LR 1e-4, the backbone
  at 0.1x, weight decay 1e-4 but 0 on norms and biases, gradients clipped to norm 0.1)
  within 1e-5 on every weight.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from mmdet_like.apis import inference_detector, init_detector
from mmdet_like.apis.inference import _test_pipeline
from mmdet_like.engine import load_config
from mmdet_like.engine.optimizer import build_optimizer
from mmdet_like.models.backbones import ResNet
from mmdet_like.models.utils.transformers_detr import (
    convert_transformers_rtdetr,
    rtdetr_architecture,
)
from mmdet_like.registry import BBOX_ASSIGNERS, build_from_cfg
from mmdet_like.structures import DetDataSample, InstanceData
from mmdet_like.structures.bbox import bbox_xyxy_to_cxcywh
from tests.engine.cli_utils import load_tool

transformers = pytest.importorskip("transformers")
skdata = pytest.importorskip("skimage.data")

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "transformers" / "rtdetr_r50vd_transformers.py"
SIZE = 320
BASE, D_MODEL, HEADS, FFN_DIM, LAYERS, QUERIES, NUM_CLASSES = 16, 32, 4, 64, 2, 20, 5
RAISED_CLASSES = (1, 3)
TARGETS = {  # boxes in the 320 x 320 input
    "astronaut": ([[90, 10, 160, 90], [20, 60, 190, 300], [120, 130, 180, 190]], [1, 3, 0]),
    "coffee": ([[70, 50, 175, 200], [10, 8, 80, 95]], [2, 1]),
}


def _hf_model(num_denoising=0, v2=False):
    """transformers' RT-DETR, small, seeded, random weights."""
    from transformers import (
        RTDetrConfig,
        RTDetrForObjectDetection,
        RTDetrV2Config,
        RTDetrV2ForObjectDetection,
    )

    kwargs = dict(
        backbone_config=dict(model_type="rt_detr_resnet", depths=[2, 2, 2, 2],
                             layer_type="basic", embedding_size=BASE,
                             hidden_sizes=[BASE * 2**i for i in range(4)], out_indices=[2, 3, 4]),
        encoder_in_channels=[BASE * 2, BASE * 4, BASE * 8], encoder_hidden_dim=D_MODEL,
        encoder_attention_heads=HEADS, encoder_ffn_dim=FFN_DIM, hidden_expansion=0.5,
        d_model=D_MODEL, decoder_in_channels=[D_MODEL] * 3, decoder_attention_heads=HEADS,
        decoder_ffn_dim=FFN_DIM, decoder_layers=LAYERS, num_queries=QUERIES,
        num_labels=NUM_CLASSES, num_denoising=num_denoising,
        id2label={i: f"class{i}" for i in range(NUM_CLASSES)},
    )  # fmt: skip
    config = RTDetrV2Config(**kwargs) if v2 else RTDetrConfig(**kwargs)
    torch.manual_seed(0)
    model = (RTDetrV2ForObjectDetection if v2 else RTDetrForObjectDetection)(config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        # transformers' initialisation samples every query's points at the same offsets
        # with uniform weights and zero box offsets: random linear layers make each query
        # look elsewhere and move its box; convs at a fan-in scale
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Conv2d) and "backbone" not in name:
                # transformers' N(0, 0.01) convs make the fusion path's maps nearly
                # constant, and the encoder's scores tie
                torch.nn.init.kaiming_uniform_(module.weight, nonlinearity="relu",
                                               generator=generator)  # fmt: skip
            elif isinstance(module, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight, generator=generator)
                torch.nn.init.uniform_(module.bias, -0.1, 0.1, generator=generator)
            elif isinstance(module, torch.nn.LayerNorm):
                torch.nn.init.uniform_(module.weight, 0.8, 1.2, generator=generator)
                torch.nn.init.uniform_(module.bias, -0.1, 0.1, generator=generator)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # the neck's and projections'
                torch.nn.init.uniform_(module.weight, 0.9, 1.1, generator=generator)
                torch.nn.init.uniform_(module.bias, -0.1, 0.1, generator=generator)
        for name, buffer in model.named_buffers():
            n = buffer.numel()
            if name.endswith("running_var"):
                buffer.copy_(torch.rand(n, generator=generator) + 0.5)
            elif name.endswith("running_mean"):
                buffer.copy_(torch.randn(n, generator=generator) * 0.1)
            elif "backbone" in name and name.endswith("weight"):  # frozen norms' buffers
                buffer.copy_(0.9 + 0.2 * torch.rand(n, generator=generator))
            elif "backbone" in name and name.endswith("bias"):
                buffer.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


def _spread_outputs(model, inputs):
    """Scale the last layer's classifier so that, on ``inputs``, the queries' logits vary
    by about 2, the ``RAISED_CLASSES`` centred at -1.8 and the others at -4."""
    with torch.no_grad():
        hidden = model(**inputs).intermediate_hidden_states[0, -1]  # (Q, C)
        linear = model.model.decoder.class_embed[LAYERS - 1]
        out = torch.nn.functional.linear(hidden, linear.weight)
        linear.weight.mul_(2.0 / out.std(0).clamp(min=1e-6)[:, None])
        out = torch.nn.functional.linear(hidden, linear.weight)
        centre = torch.full((NUM_CLASSES,), -4.0)
        centre[list(RAISED_CLASSES)] = -1.8
        linear.bias.copy_(centre - out.mean(0))


def _small_cfg(num_denoising=0, v2=False, fold_norm=True):
    """The transformers config with the test model's sizes (``v2``: RT-DETRv2's per-level
    points, 4 on each level; ``fold_norm``: the backbone's frozen norms folded into its
    convs, the default; off, the same operations as transformers')."""
    attn = dict(embed_dims=D_MODEL, num_heads=HEADS, dropout=0.0)
    ffn = dict(embed_dims=D_MODEL, feedforward_channels=FFN_DIM, ffn_drop=0.0)
    model = dict(
        num_queries=QUERIES,
        backbone=dict(depth=18, base_channels=BASE, fold_norm=fold_norm),
        neck=dict(in_channels=[BASE * 2, BASE * 4, BASE * 8], out_channels=D_MODEL,
                  expansion=0.5, encoder=dict(layer_cfg=dict(
                      self_attn_cfg=attn, ffn_cfg=dict(ffn, act_cfg=dict(type="GELU"))))),
        decoder=dict(num_layers=LAYERS, layer_cfg=dict(
            self_attn_cfg=attn, ffn_cfg=ffn,
            cross_attn_cfg=dict(embed_dims=D_MODEL, num_heads=HEADS, num_levels=3,
                                num_points=[4, 4, 4] if v2 else 4, dropout=0.0))),
        bbox_head=dict(num_classes=NUM_CLASSES, embed_dims=D_MODEL),
        dn_cfg=(dict(label_noise_scale=0.5, box_noise_scale=1.0, num_dn_queries=num_denoising)
                if num_denoising else None),
    )  # fmt: skip
    cfg = load_config(str(CONFIG), dict(model=model))
    if not num_denoising:
        cfg.model["dn_cfg"] = None
    pipeline = cfg.data.test.pipeline
    pipeline[1]["img_scale"] = (SIZE, SIZE)
    cfg.data.test.pipeline = pipeline
    return cfg


def _convert(tmp_path, hf_model, name):
    folder, dst = tmp_path / f"hf_{name}", tmp_path / f"{name}.pth"
    hf_model.save_pretrained(folder)
    meta = load_tool("model_converters/transformers2ours").convert(str(folder), str(dst))
    assert meta["converted_from"] == f"transformers {type(hf_model).__name__}"
    arch = meta["architecture"]
    assert meta["num_classes"] == NUM_CLASSES and meta["CLASSES"][1] == "class1"
    assert arch["resnet_depth"] == 18 and arch["base_channels"] == BASE
    assert arch["stem_channels"] == BASE and arch["backbone_out_indices"] == [1, 2, 3]
    assert meta["notes"] == []
    return dst


def _ours(cfg, checkpoint):
    model = init_detector(cfg, str(checkpoint))
    model.channels_last_inference = False  # NCHW, as transformers computes
    model.channels_last_training = False
    return model


def _processor():
    from transformers import RTDetrImageProcessor

    return RTDetrImageProcessor(size={"height": SIZE, "width": SIZE})


def _flatten(bbox_results):
    labels = np.concatenate([np.full(len(b), c) for c, b in enumerate(bbox_results)])
    dets = np.concatenate(bbox_results)
    order = np.lexsort((-dets[:, 4], labels))
    return dets[order, :4], dets[order, 4], labels[order]


def _assert_plain_attention(hf_model):
    """transformers' multi-scale attention runs its grid_sample form (no hub kernel)."""
    from transformers.models.rt_detr import modeling_rt_detr as modeling

    attn = hf_model.model.decoder.layers[0].encoder_attn.attn
    assert type(attn).forward is modeling.MultiScaleDeformableAttention.forward


def test_resnet_vd_matches_transformers_backbone(tmp_path):
    hf_model = _hf_model().eval()
    arch = rtdetr_architecture(hf_model.config.to_dict())
    state = convert_transformers_rtdetr(hf_model.state_dict(), arch)
    ours = ResNet(18, base_channels=BASE, deep_stem=True, avg_down=True,
                  conv_shortcut_first_block=True, out_indices=(1, 2, 3),
                  norm_cfg=dict(type="FrozenBN"), fold_norm=False).eval()  # fmt: skip
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    assert set(backbone) == set(ours.state_dict())
    ours.load_state_dict(backbone)
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        want = hf_model.model.backbone.model(x).feature_maps
        got = ours(x)
    for a, b in zip(got, want):  # measured: equal bit for bit (values up to 20)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("v2", [False, True], ids=["rtdetr", "rtdetr_v2"])
def test_rtdetr_inference_matches_transformers(tmp_path, v2, at_most_4_threads):
    hf_model = _hf_model(v2=v2).eval()
    if not v2:
        _assert_plain_attention(hf_model)
    rgb = skdata.coffee()  # (400, 600, 3) uint8 RGB
    processor = _processor()
    inputs = processor(images=rgb, return_tensors="pt")
    _spread_outputs(hf_model, inputs)
    checkpoint = _convert(tmp_path, hf_model, "v2" if v2 else "v1")
    with torch.no_grad():
        outputs = hf_model(**inputs)
    want = processor.post_process_object_detection(
        outputs, threshold=0.5, target_sizes=[rgb.shape[:2]]
    )[0]
    order = np.lexsort((-want["scores"].numpy(), want["labels"].numpy()))
    want_boxes = want["boxes"].numpy()[order]
    want_scores, want_labels = want["scores"].numpy()[order], want["labels"].numpy()[order]
    assert 3 <= len(want_scores) < QUERIES
    assert len(set(want_labels)) >= 2
    top = outputs.logits.sigmoid().flatten().topk(QUERIES).values
    assert (top - 0.5).abs().min() > 1e-3  # no kept pair at the threshold

    ours = _ours(_small_cfg(v2=v2), checkpoint)
    assert ours.decoder.layers[0].cross_attn.points_per_level == ([4, 4, 4] if v2 else None)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    data = _test_pipeline(ours.cfg, from_array=True)(dict(img=bgr))
    torch.testing.assert_close(data["img"][0], inputs["pixel_values"][0], rtol=0, atol=1e-6)
    with torch.no_grad():  # given transformers' own input
        samples = data["data_samples"][:1]
        batch, samples = ours._batch_with_shape(inputs["pixel_values"], samples)
        head_inputs = ours.forward_transformer(ours.extract_feat(batch), None, samples)
        logits, boxes = ours.bbox_head(head_inputs["hidden_states"], head_inputs["references"])
    # measured (RT-DETR / v2): logits (up to 8) 4.8e-5 / 4.6e-5 apart, boxes 1.3e-6 / 3.6e-7
    torch.testing.assert_close(logits[-1], outputs.logits, rtol=0, atol=2e-4)
    torch.testing.assert_close(boxes[-1], outputs.pred_boxes, rtol=0, atol=2e-5)

    # measured (RT-DETR / v2): boxes 5.5e-4 / 1.5e-4 px, scores 1.1e-5 / 2.3e-6 apart (10 / 6
    # detections)
    boxes, scores, labels = _flatten(inference_detector(ours, bgr))
    assert len(scores) == len(want_scores)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_allclose(boxes, want_boxes, rtol=0, atol=1e-2)
    np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-4)


def _batch(processor):
    images = [skdata.astronaut(), skdata.coffee()]
    inputs = processor(images=images, return_tensors="pt")
    hf_labels, samples = [], []
    for boxes, labels in TARGETS.values():
        boxes = torch.tensor(boxes, dtype=torch.float32)
        labels = torch.tensor(labels)
        scale = torch.tensor([SIZE] * 4, dtype=torch.float32)
        hf_labels.append(dict(class_labels=labels, boxes=bbox_xyxy_to_cxcywh(boxes / scale)))
        meta = dict(img_shape=(SIZE, SIZE, 3), ori_shape=(SIZE, SIZE, 3), scale_factor=1.0,
                    flip=False)  # fmt: skip
        samples.append(
            DetDataSample(metainfo=meta, gt_instances=InstanceData(bboxes=boxes, labels=labels))
        )
    return inputs, list(inputs["pixel_values"]), samples, hf_labels


def _hf_name(name, layers):
    """Our loss name -> transformers' ``loss_dict`` key."""
    prefix, _, term = name.rpartition(".")
    dn = term.startswith("dn_")
    enc = term.startswith("enc_")
    term = term.removeprefix("dn_").removeprefix("enc_")
    base = dict(loss_cls="loss_vfl", loss_bbox="loss_bbox", loss_iou="loss_giou")[term]
    if dn:
        return f"{base}_dn_{int(prefix[1:]) if prefix else layers - 1}"
    if enc:
        return f"{base}_aux_{layers - 1}"
    return f"{base}_aux_{int(prefix[1:])}" if prefix else base


def _hf_optimizer(hf_model):
    """The config's AdamW groups on transformers' parameters: the backbone at LR 1e-5,
    norms' and biases' weight decay 0 elsewhere."""
    norms = (torch.nn.BatchNorm2d, torch.nn.LayerNorm)
    groups, seen = [], set()
    for module_name, module in hf_model.named_modules():
        for local, param in module.named_parameters(recurse=False):
            if id(param) in seen:  # RT-DETRv2's heads: tied to the decoder's
                continue
            seen.add(id(param))
            name = f"{module_name}.{local}"
            if "backbone" in name:
                groups.append(dict(params=[param], lr=1e-5, weight_decay=1e-4))
            elif isinstance(module, norms) or local == "bias":
                groups.append(dict(params=[param], weight_decay=0.0))
            else:
                groups.append(dict(params=[param]))
    return torch.optim.AdamW(groups, lr=1e-4, weight_decay=1e-4)


@pytest.mark.parametrize("num_denoising, v2", [(0, False), (9, False), (0, True)],
                         ids=["no_dn", "dn", "v2_no_dn"])  # fmt: skip
def test_rtdetr_training_step_matches_transformers(tmp_path, num_denoising, v2,
                                                   at_most_4_threads):  # fmt: skip
    from transformers.loss.loss_rt_detr import RTDetrHungarianMatcher

    hf_model = _hf_model(num_denoising, v2=v2)
    checkpoint = _convert(tmp_path, hf_model, f"dn{num_denoising}_{v2}")
    # unfolded norms: folded ones round the stem's pre-activations differently, and where
    # they are near 0 the ReLU's mask differs (measured: stem and first-stage gradients
    # 6e-2 apart folded)
    cfg = _small_cfg(num_denoising, v2=v2, fold_norm=False)
    ours = _ours(cfg, checkpoint).train()
    ours.bbox_head.assigner = build_from_cfg(cfg.train_cfg["assigner"], BBOX_ASSIGNERS)
    hf_model.train()
    inputs, imgs, samples, hf_labels = _batch(_processor())

    torch.manual_seed(123)  # the denoising groups' draws
    hf_out = hf_model(**inputs, labels=hf_labels)

    # every layer's and the encoder selection's assignment
    matcher = RTDetrHungarianMatcher(hf_model.config)
    num_dn = hf_out.denoising_meta_values["dn_num_split"][0] if num_denoising else 0
    hf_layers = [dict(logits=hf_out.intermediate_logits[:, i, num_dn:],
                      pred_boxes=hf_out.intermediate_reference_points[:, i, num_dn:])
                 for i in range(LAYERS)]  # fmt: skip
    hf_layers.append(dict(logits=hf_out.enc_topk_logits, pred_boxes=hf_out.enc_topk_bboxes))
    buffers = {name: b.clone() for name, b in ours.named_buffers()}  # batch-norm statistics
    torch.manual_seed(123)
    with torch.no_grad():
        batch, shaped = ours._batch_with_shape(torch.stack(imgs), samples)
        head_inputs = ours.forward_transformer(ours.extract_feat(batch), None, shaped)
        cls_scores, bbox_preds = ours.bbox_head(
            head_inputs["hidden_states"], head_inputs["references"]
        )
        hf_matches = [matcher(hf_layer, hf_labels) for hf_layer in hf_layers]
        for name, b in ours.named_buffers():  # as before: the training forward comes next
            b.copy_(buffers[name])
    torch.manual_seed(123)
    losses = ours(img=imgs, data_samples=samples)
    ours_layers = [(cls_scores[i, :, num_dn:], bbox_preds[i, :, num_dn:]) for i in range(LAYERS)]
    ours_layers.append((head_inputs["enc_outputs_class"], head_inputs["enc_outputs_coord"]))
    gts = [s.gt_instances for s in shaped]
    metas = [s.metainfo for s in shaped]
    for layer, ((cls, boxes), hf_layer, hf_match) in enumerate(
        zip(ours_layers, hf_layers, hf_matches)
    ):
        torch.testing.assert_close(cls, hf_layer["logits"], rtol=0, atol=2e-4)
        torch.testing.assert_close(boxes, hf_layer["pred_boxes"], rtol=0, atol=2e-5)
        targets = ours.bbox_head.get_targets(cls, boxes, gts, metas)
        want = sorted((i, int(q), int(g)) for i, (qs, gs) in enumerate(hf_match)
                      for q, g in zip(qs, gs))  # fmt: skip
        got = zip(targets.pos_batch_inds, targets.pos_query_inds, targets.pos_gt_inds)
        assert sorted((int(b), int(q), int(g)) for b, q, g in got) == want, layer
        assert len(want) == 5

    hf_terms = hf_out.loss_dict
    terms = 3 * (LAYERS + 1) + (3 * LAYERS if num_denoising else 0)
    assert len(losses) == terms and len(hf_terms) == terms
    # measured (no dn / dn / v2 no dn): within 4.8e-6 / 2.9e-6 / 2.9e-6
    for name, value in losses.items():
        hf_value = hf_terms[_hf_name(name, LAYERS)].item()
        assert abs(value.item() - hf_value) < 1e-4, (name, value.item(), hf_value)
    if num_denoising:
        assert hf_out.denoising_meta_values["dn_num_group"] == 3  # 9 // 3 gts

    optimizer = build_optimizer(ours, cfg.optimizer)
    hf_optimizer = _hf_optimizer(hf_model)
    max_norm = cfg.optimizer_config["grad_clip"]["max_norm"]
    sum(losses.values()).backward()
    hf_out.loss.backward()
    params = [p for p in ours.parameters() if p.requires_grad]
    hf_params = [p for p in hf_model.parameters() if p.requires_grad]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    hf_norm = torch.nn.utils.clip_grad_norm_(hf_params, max_norm)
    # measured: 255.23 / 267.05 / 356.83, 1.4e-6 / 1.5e-6 / 5.1e-7 relative apart
    torch.testing.assert_close(norm, hf_norm, rtol=1e-5, atol=0)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    optimizer.step()
    hf_optimizer.step()
    arch = rtdetr_architecture(hf_model.config.to_dict())
    stepped = convert_transformers_rtdetr(hf_model.state_dict(), arch)
    ours_state = ours.state_dict()
    assert set(stepped) == set(ours_state)
    moved = max((ours_state[k] - v).abs().max().item() for k, v in before.items())
    assert moved > 1e-5
    for key, value in stepped.items():  # measured: within 2.3e-6 / 3.7e-6 / 1.8e-6
        torch.testing.assert_close(ours_state[key], value.to(ours_state[key].dtype), rtol=0,
                                   atol=1e-5, msg=key)  # fmt: skip
