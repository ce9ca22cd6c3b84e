"""Test a trained detector: results, COCO metrics, result json files, drawn images.

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl] [--eval bbox segm proposal]
        [--format-only] [--eval-options KEY=VALUE ...] [--show] [--show-dir DIR]
        [--show-score-thr 0.3] [--thickness PX] [--font-scale S] [--palette NAME | R,G,B ...]
        [--gpu-collect] [--tmpdir DIR] [--fuse-conv-bn]
        [--allow-partial] [--launcher none|pytorch|slurm] [--cfg-options KEY=VALUE ...]
        [--slice-size H W [--slice-overlap 0.2] [--slice-merge nms|nmm]
         [--slice-match-metric iou|ios] [--slice-match-threshold 0.5] [--slice-full-image]
         [--slice-batch-size 1]]

Before any image is read the config is checked (keys, types), the model's class counts
against the test dataset's, the metrics against its annotations, and the checkpoint against
the model and the dataset's classes (every weight and shape; the classes in the same
order): a mismatch is an error naming the key to change, unless --allow-partial.

Several processes: tools/dist_test.sh CONFIG CHECKPOINT N [ARGS].

``--slice-size H W`` tests with sliced inference (large images, small objects): each image
is cut into overlapping H x W tiles, the model runs on the tiles and their detections are
merged (mmdet_like/apis/slicing.py, docs/evaluation.md); with one or several processes.

``--format-only`` writes the COCO result json files ``PREFIX.bbox.json`` (``.segm.json``) for
``--eval-options jsonfile_prefix=PREFIX`` (default: ``--out`` without its extension).
"""

import argparse
import os
import os.path as osp
import pickle
import sys
import tempfile

# oneDNN, torch's CPU convolution library, caches a compiled kernel for every input shape it
# meets (up to 1024 by default). The RoI heads see a new number of RoIs at every iteration,
# so on the CPU that cache, and the host memory with it, grows (measured: about 20 MiB an
# iteration for the full-width ResNet-18 demo model, see docs/training.md). 64 entries bound
# it. Must be set before torch is imported; an explicit setting in the environment wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")

import torch  # noqa: E402
from torch.distributed.elastic.multiprocessing.errors import record

from mmdet_like.apis import build_detector, multi_gpu_test, single_gpu_test
from mmdet_like.apis.config_check import check_config
from mmdet_like.apis.slicing import (
    MATCH_METRICS,
    MERGE_METHODS,
    SLICE_DEFAULTS,
    SlicedDetector,
    SliceOptionsError,
    check_slice_options,
)
from mmdet_like.apis.startup_check import (
    check_class_counts,
    check_evaluator,
    check_evaluator_outputs,
    load_checkpoint_for_testing,
)
from mmdet_like.datasets import build_dataloader, build_dataset
from mmdet_like.engine import (
    CfgOptionsAction,
    add_cfg_options_argument,
    close_dist,
    get_dist_info,
    get_logger,
    init_dist,
    load_config,
)
from mmdet_like.errors import run_tool
from mmdet_like.evaluation import build_evaluator
from mmdet_like.models.utils import fuse_conv_bn
from mmdet_like.ops import enable_cpu_caching_allocator_from_env
from mmdet_like.visualization import add_draw_arguments, style_from_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Test (and evaluate) a detector")
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("--out", help="write the results to this pickle file (.pkl)")
    parser.add_argument(
        "--eval",
        nargs="+",
        metavar="METRIC",
        help="metrics for dataset.evaluate, e.g. bbox segm proposal (COCO) or mAP (VOC)",
    )
    parser.add_argument(
        "--format-only",
        action="store_true",
        help="only write the results in the dataset's submission format (COCO json), "
        "without evaluating",
    )
    parser.add_argument(
        "--eval-options",
        nargs="+",
        action=CfgOptionsAction,
        default={},
        metavar="KEY=VALUE",
        help="keyword arguments of dataset.evaluate / format_results, e.g. classwise=True "
        "jsonfile_prefix=work_dirs/results",
    )
    parser.add_argument("--show", action="store_true", help="show every image's detections")
    parser.add_argument("--show-dir", help="save the images with their detections drawn here")
    parser.add_argument(
        "--show-score-thr", type=float, default=0.3, help="lowest score drawn (default 0.3)"
    )
    add_draw_arguments(parser)  # --thickness --font-scale --palette, for --show / --show-dir
    parser.add_argument(
        "--gpu-collect",
        action="store_true",
        help="gather the ranks' results with all_gather_object instead of a shared tmpdir",
    )
    parser.add_argument(
        "--tmpdir", help="directory (seen by every rank) for gathering results; default: temp"
    )
    parser.add_argument(
        "--fuse-conv-bn",
        action="store_true",
        help="fold BatchNorm layers into the preceding convolutions (faster inference)",
    )
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="test even if the checkpoint does not fit the model (weights missing or of "
        "another shape) or was trained on other classes / another class order",
    )
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    add_cfg_options_argument(parser, example="data.test.ann_file=...")
    add_slice_arguments(parser)
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (args.out or args.eval or args.format_only or args.show or args.show_dir):
        parser.error(
            "nothing to do: give at least one of --out, --eval, --format-only, --show, --show-dir"
        )
    if args.show and not has_display():
        parser.error(
            "--show needs a display to open windows in, and there is none (DISPLAY and "
            "WAYLAND_DISPLAY are unset); use --show-dir DIR to save the drawn images instead"
        )
    if args.eval and args.format_only:
        parser.error("--eval and --format-only cannot be combined")
    drawing = [f"--{name.replace('_', '-')}" for name in ("thickness", "font_scale", "palette")
               if getattr(args, name) is not None]  # fmt: skip
    if drawing and not (args.show or args.show_dir):
        parser.error(f"{' '.join(drawing)} set how --show / --show-dir draw; add --show-dir DIR")
    args.draw_style = style_from_args(args)  # a bad value: one line naming the option
    if args.out is not None and not args.out.endswith((".pkl", ".pickle")):
        parser.error(f"--out {args.out}: the output file must be a .pkl or .pickle file")
    args.slice_options = slice_options(parser, args)
    if args.format_only and "jsonfile_prefix" not in args.eval_options:
        if args.out is None:
            parser.error(
                "--format-only needs --eval-options jsonfile_prefix=PREFIX (or --out, whose "
                "name without extension is then the prefix)"
            )
        args.eval_options["jsonfile_prefix"] = osp.splitext(args.out)[0]
    return args


