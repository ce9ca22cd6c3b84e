"""Train a detector from a config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume-from CKPT] [--auto-resume]
        [--no-validate] [--gpus N] [--seed S] [--deterministic]
        [--launcher none|pytorch|slurm] [--cfg-options KEY=VALUE ...]

Several processes: tools/dist_train.sh CONFIG N (torchrun) or tools/slurm_train.sh.
"""

import argparse
import copy
import os
import os.path as osp
import sys
import time

# oneDNN, torch's CPU convolution library, caches a compiled kernel for every input shape it
# meets (up to 1024 by default). The RoI heads see a new number of RoIs at every iteration,
# so on the CPU that cache, and the host memory with it, grows (measured: about 20 MiB an
# iteration for the full-width ResNet-18 demo model, see docs/training.md). 64 entries bound
# it. Must be set before torch is imported; an explicit setting in the environment wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")

import torch  # noqa: E402
from torch.distributed.elastic.multiprocessing.errors import record

from mmdet_like import __version__
from mmdet_like.apis import build_detector, init_random_seed, set_random_seed, train_detector
from mmdet_like.apis.config_check import check_config
from mmdet_like.apis.startup_check import check_class_counts
from mmdet_like.apis.train import apply_auto_scale_lr
from mmdet_like.datasets import build_dataset
from mmdet_like.engine import (
    add_cfg_options_argument,
    get_dist_info,
    get_logger,
    init_dist,
    load_config,
)
from mmdet_like.errors import run_tool
from mmdet_like.ops import enable_cpu_caching_allocator_from_env


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train a detector", allow_abbrev=False)
    parser.add_argument("config", help="config file")
    parser.add_argument("--work-dir", help="where logs and checkpoints go")
    parser.add_argument("--resume-from", help="checkpoint to resume from")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="CHECKPOINT",
        help="mmdetection 3.x's flag: alone, as --auto-resume; with a checkpoint, as --resume-from",
    )
    parser.add_argument(
        "--amp",
        action="store_true",
        help="mixed precision: float16 autocast with a dynamic loss scale on a GPU, bfloat16 "
        "autocast on the CPU (the config's fp16=dict(...) when it has one)",
    )
    parser.add_argument(
        "--auto-scale-lr",
        action="store_true",
        help="scale optimizer.lr by the real batch over auto_scale_lr.base_batch_size",
    )
    parser.add_argument(
        "--auto-resume",
        action="store_true",
        help="resume from the newest valid checkpoint in the work dir (latest.pth, or the newest "
        "readable epoch_N.pth / iter_N.pth when it is missing or broken), if any",
    )
    parser.add_argument(
        "--no-validate", action="store_true", help="do not evaluate on data.val during training"
    )
    parser.add_argument(
        "--gpus",
        type=int,
        default=None,
        help="0: CPU; 1: one GPU (default when CUDA is available). More GPUs: "
        "tools/dist_train.sh CONFIG N",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument(
        "--deterministic", action="store_true", help="deterministic algorithms (cuDNN and torch)"
    )
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    add_cfg_options_argument(parser)
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


@record
def main(argv=None):
    args = parse_args(argv)
    # Freed large host blocks stay mapped for reuse instead of being page-faulted in again
    # at every iteration (mmdet_like/ops/cpu_caching_allocator.py; off with
    # MMDET_LIKE_CPU_CACHING_ALLOCATOR=0).
    cpu_caching = enable_cpu_caching_allocator_from_env()
    cfg = load_config(args.config, args.cfg_options)
    args.config = cfg.filename  # a shipped config's name resolved to its file
    # every key read and of the right type, before anything is built (mmdetection v2 names
    # are rewritten to ours, with a note for the log)
    notes = check_config(cfg, args.config)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.resume is not None and args.resume_from is not None:
        sys.exit("--resume CHECKPOINT and --resume-from: give one")
    if args.resume not in (None, "auto"):
        args.resume_from = args.resume
    if args.resume_from is not None:
        cfg.resume_from = args.resume_from
    if args.auto_resume or args.resume == "auto":
        cfg.auto_resume = True
    amp_note = None
    if args.amp:
        if cfg.get("fp16") is not None:
            amp_note = f"--amp: the config's fp16={dict(cfg.fp16)!r} is used"
        else:
            cfg.fp16 = (
                dict(dtype="float16") if torch.cuda.is_available() else dict(dtype="bfloat16")
            )
            amp_note = f"--amp: mixed precision, fp16={dict(cfg.fp16)!r}"
    if args.gpus is not None:
        if args.gpus > 1 and args.launcher == "none":
            sys.exit(
                f"--gpus {args.gpus}: one process drives one device; use "
                f"tools/dist_train.sh {args.config} {args.gpus}"
            )
        cfg.gpu_ids = list(range(args.gpus))
    cfg.setdefault("workflow", [("train", 1)])
    cfg.setdefault("log_level", "INFO")

    distributed = args.launcher != "none"
    if distributed:
        init_dist(args.launcher, **(cfg.get("dist_params") or {}))
    rank, world_size = get_dist_info()
    scale_note = apply_auto_scale_lr(cfg, world_size, args.auto_scale_lr)

    seed = init_random_seed(args.seed if args.seed is not None else cfg.get("seed"))
    deterministic = args.deterministic or cfg.get("deterministic", False)
    cfg.seed = seed
    config_text = cfg.pretty_text  # formatted once (yapf: half a second a call)
    timestamp = time.strftime("%Y%m%d_%H%M%S", time.localtime())
    if rank == 0:
        os.makedirs(osp.abspath(cfg.work_dir), exist_ok=True)
        dumped = osp.join(cfg.work_dir, osp.basename(args.config))
        if dumped.endswith(".py"):
            with open(dumped, "w", encoding="utf-8") as f:
                f.write(config_text)  # what cfg.dump writes for a .py config
        else:
            cfg.dump(dumped)
    log_file = osp.join(cfg.work_dir, f"{timestamp}.log") if rank == 0 else None
    logger = get_logger(log_file=log_file, log_level=cfg.log_level)
    logger.info(
        "mmdet_like %s, torch %s, CUDA available: %s, world size %d",
        __version__,
        torch.__version__,
        torch.cuda.is_available(),
        world_size,
    )
    logger.info("CPU caching allocator: %s", "on" if cpu_caching else "off")
    for note in [*notes, amp_note, scale_note]:
        if note is not None:
            logger.info("config: %s", note)
    logger.info("config:\n%s", config_text)
    logger.info("seed %d, deterministic: %s", seed, deterministic)
    set_random_seed(seed, deterministic)

    model = build_detector(cfg.model, cfg.get("train_cfg"), cfg.get("test_cfg"))
    # Pretrained backbone weights are loaded here, not at build time. A run that resumes or
    # loads a checkpoint overwrites every weight, so it skips them (and needs no download).
    if hasattr(model, "init_weights") and not (cfg.get("resume_from") or cfg.get("load_from")):
        model.init_weights()
    datasets = [build_dataset(cfg.data.train, where="data.train")]
    # the model's class counts against the data, before any image reaches the model
    check_class_counts(cfg.model, datasets[0], "train")
    if len(cfg.workflow) == 2:
        val_cfg = copy.deepcopy(cfg.data.val)
        if "pipeline" in cfg.data.train:
            val_cfg.pipeline = cfg.data.train.pipeline
        datasets.append(build_dataset(val_cfg, where="data.val"))
    meta = {"config": config_text, "seed": seed, "mmdet_like_version": __version__}
    train_detector(
        model,
        datasets,
        cfg,
        distributed=distributed,
        validate=not args.no_validate and cfg.get("evaluation") is not None,
        timestamp=timestamp,
        meta=meta,
    )


if __name__ == "__main__":
    sys.exit(run_tool(main))
