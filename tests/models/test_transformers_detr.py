"""Proof that configs/transformers/detr_r50_transformers.py computes what Hugging Face
transformers' DETR computes, at inference and in a training step.

transformers' ``DetrForObjectDetection`` is built small (its default timm backbone, here
ResNet-18; width 32, 2 encoder and 2 decoder layers, 24 queries, 5 classes) with a fixed
seed and random weights, its frozen batch norms given random statistics and two classes'
logits raised so that detections are confident; ``save_pretrained`` writes it,
tools/model_converters/transformers2ours.py converts it, and our model from the config (the
same sizes set) loads it. Both run on scikit-image's photographs, resized by transformers'
``DetrImageProcessor`` (short side 320, long side at most 512) and by our pipeline.

- Inference (``coffee``, 400 x 600 -> 320 x 480): the processor's input and ours are the
  same pixels; detections above transformers' 0.5 threshold (its post-processing, in the
  original image): same count and labels, boxes within 1e-2 px, scores within 1e-4.
- Training (``astronaut`` and ``coffee`` in one padded batch, hand-placed boxes): every
  decoder layer's Hungarian assignment equal to transformers' ``HungarianMatcher``'s, every
  loss term (final and auxiliary) within 1e-4 of its ``loss_dict`` times its coefficients,
  and one AdamW step (the config's: LR 1e-4, the backbone at 0.1x, weight decay 1e-4,
  gradients clipped to norm 0.1) within 1e-5 on every weight.

Targets are given to transformers as it takes them (normalised ``[cx, cy, w, h]``), each
image's boxes normalised by its own size, as DETR and mmdetection do.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from mmdet_like.apis import inference_detector, init_detector
from mmdet_like.apis.inference import _test_pipeline
from mmdet_like.engine import load_config
from mmdet_like.engine.optimizer import build_optimizer
from mmdet_like.models.detectors.detection_transformer import padding_masks
from mmdet_like.models.utils.transformers_detr import convert_transformers_detr
from mmdet_like.structures import DetDataSample, InstanceData
from mmdet_like.structures.bbox import bbox_xyxy_to_cxcywh
from tests.engine.cli_utils import load_tool

transformers = pytest.importorskip("transformers")
skdata = pytest.importorskip("skimage.data")
pytest.importorskip("timm")

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "transformers" / "detr_r50_transformers.py"
MIN_SIZE, MAX_SIZE = 320, 512
D_MODEL, HEADS, FFN_DIM, LAYERS, QUERIES, NUM_CLASSES = 32, 4, 64, 2, 24, 5
RAISED_CLASSES = (1, 3)
# hand-placed boxes in the resized images, [x1, y1, x2, y2]
TARGETS = {
    "astronaut": ([[140, 10, 250, 140], [30, 100, 300, 320], [190, 210, 280, 300]], [1, 3, 0]),
    "coffee": ([[130, 60, 330, 250], [20, 10, 150, 120]], [2, 1]),
}


def _hf_model(auxiliary_loss):
    """transformers' DETR, small, seeded, with random frozen-norm statistics and two raised
    class logits."""
    from transformers import DetrConfig, DetrForObjectDetection

    config = DetrConfig(
        use_timm_backbone=True, backbone="resnet18", d_model=D_MODEL,
        encoder_layers=LAYERS, decoder_layers=LAYERS, encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS, encoder_ffn_dim=FFN_DIM, decoder_ffn_dim=FFN_DIM,
        num_queries=QUERIES, num_labels=NUM_CLASSES, dropout=0.0,
        auxiliary_loss=auxiliary_loss,
        id2label={i: f"class{i}" for i in range(NUM_CLASSES)},
    )  # fmt: skip
    torch.manual_seed(0)
    model = DetrForObjectDetection(config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        # transformers initialises linear layers and the query positions with std 0.02
        # (init_std): every query would score the same; xavier-uniform layers and unit
        # normal query positions (DETR's) give each query its own class and box
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and "backbone" not in name:
                torch.nn.init.xavier_uniform_(module.weight, generator=generator)
                torch.nn.init.uniform_(module.bias, -0.1, 0.1, generator=generator)
        torch.nn.init.normal_(model.model.query_position_embeddings.weight, generator=generator)
        for name, buffer in model.named_buffers():
            if "backbone" not in name:
                continue
            n = buffer.numel()
            if name.endswith("running_var"):
                buffer.copy_(torch.rand(n, generator=generator) + 0.5)
            elif name.endswith("running_mean"):
                buffer.copy_(torch.randn(n, generator=generator) * 0.1)
            elif name.endswith("weight"):
                buffer.copy_(0.9 + 0.2 * torch.rand(n, generator=generator))
            elif name.endswith("bias"):
                buffer.copy_(torch.randn(n, generator=generator) * 0.1)
        model.class_labels_classifier.bias[list(RAISED_CLASSES)] += 2.0
    return model


def _spread_outputs(model, inputs):
    """Random decoders give every query almost the same output (zero queries differ only by
    where they attend): scale the classifier and the last box layer so that, on ``inputs``,
    the queries' logits vary by about 2 and their boxes by about 1 before the sigmoid, the
    classes of ``RAISED_CLASSES`` centred 1 above the others and no-object at 0.5 (some
    queries detect, some do not)."""
    with torch.no_grad():
        hidden = model(**inputs).last_hidden_state[0]  # (Q, C): what the heads read
        for linear, spread, centre in (
            (model.class_labels_classifier, 2.0, torch.tensor([-1.0, 1, -1, 1, -1, 0.5])),
            (model.bbox_predictor.layers[2], 1.0, torch.zeros(4)),
        ):
            inner = hidden
            if linear is model.bbox_predictor.layers[2]:
                for layer in model.bbox_predictor.layers[:2]:
                    inner = torch.relu(layer(inner))
            out = torch.nn.functional.linear(inner, linear.weight)
            linear.weight.mul_(spread / out.std(0).clamp(min=1e-6)[:, None])
            out = torch.nn.functional.linear(inner, linear.weight)
            linear.bias.copy_(centre - out.mean(0))


def _small_cfg(fold_norm=False, norm_layer_inputs=False):
    """The transformers config with the test model's sizes and, as the test's transformers
    model, no dropout (``norm_layer_inputs``: as its decoder with ``auxiliary_loss``)."""
    attn = dict(embed_dims=D_MODEL, num_heads=HEADS, dropout=0.0)
    ffn = dict(embed_dims=D_MODEL, feedforward_channels=FFN_DIM, ffn_drop=0.0, dropout=0.0)
    cfg = load_config(
        str(CONFIG),
        dict(
            model=dict(
                num_queries=QUERIES,
                backbone=dict(depth=18, fold_norm=fold_norm),
                neck=dict(in_channels=[512], out_channels=D_MODEL),
                encoder=dict(num_layers=LAYERS, layer_cfg=dict(self_attn_cfg=attn, ffn_cfg=ffn)),
                decoder=dict(
                    num_layers=LAYERS,
                    norm_layer_inputs=norm_layer_inputs,
                    layer_cfg=dict(self_attn_cfg=attn, cross_attn_cfg=attn, ffn_cfg=ffn),
                ),
                positional_encoding=dict(num_feats=D_MODEL // 2),
                bbox_head=dict(num_classes=NUM_CLASSES, embed_dims=D_MODEL),
            )
        ),
    )
    pipeline = cfg.data.test.pipeline
    pipeline[1]["img_scale"] = (MAX_SIZE, MIN_SIZE)
    cfg.data.test.pipeline = pipeline
    return cfg


def _convert(tmp_path, hf_model):
    folder, dst = tmp_path / "hf_detr", tmp_path / "detr.pth"
    hf_model.save_pretrained(folder)
    meta = load_tool("model_converters/transformers2ours").convert(str(folder), str(dst))
    assert meta["num_classes"] == NUM_CLASSES and meta["CLASSES"][1] == "class1"
    assert meta["architecture"]["resnet_depth"] == 18
    return dst


def _ours(cfg, checkpoint):
    model = init_detector(cfg, str(checkpoint))
    model.channels_last_inference = False  # NCHW, as transformers computes
    model.channels_last_training = False
    return model


def _processor():
    from transformers import DetrImageProcessor

    return DetrImageProcessor(size={"shortest_edge": MIN_SIZE, "longest_edge": MAX_SIZE})


def _flatten(bbox_results):
    """Per-class results -> boxes (n, 4), scores (n,), labels (n,), sorted by label, score."""
    labels = np.concatenate([np.full(len(b), c) for c, b in enumerate(bbox_results)])
    dets = np.concatenate(bbox_results)
    order = np.lexsort((-dets[:, 4], labels))
    return dets[order, :4], dets[order, 4], labels[order]


def test_detr_inference_matches_transformers(tmp_path, at_most_4_threads):
    hf_model = _hf_model(auxiliary_loss=False).eval()
    rgb = skdata.coffee()  # (400, 600, 3) uint8 RGB
    processor = _processor()
    inputs = processor(images=rgb, return_tensors="pt")
    _spread_outputs(hf_model, inputs)
    checkpoint = _convert(tmp_path, hf_model)
    with torch.no_grad():
        outputs = hf_model(**inputs)
    want = processor.post_process_object_detection(
        outputs, threshold=0.5, target_sizes=[rgb.shape[:2]]
    )[0]
    order = np.lexsort((-want["scores"].numpy(), want["labels"].numpy()))
    want_boxes = want["boxes"].numpy()[order]
    want_scores, want_labels = want["scores"].numpy()[order], want["labels"].numpy()[order]
    assert 5 <= len(want_scores) < QUERIES  # thresholded: some queries, not all
    assert len(set(want_labels)) >= 2
    all_scores = outputs.logits.softmax(-1)[0, :, :-1].max(-1).values
    assert (all_scores - 0.5).abs().min() > 1e-3  # no query at the threshold

    bgr = np.ascontiguousarray(rgb[..., ::-1])
    ours = _ours(_small_cfg(fold_norm=False), checkpoint)
    # the same pixels (our pipeline's normalisation rounds as mmcv's, multiplying by 1/std:
    # 2.4e-7 apart) and, given transformers' own input, the same outputs (measured: equal)
    data = _test_pipeline(ours.cfg, from_array=True)(dict(img=bgr))
    torch.testing.assert_close(data["img"][0], inputs["pixel_values"][0], rtol=0, atol=1e-6)
    with torch.no_grad():
        batch, masks = padding_masks(inputs["pixel_values"], data["data_samples"][:1])
        hidden = ours.forward_transformer(ours.extract_feat(batch), masks)["hidden_states"]
        logits, boxes = ours.bbox_head(hidden)
    torch.testing.assert_close(logits[-1], outputs.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(boxes[-1], outputs.pred_boxes, rtol=0, atol=1e-6)

    # measured (fold_norm off / on): boxes 6.0e-3 / 6.6e-3 px, scores 2.2e-5 / 1.6e-5 apart,
    # the input's rounding amplified by the random network
    for fold_norm in (False, True):
        if fold_norm:
            ours = _ours(_small_cfg(fold_norm=True), checkpoint)
        boxes, scores, labels = _flatten(inference_detector(ours, bgr))
        assert len(scores) == len(want_scores)
        np.testing.assert_array_equal(labels, want_labels)
        np.testing.assert_allclose(boxes, want_boxes, rtol=0, atol=1e-2)
        np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-4)


def _batch(processor):
    """The two photographs through transformers' processor (padded batch and mask), their
    sizes and the targets in both forms."""
    images = [skdata.astronaut(), skdata.coffee()]
    inputs = processor(images=images, return_tensors="pt")
    sizes = [tuple(int(v) for v in m.nonzero().max(0).values + 1) for m in inputs["pixel_mask"]]
    hf_labels, samples = [], []
    for (boxes, labels), (h, w) in zip(TARGETS.values(), sizes):
        boxes = torch.tensor(boxes, dtype=torch.float32)
        labels = torch.tensor(labels)
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        hf_labels.append(dict(class_labels=labels, boxes=bbox_xyxy_to_cxcywh(boxes / scale)))
        meta = dict(img_shape=(h, w, 3), ori_shape=(h, w, 3), scale_factor=1.0, flip=False)
        samples.append(
            DetDataSample(metainfo=meta, gt_instances=InstanceData(bboxes=boxes, labels=labels))
        )
    imgs = [inputs["pixel_values"][i, :, :h, :w] for i, (h, w) in enumerate(sizes)]
    return inputs, imgs, samples, hf_labels


def test_detr_training_step_matches_transformers(tmp_path, at_most_4_threads):
    from transformers.loss.loss_for_object_detection import HungarianMatcher

    hf_model = _hf_model(auxiliary_loss=True)
    checkpoint = _convert(tmp_path, hf_model)
    cfg = _small_cfg(fold_norm=False, norm_layer_inputs=True)
    ours = _ours(cfg, checkpoint).train()
    hf_model.train()
    inputs, imgs, samples, hf_labels = _batch(_processor())
    assert inputs["pixel_values"].shape[-2:] == (320, 480)
    assert tuple(samples[0].metainfo["img_shape"][:2]) == (320, 320)

    hf_out = hf_model(**inputs, labels=hf_labels)
    losses = ours(img=imgs, data_samples=samples)

    # every layer's outputs (measured: equal) and assignment: transformers' matcher on its
    # outputs, ours on ours
    matcher = HungarianMatcher(class_cost=1, bbox_cost=5, giou_cost=2)
    hf_layers = [
        *hf_out.auxiliary_outputs,
        dict(logits=hf_out.logits, pred_boxes=hf_out.pred_boxes),
    ]
    with torch.no_grad():
        batch, masks = padding_masks(imgs, samples)
        head_inputs = ours.forward_transformer(ours.extract_feat(batch), masks, samples)
        cls_scores, bbox_preds = ours.bbox_head(head_inputs["hidden_states"])
        hf_matches = [matcher(hf_layer, hf_labels) for hf_layer in hf_layers]
    gts = [s.gt_instances for s in samples]
    metas = [s.metainfo for s in samples]
    for layer, (hf_layer, hf_match) in enumerate(zip(hf_layers, hf_matches)):
        torch.testing.assert_close(cls_scores[layer], hf_layer["logits"], rtol=0, atol=1e-5)
        torch.testing.assert_close(bbox_preds[layer], hf_layer["pred_boxes"], rtol=0, atol=1e-6)
        targets = ours.bbox_head.get_targets(cls_scores[layer], bbox_preds[layer], gts, metas)
        want = sorted((i, int(q), int(g)) for i, (qs, gs) in enumerate(hf_match)
                      for q, g in zip(qs, gs))  # fmt: skip
        got = zip(targets.pos_batch_inds, targets.pos_query_inds, targets.pos_gt_inds)
        assert sorted((int(b), int(q), int(g)) for b, q, g in got) == want, layer
        assert len(want) == 5  # every gt matched

    hf_terms = hf_out.loss_dict
    coefficients = dict(loss_cls=("loss_ce", 1.0), loss_bbox=("loss_bbox", 5.0),
                        loss_iou=("loss_giou", 2.0))  # fmt: skip
    assert len(losses) == 3 * LAYERS
    for name, value in losses.items():  # measured: within 1.5e-6
        prefix, _, term = name.rpartition(".")
        hf_name, coefficient = coefficients[term]
        if prefix:  # d0.loss_cls: transformers' loss_ce_0
            hf_name = f"{hf_name}_{int(prefix[1:])}"
        assert abs(value.item() - coefficient * hf_terms[hf_name].item()) < 1e-4, name

    # one AdamW step, the config's optimizer and clipping on our side, the same by hand on
    # transformers' (it trains the whole timm backbone; its batch norms are buffers)
    optimizer = build_optimizer(ours, cfg.optimizer)
    backbone = [p for n, p in hf_model.named_parameters() if n.startswith("model.backbone.")]
    others = [p for n, p in hf_model.named_parameters() if not n.startswith("model.backbone.")]
    assert all(p.requires_grad for p in backbone) and len(backbone) == 20  # every conv
    hf_optimizer = torch.optim.AdamW(
        [dict(params=backbone, lr=1e-5), dict(params=others)], lr=1e-4, weight_decay=1e-4
    )
    max_norm = cfg.optimizer_config["grad_clip"]["max_norm"]
    sum(losses.values()).backward()
    hf_out.loss.backward()
    norm = torch.nn.utils.clip_grad_norm_([p for p in ours.parameters() if p.requires_grad],
                                          max_norm)  # fmt: skip
    hf_norm = torch.nn.utils.clip_grad_norm_(list(hf_model.parameters()), max_norm)
    torch.testing.assert_close(norm, hf_norm, rtol=1e-5, atol=0)  # measured: equal (177.45)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    optimizer.step()
    hf_optimizer.step()
    stepped = convert_transformers_detr(hf_model.state_dict())
    ours_state = ours.state_dict()
    assert set(stepped) == set(ours_state)
    moved = max((ours_state[k] - v).abs().max().item() for k, v in before.items())
    assert moved > 5e-5  # the step changed the weights (by about the LR)
    for key, value in stepped.items():  # measured: within 1.8e-7
        torch.testing.assert_close(ours_state[key], value, rtol=0, atol=1e-5, msg=key)


def test_converter_names_and_refusals(tmp_path):
    """transformers 4.x's names convert as 5.x's; what our DETR lacks is refused, named."""
    from mmdet_like.models.utils.transformers_detr import (
        TransformersConversionError,
        detr_architecture,
        read_pretrained_folder,
    )

    hf_model = _hf_model(auxiliary_loss=True)
    folder = tmp_path / "hf"
    hf_model.save_pretrained(folder)
    config, state = read_pretrained_folder(str(folder))
    arch = detr_architecture(config)
    assert (arch["d_model"], arch["encoder_layers"], arch["num_queries"]) == (D_MODEL, 2, QUERIES)
    assert arch["auxiliary_loss"] and arch["position_embedding_type"] == "sine"
    ours = convert_transformers_detr(state)
    q = state["model.decoder.layers.1.encoder_attn.q_proj.weight"]
    v = state["model.decoder.layers.1.encoder_attn.v_proj.bias"]
    torch.testing.assert_close(ours["decoder.layers.1.cross_attn.attn.in_proj_weight"][:D_MODEL], q)
    torch.testing.assert_close(ours["decoder.layers.1.cross_attn.attn.in_proj_bias"][-D_MODEL:], v)
    # 4.x: backbone.conv_encoder, self_attn.out_proj, fc1 / fc2 at the layer's level
    renames = [("model.backbone.model.", "model.backbone.conv_encoder.model."),
               (".o_proj.", ".out_proj."), (".mlp.fc", ".fc")]  # fmt: skip
    old = {}
    for key, value in state.items():
        for new, before in renames:
            key = key.replace(new, before)
        old[key] = value
    converted = convert_transformers_detr(old)
    assert converted.keys() == ours.keys()
    assert all(torch.equal(converted[k], ours[k]) for k in ours)

    with pytest.raises(TransformersConversionError, match="1 weight.*model.extra.weight"):
        convert_transformers_detr({**state, "model.extra.weight": torch.zeros(1)})
    with pytest.raises(TransformersConversionError, match="q/k/v projection weights incomplete"):
        convert_transformers_detr(
            {k: v for k, v in state.items() if "layers.0.self_attn.k_proj.weight" not in k}
        )
    for change, message in [
        (dict(model_type="deformable_detr"), "model_type 'deformable_detr'"),
        (dict(dilation=True), "without dilation"),
        (dict(backbone_config=dict(model_type="resnet")), "backbone 'resnet'"),
        (dict(position_embedding_type="sine_v2"), "'sine' or 'learned'"),
    ]:
        with pytest.raises(TransformersConversionError, match=message):
            detr_architecture({**config, **change})
    with pytest.raises(TransformersConversionError, match="no config.json"):
        read_pretrained_folder(str(tmp_path))
    tool = load_tool("model_converters/transformers2ours")
    from mmdet_like.models.utils.foreign_checkpoints import ForeignCheckpointError

    # --config: the full-size DETR-R50 config does not fit the small model, and says where
    with pytest.raises(ForeignCheckpointError, match=r"missing backbone.layer1.0.conv3.weight"):
        tool.convert(str(folder), str(tmp_path / "x.pth"), config=str(CONFIG))
