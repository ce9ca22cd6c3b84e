"""Draw what the training pipeline gives the model, to check a dataset and its transforms.

    python tools/analysis_tools/browse_dataset.py CONFIG [--output-dir DIR] [--not-show]
        [--num-samples N] [--thickness PX] [--font-scale S] [--palette NAME | R,G,B ...]
        [--cfg-options K=V ...]

Every sample of ``data.train`` goes through the training pipeline (augmentations included);
its image is de-normalised (the pipeline's ``img_norm_cfg``) and drawn with the boxes and
class names, the masks (semi-transparent) and the visible keypoints as the model receives
them. With ``--output-dir`` one PNG per sample is written (``<index>_<image name>.png``, the
padded image's size); without ``--not-show`` each is shown in a window (any key: next,
``q``: stop) when a display exists.
"""

import argparse
import os
import os.path as osp
import sys

import cv2
import numpy as np
from tqdm import tqdm

from mmdet_like.apis.tool_utils import ToolError, build_train_dataset, load_tool_config
from mmdet_like.engine import add_cfg_options_argument
from mmdet_like.errors import run_tool
from mmdet_like.visualization import add_draw_arguments, draw_ground_truth, style_from_args


def denormalize(img, norm_cfg):
    """(3, H, W) normalised tensor -> (H, W, 3) BGR uint8."""
    out = img.detach().cpu().numpy().transpose(1, 2, 0).astype(np.float32)
    if norm_cfg is not None:
        out = out * np.asarray(norm_cfg["std"], np.float32) + np.asarray(
            norm_cfg["mean"], np.float32
        )
        if norm_cfg.get("to_rgb", False):
            out = out[..., ::-1]
    return np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8))


def _array(value):
    if value is None:
        return None
    if hasattr(value, "to_ndarray"):
        return np.asarray(value.to_ndarray())
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def draw_sample(sample, classes, style=None):
    """The sample's image with its ground truth drawn on it (BGR uint8), in ``style`` (a
    :class:`~mmdet_like.visualization.DrawStyle`; None: sizes from the image)."""
    data_sample = sample["data_samples"]
    canvas = denormalize(sample["img"], data_sample.metainfo.get("img_norm_cfg"))
    gt = data_sample.gt_instances
    labels = _array(getattr(gt, "labels", None))
    boxes = _array(getattr(gt, "bboxes", None))
    masks = _array(getattr(gt, "masks", None))
    keypoints = _array(getattr(gt, "keypoints", None))
    boxes = np.zeros((0, 4)) if boxes is None else boxes
    if masks is not None:  # the masks of the image before padding: placed on the padded one
        h, w = canvas.shape[:2]
        placed = np.zeros((len(masks), h, w), bool)
        mh, mw = min(h, masks.shape[1]), min(w, masks.shape[2])
        placed[:, :mh, :mw] = masks.astype(bool)[:, :mh, :mw]
        masks = list(placed)
    if keypoints is not None:
        keypoints = keypoints.reshape(len(keypoints), -1, 3)
    return draw_ground_truth(canvas, boxes, labels, classes, masks, keypoints, style=style)


def output_name(index, sample):
    name = sample["data_samples"].metainfo.get("ori_filename") or f"{index}.png"
    return f"{index:05d}_{osp.splitext(osp.basename(str(name)))[0]}.png"


def has_display():
    if not sys.platform.startswith(("linux", "freebsd")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def browse(dataset, output_dir=None, show=False, num_samples=None, style=None):
    """Draw the first ``num_samples`` (all) samples in ``style``; returns the written
    paths."""
    classes = getattr(dataset, "CLASSES", None)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
    count = len(dataset) if num_samples is None else min(num_samples, len(dataset))
    written = []
    for index in tqdm(range(count), desc="samples", unit="img"):
        sample = dataset[index]
        canvas = draw_sample(sample, classes, style)
        if output_dir:
            path = osp.join(output_dir, output_name(index, sample))
            if not cv2.imwrite(path, canvas):
                raise ToolError(f"could not write {path}; is {output_dir!r} writable?")
            written.append(path)
        if show:
            cv2.imshow("browse_dataset", canvas)
            if cv2.waitKey(0) & 0xFF == ord("q"):
                break
    return written


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="config file")
    parser.add_argument("--output-dir", default=None, help="write one PNG per sample here")
    parser.add_argument("--not-show", action="store_true", help="do not open a window")
    parser.add_argument("--num-samples", type=int, default=None, help="only the first N")
    add_draw_arguments(parser)
    add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    style = style_from_args(args)
    show = not args.not_show
    if show and not has_display():
        print("browse_dataset: no display; not showing (pass --not-show to silence this)")
        show = False
    if not show and not args.output_dir:
        raise ToolError("nothing to do: give --output-dir, or a display without --not-show")
    if args.output_dir and osp.isfile(args.output_dir):
        raise ToolError(f"--output-dir {args.output_dir!r} is a file, not a folder")
    cfg = load_tool_config(args.config, args.cfg_options)
    written = browse(
        build_train_dataset(cfg, args.config), args.output_dir, show, args.num_samples, style
    )
    if args.output_dir:
        print(f"{len(written)} images written to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
