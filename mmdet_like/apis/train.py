"""Training entry points: seeding, and a detector trained from a config."""

import random

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from mmdet_like.apis.config_check import EVAL_HOOK_KEYS
from mmdet_like.apis.startup_check import (
    check_class_counts,
    check_evaluator,
    check_evaluator_outputs,
)
from mmdet_like.datasets import build_dataloader, build_dataset
from mmdet_like.engine import (
    DistEvalHook,
    EpochBasedRunner,
    EvalHook,
    IterBasedRunner,
    build_optimizer,
    find_latest_checkpoint,
    get_dist_info,
    get_logger,
)
from mmdet_like.engine.batch_augments import BatchAugmentedLoader, build_batch_augments
from mmdet_like.engine.config import ConfigError
from mmdet_like.engine.dist import broadcast_object
from mmdet_like.evaluation import build_evaluator


def init_random_seed(seed=None):
    """``seed``, or a random one drawn on rank 0 and shared with every rank."""
    if seed is not None:
        return int(seed)
    return broadcast_object(int(np.random.randint(2**31)))  # noqa: NPY002 (the global RNG is what is seeded)


def set_random_seed(seed, deterministic=False):
    """Seed python, numpy and torch (all devices) in this process.

    ``deterministic=True`` also makes cuDNN deterministic and turns on
    ``torch.use_deterministic_algorithms`` (ops without a deterministic version warn).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the global RNG is what is seeded)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def apply_auto_scale_lr(cfg, world_size, enable=False):
    """mmdetection's ``auto_scale_lr=dict(enable=True, base_batch_size=16)`` (or ``enable``
    from ``--auto-scale-lr``): ``optimizer.lr`` was set for ``base_batch_size`` images a step;
    it is scaled by the real batch (``world_size x data.imgs_per_gpu``) over that (the linear
    scaling rule), in place. Returns the line to log (None when there is nothing to say)."""
    auto = cfg.get("auto_scale_lr")
    if auto is None:
        if enable:
            raise ConfigError(
                "--auto-scale-lr: the config has no auto_scale_lr=dict(base_batch_size=N), the "
                "batch size its optimizer.lr was set for"
            )
        return None
    if not (enable or auto.get("enable", False)):
        return (
            f"auto_scale_lr: off (enable=False): optimizer.lr={cfg.optimizer.lr} as set, for a "
            f"batch of {world_size * cfg.data.imgs_per_gpu} images"
        )
    base = auto.get("base_batch_size")
    if not isinstance(base, int) or isinstance(base, bool) or base < 1:
        raise ConfigError(
            f"auto_scale_lr.base_batch_size must be a whole number >= 1, got {base!r}"
        )
    batch = world_size * cfg.data.imgs_per_gpu
    old = cfg.optimizer.lr
    cfg.optimizer.lr = old * batch / base
    return (
        f"auto_scale_lr: batch {batch} ({world_size} process(es) x {cfg.data.imgs_per_gpu} "
        f"images) against base_batch_size {base}: optimizer.lr {old} -> {cfg.optimizer.lr:g}"
    )


def eval_hook_args(cfg, dataset):
    """The arguments of the evaluation hook for ``cfg.evaluation``: the hook's own keys, and
    the evaluator of the ``metric`` with its options (built now, so that a misspelt metric or
    option fails at start-up, not after the first epoch). A dataset without
    ``ground_truth()`` keeps its own ``evaluate`` (the options go to it)."""
    options = dict(cfg.get("evaluation") or {})
    hook_args = {k: options.pop(k) for k in EVAL_HOOK_KEYS if k in options}
    if not hasattr(dataset, "ground_truth"):
        return dict(hook_args, **options)
    metric = options.pop("metric", None) or dataset.DEFAULT_METRIC
    return dict(hook_args, evaluator=build_evaluator(metric, **options))


def _device(cfg):
    if torch.cuda.is_available() and cfg.get("gpu_ids", [0]):
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _optimizer_config(cfg):
    """``optimizer_config`` with a top-level ``fp16=dict(...)`` merged in."""
    optimizer_config = dict(cfg.get("optimizer_config") or {})
    if cfg.get("fp16") is not None:
        optimizer_config["fp16"] = dict(cfg.fp16)
    return optimizer_config


def _auto_resume_checkpoint(cfg, work_dir, logger):
    """The newest valid checkpoint in the checkpoint folder (found on rank 0), or None."""
    folder = (cfg.get("checkpoint_config") or {}).get("out_dir") or work_dir
    path = None
    if folder and get_dist_info()[0] == 0:
        path = find_latest_checkpoint(folder, logger)
        if path is None:
            logger.info("auto-resume: no usable checkpoint in %s; training from the start", folder)
        else:
            logger.info("auto-resume: newest valid checkpoint is %s", path)
    return broadcast_object(path)


def train_detector(
    model, dataset, cfg, distributed=False, validate=False, timestamp=None, meta=None
):
    """Train ``model`` on ``dataset`` (one, or one per ``cfg.workflow`` phase) per ``cfg``.

    Builds the data loaders, wraps the model in DDP when ``distributed``, builds the
    optimizer, the runner and its hooks (plus evaluation on ``cfg.data.val`` when
    ``validate``), resumes or loads weights, and runs. Returns the runner.
    """
    logger = get_logger(log_level=cfg.get("log_level", "INFO"))
    datasets = list(dataset) if isinstance(dataset, list | tuple) else [dataset]
    workflow = [tuple(phase) for phase in cfg.get("workflow", [("train", 1)])]
    if len(datasets) != len(workflow):
        raise ValueError(f"{len(datasets)} dataset(s) for workflow {workflow}")
    seed = cfg.get("seed")
    data_loaders = [
        build_dataloader(
            ds,
            cfg.data.imgs_per_gpu,
            cfg.data.workers_per_gpu,
            dist=distributed,
            shuffle=True,
            seed=seed,
            sampler_cfg=cfg.data.get("sampler"),
        )
        for ds in datasets
    ]

    device = _device(cfg)
    batch_augments = cfg.data.get("batch_augments")
    if batch_augments:  # the training phases' batches (YOLOX's BatchSyncRandomResize)
        data_loaders = [
            BatchAugmentedLoader(loader, build_batch_augments(batch_augments, seed), device)
            if mode == "train" else loader
            for loader, (mode, _) in zip(data_loaders, workflow)
        ]  # fmt: skip
    model = model.to(device)
    if distributed:
        model = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get("find_unused_parameters", False),
        )
    optimizer = build_optimizer(model, cfg.optimizer)

    meta = dict(meta or {})
    classes = getattr(datasets[0], "CLASSES", None)
    if classes is not None:
        meta.setdefault("CLASSES", [str(c) for c in classes])
    keypoint_meta = getattr(datasets[0], "keypoint_meta", None)
    if keypoint_meta is not None:  # names, skeleton, flip pairs, sigmas: plain types
        meta.setdefault("keypoint_meta", keypoint_meta.to_dict())
    if seed is not None:
        meta.setdefault("seed", int(seed))
    iteration_based = (cfg.get("runner") or {}).get("type") == "IterBasedRunner"
    if iteration_based:  # runner=dict(type="IterBasedRunner", max_iters=N): see config_check
        runner = IterBasedRunner(
            model, optimizer, cfg.work_dir, logger, meta, max_iters=cfg.runner.max_iters
        )
    else:
        runner = EpochBasedRunner(
            model, optimizer, cfg.work_dir, logger, meta, max_epochs=cfg.total_epochs
        )
    if timestamp is not None:
        runner.timestamp = timestamp
    runner.register_training_hooks(
        cfg.get("lr_config"),
        _optimizer_config(cfg),
        cfg.get("checkpoint_config"),
        cfg.get("log_config"),
        cfg.get("custom_hooks"),
    )
    if validate:
        val_dataset = build_dataset(cfg.data.val, {"test_mode": True}, where="data.val")
        check_class_counts(cfg.model, val_dataset, "val")
        val_loader = build_dataloader(
            val_dataset, 1, cfg.data.workers_per_gpu, dist=distributed, shuffle=False
        )
        hook_args = eval_hook_args(cfg, val_dataset)
        if hook_args.get("evaluator") is not None:  # the metrics run on this dataset
            check_evaluator(hook_args["evaluator"], val_dataset.ground_truth(), "val")
            check_evaluator_outputs(hook_args["evaluator"], model, "evaluation.metric")
        hook_cls = DistEvalHook if distributed else EvalHook
        runner.register_hook(hook_cls(val_loader, **hook_args))

    resume_from = cfg.get("resume_from")
    if resume_from is None and cfg.get("auto_resume"):
        resume_from = _auto_resume_checkpoint(cfg, runner.work_dir, logger)
    if resume_from:
        runner.resume(resume_from)
    elif cfg.get("load_from"):
        runner.load_checkpoint(cfg.load_from)
    rank, world_size = get_dist_info()
    logger.info(
        "training on %s, %d process(es), %d images per process",
        device,
        world_size,
        cfg.data.imgs_per_gpu,
    )
    runner.run(
        data_loaders, workflow, cfg.runner.max_iters if iteration_based else cfg.total_epochs
    )
    return runner
