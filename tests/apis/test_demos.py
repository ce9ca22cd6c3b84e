"""demo/image_demo.py, demo/video_demo.py and demo/webcam_demo.py run as users run them
(subprocesses), on untrained demo models saved with the project's checkpoint writer: with
``--score-thr 0`` an untrained Mask R-CNN still gives detections (near-uniform class scores)
to draw. Also their errors: a missing path, an unreadable image or video, no camera and a
checkpoint of another model are one line each, no traceback, a non-zero exit (one of them
per script in a subprocess; the others in this process as the scripts' ``__main__`` blocks
run them, ``call_tool``)."""

import importlib.util
import os
import subprocess

import cv2
import numpy as np
import pytest
import torch

from mmdet_like.apis import demos, inference_detector, init_detector
from mmdet_like.apis.demos import draw_detections
from mmdet_like.engine.checkpoint import save_checkpoint
from mmdet_like.visualization import DrawStyle, draw_result
from tests.engine.cli_utils import PYTHON, ROOT, call_tool, env, finish

MASK_RCNN = ROOT / "configs" / "demo" / "mask_rcnn_r18_fpn_demo.py"
RETINANET = ROOT / "configs" / "demo" / "retinanet_r18_fpn_demo.py"
KEYPOINT_RCNN = ROOT / "configs" / "demo" / "keypoint_rcnn_r18_fpn_demo.py"
CLASSES = ["circle", "rectangle", "triangle", "star"]
FPS, SECONDS, VIDEO_SIZE = 10, 2, (160, 96)  # (width, height)


def _demo(name, *args, cwd, extra_env=None):
    """(exit status, stdout + stderr) of ``python demo/NAME.py ARGS`` run in ``cwd``."""
    environ = env()
    environ.update(extra_env or {})
    proc = subprocess.Popen(
        [PYTHON, str(ROOT / "demo" / f"{name}.py"), *map(str, args)],
        cwd=cwd,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return finish(proc, timeout=120)


def _demo_here(name, *args, cwd):
    """:func:`_demo` in this process (``call_tool``): (exit status, stdout + stderr)."""
    return call_tool(ROOT / "demo" / f"{name}.py", *args, cwd=cwd)


def _picture(height, width, seed):
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 255, np.uint8)
    for _ in range(3):
        x, y = int(rng.integers(0, width - 30)), int(rng.integers(0, height - 30))
        color = tuple(int(c) for c in rng.integers(0, 200, 3))
        cv2.rectangle(img, (x, y), (x + 25, y + 25), color, -1)
    return img


