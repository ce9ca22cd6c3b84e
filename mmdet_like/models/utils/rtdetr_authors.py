"""The RT-DETR authors' checkpoints (lyuwenyu/RT-DETR: ``rtdetr_pytorch``'s RT-DETR and
``rtdetrv2_pytorch``'s RT-DETRv2, e.g. ``rtdetr_r50vd_6x_coco_from_paddle.pth``) in our
``RTDETR``'s names.

A checkpoint holds ``{"ema": {"module": state_dict, ...}}`` (the averaged weights, which
their evaluation uses) and/or ``{"model": state_dict}``; a bare state dict is read too.

authors -> ours::

    backbone.conv1.conv1_{k}.{conv,norm}           backbone.stem.{3k - 3, 3k - 2}
    backbone.res_layers.{s}.blocks.{b}.branch2{a,b,c}.{conv,norm}
                                                   backbone.layer{s + 1}.{b}.{conv,bn}{1,2,3}
    ...blocks.{b}.short[.conv].{conv,norm}         backbone.layer{s + 1}.{b}.downsample.{1,2}
                                                   (.0: the pooling, no weights)
    encoder.input_proj.{i}.{0,1} | .{conv,norm}    neck.input_proj.{i}.{0,1}
    encoder.encoder.{k}.layers.{j}.self_attn       neck.encoder.{k}.layers.{j}.self_attn.attn
    ....linear1, linear2, norm1, norm2             ....ffn.layers.0.0, ffn.layers.1, norms.{0,1}
    encoder.{lateral_convs,fpn_blocks,downsample_convs,pan_blocks}.*   neck.*
    decoder.input_proj.{i}.{conv,norm}             decoder_input_proj.convs.{i}.{0,1} (or
                                                   .extra_convs.{i - encoder levels})
    decoder.decoder.layers.{i}.self_attn           decoder.layers.{i}.self_attn.attn
    ....cross_attn.*                               ....cross_attn.* (v2's num_points_scale
                                                   dropped: ours computes it)
    ....linear1, linear2, norm1, norm2, norm3      ....ffn.layers.0.0, ffn.layers.1, norms.{0,1,2}
    decoder.denoising_class_embed                  dn_query_generator.label_embedding
    decoder.tgt_embed                              query_embedding
    decoder.query_pos_head.layers.{0,1}            decoder.query_pos_head.layers.{0,1}
    decoder.enc_output.{0,1} | .{proj,norm}        memory_trans_fc, memory_trans_norm
    decoder.enc_score_head                         bbox_head.cls_branches.{L}
    decoder.enc_bbox_head.layers.{k}               bbox_head.reg_branches.{L}.{2k}
    decoder.dec_score_head.{i}                     bbox_head.cls_branches.{i}
    decoder.dec_bbox_head.{i}.layers.{k}           bbox_head.reg_branches.{i}.{2k}

(``L``: the decoder's layer count.)
"""

import re

from mmdet_like.models.utils.transformers_detr import (
    TransformersConversionError,
    _check_known,
    _rename_by_table,
)

_BRANCH = {"a": 1, "b": 2, "c": 3}
_FFN = {"linear1": "ffn.layers.0.0", "linear2": "ffn.layers.1"}


class AuthorsConversionError(TransformersConversionError):
    """An RT-DETR authors' checkpoint that cannot be converted, with why."""


def authors_state_dict(checkpoint):
    """The state dict of an authors' checkpoint: its EMA weights when there are, else its
    model's, else the dict itself (a bare state dict)."""
    if isinstance(checkpoint, dict):
        ema = checkpoint.get("ema")
        if isinstance(ema, dict) and isinstance(ema.get("module"), dict):
            return ema["module"]
        if isinstance(checkpoint.get("model"), dict):
            return checkpoint["model"]
        if any(k.startswith(("backbone.", "encoder.", "decoder.")) for k in checkpoint):
            return checkpoint
    raise AuthorsConversionError(
        "not an RT-DETR authors' checkpoint: expected {'ema': {'module': ...}}, "
        "{'model': ...} or a state dict of backbone./encoder./decoder. weights"
    )


