"""Export a trained detector to ONNX (run by stock onnxruntime: RoIAlign and NMS become the
standard ``RoiAlign`` and ``NonMaxSuppression`` operators) or to a ``torch.export`` program.

    python tools/deployment/pytorch2onnx.py CONFIG CKPT --out model.onnx \\
        [--image demo/demo.jpg] [--shape H W] [--dynamic] [--verify] [--format onnx|torch-export]

The graph takes one image, (1, 3, H, W) float32, resized and normalised by the config's test
pipeline (not padded), and returns ``dets`` (n, 5) ``[x1, y1, x2, y2, score]`` in that input's
coordinates, ``labels`` (n,) and, for Mask R-CNN, ``mask_probs`` (n, 28, 28). ``--dynamic``
accepts any H and W (129 to 8192 px), otherwise the file takes the example's size only.
``--verify`` runs the file (onnxruntime, or the loaded program) and PyTorch on the image
and compares the detections: same count and labels, boxes within 2e-4 of the image's longer
side (0.16 px at 800 px), scores within 5e-4, pasted masks within 0.1% of pixels.
docs/deployment.md has the details.
"""

import argparse
import os.path as osp
import sys
import time

from mmdet_like.apis.tool_utils import ToolError, require_file
from mmdet_like.engine import add_cfg_options_argument
from mmdet_like.engine.config_files import resolve_config_argument
from mmdet_like.errors import run_tool

DEFAULT_IMAGE = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), "demo",
                         "demo.jpg")  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument(
        "--out", required=True, help="output file (.onnx, or .pt2 for torch-export)"
    )
    parser.add_argument(
        "--image", default=DEFAULT_IMAGE, help="example / verification image (demo/demo.jpg)"
    )
    parser.add_argument(
        "--shape", type=int, nargs=2, metavar=("H", "W"),
        help="resize the image to exactly H x W (default: the test pipeline's size)",
    )  # fmt: skip
    parser.add_argument("--dynamic", action="store_true", help="accept any image size")
    parser.add_argument("--verify", action="store_true",
                        help="compare the exported file's detections with PyTorch's")  # fmt: skip
    parser.add_argument("--format", default="onnx", choices=["onnx", "torch-export"])
    add_cfg_options_argument(parser, example="test_cfg.rcnn.max_per_img=50")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmdet_like.apis import init_detector
    from mmdet_like.deployment import export_detector, prepare_input, verify_exported

    args.config = resolve_config_argument(args.config)
    require_file(args.config, "config file")
    require_file(args.checkpoint, "checkpoint")
    require_file(args.image, "image")
    if args.format == "onnx" and not args.out.endswith(".onnx"):
        raise ToolError(f"--out {args.out!r}: an ONNX file's name ends in .onnx")
    if args.format == "torch-export" and not args.out.endswith(".pt2"):
        raise ToolError(f"--out {args.out!r}: a torch.export program's name ends in .pt2")
    model = init_detector(args.config, args.checkpoint, "cpu", cfg_options=args.cfg_options)
    image, _ = prepare_input(model.cfg, args.image, args.shape)
    start = time.perf_counter()
    outputs = export_detector(model, image, args.out, args.format, dynamic=args.dynamic)
    size = "any size" if args.dynamic else f"{image.shape[-2]}x{image.shape[-1]} only"
    print(f"wrote {args.out} ({args.format}, input image (1, 3, H, W) {size}; outputs "
          f"{', '.join(outputs)}) in {time.perf_counter() - start:.1f} s")  # fmt: skip
    if args.verify:
        report = verify_exported(model, args.out, image)
        print(
            f"verified on {args.image} ({image.shape[-2]}x{image.shape[-1]}): "
            f"{report['exported']} detections as PyTorch's, boxes within "
            f"{report['max_box_diff_px']:.2g} px (bound {report['box_tolerance_px']:.2g} px), "
            f"scores within {report['max_score_diff']:.2g}"
            + (
                f", keypoints within {report['max_keypoint_diff_px']:.2g} px"
                if "max_keypoint_diff_px" in report
                else ""
            )
            + (
                f", {report['mask_pixels_differing']:.3%} of mask pixels differ"
                if "mask_pixels_differing" in report
                else ""
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
