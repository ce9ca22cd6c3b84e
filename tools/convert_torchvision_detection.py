"""Convert torchvision's fasterrcnn_resnet50_fpn / maskrcnn_resnet50_fpn weights to ours.

    python tools/convert_torchvision_detection.py IN OUT [--keep-unused]

IN: a state dict saved from torchvision (``torch.save(model.state_dict(), IN)``, e.g. the
hub file ``maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth``) or a dict holding one under
``state_dict`` / ``model``. OUT: ``{"state_dict": ..., "meta": {...}}`` readable with
``torch.load(OUT, weights_only=True)``, for configs/torchvision/*_torchvision.py. With the
91 COCO ids the 10 unused ones are dropped (80 classes, CocoDataset's order) unless
``--keep-unused`` (90 classes: set the config's ``num_classes=90``).
"""

import argparse
import os
import sys

import torch

from mmdet_like.engine.checkpoint import atomic_torch_save, check_plain
from mmdet_like.errors import run_tool
from mmdet_like.models.utils import convert_torchvision_detection


def read_state_dict(path):
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def convert(src, dst, keep_unused=False):
    """Read ``src``, convert, write ``dst``; returns the meta dict."""
    state_dict, meta = convert_torchvision_detection(read_state_dict(src), keep_unused)
    meta = dict(meta, source=os.path.basename(src), converted_by="convert_torchvision_detection")
    checkpoint = {"state_dict": state_dict, "meta": meta}
    check_plain(checkpoint)
    atomic_torch_save(checkpoint, dst)
    return meta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="torchvision state dict (.pth)")
    parser.add_argument("dst", help="output checkpoint")
    parser.add_argument(
        "--keep-unused", action="store_true", help="keep the 10 unused COCO ids (90 classes)"
    )
    args = parser.parse_args(argv)
    meta = convert(args.src, args.dst, args.keep_unused)
    print(f"{args.dst}: {meta['arch']}, {meta['num_classes']} classes")


if __name__ == "__main__":
    sys.exit(run_tool(main))
