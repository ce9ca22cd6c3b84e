"""Convert a Hugging Face transformers DETR (``DetrForObjectDetection``), Deformable DETR
(``DeformableDetrForObjectDetection``: plain, ``with_box_refine``, ``two_stage``) or RT-DETR
(``RTDetrForObjectDetection``, ``RTDetrV2ForObjectDetection``) into our checkpoint.

    python tools/model_converters/transformers2ours.py SRC DST [--config CFG]

SRC: a folder written by ``save_pretrained`` (``config.json`` and ``model.safetensors``;
a sharded ``model.safetensors.index.json`` or ``pytorch_model.bin`` are read too), of a
DETR with transformers' default timm ResNet backbone (``use_timm_backbone=True``:
``resnet18/34/50/101``, no dilation), e.g. ``facebook/detr-resnet-50``. DST: ``{"state_dict":
..., "meta": {...}}`` readable with ``torch.load(DST, weights_only=True)``, for our ``DETR``
with a ``ResNet`` of that depth (timm's ResNet names are torchvision's, which ours has);
configs/transformers/detr_r50_transformers.py computes what transformers computes.
``meta``: ``CLASSES`` (``id2label`` in order), ``num_classes``, and the sizes read from
config.json (``d_model``, layers, heads, FFN widths, ``num_queries``, the ResNet depth), which
a config other than DETR-R50's must set, and ``auxiliary_loss`` (a model saved with it
computes with ``model.decoder.norm_layer_inputs=True``, see the config). ``--config`` builds
that config's model and checks that every weight is there with its shape. The renames are listed in
mmdet_like/models/utils/transformers_detr.py.

A Deformable DETR (``model_type`` ``deformable_detr``) converts to our ``DeformableDETR``
(configs/transformers/deformable_detr_r50_transformers.py,
deformable_detr_twostage_refine_r50_transformers.py); its ``meta.architecture`` adds the
backbone's levels (``backbone_out_indices``), ``num_feature_levels``, the points,
``with_box_refine`` and ``two_stage``.

An RT-DETR (``model_type`` ``rt_detr``, or ``rt_detr_v2``) converts to our ``RTDETR``
(configs/transformers/rtdetr_r50vd_transformers.py), its RT-DETR ResNet-vd to our
``ResNet`` with ``deep_stem``, ``avg_down`` and ``conv_shortcut_first_block``; its
``meta.architecture`` gives the ResNet depth and widths (``base_channels``,
``stem_channels``), the hybrid encoder's and the decoder's sizes, the queries and the
denoising settings, which a config other than RT-DETR-R50's must set.
"""

import argparse
import os.path as osp
import sys

from mmdet_like.apis.tool_utils import (
    ToolError,
    build_model,
    load_tool_config,
    save_converted_checkpoint,
)
from mmdet_like.errors import run_tool
from mmdet_like.models.utils.foreign_checkpoints import compare_with_model
from mmdet_like.models.utils.transformers_detr import (
    convert_transformers_deformable_detr,
    convert_transformers_detr,
    convert_transformers_rtdetr,
    deformable_detr_architecture,
    detr_architecture,
    read_pretrained_folder,
    rtdetr_architecture,
)


def convert(src, dst, config=None):
    """Convert the ``save_pretrained`` folder ``src`` to ``dst``; returns the written meta."""
    if not osp.isdir(src):
        raise ToolError(f"{src!r} is not a folder; give the folder written by save_pretrained")
    if osp.isdir(dst):
        raise ToolError(f"output {dst!r} is a folder; give a file name such as detr.pth")
    hf_config, hf_state = read_pretrained_folder(src)
    model_type = hf_config.get("model_type")
    deformable = model_type == "deformable_detr"
    rtdetr = model_type in ("rt_detr", "rt_detr_v2")
    if deformable:
        arch = deformable_detr_architecture(hf_config)
        state_dict = convert_transformers_deformable_detr(hf_state, arch)
        source_class = "DeformableDetrForObjectDetection"
    elif rtdetr:
        arch = rtdetr_architecture(hf_config)
        state_dict = convert_transformers_rtdetr(hf_state, arch)
        source_class = ("RTDetrForObjectDetection" if model_type == "rt_detr"
                        else "RTDetrV2ForObjectDetection")  # fmt: skip
    else:
        arch = detr_architecture(hf_config)
        state_dict = convert_transformers_detr(hf_state)
        source_class = "DetrForObjectDetection"
    if config is not None:
        model_state = build_model(load_tool_config(config)).state_dict()
        compare_with_model(state_dict, model_state, src, config)
    classes = arch.pop("CLASSES")
    meta = dict(
        converted_from=f"transformers {source_class}",
        source=osp.basename(osp.normpath(src)),
        num_classes=arch["num_classes"],
        CLASSES=classes,
        architecture=arch,
    )
    meta["notes"] = []
    if deformable and arch["with_box_refine"] and not arch["two_stage"]:
        meta["notes"].append(
            "with_box_refine without two_stage: transformers ties the classifiers of every "
            "layer (class_embed), each layer got layer 0's; set "
            "model.bbox_head.share_cls_layer=True to train as it does"
        )
    if rtdetr:
        if arch["eval_size"] or arch["anchor_image_size"]:
            meta["notes"].append(
                f"eval_size={arch['eval_size']}, anchor_image_size={arch['anchor_image_size']}: "
                "in eval mode transformers then runs AIFI without positions / with fixed "
                "anchors; ours computes both from each input's size (as in training)"
            )
        if not arch["freeze_backbone_batch_norms"]:
            meta["notes"].append(
                "freeze_backbone_batch_norms=False: set model.backbone.norm_cfg=dict(type='BN') "
                "and norm_eval=False to train the backbone's batch norms as transformers does"
            )
    if not deformable and not rtdetr and arch["auxiliary_loss"]:
        meta["notes"].append(
            "auxiliary_loss=True: transformers' decoder passes each layer's normalised output "
            "on; set model.decoder.norm_layer_inputs=True to compute as it does"
        )
    if isinstance(hf_config.get("transformers_version"), str):
        meta["transformers_version"] = hf_config["transformers_version"]
    return save_converted_checkpoint(
        state_dict, meta, dst, "tools/model_converters/transformers2ours.py"
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="folder written by save_pretrained")
    parser.add_argument("dst", help="output checkpoint (.pth)")
    parser.add_argument("--config", help="check the weights against this config's model")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    meta = convert(args.src, args.dst, args.config)
    arch = meta["architecture"]
    name = meta["converted_from"].split()[-1].replace("ForObjectDetection", "")
    vd = "-vd" if name.startswith("RTDetr") else ""
    print(
        f"{name} (ResNet-{arch['resnet_depth']}{vd}, d_model {arch['d_model']}, "
        f"{arch['encoder_layers']}+{arch['decoder_layers']} layers, {arch['num_queries']} "
        f"queries), {meta['num_classes']} classes -> {args.dst}"
    )
    for note in meta["notes"]:
        print(f"note: {note}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
