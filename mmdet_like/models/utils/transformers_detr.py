"""Hugging Face transformers' ``DetrForObjectDetection`` weights in our DETR's names.

A folder written by ``save_pretrained`` holds ``config.json`` and the weights
(``model.safetensors``, possibly sharded with ``model.safetensors.index.json``, or
``pytorch_model.bin``). Its timm ResNet backbone (``use_timm_backbone=True``, transformers'
default: ``resnet18/34/50/101``) has torchvision's module names, which are our ``ResNet``'s:
the backbone maps to ``ResNet`` (with ``FrozenBN``, as transformers freezes its batch
norms) without a rename.

transformers -> ours (transformers 5's names; 4.x's in brackets)::

    model.backbone.model.*                       backbone.*
        [model.backbone.conv_encoder.model.*]
    model.input_projection                       neck.convs.0
    model.query_position_embeddings              query_embedding
    model.position_embedding.row_embeddings      positional_encoding.row_embed
        (column_embeddings: col_embed)           [model.backbone.position_embedding.*]
    model.encoder.layers.i.self_attn             encoder.layers.i.self_attn.attn
        .{q,k,v}_proj (weight, bias)             .in_proj_{weight,bias} (q, k, v stacked)
        .o_proj [.out_proj]                      .out_proj
    model.decoder.layers.i.self_attn             decoder.layers.i.self_attn.attn (as above)
    model.decoder.layers.i.encoder_attn          decoder.layers.i.cross_attn.attn (as above)
    *.self_attn_layer_norm                       norms.0
    *.encoder_attn_layer_norm (decoder)          norms.1
    *.final_layer_norm                           norms.1 (encoder), norms.2 (decoder)
    *.mlp.fc1, *.mlp.fc2 [*.fc1, *.fc2]          ffn.layers.0.0, ffn.layers.1
    model.decoder.layernorm                      decoder.post_norm
    class_labels_classifier                      bbox_head.fc_cls
    bbox_predictor.layers.{0, 1, 2}              bbox_head.reg_ffn.layers.0.0,
                                                 bbox_head.reg_ffn.layers.1, bbox_head.fc_reg
"""

import json
import os
import re

import torch

from mmdet_like.errors import ProjectError

RESNETS = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101}
ATTENTIONS = {"self_attn": "self_attn", "encoder_attn": "cross_attn"}


class TransformersConversionError(ProjectError, ValueError):
    """A transformers checkpoint folder that cannot be converted, with why."""


def read_pretrained_folder(folder):
    """``(config dict, state dict)`` of a ``save_pretrained`` folder."""
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise TransformersConversionError(
            f"{folder}: no config.json; give the folder written by save_pretrained"
        )
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    single = os.path.join(folder, "model.safetensors")
    index = os.path.join(folder, "model.safetensors.index.json")
    pickled = os.path.join(folder, "pytorch_model.bin")
    if os.path.isfile(single) or os.path.isfile(index):
        from safetensors.torch import load_file

        if os.path.isfile(single):
            return config, load_file(single)
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        state_dict = {}
        for shard in shards:
            state_dict.update(load_file(os.path.join(folder, shard)))
        return config, state_dict
    if os.path.isfile(pickled):
        return config, torch.load(pickled, map_location="cpu", weights_only=True)
    raise TransformersConversionError(
        f"{folder}: no model.safetensors (or model.safetensors.index.json, pytorch_model.bin)"
    )


