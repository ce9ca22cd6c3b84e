"""Shared by tools/analysis_tools/ and tools/model_converters/: loading a config, building
its training set and model, and reporting a missing path as the project's error."""

import os.path as osp

from mmdet_like.errors import ProjectError


class ToolError(ProjectError, ValueError):
    """A wrong argument of a tool (a missing file, a config without the needed part)."""


def require_file(path, what="file"):
    """``path`` if it is a file, else a :class:`ToolError` saying what is wrong."""
    if osp.isdir(path):
        raise ToolError(f"{what} {path!r} is a folder, not a file")
    if not osp.isfile(path):
        raise ToolError(f"{what} {path!r} does not exist; check the path")
    return path


def load_tool_config(path, cfg_options=None):
    """The config at ``path`` (with its ``--cfg-options``), checked the way training checks it."""
    import mmdet_like  # noqa: F401  (registers every built-in)
    from mmdet_like.apis.config_check import check_config
    from mmdet_like.engine import load_config

    require_file(path, "config file")
    cfg = load_config(path, cfg_options)
    check_config(cfg, path)
    return cfg


def build_train_dataset(cfg, config_path):
    """``cfg.data.train`` built with its training pipeline (not in test mode)."""
    from mmdet_like.datasets import build_dataset

    if "train" not in (cfg.get("data") or {}):
        raise ToolError(f"{config_path}: the config has no data.train")
    return build_dataset(cfg.data.train, where="data.train")


def build_model(cfg):
    """The detector of ``cfg`` (no pretrained weights loaded), in eval mode."""
    import copy

    from mmdet_like.apis import build_detector

    model_cfg = copy.deepcopy(cfg.model)
    model_cfg["pretrained"] = None
    if isinstance(model_cfg.get("backbone"), dict) and "pretrained" in model_cfg["backbone"]:
        model_cfg["backbone"]["pretrained"] = None
    return build_detector(model_cfg, cfg.get("train_cfg"), cfg.get("test_cfg")).eval()


def training_boxes(sample):
    """(n, 4) float array of the ``gt_instances.bboxes`` of one packed training sample."""
    import numpy as np

    boxes = getattr(sample["data_samples"].gt_instances, "bboxes", None)
    if boxes is None:
        return np.zeros((0, 4), np.float32)
    boxes = boxes.numpy() if hasattr(boxes, "numpy") else np.asarray(boxes)
    return boxes.reshape(-1, 4).astype(np.float64)


def save_converted_checkpoint(state_dict, meta, out_file, converter):
    """Write a converted checkpoint (``state_dict`` and ``meta``, plain types only) atomically
    and read it back the way users will (``torch.load(weights_only=True)``). ``meta`` gets the
    ``converter``'s name, the versions and the time."""
    import time

    import torch

    from mmdet_like.engine.checkpoint import atomic_torch_save, check_plain
    from mmdet_like.version import __version__

    meta.update(converter=converter, mmdet_like_version=__version__,
                torch_version=str(torch.__version__), time=time.asctime())  # fmt: skip
    checkpoint = {"state_dict": state_dict, "meta": meta}
    check_plain(checkpoint, out_file)
    atomic_torch_save(checkpoint, out_file)
    torch.load(out_file, map_location="cpu", weights_only=True)  # reads back as promised
    return meta