_SLICE_ARGUMENTS = {
    "slice_overlap": "overlap",
    "slice_merge": "merge",
    "slice_match_metric": "match_metric",
    "slice_match_threshold": "match_threshold",
    "slice_full_image": "full_image",
    "slice_batch_size": "batch_size",
}


def add_slice_arguments(parser):
    """The ``--slice-*`` options of sliced inference (defaults: ``SLICE_DEFAULTS``)."""
    defaults = SLICE_DEFAULTS
    group = parser.add_argument_group(
        "sliced inference", "test on overlapping tiles of each image (large images, small objects)"
    )
    group.add_argument(
        "--slice-size", type=int, nargs=2, metavar=("H", "W"), help="tile height and width"
    )
    group.add_argument(
        "--slice-overlap",
        type=float,
        metavar="R",
        help=f"share of a tile's side overlapping its neighbour (default {defaults['overlap']})",
    )
    group.add_argument(
        "--slice-merge",
        choices=MERGE_METHODS,
        help="merge the tiles' duplicates by class-wise NMS (default) or NMM (union boxes)",
    )
    group.add_argument(
        "--slice-match-metric", choices=MATCH_METRICS, help="box overlap measure (default iou)"
    )
    group.add_argument(
        "--slice-match-threshold",
        type=float,
        metavar="T",
        help=f"overlap above which boxes are merged (default {defaults['match_threshold']})",
    )
    group.add_argument(
        "--slice-full-image",
        action="store_true",
        default=None,
        help="run the whole image too and merge its detections with the tiles'",
    )
    group.add_argument(
        "--slice-batch-size",
        type=int,
        metavar="N",
        help=f"tiles run at a time (default {defaults['batch_size']})",
    )


def slice_options(parser, args):
    """The sliced-inference options of ``args`` (None without ``--slice-size``)."""
    given = {key: getattr(args, name) for name, key in _SLICE_ARGUMENTS.items()}
    given = {key: value for key, value in given.items() if value is not None}
    if args.slice_size is None:
        if given:
            flags = sorted(f"--{name.replace('_', '-')}" for name in _SLICE_ARGUMENTS
                           if getattr(args, name) is not None)  # fmt: skip
            parser.error(f"{' '.join(flags)} need --slice-size H W")
        return None
    try:
        return check_slice_options(dict(given, size=tuple(args.slice_size)))
    except SliceOptionsError as exc:
        parser.error(str(exc))


