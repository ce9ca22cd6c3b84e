"""Draw a detector's detections live on a camera's frames, in a window.

    python demo/webcam_demo.py CONFIG CHECKPOINT [--camera-id 0] [--score-thr 0.5]
        [--device cpu] [--thickness PX] [--font-scale S] [--palette NAME | R,G,B ...]

``--camera-id``: a camera index, or a stream URL or video file. Press ``q`` (or Esc) in the
window, close it, or Ctrl-C to stop. No camera, or no display to open the window on, is an
error message and a non-zero exit status.
"""

import argparse
import sys

import cv2
from tqdm import tqdm

from mmdet_like.apis.demos import (
    DemoError,
    add_model_arguments,
    draw_detections,
    draw_style,
    has_display,
    load_model,
    open_camera,
)
from mmdet_like.errors import run_tool

WINDOW = "mmdet_like webcam demo (q to quit)"
QUIT_KEYS = (ord("q"), ord("Q"), 27)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Draw a detector's detections live")
    add_model_arguments(parser, score_thr=0.5)
    parser.add_argument(
        "--camera-id", default="0", help="camera index, stream URL or video file (default 0)"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    style = draw_style(args)
    model = load_model(args.config, args.checkpoint, args.device)
    capture = open_camera(args.camera_id)
    frames = 0
    try:
        if not has_display():
            raise DemoError(
                "no display to open the window on (DISPLAY and WAYLAND_DISPLAY are unset); "
                "run it in a desktop session, or use demo/video_demo.py on a recorded video"
            )
        with tqdm(unit="frames") as bar:
            try:
                while True:
                    ok, frame = capture.read()
                    if not ok:
                        if frames == 0:
                            raise DemoError(f"camera {args.camera_id} opened but gave no frame")
                        print(f"camera {args.camera_id}: no more frames")
                        break
                    cv2.imshow(WINDOW, draw_detections(model, frame, args.score_thr, style))
                    frames += 1
                    bar.update()
                    if (cv2.waitKey(1) & 0xFF) in QUIT_KEYS:
                        break
                    if cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
                        break  # the window was closed
            except KeyboardInterrupt:  # Ctrl-C ends the live loop like q does
                pass
    finally:
        capture.release()
        if frames:
            try:
                cv2.destroyWindow(WINDOW)
            except cv2.error:
                pass  # closed by the user already
    print(f"{frames} frames shown")


if __name__ == "__main__":
    sys.exit(run_tool(main))