def detr_architecture(config):
    """What our config must match, read from transformers' ``config.json`` of a DETR:
    ``num_classes``, ``CLASSES``, the backbone's ResNet depth, the transformer's sizes and
    ``auxiliary_loss`` (with it, transformers' decoder normalises each layer's input:
    our ``model.decoder.norm_layer_inputs=True``).
    Raises :class:`TransformersConversionError` for what our DETR does not have."""
    if config.get("model_type") != "detr":
        raise TransformersConversionError(
            f"config.json: model_type {config.get('model_type')!r}; this converts DETR "
            "(model_type 'detr', DetrForObjectDetection)"
        )
    architectures = config.get("architectures") or []
    if architectures and "DetrForObjectDetection" not in architectures:
        raise TransformersConversionError(
            f"config.json: architectures {architectures}; this converts DetrForObjectDetection"
        )
    backbone = config.get("backbone")
    backbone_config = config.get("backbone_config") or {}
    if backbone_config.get("model_type") == "timm_backbone":
        backbone = backbone_config.get("backbone")
        if backbone_config.get("output_stride"):
            backbone = None  # a dilated C5 (DETR-DC5)
    elif backbone_config:
        backbone = None  # a transformers (non-timm) backbone: other names
    if config.get("dilation"):
        backbone = None
    if backbone not in RESNETS:
        raise TransformersConversionError(
            f"config.json: backbone {backbone or backbone_config.get('model_type')!r} "
            f"(dilation={config.get('dilation')}); this converts timm ResNets "
            f"({', '.join(RESNETS)}) without dilation, as DETR's use_timm_backbone=True models"
        )
    position = config.get("position_embedding_type", "sine")
    if position not in ("sine", "learned"):
        raise TransformersConversionError(
            f"config.json: position_embedding_type {position!r}; 'sine' or 'learned'"
        )
    id2label = config.get("id2label") or {}
    num_classes = len(id2label) or config.get("num_labels")
    classes = [str(id2label.get(str(i), id2label.get(i, i))) for i in range(num_classes)]
    return dict(
        num_classes=num_classes,
        CLASSES=classes,
        resnet_depth=RESNETS[backbone],
        d_model=config.get("d_model", 256),
        encoder_layers=config.get("encoder_layers", 6),
        decoder_layers=config.get("decoder_layers", 6),
        encoder_attention_heads=config.get("encoder_attention_heads", 8),
        decoder_attention_heads=config.get("decoder_attention_heads", 8),
        encoder_ffn_dim=config.get("encoder_ffn_dim", 2048),
        decoder_ffn_dim=config.get("decoder_ffn_dim", 2048),
        num_queries=config.get("num_queries", 100),
        position_embedding_type=position,
        auxiliary_loss=bool(config.get("auxiliary_loss", False)),
    )


def _layer_name(rest, decoder):
    """A transformer layer's parameter name after ``layers.i.`` -> ours, or ``None``."""
    norms = (
        {"self_attn_layer_norm": 0, "encoder_attn_layer_norm": 1, "final_layer_norm": 2}
        if decoder
        else {"self_attn_layer_norm": 0, "final_layer_norm": 1}
    )
    m = re.fullmatch(r"(\w+_layer_norm)\.(weight|bias)", rest)
    if m and m.group(1) in norms:
        return f"norms.{norms[m.group(1)]}.{m.group(2)}"
    m = re.fullmatch(r"(?:mlp\.)?fc([12])\.(weight|bias)", rest)
    if m:
        return ("ffn.layers.0.0." if m.group(1) == "1" else "ffn.layers.1.") + m.group(2)
    m = re.fullmatch(r"(self_attn|encoder_attn)\.(?:o_proj|out_proj)\.(weight|bias)", rest)
    if m and (decoder or m.group(1) == "self_attn"):
        return f"{ATTENTIONS[m.group(1)]}.attn.out_proj.{m.group(2)}"
    return None


def _rename_by_table(key, table):
    """Our name of ``key`` from the first ``(pattern, replacement)`` of ``table`` that
    matches it whole, or None."""
    for pattern, target in table:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, target, key)
    return None


def _check_known(unknown, model):
    """A conversion error naming the first keys of ``unknown`` (weights of no part this
    converts) when there are any."""
    if unknown:
        raise TransformersConversionError(
            f"{len(unknown)} weight(s) of no {model} part this converts: "
            f"{', '.join(unknown[:6])}{' ...' if len(unknown) > 6 else ''}"
        )