def has_display():
    """A window can be opened: not Linux/BSD (macOS, Windows), or a display is set."""
    if not sys.platform.startswith(("linux", "freebsd")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _device(cfg):
    if torch.cuda.is_available() and cfg.get("gpu_ids", [0]):
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@record
def main(argv=None):
    args = parse_args(argv)
    # Freed large host blocks stay mapped for reuse instead of being page-faulted in again
    # at every iteration (mmdet_like/ops/cpu_caching_allocator.py; off with
    # MMDET_LIKE_CPU_CACHING_ALLOCATOR=0).
    enable_cpu_caching_allocator_from_env()
    cfg = load_config(args.config, args.cfg_options)
    notes = check_config(cfg, args.config)
    distributed = args.launcher != "none"
    if distributed:
        init_dist(args.launcher, **(cfg.get("dist_params") or {}))
    rank, world_size = get_dist_info()
    logger = get_logger(log_level=cfg.get("log_level", "INFO"))
    for note in notes:
        logger.info("config: %s", note)

    if "test" not in cfg.get("data", {}):
        sys.exit(f"{args.config}: no data.test in the config")
    cfg.data.test.test_mode = True
    dataset = build_dataset(cfg.data.test, where="data.test")
    check_class_counts(cfg.model, dataset, "test")
    data_loader = build_dataloader(
        dataset,
        cfg.data.get("test_imgs_per_gpu", 1),
        cfg.data.get("workers_per_gpu", 0),
        dist=distributed,
        shuffle=False,
    )

    # the metrics are built before inference: a misspelt metric or option fails now
    evaluator = None
    if args.eval and hasattr(dataset, "ground_truth"):
        evaluator = build_evaluator(args.eval, **args.eval_options)
        check_evaluator(evaluator, dataset.ground_truth(), "test")

    # Every weight comes from the checkpoint: no pretrained backbone is loaded.
    model = build_detector(cfg.model, cfg.get("train_cfg"), cfg.get("test_cfg"))
    if evaluator is not None:  # e.g. segm needs a mask head: refused before inference
        check_evaluator_outputs(evaluator, model, "--eval")
    dataset_classes = getattr(dataset, "CLASSES", None)
    checkpoint = load_checkpoint_for_testing(
        model, args.checkpoint, dataset_classes, "test", args.allow_partial, logger
    )
    classes = (checkpoint.get("meta") or {}).get("CLASSES")
    model.CLASSES = classes if classes is not None else dataset_classes
    if args.fuse_conv_bn:
        model.eval()
        model = fuse_conv_bn(model)
    model = model.to(_device(cfg))
    if args.slice_options is not None:
        model.cfg = cfg  # its test pipeline prepares the tiles
        model = SlicedDetector(model, **args.slice_options)
        logger.info("sliced inference: %s", args.slice_options)
    logger.info(
        "testing %d images of %s on %s, %d process(es)",
        len(dataset),
        type(dataset).__name__,
        _device(cfg),
        world_size,
    )

    if distributed:
        results = multi_gpu_test(model, data_loader, args.tmpdir, args.gpu_collect)
        close_dist()  # every rank has its part gathered; rank 0 goes on alone
    else:
        results = single_gpu_test(
            model, data_loader, args.show, args.show_dir, args.show_score_thr, args.draw_style
        )
    if distributed and (args.show or args.show_dir):
        logger.warning("--show / --show-dir are only supported with one process; ignored")

    if rank != 0:
        return None
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, "wb") as f:
            pickle.dump(results, f, protocol=pickle.HIGHEST_PROTOCOL)
        print(f"results of {len(results)} images written to {args.out}")
    if args.format_only:
        prefix = args.eval_options["jsonfile_prefix"]
        os.makedirs(osp.dirname(osp.abspath(prefix)), exist_ok=True)
        files, _ = dataset.format_results(results, **args.eval_options)
        for kind, path in files.items():
            print(f"{kind} results written to {path}")
    metrics = None
    if args.eval:
        kept = args.out or _keep_results(results)
        try:
            if evaluator is not None:
                metrics = evaluator(results, dataset.ground_truth(), logger)
            else:
                metrics = dataset.evaluate(
                    results, metric=args.eval, logger=logger, **args.eval_options
                )
        except BaseException:
            print(
                f"test.py: the evaluation failed; the results of {len(results)} images are "
                f"kept in {kept} (evaluate them again with tools/analysis_tools/eval_metric.py "
                f"{args.config} {kept} --eval ...)",
                file=sys.stderr,
            )
            raise
        if not args.out:
            os.remove(kept)
        for name, value in metrics.items():
            print(f"{name}: {float(value):.4f}")
    return metrics


def _keep_results(results):
    """Write ``results`` to a temporary pickle before evaluating (without --out), so that a
    failing metric loses no inference; returns its path (removed once the metrics ran)."""
    fd, path = tempfile.mkstemp(prefix="test_results_", suffix=".pkl")
    with os.fdopen(fd, "wb") as f:
        pickle.dump(results, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


if __name__ == "__main__":
    sys.exit(run_tool(main))
