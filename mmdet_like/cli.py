"""The ``mmdet-like`` command: every tool of ``tools/`` and ``demo/`` as a sub-command.

    mmdet-like train mask_rcnn_r50_fpn_1x --work-dir work_dirs/run1
    mmdet-like test mask_rcnn_r50_fpn_1x work_dirs/run1/latest.pth --eval bbox segm
    mmdet-like list-configs [PATTERN]

Each sub-command runs the tool's script (the repository's in a checkout, the copy in
``mmdet_like/.mim`` in an installed package) with the remaining arguments, exactly as
``python tools/<script> ...`` would. A config argument may be a shipped config's name instead
of a path (``load_config`` resolves it, see :mod:`mmdet_like.engine.config_files`).
"""

import fnmatch
import os
import os.path as osp
import runpy
import subprocess
import sys

from mmdet_like.engine.config_files import list_configs, resource_root

# sub-command -> (folder, script below it, one-line description)
COMMANDS = {
    "train": ("tools", "train.py", "train a detector from a config"),
    "test": ("tools", "test.py", "test a checkpoint: --eval, --out, --show-dir"),
    "dist-train": ("tools", "dist_train.sh", "train on N processes (torchrun): CONFIG N"),
    "dist-test": ("tools", "dist_test.sh", "test on N processes: CONFIG CKPT N"),
    "print-config": ("tools", "print_config.py", "print a config with its _base_ merged"),
    "check-dataset": ("tools", "check_dataset.py", "check a config's datasets and annotations"),
    "make-demo-dataset": ("tools", "make_demo_dataset.py", "draw the shapes demo dataset"),
    "demo-pictures": ("tools", "demo_pictures.py", "draw a model's detections on a folder"),
    "image-demo": ("demo", "image_demo.py", "detect on images or a folder and draw them"),
    "video-demo": ("demo", "video_demo.py", "detect on a video file"),
    "webcam-demo": ("demo", "webcam_demo.py", "detect on a camera's frames"),
    "analyze-logs": ("tools", "analysis_tools/analyze_logs.py", "plot curves, training time"),
    "analyze-results": ("tools", "analysis_tools/analyze_results.py", "best and worst images"),
    "browse-dataset": ("tools", "analysis_tools/browse_dataset.py", "draw the pipeline's output"),
    "coco-error-analysis": (
        "tools",
        "analysis_tools/coco_error_analysis.py",
        "Detectron-style error breakdown",
    ),
    "confusion-matrix": ("tools", "analysis_tools/confusion_matrix.py", "class confusion matrix"),
    "eval-metric": ("tools", "analysis_tools/eval_metric.py", "evaluate a saved results file"),
    "get-flops": ("tools", "analysis_tools/get_flops.py", "FLOPs and parameters of a model"),
    "optimize-anchors": ("tools", "analysis_tools/optimize_anchors.py", "fit anchor sizes"),
    "export": ("tools", "deployment/pytorch2onnx.py", "export to ONNX or torch.export"),
    "publish-model": ("tools", "model_converters/publish_model.py", "strip and hash a checkpoint"),
    "detectron2pytorch": (
        "tools",
        "model_converters/detectron2pytorch.py",
        "convert Detectron / detectron2 weights",
    ),
    "mmdet2ours": ("tools", "model_converters/mmdet2ours.py", "convert mmdetection weights"),
    "mmdet3-config": (
        "tools",
        "misc/mmdet3_config_to_ours.py",
        "convert an mmdetection 3.x config to ours",
    ),
    "convert-torchvision": (
        "tools",
        "convert_torchvision_detection.py",
        "convert torchvision detection weights",
    ),
    "voc2coco": ("tools", "dataset_converters/voc2coco.py", "VOC / LabelImg XML -> COCO json"),
    "yolo2coco": ("tools", "dataset_converters/yolo2coco.py", "YOLO labels -> COCO json"),
    "labelme2coco": ("tools", "dataset_converters/labelme2coco.py", "LabelMe json -> COCO json"),
    "via2coco": ("tools", "dataset_converters/via2coco.py", "VIA polygons -> COCO json"),
    "masks2coco": ("tools", "dataset_converters/masks2coco.py", "mask images -> COCO json"),
}


def script_path(command):
    """The file a sub-command runs."""
    folder, script, _ = COMMANDS[command]
    return osp.join(resource_root(folder), script)


def usage():
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: mmdet-like COMMAND [ARGS ...]   (mmdet-like COMMAND --help for its options)",
        "",
        "commands:",
        f"  {'list-configs'.ljust(width)}  the configs that ship with mmdet_like [PATTERN]",
    ]
    lines += [f"  {name.ljust(width)}  {desc}" for name, (_, _, desc) in COMMANDS.items()]
    return "\n".join(lines)


def run_command(command, args):
    """Run one sub-command's script with ``args``; returns its exit status."""
    path = script_path(command)
    if path.endswith(".sh"):  # the launch scripts start this interpreter (tools/launch_common.sh)
        env = dict(os.environ, PYTHON=os.environ.get("PYTHON") or sys.executable)
        return subprocess.call(["bash", path, *args], env=env)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [path, *args]
    sys.path.insert(0, osp.dirname(path))  # as `python tools/x.py` would have it
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    command, args = argv[0], argv[1:]
    if command == "list-configs":
        pattern = args[0] if args else "*"
        for name in list_configs():
            if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(name, f"*{pattern}*"):
                print(name)
        return 0
    if command not in COMMANDS:
        print(
            f"mmdet-like: unknown command {command!r}; `mmdet-like --help` lists them",
            file=sys.stderr,
        )
        return 2
    return run_command(command, args)


if __name__ == "__main__":
    sys.exit(main())