def _stack_qkv(projections, out):
    """transformers' separate q / k / v projections, ``{(our attention prefix, weight|bias):
    {q|k|v: tensor}}``, stacked into ``nn.MultiheadAttention``'s ``in_proj_*`` of ``out``."""
    for (attn, kind), parts in sorted(projections.items()):
        if sorted(parts) != ["k", "q", "v"]:
            raise TransformersConversionError(
                f"{attn}: transformers' q/k/v projection {kind}s incomplete (have {sorted(parts)})"
            )
        out[f"{attn}.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])


def convert_transformers_detr(state_dict):
    """transformers' ``DetrForObjectDetection`` state dict -> ours (see the module).

    Returns:
        ``(state_dict, notes)``: every tensor renamed (the q, k, v projections stacked into
        ``in_proj_weight`` / ``in_proj_bias``); a key that has no place here is an error
        naming it.
    """
    out, unknown = {}, []
    projections = {}  # (our attention prefix, weight|bias) -> {q|k|v: tensor}
    simple = [
        (r"model\.backbone\.(?:conv_encoder\.)?model\.(.+)", r"backbone.\1"),
        (r"model\.input_projection\.(weight|bias)", r"neck.convs.0.\1"),
        (r"model\.query_position_embeddings\.weight", "query_embedding.weight"),
        (r"model\.(?:backbone\.)?position_embedding\.row_embeddings\.weight",
         "positional_encoding.row_embed.weight"),
        (r"model\.(?:backbone\.)?position_embedding\.column_embeddings\.weight",
         "positional_encoding.col_embed.weight"),
        (r"model\.decoder\.layernorm\.(weight|bias)", r"decoder.post_norm.\1"),
        (r"class_labels_classifier\.(weight|bias)", r"bbox_head.fc_cls.\1"),
        (r"bbox_predictor\.layers\.0\.(weight|bias)", r"bbox_head.reg_ffn.layers.0.0.\1"),
        (r"bbox_predictor\.layers\.1\.(weight|bias)", r"bbox_head.reg_ffn.layers.1.\1"),
        (r"bbox_predictor\.layers\.2\.(weight|bias)", r"bbox_head.fc_reg.\1"),
    ]  # fmt: skip
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        renamed = _rename_by_table(key, simple)
        if renamed is not None:
            out[renamed] = value
        else:
            m = re.fullmatch(r"model\.(encoder|decoder)\.layers\.(\d+)\.(.+)", key)
            if m is None:
                unknown.append(key)
                continue
            stack, index, rest = m.groups()
            prefix = f"{stack}.layers.{index}."
            proj = re.fullmatch(r"(self_attn|encoder_attn)\.([qkv])_proj\.(weight|bias)", rest)
            if proj and (stack == "decoder" or proj.group(1) == "self_attn"):
                slot = (f"{prefix}{ATTENTIONS[proj.group(1)]}.attn", proj.group(3))
                projections.setdefault(slot, {})[proj.group(2)] = value
                continue
            name = _layer_name(rest, stack == "decoder")
            if name is None:
                unknown.append(key)
                continue
            out[prefix + name] = value
    _check_known(unknown, "DetrForObjectDetection")
    _stack_qkv(projections, out)
    if "bbox_head.fc_cls.weight" not in out:
        raise TransformersConversionError(
            "no class_labels_classifier: a DetrForObjectDetection checkpoint is needed (a bare "
            "DetrModel has no detection head)"
        )
    return out


# ---------------------------------------------------------------------- Deformable DETR
# transformers -> ours (DeformableDetrForObjectDetection; DETR's renames where they apply):
#
#     model.input_proj.{i}.{0,1}                   neck.convs.{i}.{0,1} (i < backbone levels),
#                                                  neck.extra_convs.{i - levels}.{0,1}
#     model.level_embed                            level_embed
#     model.query_position_embeddings              query_embedding (positions, then queries)
#     model.reference_points                       reference_points_fc
#     model.enc_output, model.enc_output_norm      memory_trans_fc, memory_trans_norm
#     model.pos_trans, model.pos_trans_norm        pos_trans_fc, pos_trans_norm
#     model.encoder.layers.i.self_attn.*           encoder.layers.i.self_attn.* (sampling_offsets,
#                                                  attention_weights, value_proj, output_proj)
#     model.decoder.layers.i.encoder_attn.*        decoder.layers.i.cross_attn.*
#     class_embed.{i} [model.decoder.class_embed]  bbox_head.cls_branches.{i}
#     bbox_embed.{i}.layers.{0,1,2}                bbox_head.reg_branches.{i}.{0,2,4}
#         [model.decoder.bbox_embed]
#
# Tied copies (transformers ties the layers' branches to layer 0's without box refinement,
# the classifiers also with box refinement alone, and the decoder's to the head's) are
# written once by save_pretrained; each of our layers gets its tensor.

_DEFORM_PARTS = ("sampling_offsets", "attention_weights", "value_proj", "output_proj")


def deformable_detr_architecture(config):
    """What our config must match, read from a ``DeformableDetrForObjectDetection``'s
    ``config.json``: classes, the ResNet depth and its levels (``backbone_out_indices``: our
    ``ResNet.out_indices``), the transformer's sizes, ``num_feature_levels``, points,
    ``num_queries`` (``two_stage_num_proposals`` with two-stage), ``with_box_refine``,
    ``two_stage``. Raises :class:`TransformersConversionError` for what ours does not have."""
    if config.get("model_type") != "deformable_detr":
        raise TransformersConversionError(
            f"config.json: model_type {config.get('model_type')!r}; this converts Deformable "
            "DETR (model_type 'deformable_detr', DeformableDetrForObjectDetection)"
        )
    backbone_config = config.get("backbone_config") or {}
    if backbone_config.get("model_type") != "timm_backbone":
        raise TransformersConversionError(
            f"config.json: backbone_config.model_type {backbone_config.get('model_type')!r}; "
            "this converts timm ResNet backbones (transformers' default)"
        )
    backbone = backbone_config.get("backbone")
    if backbone not in RESNETS or backbone_config.get("output_stride") or config.get("dilation"):
        raise TransformersConversionError(
            f"config.json: backbone {backbone!r} (dilation={config.get('dilation')}); this "
            f"converts timm ResNets ({', '.join(RESNETS)}) without dilation"
        )
    out_indices = list(backbone_config.get("out_indices") or [2, 3, 4])
    if any(i < 1 or i > 4 for i in out_indices) or out_indices != sorted(out_indices):
        raise TransformersConversionError(
            f"config.json: backbone out_indices {out_indices}; timm ResNet stages 1-4, ascending"
        )
    two_stage = bool(config.get("two_stage", False))
    if config.get("position_embedding_type", "sine") != "sine":
        raise TransformersConversionError(
            "config.json: position_embedding_type must be 'sine' (Deformable DETR's)"
        )
    levels = config.get("num_feature_levels", 4)
    if levels < len(out_indices):
        raise TransformersConversionError(
            f"config.json: num_feature_levels {levels} is fewer than the backbone's "
            f"{len(out_indices)} levels"
        )
    id2label = config.get("id2label") or {}
    num_classes = len(id2label) or config.get("num_labels")
    classes = [str(id2label.get(str(i), id2label.get(i, i))) for i in range(num_classes)]
    return dict(
        num_classes=num_classes,
        CLASSES=classes,
        resnet_depth=RESNETS[backbone],
        backbone_out_indices=[i - 1 for i in out_indices],
        d_model=config.get("d_model", 256),
        encoder_layers=config.get("encoder_layers", 6),
        decoder_layers=config.get("decoder_layers", 6),
        encoder_attention_heads=config.get("encoder_attention_heads", 8),
        decoder_attention_heads=config.get("decoder_attention_heads", 8),
        encoder_ffn_dim=config.get("encoder_ffn_dim", 1024),
        decoder_ffn_dim=config.get("decoder_ffn_dim", 1024),
        encoder_n_points=config.get("encoder_n_points", 4),
        decoder_n_points=config.get("decoder_n_points", 4),
        num_feature_levels=levels,
        num_queries=config.get("two_stage_num_proposals", 300)
        if two_stage
        else config.get("num_queries", 300),
        with_box_refine=bool(config.get("with_box_refine", False)),
        two_stage=two_stage,
        auxiliary_loss=bool(config.get("auxiliary_loss", False)),
    )


def _deformable_layer_name(stack, rest):
    """A Deformable DETR layer's parameter name after ``layers.i.`` -> ours, or ``None``
    (the decoder's q/k/v projections are stacked by the caller)."""
    attention = "self_attn" if stack == "encoder" else "encoder_attn"
    m = re.fullmatch(rf"{attention}\.({'|'.join(_DEFORM_PARTS)})\.(weight|bias)", rest)
    if m:
        ours = "self_attn" if stack == "encoder" else "cross_attn"
        return f"{ours}.{m.group(1)}.{m.group(2)}"
    if stack == "encoder" and rest.startswith("self_attn."):
        return None
    return _layer_name(rest, stack == "decoder")


def convert_transformers_deformable_detr(state_dict, arch):
    """transformers' ``DeformableDetrForObjectDetection`` state dict and its
    :func:`deformable_detr_architecture` -> our ``DeformableDETR``'s state dict (see the
    table above); a key with no place here, or a prediction layer missing without a tie to
    explain it, is an error naming it."""
    out, unknown, projections = {}, [], {}
    branches = {"cls": {}, "reg": {}}  # kind -> {(layer, our suffix): tensor}
    backbone_levels = len(arch["backbone_out_indices"])
    simple = [
        (r"model\.backbone\.(?:conv_encoder\.)?model\.(.+)", r"backbone.\1"),
        (r"model\.level_embed", "level_embed"),
        (r"model\.query_position_embeddings\.weight", "query_embedding.weight"),
        (r"model\.reference_points\.(weight|bias)", r"reference_points_fc.\1"),
        (r"model\.enc_output\.(weight|bias)", r"memory_trans_fc.\1"),
        (r"model\.enc_output_norm\.(weight|bias)", r"memory_trans_norm.\1"),
        (r"model\.pos_trans\.(weight|bias)", r"pos_trans_fc.\1"),
        (r"model\.pos_trans_norm\.(weight|bias)", r"pos_trans_norm.\1"),
    ]  # fmt: skip
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        renamed = _rename_by_table(key, simple)
        if renamed is not None:
            out[renamed] = value
        else:
            m = re.fullmatch(r"model\.input_proj\.(\d+)\.([01])\.(weight|bias)", key)
            if m:
                level = int(m.group(1))
                place = (f"convs.{level}" if level < backbone_levels
                         else f"extra_convs.{level - backbone_levels}")  # fmt: skip
                out[f"neck.{place}.{m.group(2)}.{m.group(3)}"] = value
                continue
            m = re.fullmatch(r"(?:model\.decoder\.)?class_embed\.(\d+)\.(weight|bias)", key)
            if m:
                branches["cls"].setdefault((int(m.group(1)), m.group(2)), value)
                continue
            m = re.fullmatch(r"(?:model\.decoder\.)?bbox_embed\.(\d+)\.layers\.([012])\."
                             r"(weight|bias)", key)  # fmt: skip
            if m:
                suffix = f"{2 * int(m.group(2))}.{m.group(3)}"
                branches["reg"].setdefault((int(m.group(1)), suffix), value)
                continue
            m = re.fullmatch(r"model\.(encoder|decoder)\.layers\.(\d+)\.(.+)", key)
            if m is None:
                unknown.append(key)
                continue
            stack, index, rest = m.groups()
            prefix = f"{stack}.layers.{index}."
            proj = re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", rest)
            if proj and stack == "decoder":
                slot = (f"{prefix}self_attn.attn", proj.group(2))
                projections.setdefault(slot, {})[proj.group(1)] = value
                continue
            name = _deformable_layer_name(stack, rest)
            if name is None:
                unknown.append(key)
                continue
            out[prefix + name] = value
    _check_known(unknown, "DeformableDetrForObjectDetection")
    _stack_qkv(projections, out)
    num_pred = arch["decoder_layers"] + (1 if arch["two_stage"] else 0)
    tied = {"cls": not arch["two_stage"], "reg": not arch["with_box_refine"]}
    for kind, ours in (("cls", "cls_branches"), ("reg", "reg_branches")):
        found = branches[kind]
        if not found:
            raise TransformersConversionError(
                f"no {'class_embed' if kind == 'cls' else 'bbox_embed'}: a "
                "DeformableDetrForObjectDetection checkpoint is needed (a bare "
                "DeformableDetrModel has no detection head)"
            )
        suffixes = sorted({suffix for _, suffix in found})
        for layer in range(num_pred):
            source = layer
            if (layer, suffixes[0]) not in found:
                if not tied[kind]:
                    raise TransformersConversionError(
                        f"{'class_embed' if kind == 'cls' else 'bbox_embed'}.{layer} is missing "
                        "and not tied to layer 0 in this architecture"
                    )
                source = 0
            for suffix in suffixes:
                out[f"bbox_head.{ours}.{layer}.{suffix}"] = found[(source, suffix)]
    return out


# ---------------------------------------------------------------------- RT-DETR
# transformers -> ours (RTDetrForObjectDetection; RTDetrV2ForObjectDetection the same, its
# top-level class_embed / bbox_embed being the decoder's, tied):
#
#     model.backbone.model.embedder.embedder.{k}   backbone.stem.{3k} (convolution),
#                                                  backbone.stem.{3k + 1} (normalization)
#     ...encoder.stages.{s}.layers.{b}.layer.{k}   backbone.layer{s + 1}.{b}.conv{k + 1}, bn{k + 1}
#     ...layers.{b}.shortcut[.1]                   backbone.layer{s + 1}.{b}.downsample.{1, 2}
#                                                  (.0: the average pooling)
#     model.encoder_input_proj.{i}.{0,1}           neck.input_proj.{i}.{0,1}
#     model.encoder.aifi.{k}.layers.{j}.*          neck.encoder.{k}.layers.{j}.* (q/k/v stacked
#         [model.encoder.encoder.{k}: the file's]
#                                                  into self_attn.attn.in_proj_*; norms.{0,1};
#                                                  ffn.layers.{0.0,1})
#     model.encoder.{lateral_convs, fpn_blocks,    neck.{same}
#         downsample_convs, pan_blocks}.*
#     model.decoder_input_proj.{i}.{0,1}           decoder_input_proj.convs.{i}.{0,1} (i < the
#                                                  neck's levels), .extra_convs.{i - levels}
#     model.denoising_class_embed                  dn_query_generator.label_embedding
#     model.weight_embedding                       query_embedding (learn_initial_query)
#     model.enc_output.{0,1}                       memory_trans_fc, memory_trans_norm
#     model.enc_score_head                         bbox_head.cls_branches.{L}
#     model.enc_bbox_head.layers.{0,1,2}           bbox_head.reg_branches.{L}.{0,2,4}
#     model.decoder.layers.{i}.encoder_attn.*      decoder.layers.{i}.cross_attn.*
#     model.decoder.layers.{i}.self_attn.*         decoder.layers.{i}.self_attn.attn.* (stacked)
#     model.decoder.query_pos_head.layers.{0,1}    decoder.query_pos_head.layers.{0,1}
#     model.decoder.class_embed.{i}                bbox_head.cls_branches.{i}
#     model.decoder.bbox_embed.{i}.layers.{k}      bbox_head.reg_branches.{i}.{2k}
#
# (L = decoder_layers.) Dropped: RT-DETRv2's n_points_scale buffers (ours computes them).

RTDETR_RESNETS = {("basic", (2, 2, 2, 2)): 18, ("basic", (3, 4, 6, 3)): 34,
                  ("bottleneck", (3, 4, 6, 3)): 50, ("bottleneck", (3, 4, 23, 3)): 101}  # fmt: skip
_RTDETR_MODELS = {"rt_detr": "RTDetrForObjectDetection", "rt_detr_v2": "RTDetrV2ForObjectDetection"}


def _require(config, key, want, default, why):
    value = config.get(key, default)
    if value != want:
        raise TransformersConversionError(
            f"config.json: {key}={value!r}; ours computes {key}={want!r} ({why})"
        )


def rtdetr_architecture(config):
    """What our config must match, read from an ``RTDetrForObjectDetection`` (or
    ``RTDetrV2ForObjectDetection``) ``config.json``: classes, the ResNet-vd (``depth``,
    ``base_channels``, ``stem_channels``, ``freeze_backbone_batch_norms``), the hybrid
    encoder's and the decoder's sizes, the queries, denoising and the loss settings.
    Raises :class:`TransformersConversionError` for what ours does not compute."""
    model_type = config.get("model_type")
    if model_type not in _RTDETR_MODELS:
        raise TransformersConversionError(
            f"config.json: model_type {model_type!r}; this converts RT-DETR (model_type "
            "'rt_detr' or 'rt_detr_v2')"
        )
    backbone = config.get("backbone_config") or {}
    if backbone.get("model_type", "rt_detr_resnet") != "rt_detr_resnet":
        raise TransformersConversionError(
            f"config.json: backbone_config.model_type {backbone.get('model_type')!r}; this "
            "converts transformers' RT-DETR ResNet-vd (rt_detr_resnet)"
        )
    layer_type = backbone.get("layer_type", "bottleneck")
    depths = tuple(backbone.get("depths", (3, 4, 6, 3)))
    depth = RTDETR_RESNETS.get((layer_type, depths))
    expansion = 4 if layer_type == "bottleneck" else 1
    hidden = list(backbone.get("hidden_sizes", (256, 512, 1024, 2048)))
    base = hidden[0] // expansion
    if depth is None or hidden != [base * expansion * 2**i for i in range(4)]:
        raise TransformersConversionError(
            f"config.json: backbone {layer_type} depths {list(depths)} hidden_sizes {hidden}; "
            "this converts ResNet-18/34/50/101-vd whose stages double in width"
        )
    for key, want, default in (("downsample_in_bottleneck", False, False),
                               ("downsample_in_first_stage", False, False),
                               ("hidden_act", "relu", "relu")):  # fmt: skip
        _require(backbone, key, want, default, "RT-DETR's ResNet-vd")
    out_indices = list(backbone.get("out_indices") or [2, 3, 4])
    _require(config, "normalize_before", False, False, "post-norm encoder layers")
    _require(config, "with_box_refine", True, True, "RT-DETR refines the boxes")
    _require(config, "encoder_activation_function", "gelu", "gelu", "AIFI's FFN")
    _require(config, "decoder_activation_function", "relu", "relu", "the decoder's FFN")
    _require(config, "layer_norm_eps", 1e-5, 1e-5, "LayerNorm's default")
    _require(config, "batch_norm_eps", 1e-5, 1e-5, "BatchNorm2d's default")
    _require(config, "use_focal_loss", True, True, "sigmoid classifier")
    activation = config.get("activation_function", "silu")
    acts = {"silu": "SiLU", "relu": "ReLU", "gelu": "GELU"}
    if activation not in acts:
        raise TransformersConversionError(
            f"config.json: activation_function {activation!r}; one of {sorted(acts)}"
        )
    num_points = config.get("decoder_n_points", 4)
    levels = config.get("num_feature_levels", 3)
    if model_type == "rt_detr_v2":
        _require(config, "decoder_method", "default", "default", "bilinear sampling")
        _require(config, "decoder_offset_scale", 0.5, 0.5, "the box offsets' scale")
        _require(config, "decoder_n_levels", levels, 3, "one level count")
    decoder_in = list(config.get("decoder_in_channels", (256, 256, 256)))
    if levels - len(decoder_in) > 1:
        raise TransformersConversionError(
            f"config.json: num_feature_levels {levels} with {len(decoder_in)} decoder input "
            "levels: transformers projects each extra level from the last input level, "
            "ours (and the authors') from the previous extra level; at most one extra level"
        )
    id2label = config.get("id2label") or {}
    num_classes = len(id2label) or config.get("num_labels")
    classes = [str(id2label.get(str(i), id2label.get(i, i))) for i in range(num_classes)]
    return dict(
        num_classes=num_classes,
        CLASSES=classes,
        model_type=model_type,
        resnet_depth=depth,
        base_channels=base,
        stem_channels=backbone.get("embedding_size", 64),
        backbone_out_indices=[i - 1 for i in out_indices],
        freeze_backbone_batch_norms=bool(config.get("freeze_backbone_batch_norms", True)),
        encoder_hidden_dim=config.get("encoder_hidden_dim", 256),
        encoder_in_channels=list(config.get("encoder_in_channels", (512, 1024, 2048))),
        encoder_layers=config.get("encoder_layers", 1),
        encoder_ffn_dim=config.get("encoder_ffn_dim", 1024),
        encoder_attention_heads=config.get("encoder_attention_heads", 8),
        encode_proj_layers=list(config.get("encode_proj_layers", (2,))),
        positional_encoding_temperature=config.get("positional_encoding_temperature", 10000),
        hidden_expansion=config.get("hidden_expansion", 1.0),
        activation=acts[activation],
        eval_size=config.get("eval_size"),
        d_model=config.get("d_model", 256),
        num_queries=config.get("num_queries", 300),
        decoder_in_channels=decoder_in,
        decoder_ffn_dim=config.get("decoder_ffn_dim", 1024),
        num_feature_levels=levels,
        decoder_n_points=num_points,
        decoder_layers=config.get("decoder_layers", 6),
        decoder_attention_heads=config.get("decoder_attention_heads", 8),
        num_denoising=config.get("num_denoising", 100),
        label_noise_ratio=config.get("label_noise_ratio", 0.5),
        box_noise_scale=config.get("box_noise_scale", 1.0),
        learn_initial_query=bool(config.get("learn_initial_query", False)),
        anchor_image_size=config.get("anchor_image_size"),
        matcher_costs=[config.get("matcher_class_cost", 2.0), config.get("matcher_bbox_cost", 5.0),
                       config.get("matcher_giou_cost", 2.0)],
        matcher_alpha_gamma=[config.get("matcher_alpha", 0.25), config.get("matcher_gamma", 2.0)],
        focal_loss_alpha_gamma=[config.get("focal_loss_alpha", 0.75),
                                config.get("focal_loss_gamma", 2.0)],
        loss_weights=[config.get("weight_loss_vfl", 1.0), config.get("weight_loss_bbox", 5.0),
                      config.get("weight_loss_giou", 2.0)],
        auxiliary_loss=bool(config.get("auxiliary_loss", True)),
    )  # fmt: skip


def _rtdetr_backbone_name(rest):
    """transformers' RT-DETR ResNet parameter name after ``model.backbone.model.`` -> ours
    after ``backbone.``, or ``None``."""
    m = re.fullmatch(r"embedder\.embedder\.(\d)\.(convolution|normalization)\.(\w+)", rest)
    if m:
        return f"stem.{3 * int(m.group(1)) + (m.group(2) == 'normalization')}.{m.group(3)}"
    m = re.fullmatch(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.(.+)", rest)
    if m is None:
        return None
    stage, block, part = int(m.group(1)), m.group(2), m.group(3)
    prefix = f"layer{stage + 1}.{block}."
    m = re.fullmatch(r"layer\.(\d)\.(convolution|normalization)\.(\w+)", part)
    if m:
        kind = "conv" if m.group(2) == "convolution" else "bn"
        return f"{prefix}{kind}{int(m.group(1)) + 1}.{m.group(3)}"
    m = re.fullmatch(r"shortcut\.(?:1\.)?(convolution|normalization)\.(\w+)", part)
    if m:
        return f"{prefix}downsample.{1 if m.group(1) == 'convolution' else 2}.{m.group(2)}"
    return None


def _rtdetr_layer_name(rest, decoder):
    """An RT-DETR encoder (AIFI) or decoder layer's parameter name after ``layers.{j}.`` ->
    ours, or ``None`` (the q/k/v projections are stacked by the caller)."""
    if decoder:
        m = re.fullmatch(rf"encoder_attn\.({'|'.join(_DEFORM_PARTS)})\.(weight|bias)", rest)
        if m:
            return f"cross_attn.{m.group(1)}.{m.group(2)}"
    return _layer_name(rest, decoder)


def convert_transformers_rtdetr(state_dict, arch):
    """transformers' ``RTDetrForObjectDetection`` / ``RTDetrV2ForObjectDetection`` state
    dict and its :func:`rtdetr_architecture` -> our ``RTDETR``'s state dict (see the table
    above); a key with no place here is an error naming it."""
    out, unknown, projections = {}, [], {}
    layers = arch["decoder_layers"]
    neck_levels = len(arch["decoder_in_channels"])
    simple = [
        (r"model\.encoder_input_proj\.(\d+)\.([01])\.(\w+)", r"neck.input_proj.\1.\2.\3"),
        (r"model\.encoder\.((?:lateral_convs|fpn_blocks|downsample_convs|pan_blocks)\..+)",
         r"neck.\1"),
        (r"model\.denoising_class_embed\.weight", "dn_query_generator.label_embedding.weight"),
        (r"model\.weight_embedding\.weight", "query_embedding.weight"),
        (r"model\.enc_output\.0\.(weight|bias)", r"memory_trans_fc.\1"),
        (r"model\.enc_output\.1\.(weight|bias)", r"memory_trans_norm.\1"),
        (r"model\.enc_score_head\.(weight|bias)", rf"bbox_head.cls_branches.{layers}.\1"),
        (r"model\.decoder\.query_pos_head\.layers\.([01])\.(weight|bias)",
         r"decoder.query_pos_head.layers.\1.\2"),
        (r"(?:model\.decoder\.)?class_embed\.(\d+)\.(weight|bias)",
         r"bbox_head.cls_branches.\1.\2"),
    ]  # fmt: skip
    for key, value in state_dict.items():
        if key.endswith("n_points_scale"):
            continue
        renamed = _rename_by_table(key, simple)
        if renamed is not None:
            out[renamed] = value
            continue
        m = re.fullmatch(r"model\.backbone\.model\.(.+)", key)
        if m:
            name = _rtdetr_backbone_name(m.group(1))
            if name is None:
                unknown.append(key)
            else:
                out[f"backbone.{name}"] = value
            continue
        m = re.fullmatch(r"(model\.enc_bbox_head|(?:model\.decoder\.)?bbox_embed\.(\d+))"
                         r"\.layers\.([012])\.(weight|bias)", key)  # fmt: skip
        if m:
            branch = layers if m.group(2) is None else int(m.group(2))
            out[f"bbox_head.reg_branches.{branch}.{2 * int(m.group(3))}.{m.group(4)}"] = value
            continue
        m = re.fullmatch(r"model\.decoder_input_proj\.(\d+)\.([01])\.(\w+)", key)
        if m:
            level = int(m.group(1))
            place = (
                f"convs.{level}" if level < neck_levels else f"extra_convs.{level - neck_levels}"
            )
            out[f"decoder_input_proj.{place}.{m.group(2)}.{m.group(3)}"] = value
            continue
        m = re.fullmatch(r"model\.(?:encoder\.(?:aifi|encoder)\.(\d+)|decoder)\.layers\.(\d+)"
                         r"\.(.+)", key)  # fmt: skip
        if m is None:
            unknown.append(key)
            continue
        decoder = m.group(1) is None
        prefix = (f"decoder.layers.{m.group(2)}." if decoder
                  else f"neck.encoder.{m.group(1)}.layers.{m.group(2)}.")  # fmt: skip
        rest = m.group(3)
        proj = re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", rest)
        if proj:
            slot = (f"{prefix}self_attn.attn", proj.group(2))
            projections.setdefault(slot, {})[proj.group(1)] = value
            continue
        name = _rtdetr_layer_name(rest, decoder)
        if name is None:
            unknown.append(key)
            continue
        out[prefix + name] = value
    _check_known(unknown, _RTDETR_MODELS[arch["model_type"]])
    _stack_qkv(projections, out)
    if "bbox_head.cls_branches.0.weight" not in out:
        raise TransformersConversionError(
            "no class_embed: an RTDetrForObjectDetection checkpoint is needed (a bare "
            "RTDetrModel has no detection head)"
        )
    return out