def _untrained_checkpoint(config, path, meta=None):
    torch.manual_seed(0)
    model = init_detector(str(config))
    save_checkpoint(str(path), model, meta={"CLASSES": CLASSES, **(meta or {})})
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with a Mask R-CNN and a RetinaNet checkpoint, images and a video."""
    root = tmp_path_factory.mktemp("demos")
    _untrained_checkpoint(MASK_RCNN, root / "mask_rcnn.pth")
    _untrained_checkpoint(RETINANET, root / "retinanet.pth")
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    cv2.imwrite(str(images / "a.png"), _picture(128, 128, 0))
    cv2.imwrite(str(images / "sub" / "b.jpg"), _picture(100, 150, 1))
    (images / "notes.txt").write_text("not an image")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    jpeg = cv2.imencode(".jpg", _picture(64, 64, 2))[1].tobytes()
    (root / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # a download cut short
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 10)

    width, height = VIDEO_SIZE
    writer = cv2.VideoWriter(
        str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height)
    )
    assert writer.isOpened()
    for i in range(FPS * SECONDS):
        frame = np.full((height, width, 3), 240, np.uint8)
        cv2.rectangle(frame, (5 + 4 * i, 20), (45 + 4 * i, 60), (30, 60, 200), -1)
        writer.write(frame)
    writer.release()
    return root


def _read_video(path):
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return fps, frames


def _assert_clear_error(rc, out, message):
    assert rc != 0, out
    assert "Traceback" not in out, out
    assert message in out, out


def test_image_demo_on_a_file_and_a_folder(work):
    rc, out = _demo(
        "image_demo", "images/a.png", MASK_RCNN, "mask_rcnn.pth", "--out-dir", "one",
        "--score-thr", 0, cwd=work,
    )  # fmt: skip
    assert rc == 0, out
    assert sorted(os.listdir(work / "one")) == ["a.png"]

    rc, out = _demo(
        "image_demo", "images", MASK_RCNN, "mask_rcnn.pth", "--out-dir", "all",
        "--score-thr", 0, cwd=work,
    )  # fmt: skip
    assert rc == 0, out
    assert "2/2" in out  # the progress bar over the folder
    for rel in ("a.png", "sub/b.jpg"):
        source = cv2.imread(str(work / "images" / rel))
        drawn = cv2.imread(str(work / "all" / rel))
        assert drawn is not None and drawn.shape == source.shape, rel
        assert np.abs(drawn.astype(int) - source.astype(int)).sum() > 1000, rel
    assert not (work / "all" / "notes.txt").exists()
    assert cv2.imread(str(work / "one" / "a.png")).shape == (128, 128, 3)


@pytest.mark.parametrize(
    "options",
    [{}, {"thickness": 3, "font_scale": 0.6, "palette": [(255, 128, 0), (0, 64, 255)]}],
    ids=["sizes-from-the-image", "thickness-font-palette"],
)
def test_image_demo_writes_what_draw_result_draws_of_its_detections(work, monkeypatch, options):
    """The tool's picture, pixel for pixel, is the API's drawing (masks blended, boxes,
    labels) of the detections the tool computed, with the same drawing options: both drawn
    from one result (two inferences, in two processes or with other thread counts, may
    round differently)."""
    image_demo = _load_demo("image_demo")
    seen = []

    def recording_inference(model, frame):
        result = inference_detector(model, frame)
        seen.append((model, frame.copy(), result))
        return result

    flags = []
    for name, value in options.items():
        flags.append(f"--{name.replace('_', '-')}")
        flags.extend([",".join(map(str, c)) for c in value] if name == "palette" else [str(value)])
    out_dir = f"recorded{len(options)}"
    monkeypatch.setattr(demos, "inference_detector", recording_inference)
    monkeypatch.chdir(work)
    image_demo.main(["images/a.png", str(MASK_RCNN), "mask_rcnn.pth", "--out-dir", out_dir,
                     "--score-thr", "0", *flags])  # fmt: skip
    ((model, frame, result),) = seen
    np.testing.assert_array_equal(frame, cv2.imread(str(work / "images" / "a.png")))
    assert sum(len(boxes) for boxes in result[0]) > 0
    expected = draw_result(
        frame, result, model.CLASSES, score_thr=0.0, skeleton=model.KEYPOINT_SKELETON, **options
    )
    np.testing.assert_array_equal(cv2.imread(str(work / out_dir / "a.png")), expected)
    assert np.abs(expected.astype(int) - frame.astype(int)).sum() > 1000
    if options:  # the options changed the picture: not what the defaults draw
        assert not np.array_equal(expected, draw_result(frame, result, model.CLASSES, 0.0))


def test_image_demo_above_every_score_draws_nothing(work):
    # a higher threshold draws nothing on an untrained model (in this process: the script's
    # own process runs in test_image_demo_on_a_file_and_a_folder)
    rc, out = _demo_here(
        "image_demo", "images/a.png", MASK_RCNN, "mask_rcnn.pth", "--out-dir", "none",
        "--score-thr", 1.01, cwd=work,
    )  # fmt: skip
    assert rc == 0, out
    np.testing.assert_array_equal(
        cv2.imread(str(work / "none" / "a.png")), cv2.imread(str(work / "images" / "a.png"))
    )


def test_drawing_blends_masks_and_draws_keypoints_with_the_skeleton(tmp_path):
    img = _picture(128, 128, 2)
    path = _untrained_checkpoint(MASK_RCNN, tmp_path / "mask_rcnn.pth")
    model = init_detector(str(MASK_RCNN), str(path))
    bbox_results, segm_results = inference_detector(model, img)
    label, j = max(
        ((c, k) for c, boxes in enumerate(bbox_results) for k in range(len(boxes))),
        key=lambda ck: bbox_results[ck[0]][ck[1], 4],
    )
    mask = np.asarray(segm_results[label][j], dtype=bool)
    assert mask.sum() > 20
    # only the best detection is drawn: inside its mask (but off its box outline and
    # label) each pixel is the half-and-half blend of the image and the class colour
    drawn = draw_detections(model, img, float(bbox_results[label][j, 4]))
    color = np.asarray(DrawStyle().color(label), np.float32)
    blend = (0.5 * img + 0.5 * color).astype(np.uint8)
    blended = np.all(drawn == blend, axis=2) & mask
    assert blended.sum() > 0.5 * mask.sum()

    skeleton = [[0, 1], [0, 2], [1, 2]]
    path = _untrained_checkpoint(
        KEYPOINT_RCNN, tmp_path / "kp.pth", meta={"keypoint_meta": {"skeleton": skeleton}}
    )
    model = init_detector(str(KEYPOINT_RCNN), str(path))
    assert model.KEYPOINT_SKELETON == ((0, 1), (0, 2), (1, 2))
    with_skeleton = draw_detections(model, img, 0.0)
    model.KEYPOINT_SKELETON = ()
    without = draw_detections(model, img, 0.0)
    assert not np.array_equal(with_skeleton, without)  # the skeleton's lines are drawn


def test_video_demo_keeps_frames_rate_and_size(work):
    rc, out = _demo(
        "video_demo", "clip.mp4", MASK_RCNN, "mask_rcnn.pth", "--out", "out/drawn.mp4",
        "--score-thr", 0, cwd=work,
    )  # fmt: skip
    assert rc == 0, out
    assert "frames/s" in out and f"{FPS * SECONDS}/{FPS * SECONDS}" in out
    in_fps, source = _read_video(work / "clip.mp4")
    out_fps, drawn = _read_video(work / "out" / "drawn.mp4")
    assert len(drawn) == len(source) == FPS * SECONDS
    assert out_fps == pytest.approx(in_fps) == pytest.approx(FPS)
    assert all(f.shape == (VIDEO_SIZE[1], VIDEO_SIZE[0], 3) for f in drawn)
    assert np.abs(drawn[0].astype(int) - source[0].astype(int)).sum() > 1000


def _load_demo(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "demo" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_webcam_demo_draws_a_stream_until_q(work, monkeypatch, capsys):
    # no display here: the window calls are recorded, and 'q' is pressed at the 5th frame
    webcam = _load_demo("webcam_demo")
    shown, keys = [], iter([-1, -1, -1, -1, ord("q")])
    monkeypatch.setattr(webcam, "has_display", lambda: True)
    monkeypatch.setattr(webcam.cv2, "imshow", lambda name, img: shown.append(img.copy()))
    monkeypatch.setattr(webcam.cv2, "waitKey", lambda delay: next(keys))
    monkeypatch.setattr(webcam.cv2, "getWindowProperty", lambda name, prop: 1.0)
    monkeypatch.setattr(webcam.cv2, "destroyWindow", lambda name: None)
    monkeypatch.chdir(work)
    args = [str(MASK_RCNN), "mask_rcnn.pth", "--camera-id", "clip.mp4", "--score-thr", "0"]
    webcam.main(args)
    assert "5 frames shown" in capsys.readouterr().out
    _, source = _read_video(work / "clip.mp4")
    assert len(shown) == 5
    assert all(s.shape == source[0].shape for s in shown)
    assert np.abs(shown[0].astype(int) - source[0].astype(int)).sum() > 1000


def test_webcam_demo_without_camera_or_display_is_a_clear_error(work):
    rc, out = _demo("webcam_demo", MASK_RCNN, "mask_rcnn.pth", "--camera-id", 57, cwd=work)
    _assert_clear_error(rc, out, "no camera could be opened with --camera-id 57")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISPLAY", "")
        patch.setenv("WAYLAND_DISPLAY", "")
        rc, out = _demo_here(
            "webcam_demo", MASK_RCNN, "mask_rcnn.pth", "--camera-id", "clip.mp4", cwd=work
        )
    _assert_clear_error(rc, out, "no display to open the window on")


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("image_demo", ["missing.png", MASK_RCNN, "mask_rcnn.pth"], "missing.png: no such"),
        ("image_demo", ["broken.png", MASK_RCNN, "mask_rcnn.pth", "--out-dir", "x"],
         "broken.png: not a readable image"),
        ("image_demo", ["cut.jpg", MASK_RCNN, "mask_rcnn.pth", "--out-dir", "x"],
         "cut.jpg: not a readable image (truncated: the JPEG data ends"),
        ("image_demo", ["images", MASK_RCNN, "missing.pth"], "missing.pth: no such checkpoint"),
        ("image_demo", ["images", MASK_RCNN, "retinanet.pth", "--out-dir", "x"],
         "retinanet.pth does not fit the model of the config"),
        ("image_demo", ["images", MASK_RCNN, "mask_rcnn.pth", "--out-dir", "images"],
         "would overwrite the input"),
        ("image_demo", ["images", MASK_RCNN, "mask_rcnn.pth", "--thickness", "0"],
         "--thickness 0: must be a whole number of pixels, at least 1"),
        ("image_demo", ["images", MASK_RCNN, "mask_rcnn.pth", "--palette", "rainbow"],
         "--palette 'rainbow': no such palette; use one of default, tab10, tab20, random"),
        ("video_demo", ["clip.mp4", MASK_RCNN, "mask_rcnn.pth", "--out", "o.mp4",
                        "--font-scale", "-1"],
         "--font-scale -1: must be a number above 0"),
        ("video_demo", ["missing.mp4", MASK_RCNN, "mask_rcnn.pth", "--out", "o.mp4"],
         "missing.mp4: no such video file"),
        ("video_demo", ["broken.mp4", MASK_RCNN, "mask_rcnn.pth", "--out", "o.mp4"],
         "broken.mp4: not a readable video"),
        ("video_demo", ["clip.mp4", MASK_RCNN, "retinanet.pth", "--out", "o.mp4"],
         "retinanet.pth does not fit the model of the config"),
    ],
)  # fmt: skip
def test_demo_errors_are_one_clear_line(work, name, args, message):
    # the first error of each script in its own process (exit status and all), the others
    # in this one
    first = message in ("missing.png: no such", "missing.mp4: no such video file")
    rc, out = (_demo if first else _demo_here)(name, *args, cwd=work)
    _assert_clear_error(rc, out, message)
