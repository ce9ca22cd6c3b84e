"""Draw what the training pipeline gives the model, to check a dataset and its transforms.

    python tools/analysis_tools/browse_dataset.py CONFIG [--output-dir DIR] [--not-show]
        [--num-samples N] [--cfg-options K=V ...]

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

PALETTE = [(0, 200, 0), (220, 60, 20), (20, 60, 220), (0, 200, 220), (200, 0, 200), (220, 200, 0)]


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


def draw_sample(sample, classes):
    """The sample's image with its ground truth drawn on it (BGR uint8)."""
    data_sample = sample["data_samples"]
    canvas = denormalize(sample["img"], data_sample.metainfo.get("img_norm_cfg"))
    gt = data_sample.gt_instances
    labels = _array(getattr(gt, "labels", None))
    boxes = _array(getattr(gt, "bboxes", None))
    masks = _array(getattr(gt, "masks", None))
    keypoints = _array(getattr(gt, "keypoints", None))
    count = 0 if boxes is None else len(boxes)
    color_of = [PALETTE[int(labels[i]) % len(PALETTE)] if labels is not None else PALETTE[0]
                for i in range(count)]  # fmt: skip
    if masks is not None and len(masks):
        h, w = canvas.shape[:2]
        for i, mask in enumerate(masks.astype(bool)):
            region = np.zeros((h, w), bool)
            mh, mw = min(h, mask.shape[0]), min(w, mask.shape[1])
            region[:mh, :mw] = mask[:mh, :mw]
            color = np.asarray(color_of[i] if i < count else PALETTE[0], np.float32)
            canvas[region] = (0.5 * canvas[region] + 0.5 * color).astype(np.uint8)
    for i in range(count):
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[i][:4])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color_of[i], 1)
        if labels is not None:
            label = int(labels[i])
            name = classes[label] if classes is not None and label < len(classes) else str(label)
            cv2.putText(canvas, name, (x1, max(y1 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3,
                        color_of[i], 1, cv2.LINE_AA)  # fmt: skip
    if keypoints is not None:
        for points in keypoints.reshape(len(keypoints), -1, 3):
            for x, y, visible in points:
                if visible > 0:
                    cv2.circle(canvas, (int(round(x)), int(round(y))), 2, (0, 0, 255), -1)
    return canvas


def output_name(index, sample):
    name = sample["data_samples"].metainfo.get("ori_filename") or f"{index}.png"
    return f"{index:05d}_{osp.splitext(osp.basename(str(name)))[0]}.png"


def has_display():
    if not sys.platform.startswith(("linux", "freebsd")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def browse(dataset, output_dir=None, show=False, num_samples=None):
    """Draw the first ``num_samples`` (all) samples; returns the written paths."""
    classes = getattr(dataset, "CLASSES", None)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
    count = len(dataset) if num_samples is None else min(num_samples, len(dataset))
    written = []
    for index in tqdm(range(count), desc="samples", unit="img"):
        sample = dataset[index]
        canvas = draw_sample(sample, classes)
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
    add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    show = not args.not_show
    if show and not has_display():
        print("browse_dataset: no display; not showing (pass --not-show to silence this)")
        show = False
    if not show and not args.output_dir:
        raise ToolError("nothing to do: give --output-dir, or a display without --not-show")
    if args.output_dir and osp.isfile(args.output_dir):
        raise ToolError(f"--output-dir {args.output_dir!r} is a file, not a folder")
    cfg = load_tool_config(args.config, args.cfg_options)
    written = browse(build_train_dataset(cfg, args.config), args.output_dir, show, args.num_samples)
    if args.output_dir:
        print(f"{len(written)} images written to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
