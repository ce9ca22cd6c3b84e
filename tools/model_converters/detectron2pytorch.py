"""Convert a Detectron (caffe2) or detectron2 model-zoo pickle into our checkpoint format.

    python tools/model_converters/detectron2pytorch.py R-50.pkl checkpoints/resnet50_caffe.pth
    python tools/model_converters/detectron2pytorch.py model_final.pkl mask_rcnn.pth \\
        --model mask_rcnn_fpn --config configs/mask_rcnn_r50_caffe_fpn_1x.py

Reads ResNet-50/101/152 ImageNet backbones (``--model resnet``: torchvision's names, what a
config's ``model.pretrained`` reads) and whole Faster / Mask R-CNN FPN models (our
detector's names, for ``tools/test.py`` or ``load_from``); ``--model`` and ``--depth`` are
found from the names when left out and checked when given. The class layouts are made ours
(Detectron's background index 0 moved last / dropped; detectron2's is ours already), and
Detectron's affine-channel BNs become BNs with ``running_mean = 0``, ``running_var = 1 - eps``
(see mmdet_like/models/utils/foreign_checkpoints.py for the whole mapping). These models read
BGR images with the caffe mean (our ``*_caffe`` configs); ``--to-rgb`` reverses conv1's input
channels for a config that feeds RGB. ``--config`` builds that config's model and checks
that every weight is there with its shape. The output is written atomically, holds only
tensors and plain types (``torch.load(weights_only=True)`` reads it) and says in ``meta``
where it came from.
"""

import argparse
import os.path as osp
import sys

from mmdet_like.apis.tool_utils import (
    ToolError,
    build_model,
    load_tool_config,
    require_file,
    save_converted_checkpoint,
)
from mmdet_like.errors import run_tool
from mmdet_like.models.utils.foreign_checkpoints import (
    DETECTRON_MODELS,
    compare_with_model,
    convert_detectron,
    read_detectron_pickle,
)


def convert(in_file, out_file, model=None, depth=None, to_rgb=False, config=None):
    """Convert ``in_file`` to ``out_file``; returns the written checkpoint's ``meta``."""
    require_file(in_file, "Detectron/detectron2 weights file")
    if osp.isdir(out_file):
        raise ToolError(f"output {out_file!r} is a folder; give a file name such as model.pth")
    weights, info = read_detectron_pickle(in_file)
    state_dict, meta = convert_detectron(weights, in_file, model, depth, to_rgb)
    if config is not None:
        detector = build_model(load_tool_config(config))
        if meta["arch"] == "resnet":
            target = detector.backbone.state_dict()
            state = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
            compare_with_model(state, target, in_file, f"{config}'s backbone")
        else:
            compare_with_model(state_dict, detector.state_dict(), in_file, config)
    source_config = info.pop("cfg", None)
    meta.update(source=osp.basename(in_file), source_info=info)
    if source_config is not None:
        meta["source_config"] = source_config
    return save_converted_checkpoint(
        state_dict, meta, out_file, "tools/model_converters/detectron2pytorch.py"
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("in_file", help="Detectron / detectron2 weights (.pkl)")
    parser.add_argument("out_file", help="output checkpoint (.pth)")
    parser.add_argument("--model", choices=DETECTRON_MODELS, help="default: from the names")
    parser.add_argument("--depth", type=int, choices=(50, 101, 152), help="default: found")
    parser.add_argument(
        "--to-rgb", action="store_true", help="reverse conv1's input channels (BGR -> RGB)"
    )
    parser.add_argument("--config", help="check the weights against this config's model")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    meta = convert(args.in_file, args.out_file, args.model, args.depth, args.to_rgb, args.config)
    what = f"ResNet-{meta['depth']}" + (
        "" if meta["arch"] == "resnet" else f" {meta['arch']}, {meta['num_classes']} classes"
    )
    print(f"{meta['converted_from']} {what} ({meta['input_channels']} input) -> {args.out_file}")
    if meta["dropped"]:
        print(f"dropped {len(meta['dropped'])} entries (optimizer momenta, pixel mean/std, ...)")


if __name__ == "__main__":
    sys.exit(run_tool(main))
