"""What the demos in ``demo/`` share: their arguments, the model with clear errors, drawing
a frame, and opening images, videos and cameras with clear errors.

``demo/image_demo.py``, ``demo/video_demo.py`` and ``demo/webcam_demo.py`` are thin loops
over these. Every problem a user can cause (a wrong path, an unreadable image or video, no
camera, no display, a checkpoint of another model) is a :class:`DemoError` or another
:class:`~mmdet_like.errors.ProjectError`, which the tools print as one line
(:func:`mmdet_like.errors.run_tool`).
"""

import os
import os.path as osp
import sys
from contextlib import contextmanager

import cv2
import numpy as np
import torch

from mmdet_like.apis.inference import inference_detector, init_detector
from mmdet_like.datasets.errors import ImageReadError
from mmdet_like.datasets.image_check import read_image_file
from mmdet_like.errors import ProjectError
from mmdet_like.visualization import add_draw_arguments, draw_result, style_from_args

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class DemoError(ProjectError, ValueError):
    """A demo's input, output, device or display cannot be used."""


def add_model_arguments(parser, score_thr=0.3):
    """``CONFIG CHECKPOINT [--score-thr] [--device] [--thickness] [--font-scale]
    [--palette]``, the arguments every demo takes (the drawing ones:
    :func:`~mmdet_like.visualization.add_draw_arguments`, read by :func:`draw_style`)."""
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint file (trained with that config)")
    parser.add_argument(
        "--score-thr",
        type=float,
        default=score_thr,
        help=f"lowest score drawn (default {score_thr})",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    add_draw_arguments(parser)
    return parser


def draw_style(args):
    """The checked :class:`~mmdet_like.visualization.DrawStyle` of a demo's ``--thickness``,
    ``--font-scale`` and ``--palette`` (a bad value: one line naming the option)."""
    return style_from_args(args)


def _check_device(device):
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DemoError(f"--device {device!r}: not a device ({exc}); use cpu or cuda[:N]") from exc
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise DemoError(f"--device {device}: CUDA is not available here; use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise DemoError(
                f"--device {device}: there are {torch.cuda.device_count()} CUDA device(s)"
            )
    return parsed


def load_model(config, checkpoint, device="cpu"):
    """:func:`init_detector` of ``config`` with ``checkpoint`` on ``device``, after checking
    that both files exist and the device is usable. A checkpoint of another model (weights
    missing, extra or of other shapes) or of other classes is refused by
    :func:`init_detector` with a message saying so."""
    if not osp.isfile(config):
        raise DemoError(f"{config}: no such config file")
    if "://" not in checkpoint and not osp.isfile(checkpoint):
        raise DemoError(f"{checkpoint}: no such checkpoint file")
    device = _check_device(device)
    return init_detector(config, checkpoint, device=device)


def draw_detections(model, frame, score_thr=0.3, style=None):
    """A copy of BGR ``frame`` with ``model``'s detections scoring at least ``score_thr``
    drawn: boxes, class names and scores, masks blended at half opacity, keypoints joined by
    the checkpoint's skeleton (as :func:`mmdet_like.apis.show_result` draws them), in
    ``style`` (a :class:`~mmdet_like.visualization.DrawStyle`; None: sizes from the frame,
    the default palette)."""
    result = inference_detector(model, frame)
    return draw_result(
        frame, result, model.CLASSES, score_thr=score_thr, skeleton=model.KEYPOINT_SKELETON,
        style=style,
    )  # fmt: skip


def find_images(path):
    """``[(image path, path relative to the output folder)]``: ``path`` itself when it is a
    file, else every image (:data:`IMAGE_SUFFIXES`) under the folder ``path``, sorted, with
    its path relative to that folder."""
    if osp.isfile(path):
        return [(path, osp.basename(path))]
    if not osp.isdir(path):
        raise DemoError(f"{path}: no such image file or folder")
    found = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_SUFFIXES):
                full = osp.join(root, name)
                found.append((full, osp.relpath(full, path)))
    if not found:
        raise DemoError(f"{path}: no image ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return found


def read_image(path):
    """The (H, W, 3) BGR image at ``path``, read as training reads it
    (:func:`~mmdet_like.datasets.image_check.read_image_file`); :class:`DemoError` naming
    the file if it is empty, truncated, not an image or cannot be decoded."""
    try:
        with _quiet_opencv():
            return read_image_file(path)
    except ImageReadError as exc:
        raise DemoError(f"{path}: not a readable image ({exc.reason}). Fix: {exc.fix}") from None


def write_image(path, img):
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, img):
        raise DemoError(f"{path}: cannot write the image (check the folder and the extension)")


@contextmanager
def _quiet_opencv():
    """OpenCV's own warnings (backends tried, devices not found) off while opening a
    source: the demo reports the failure itself, in one line."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def open_video(path):
    """A ``cv2.VideoCapture`` of the video file ``path``; :class:`DemoError` if there is no
    such file or OpenCV cannot open it."""
    if not osp.isfile(path):
        raise DemoError(f"{path}: no such video file")
    with _quiet_opencv():
        capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        capture.release()
        raise DemoError(f"{path}: not a readable video (OpenCV cannot open it)")
    return capture


def open_camera(camera_id):
    """A ``cv2.VideoCapture`` of camera ``camera_id`` (an index, or a stream URL or video
    file); :class:`DemoError` if none can be opened."""
    source = int(camera_id) if str(camera_id).isdigit() else camera_id
    with _quiet_opencv():
        capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        capture.release()
        raise DemoError(
            f"no camera could be opened with --camera-id {camera_id} (none is connected, or "
            "it is in use by another program); pass the index of a connected camera"
        )
    return capture


def video_properties(capture):
    """``(fps, width, height, frame count)`` of an open capture; fps and count are 0 when
    the container does not tell."""
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 0.0
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return fps, width, height, max(count, 0)


def open_video_writer(path, fps, width, height):
    """An mp4v ``cv2.VideoWriter`` at ``path``; :class:`DemoError` if it cannot be made."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with _quiet_opencv():
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        writer.release()
        raise DemoError(f"{path}: cannot write an mp4v video there (use a .mp4 file name)")
    return writer


def has_display():
    """A window can be opened: not Linux/BSD (macOS, Windows), or a display is set."""
    if not sys.platform.startswith(("linux", "freebsd")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