def rtdetr_authors_architecture(state_dict):
    """What our config must match, read from the weights: the ResNet depth, the hybrid
    encoder's width, CSP expansion and FFN width, the decoder's width, layers and levels,
    the classes, whether there are denoising and learned queries, RT-DETRv2's per-level
    points (``num_points_scale``). Heads and points per head are not in the weights (the
    authors' 8 heads; our config's ``num_points`` must give ``sampling_offsets`` its rows)."""
    blocks = {}
    for key in state_dict:
        m = re.match(r"backbone\.res_layers\.(\d+)\.blocks\.(\d+)\.", key)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    bottleneck = any(".branch2c." in k for k in state_dict)
    depths = tuple(blocks[s] for s in sorted(blocks))
    depth = {(False, (2, 2, 2, 2)): 18, (False, (3, 4, 6, 3)): 34, (True, (3, 4, 6, 3)): 50,
             (True, (3, 4, 23, 3)): 101}.get((bottleneck, depths))  # fmt: skip
    if depth is None:
        raise AuthorsConversionError(
            f"backbone: {'bottleneck' if bottleneck else 'basic'} blocks {list(depths)}; this "
            "converts the authors' PResNet-18/34/50/101 (variant d)"
        )
    score_heads = {int(m.group(1)) for k in state_dict
                   if (m := re.match(r"decoder\.dec_score_head\.(\d+)\.weight", k))}  # fmt: skip
    if not score_heads:
        raise AuthorsConversionError("no decoder.dec_score_head: not an RT-DETR checkpoint")
    encoder_levels = {int(m.group(1)) for k in state_dict
                      if (m := re.match(r"encoder\.input_proj\.(\d+)\.", k))}  # fmt: skip
    decoder_levels = {int(m.group(1)) for k in state_dict
                      if (m := re.match(r"decoder\.input_proj\.(\d+)\.", k))}  # fmt: skip
    proj = state_dict["encoder.input_proj.0.0.weight" if "encoder.input_proj.0.0.weight"
                      in state_dict else "encoder.input_proj.0.conv.weight"]  # fmt: skip
    width = proj.shape[0]
    hidden = state_dict["encoder.fpn_blocks.0.conv1.conv.weight"].shape[0]
    ffn = state_dict["encoder.encoder.0.layers.0.linear1.weight"].shape[0]
    score = state_dict["decoder.dec_score_head.0.weight"]
    per_level = None
    scale = state_dict.get("decoder.decoder.layers.0.cross_attn.num_points_scale")
    if scale is not None:  # RT-DETRv2: 1 / n for each of a level's n points, level by level
        values, per_level, i = scale.tolist(), [], 0
        while i < len(values):
            count = int(round(1.0 / values[i]))
            per_level.append(count)
            i += count
    return dict(
        resnet_depth=depth,
        encoder_levels=len(encoder_levels),
        neck_width=width,
        expansion=hidden / width,
        encoder_ffn_dim=ffn,
        d_model=score.shape[1],
        num_classes=score.shape[0],
        decoder_layers=len(score_heads),
        num_feature_levels=len(decoder_levels),
        decoder_ffn_dim=state_dict["decoder.decoder.layers.0.linear1.weight"].shape[0],
        denoising="decoder.denoising_class_embed.weight" in state_dict,
        learn_initial_query="decoder.tgt_embed.weight" in state_dict,
        points_per_level=per_level,
    )


def _layer_part(rest, decoder):
    """An authors' transformer layer's parameter name after ``layers.{j}.`` -> ours."""
    m = re.fullmatch(r"self_attn\.(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)",
                     rest)  # fmt: skip
    if m:
        return f"self_attn.attn.{m.group(1)}"
    m = re.fullmatch(r"(linear[12])\.(weight|bias)", rest)
    if m:
        return f"{_FFN[m.group(1)]}.{m.group(2)}"
    m = re.fullmatch(r"norm([123])\.(weight|bias)", rest)
    if m and (decoder or m.group(1) != "3"):
        return f"norms.{int(m.group(1)) - 1}.{m.group(2)}"
    m = re.fullmatch(r"cross_attn\.(sampling_offsets|attention_weights|value_proj|output_proj)"
                     r"\.(weight|bias)", rest)  # fmt: skip
    if m and decoder:
        return f"cross_attn.{m.group(1)}.{m.group(2)}"
    return None


