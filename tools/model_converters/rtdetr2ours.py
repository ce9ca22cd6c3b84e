"""Convert an RT-DETR authors' checkpoint (lyuwenyu/RT-DETR: ``rtdetr_pytorch``'s RT-DETR or
``rtdetrv2_pytorch``'s RT-DETRv2, e.g. ``rtdetr_r50vd_6x_coco_from_paddle.pth``) into ours.

    python tools/model_converters/rtdetr2ours.py SRC DST [--config CFG]

SRC: their ``.pth`` (its ``ema.module`` weights when it has them, else ``model``, else a
bare state dict; read with ``weights_only=True``). DST: ``{"state_dict": ..., "meta":
{...}}`` for our ``RTDETR`` (configs/rtdetr/rtdetr_r{18,34,50,101}vd_6x_coco.py; an
RT-DETRv2 checkpoint needs ``model.decoder.layer_cfg.cross_attn_cfg.num_points`` set to its
per-level list). ``meta.architecture``: what the weights say (ResNet depth, widths, decoder
layers and levels, classes, per-level points); ``--config`` builds that config's model and
checks every weight and shape. The renames are listed in
mmdet_like/models/utils/rtdetr_authors.py. Their class indices are kept (their COCO
configs use 80 contiguous classes with ``remap_mscoco_category``).
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
from mmdet_like.models.utils.rtdetr_authors import (
    authors_state_dict,
    convert_rtdetr_authors,
    rtdetr_authors_architecture,
)


def convert(src, dst, config=None):
    """Convert the authors' checkpoint ``src`` to ``dst``; returns the written meta."""
    import torch

    if not osp.isfile(src):
        raise ToolError(f"{src!r} is not a file; give the authors' .pth checkpoint")
    if osp.isdir(dst):
        raise ToolError(f"output {dst!r} is a folder; give a file name such as rtdetr.pth")
    checkpoint = torch.load(src, map_location="cpu", weights_only=True)
    source = authors_state_dict(checkpoint)
    arch = rtdetr_authors_architecture(source)
    state_dict = convert_rtdetr_authors(source, arch)
    if config is not None:
        model_state = build_model(load_tool_config(config)).state_dict()
        compare_with_model(state_dict, model_state, src, config)
    meta = dict(
        converted_from="the RT-DETR authors' " + ("RT-DETRv2" if arch["points_per_level"]
                                                  else "RT-DETR"),
        source=osp.basename(src),
        num_classes=arch["num_classes"],
        architecture=arch,
    )  # fmt: skip
    return save_converted_checkpoint(state_dict, meta, dst, "tools/model_converters/rtdetr2ours.py")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="the authors' checkpoint (.pth)")
    parser.add_argument("dst", help="output checkpoint (.pth)")
    parser.add_argument("--config", help="check the weights against this config's model")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    meta = convert(args.src, args.dst, args.config)
    arch = meta["architecture"]
    print(
        f"{meta['converted_from']} (ResNet-{arch['resnet_depth']}-vd, encoder width "
        f"{arch['neck_width']}, {arch['decoder_layers']} decoder layers), "
        f"{meta['num_classes']} classes -> {args.dst}"
    )


if __name__ == "__main__":
    sys.exit(run_tool(main))
