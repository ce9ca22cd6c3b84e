"""Convert an mmdetection v1, v2 or v3 checkpoint into our names and class layout.

    python tools/model_converters/mmdet2ours.py mmdet_mask_rcnn.pth ours.pth [--version auto]
    python tools/model_converters/mmdet2ours.py IN.pth OUT.pth \\
        --config configs/mask_rcnn_r50_fpn_1x.py

For mmdetection's ResNet/ResNeXt-FPN RPN, Faster / Mask R-CNN, Cascade (Mask) R-CNN,
RetinaNet, FCOS, ATSS and GFL, and for those models on mmdetection's Swin or (mmpretrain's)
ConvNeXt backbone, whose weights are renamed to timm's under our ``TimmBackbone``
(configs/swin/, configs/convnext/; mapping in mmdet_like/models/utils/mmdet_timm_backbones.py);
and for mmdetection 3's ResNet-50 DETR, Deformable DETR (plain, refine, refine + two-stage)
and DINO-4scale (configs/detr/, configs/deformable_detr/, configs/dino/).
tests/models/test_mmdet_fixtures.py converts mmdetection 3.3's own names of every one of
these families. ``--version auto`` reads ``meta.mmdet_version`` (3.x checkpoints keep v2's
names and are read as v2; their classes come from mmengine's ``meta.dataset_meta``), else the
names (v1 had the RoI heads at the top level and FCOS's ``fcos_*`` layers); v1's background
class index 0 is moved last (``fc_cls``) or dropped (a class-specific ``fc_reg``,
``conv_logits``). mmcv's ``ConvModule`` names are flattened to ours and the FPN's extra
convs renamed (see mmdet_like/models/utils/foreign_checkpoints.py for the whole mapping).
``--config`` builds that config's model and checks that every weight is there with its
shape. Kept: the weights, ``CLASSES`` and where they came from; the optimizer state is
dropped. The output is written atomically and holds only tensors and plain types
(``torch.load(weights_only=True)``).
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
from mmdet_like.engine.checkpoint import load_checkpoint_file
from mmdet_like.errors import run_tool
from mmdet_like.models.utils.foreign_checkpoints import (
    MMDET_VERSIONS,
    compare_with_model,
    convert_mmdet,
)


def convert(in_file, out_file, version="auto", config=None):
    """Convert ``in_file`` to ``out_file``; returns the written checkpoint's ``meta``."""
    require_file(in_file, "mmdetection checkpoint")
    if osp.isdir(out_file):
        raise ToolError(f"output {out_file!r} is a folder; give a file name such as model.pth")
    checkpoint = load_checkpoint_file(in_file)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        keys = sorted(map(str, checkpoint)) if isinstance(checkpoint, dict) else None
        raise ToolError(
            f"{in_file}: holds no 'state_dict' dict (keys: {keys or type(checkpoint).__name__}); "
            "is it an mmdetection checkpoint?"
        )
    source_meta = checkpoint.get("meta") if isinstance(checkpoint.get("meta"), dict) else {}
    state_dict, info = convert_mmdet(checkpoint["state_dict"], source_meta, version, in_file)
    if config is not None:
        compare_with_model(state_dict, build_model(load_tool_config(config)).state_dict(),
                           in_file, config)  # fmt: skip
    meta = dict(
        converted_from=f"mmdetection v{info['version']}",
        source=osp.basename(in_file),
        num_classes=info["num_classes"],
        notes=info["notes"],
    )
    for key in ("mmdet_version", "epoch", "iter"):
        if isinstance(source_meta.get(key), (str, int)):
            meta[key] = source_meta[key]
    if isinstance(source_meta.get("config"), str):
        meta["source_config"] = source_meta["config"]  # an mmdetection config: not ours
    classes = source_meta.get("CLASSES")
    if classes is None and isinstance(source_meta.get("dataset_meta"), dict):
        classes = source_meta["dataset_meta"].get("classes")  # written by mmengine (3.x)
    if isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes):
        meta["CLASSES"] = list(classes)
    return save_converted_checkpoint(
        state_dict, meta, out_file, "tools/model_converters/mmdet2ours.py"
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("in_file", help="mmdetection checkpoint (.pth)")
    parser.add_argument("out_file", help="output checkpoint (.pth)")
    parser.add_argument(
        "--version", choices=MMDET_VERSIONS, default="auto",
        help="mmdetection major version of IN (default: its meta, else its names)",
    )  # fmt: skip
    parser.add_argument("--config", help="check the weights against this config's model")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    meta = convert(args.in_file, args.out_file, args.version, args.config)
    classes = "" if meta["num_classes"] is None else f", {meta['num_classes']} classes"
    print(f"{meta['converted_from']} checkpoint{classes} -> {args.out_file}")
    for note in meta["notes"]:
        print(f"note: {note}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
