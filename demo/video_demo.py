"""Draw a detector's detections on every frame of a video.

    python demo/video_demo.py VIDEO CONFIG CHECKPOINT --out OUT.mp4 [--score-thr 0.3]
        [--device cpu] [--thickness PX] [--font-scale S] [--palette NAME | R,G,B ...]

Reads with OpenCV (``cv2.VideoCapture``) and writes an mp4v video of the input's frame rate
and size, each frame with the boxes, class names and scores, masks (half-transparent) and
keypoints of the detections scoring at least ``--score-thr``; a progress bar shows frames/s.
"""

import argparse
import sys

from tqdm import tqdm

from mmdet_like.apis.demos import (
    DemoError,
    add_model_arguments,
    draw_detections,
    draw_style,
    load_model,
    open_video,
    open_video_writer,
    video_properties,
)
from mmdet_like.errors import run_tool

DEFAULT_FPS = 30.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Draw a detector's detections on a video")
    parser.add_argument("video", help="input video file")
    add_model_arguments(parser)
    parser.add_argument("--out", required=True, help="output video (.mp4, mp4v codec)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    style = draw_style(args)
    capture = open_video(args.video)
    try:
        fps, width, height, count = video_properties(capture)
        ok, frame = capture.read()
        if not ok or width <= 0 or height <= 0:
            raise DemoError(f"{args.video}: not a readable video (no frame could be decoded)")
        if fps == 0.0:
            print(f"{args.video}: no frame rate in the file; writing {DEFAULT_FPS:g} frames/s")
            fps = DEFAULT_FPS
        model = load_model(args.config, args.checkpoint, args.device)
        writer = open_video_writer(args.out, fps, width, height)
        written = 0
        try:
            with tqdm(total=count or None, unit="frames") as bar:
                while ok:
                    writer.write(draw_detections(model, frame, args.score_thr, style))
                    written += 1
                    bar.update()
                    ok, frame = capture.read()
        finally:
            writer.release()
    finally:
        capture.release()
    print(f"{written} frames ({width} x {height}, {fps:g} frames/s) -> {args.out}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