def convert_rtdetr_authors(state_dict, arch=None):
    """An authors' RT-DETR / RT-DETRv2 state dict -> our ``RTDETR``'s (the table above);
    a key with no place here is an error naming it."""
    arch = arch or rtdetr_authors_architecture(state_dict)
    layers, levels = arch["decoder_layers"], arch["encoder_levels"]
    out, unknown = {}, []
    simple = [
        (r"encoder\.input_proj\.(\d+)\.(?:0|conv)\.(\w+)", r"neck.input_proj.\1.0.\2"),
        (r"encoder\.input_proj\.(\d+)\.(?:1|norm)\.(\w+)", r"neck.input_proj.\1.1.\2"),
        (r"encoder\.((?:lateral_convs|fpn_blocks|downsample_convs|pan_blocks)\..+)", r"neck.\1"),
        (r"decoder\.denoising_class_embed\.weight", "dn_query_generator.label_embedding.weight"),
        (r"decoder\.tgt_embed\.weight", "query_embedding.weight"),
        (r"decoder\.query_pos_head\.layers\.([01])\.(weight|bias)",
         r"decoder.query_pos_head.layers.\1.\2"),
        (r"decoder\.enc_output\.(?:0|proj)\.(weight|bias)", r"memory_trans_fc.\1"),
        (r"decoder\.enc_output\.(?:1|norm)\.(weight|bias)", r"memory_trans_norm.\1"),
        (r"decoder\.enc_score_head\.(weight|bias)", rf"bbox_head.cls_branches.{layers}.\1"),
        (r"decoder\.dec_score_head\.(\d+)\.(weight|bias)", r"bbox_head.cls_branches.\1.\2"),
    ]  # fmt: skip
    for key, value in state_dict.items():
        if key.endswith("num_points_scale"):
            continue
        renamed = _rename_by_table(key, simple)
        if renamed is not None:
            out[renamed] = value
            continue
        m = re.fullmatch(r"backbone\.conv1\.conv1_([123])\.(conv|norm)\.(\w+)", key)
        if m:
            out[f"backbone.stem.{3 * int(m.group(1)) - 3 + (m.group(2) == 'norm')}."
                f"{m.group(3)}"] = value  # fmt: skip
            continue
        m = re.fullmatch(r"backbone\.res_layers\.(\d+)\.blocks\.(\d+)\.(.+)", key)
        if m:
            prefix = f"backbone.layer{int(m.group(1)) + 1}.{m.group(2)}."
            part = m.group(3)
            branch = re.fullmatch(r"branch2([abc])\.(conv|norm)\.(\w+)", part)
            short = re.fullmatch(r"short\.(?:conv\.)?(conv|norm)\.(\w+)", part)
            if branch:
                kind = "conv" if branch.group(2) == "conv" else "bn"
                out[f"{prefix}{kind}{_BRANCH[branch.group(1)]}.{branch.group(3)}"] = value
            elif short:
                out[f"{prefix}downsample.{1 if short.group(1) == 'conv' else 2}."
                    f"{short.group(2)}"] = value  # fmt: skip
            else:
                unknown.append(key)
            continue
        m = re.fullmatch(r"decoder\.input_proj\.(\d+)\.(conv|norm)\.(\w+)", key)
        if m:
            level = int(m.group(1))
            place = f"convs.{level}" if level < levels else f"extra_convs.{level - levels}"
            out[f"decoder_input_proj.{place}.{int(m.group(2) == 'norm')}.{m.group(3)}"] = value
            continue
        m = re.fullmatch(r"decoder\.(?:enc_bbox_head|dec_bbox_head\.(\d+))\.layers\.([012])\."
                         r"(weight|bias)", key)  # fmt: skip
        if m:
            branch = layers if m.group(1) is None else int(m.group(1))
            out[f"bbox_head.reg_branches.{branch}.{2 * int(m.group(2))}.{m.group(3)}"] = value
            continue
        m = re.fullmatch(r"(?:encoder\.encoder\.(\d+)|decoder\.decoder)\.layers\.(\d+)\.(.+)", key)
        if m:
            decoder = m.group(1) is None
            prefix = (f"decoder.layers.{m.group(2)}." if decoder
                      else f"neck.encoder.{m.group(1)}.layers.{m.group(2)}.")  # fmt: skip
            name = _layer_part(m.group(3), decoder)
            if name is None:
                unknown.append(key)
            else:
                out[prefix + name] = value
            continue
        unknown.append(key)
    _check_known(unknown, "RT-DETR (the authors')")
    return out
