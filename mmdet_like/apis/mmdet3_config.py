"""mmdetection 3.x configs -> configs of ours (``tools/misc/mmdet3_config_to_ours.py``).

:func:`load_mmdet3_config` reads a 3.x config with its ``_base_`` files (mmengine's
``Config``); :func:`convert_mmdet3_config` gives the top-level entries of an equivalent
config of ours, every value it could not carry over listed with the reason (nothing is
dropped silently, except 3.x options at values that change nothing, e.g.
``backend_args=None``); :func:`format_config` writes them as a config file, that list in a
comment block at its top. What is translated, and how, is in docs/config.md, "mmdetection
3.x configs". A part with no counterpart here (a detector, head, loss, dataset, LR
scheduler, optimiser wrapper) is an error naming it: no config is written.
"""

import difflib
import json
import keyword
import math
import os.path as osp
import re

from mmengine.config import Config

import mmdet_like.datasets  # noqa: F401 (registers the datasets and transforms)
import mmdet_like.engine  # noqa: F401 (registers the hooks and batch augmentations)
import mmdet_like.evaluation  # noqa: F401 (registers the metrics)
import mmdet_like.models  # noqa: F401 (registers the model parts)
from mmdet_like.engine.config import ConfigError, ConfigFileNotFoundError, check_config_bases
from mmdet_like.engine.mmdet3_config import (
    CONVERTER,
    MMDET3_TOP_LEVEL_KEYS,
    mmdet3_keys,
    mmdet3_keys_in_source,
)
from mmdet_like.errors import ProjectError
from mmdet_like.registry import (
    BACKBONES,
    BATCH_AUGMENTS,
    BBOX_ASSIGNERS,
    BBOX_CODERS,
    BBOX_SAMPLERS,
    DATASETS,
    DETECTORS,
    HEADS,
    HOOKS,
    IOU_CALCULATORS,
    LOSSES,
    MATCH_COSTS,
    NECKS,
    OPTIMIZER_CONSTRUCTORS,
    OPTIMIZERS,
    PIPELINES,
    PLUGIN_LAYERS,
    PRIOR_GENERATORS,
    ROI_EXTRACTORS,
    ROI_LAYERS,
    SHARED_HEADS,
    accepted_arguments,
    build_from_cfg,
)

MODEL_REGISTRIES = (
    DETECTORS, BACKBONES, NECKS, HEADS, SHARED_HEADS, ROI_EXTRACTORS, ROI_LAYERS, LOSSES,
    PRIOR_GENERATORS, BBOX_CODERS, BBOX_ASSIGNERS, BBOX_SAMPLERS, IOU_CALCULATORS,
    MATCH_COSTS, PLUGIN_LAYERS,
)  # fmt: skip
# the registry of a model part, by the key that holds it
PART_REGISTRIES = {
    "model": DETECTORS, "backbone": BACKBONES, "neck": NECKS, "rpn_head": HEADS,
    "roi_head": HEADS, "bbox_head": HEADS, "mask_head": HEADS, "shared_head": SHARED_HEADS,
    "bbox_roi_extractor": ROI_EXTRACTORS, "mask_roi_extractor": ROI_EXTRACTORS,
    "roi_layer": ROI_LAYERS, "anchor_generator": PRIOR_GENERATORS,
    "prior_generator": PRIOR_GENERATORS, "bbox_coder": BBOX_CODERS, "assigner": BBOX_ASSIGNERS,
    "sampler": BBOX_SAMPLERS, "iou_calculator": IOU_CALCULATORS, "match_costs": MATCH_COSTS,
    "loss": LOSSES,
}  # fmt: skip
# where mmdet_like looks for caffe-style ResNet-50 weights (docs/models.md)
CAFFE_R50 = "checkpoints/resnet50_caffe.pth"
LINE = 100

# 3.x arguments that have no counterpart here, at values that change nothing: left out
# without a note (any other value is listed)
NO_EFFECT = {
    "backend_args": [None],
    "file_client_args": [None],
    "debug": [False],
    "init_cfg": [None],
    "dcn": [None],
    "stage_with_dcn": [[False, False, False, False]],
    "with_cp": [False],
    "conv_cfg": [None],
    "act_cfg": [None],
    "no_norm_on_lateral": [False],
    "num_convs": [1],
    "dcn_on_last_conv": [False],
    "add_ctr_clamp": [False],
    "ctr_clamp": [32],
    "pred_kernel_size": [3],
    "activated": [False],
    "alpha": [None],
    "use_box_type": [False],
    "avg_non_ignore": [False],
    "pool_mode": ["avg"],
    "use_torchvision": [False],
    "reg_decoded_bbox": [False],
    "predict_box_type": ["hbox"],
    "reg_predictor_cfg": [{"type": "Linear"}],
    "cls_predictor_cfg": [{"type": "Linear"}],
    "predictor_cfg": [{"type": "Conv"}],
    "box_type": ["hbox"],
    "with_seg": [False],
    "imdecode_backend": ["cv2"],
    "ignore_empty": [False],
    "clip_object_border": [True],
    "bbox_clip_border": [True],
    "recompute_bbox": [False],
    "crop_type": ["absolute"],
    "pad_to_square": [False],
    "padding_mode": ["constant"],
    "resize_type": ["Resize"],
    "serialize_data": [True],
    "lazy_init": [False],
    "max_refetch": [1000],
    "indices": [None],
    "return_classes": [False],
    "format_only": [False],
    "outfile_prefix": [None],
    "collect_device": ["cpu"],
    "prefix": [None],
    "sort_categories": [False],
    "persistent_workers": [True, False],
    "pin_memory": [True, False],
    "drop_last": [False],
    "collate_fn": [{"type": "default_collate"}, {"type": "pseudo_collate"}],
    # ours groups by aspect by default; a training batch_sampler=None is data.sampler
    # ShuffleSampler (read in MMDet3Config.data)
    "batch_sampler": [None, {"type": "AspectRatioBatchSampler"}],
    # the data preprocessor's (masks are padded with the image here)
    "pad_mask": [True, False],
    "mask_pad_value": [0],
    "pad_seg": [False],
    "seg_pad_value": [255],
    "boxtype2tensor": [True],
    "non_blocking": [False, True],
    "batch_augments": [None],
}
# the meta keys 3.x's PackDetInputs packs by default; ours packs its own equivalents
MMDET3_META_KEYS = {
    "img_id", "img_path", "ori_shape", "img_shape", "scale_factor", "flip", "flip_direction",
    "pad_shape", "homography_matrix",
}  # fmt: skip
# runtime parts of a 3.x config that are ours already (left out without a note)
BUILT_IN_HOOKS = {
    "timer": "IterTimerHook",
    "param_scheduler": "ParamSchedulerHook",
    "sampler_seed": "DistSamplerSeedHook",
}
# top-level keys of 3.x configs that are not helper variables (the rest are: their values
# are written where the config used them)
RUNTIME_KEYS = {
    *MMDET3_TOP_LEVEL_KEYS, "model", "train_cfg", "test_cfg", "auto_scale_lr", "load_from",
    "resume", "work_dir", "log_level", "launcher", "custom_hooks", "custom_imports",
    "find_unused_parameters", "model_wrapper_cfg", "compile",
}  # fmt: skip


class Mmdet3ConversionError(ConfigError):
    """An mmdetection 3.x config that cannot be read or converted: a missing ``_base_``, a
    part with no counterpart here; the message names the key and the fix."""


def _plain(value):
    """Config dicts -> plain dicts, recursively (tuples stay tuples)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def _same(a, b):
    """Equal, tuples and lists alike."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b or (a is None and b is None)


def _shown(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _closest(name, names):
    close = [n for n in names if n.lower() == str(name).lower()]
    close = close or difflib.get_close_matches(str(name), names, n=1, cutoff=0.6)
    return f"; the closest here: {close[0]!r}" if close else ""


class Conversion:
    """A converted config: ``entries`` (top-level key -> value, in the order written),
    ``untranslated`` (one line each: ``3.x key=value: why``) and ``notes`` (lines for the
    header that need no action)."""

    def __init__(self, source):
        self.source = source
        self.entries = {}
        self.untranslated = []
        self.notes = []
        self.batch_augments = []  # model.data_preprocessor's, ours under data

    # ------------------------------------------------------------------ bookkeeping
    def left_out(self, path, value, why):
        self.untranslated.append(f"{path}={_shown(value)}: {why}")

    def drop(self, path, key, value, why):
        """Leave out ``key`` (at ``path``): quietly at a value that changes nothing."""
        if not any(_same(value, v) for v in NO_EFFECT.get(key, [])):
            self.left_out(path, value, why)

    def error(self, message):
        return Mmdet3ConversionError(f"{self.source}: {message}; nothing was written")

    # ------------------------------------------------------------------ typed parts
    def part(self, path, cfg, registries):
        """A ``dict(type=...)`` part of one of ``registries``: 3.x arguments renamed
        (:data:`PART_RULES`), then every argument ours does not take left out; nested parts
        likewise. A type none of them has is an error."""
        rule = PART_RULES.get(cfg.get("type"))
        if rule is not None:
            cfg = rule(self, path, dict(cfg))
        type_name = cfg.get("type")
        registry = next((r for r in registries if type_name in r), None)
        if registry is None:
            names = sorted({n for r in registries for n in r.names})
            key = re.sub(r"\[\d+\]$", "", path).rsplit(".", 1)[-1]
            kind = PART_REGISTRIES.get("loss" if key.startswith("loss") else key)
            known = f" (its {kind.name}: {', '.join(kind.names)})" if kind in registries else ""
            raise self.error(
                f"{path}.type={type_name!r} has no counterpart in mmdet_like"
                f"{_closest(type_name, names)}{known}"
            )
        accepted = accepted_arguments(registry.get(type_name))
        out = {"type": type_name}
        for key, value in cfg.items():
            if key == "type":
                continue
            if accepted is not None and not accepted[1] and key not in accepted[0]:
                self.drop(f"{path}.{key}", key, value, f"{type_name} here takes no {key}")
            elif key == "norm_cfg":  # read by our norm builder as it is (requires_grad, ...)
                out[key] = value
            else:
                out[key] = self.nested(f"{path}.{key}", value, registries)
        return out

    def nested(self, path, value, registries):
        if isinstance(value, dict) and "type" in value:
            return self.part(path, value, registries)
        if (
            isinstance(value, (list, tuple))
            and value
            and all(isinstance(v, dict) and "type" in v for v in value)
        ):
            return [self.part(f"{path}[{i}]", v, registries) for i, v in enumerate(value)]
        return value

    # ------------------------------------------------------------------ model
    def pretrained(self, path, init_cfg):
        """The backbone's ``init_cfg=dict(type="Pretrained", checkpoint=...)`` -> a
        ``pretrained`` value of ours (``None``: none, with the reason listed)."""
        if init_cfg is None:
            return None
        checkpoint = init_cfg.get("checkpoint") if isinstance(init_cfg, dict) else None
        if (
            not isinstance(init_cfg, dict)
            or init_cfg.get("type") != "Pretrained"
            or not isinstance(checkpoint, str)
            or set(init_cfg) - {"type", "checkpoint"}
        ):
            self.left_out(path, init_cfg, "ours initialises the backbone its own way")
            return None
        if checkpoint.startswith("torchvision://") or "://" not in checkpoint:
            return checkpoint
        if re.fullmatch(r"open-mmlab://(detectron2?/)?resnet50_caffe", checkpoint):
            self.left_out(
                f"{path}.checkpoint", checkpoint,
                f"written as pretrained={CAFFE_R50!r}: put caffe-style ResNet-50 weights "
                "there (docs/models.md)",
            )  # fmt: skip
            return CAFFE_R50
        self.left_out(
            f"{path}.checkpoint", checkpoint,
            "mmdet_like loads torchvision:// names and local files: download the weights "
            "and set model.pretrained to the file",
        )  # fmt: skip
        return None

    def model(self, model):
        model = dict(model)
        model.pop("data_preprocessor", None)
        train_cfg, test_cfg = model.pop("train_cfg", None), model.pop("test_cfg", None)
        if model.get("init_cfg") is not None:
            self.left_out("model.init_cfg", model["init_cfg"], "ours initialises its parts")
        model.pop("init_cfg", None)
        backbone = model.get("backbone")
        if isinstance(backbone, dict) and "init_cfg" in backbone:
            backbone = dict(backbone)
            pretrained = self.pretrained("model.backbone.init_cfg", backbone.pop("init_cfg"))
            model["backbone"] = backbone
            if pretrained is not None and model.get("pretrained") is None:
                model = {"type": model.pop("type"), "pretrained": pretrained, **model}
        for key in ("neck", "rpn_head", "roi_head", "bbox_head"):
            self.init_cfgs(f"model.{key}", model.get(key))
        model = self.part("model", model, MODEL_REGISTRIES)
        return model, self.model_cfgs(model, train_cfg, test_cfg)

    def init_cfgs(self, path, part):
        """Leave out (and list) the ``init_cfg`` of a part and of its nested parts."""
        if isinstance(part, list):
            for i, entry in enumerate(part):
                self.init_cfgs(f"{path}[{i}]", entry)
        if not isinstance(part, dict):
            return
        if part.get("init_cfg") is not None:
            self.left_out(f"{path}.init_cfg", part.pop("init_cfg"), "ours initialises it")
        for key, value in part.items():
            self.init_cfgs(f"{path}.{key}", value)

    def model_cfgs(self, model, train_cfg, test_cfg):
        """``model.train_cfg`` / ``test_cfg`` -> ours (top level), checked against the keys
        the model's heads read."""
        if "bbox_head" in model:
            head = HEADS.get(model["bbox_head"]["type"])
            train_schema, test_schema = head.train_cfg_schema, head.test_cfg_schema
        else:
            train_schema, test_schema = {}, {}
            if model.get("rpn_head") is not None:
                rpn = HEADS.get(model["rpn_head"]["type"])
                train_schema.update(rpn=rpn.train_cfg_schema, rpn_proposal=rpn.test_cfg_schema)
                test_schema.update(rpn=rpn.test_cfg_schema)
                for cfg, key in ((train_cfg, "rpn_proposal"), (test_cfg, "rpn")):
                    if isinstance(cfg, dict) and isinstance(cfg.get(key), dict):
                        cfg[key] = self.proposal_cfg(cfg[key], rpn.test_cfg_schema)
            if model.get("roi_head") is not None:
                roi = HEADS.get(model["roi_head"]["type"])
                train_schema["rcnn"] = roi.train_cfg_schema
                test_schema["rcnn"] = roi.test_cfg_schema
        return tuple(
            None if cfg is None else self.by_schema(f"model.{name}", cfg, schema)
            for name, cfg, schema in (
                ("train_cfg", train_cfg, train_schema),
                ("test_cfg", test_cfg, test_schema),
            )
        )

    @staticmethod
    def proposal_cfg(cfg, schema):
        """3.x proposal settings (``max_per_img``, ``nms=dict(iou_threshold=...)``) -> our
        RPN's (``max_num``, ``nms_thr``; no per-level cap after NMS, as 3.x)."""
        if "nms_thr" not in schema:
            return cfg
        cfg = dict(cfg)
        if "max_per_img" in cfg:
            cfg["max_num"] = cfg.pop("max_per_img")
        nms = cfg.get("nms")
        if isinstance(nms, dict) and nms.get("type", "nms") == "nms" and set(nms) <= {
            "type", "iou_threshold", "iou_thr",
        }:  # fmt: skip
            cfg.pop("nms")
            cfg["nms_thr"] = nms.get("iou_threshold", nms.get("iou_thr"))
        cfg.setdefault("nms_post", None)
        return {**{k: cfg.pop(k) for k in schema if k in cfg}, **cfg}  # in ours' order

    def by_schema(self, path, cfg, schema):
        """``cfg`` with the keys ``schema`` names (nested, lists entry by entry); NMS
        ``iou_threshold`` written as ours, ``iou_thr``."""
        if isinstance(cfg, (list, tuple)):
            return [self.by_schema(f"{path}[{i}]", c, schema) for i, c in enumerate(cfg)]
        if not isinstance(cfg, dict):
            return cfg
        out = {}
        for key, value in cfg.items():
            if key not in schema:
                self.drop(f"{path}.{key}", key, value, "not read by the model's heads here")
            elif key == "nms" and isinstance(value, dict):
                nms = dict(value)
                if "iou_threshold" in nms:
                    nms["iou_thr"] = nms.pop("iou_threshold")
                out[key] = self.by_schema(f"{path}.{key}", nms, schema[key])
            elif isinstance(schema[key], dict):
                out[key] = self.by_schema(f"{path}.{key}", value, schema[key])
            elif key == "assigner" and isinstance(value, dict):
                out[key] = self.assigner(f"{path}.{key}", value)
            elif key == "sampler" and isinstance(value, dict):
                out[key] = self.part(f"{path}.{key}", value, MODEL_REGISTRIES)
            else:
                out[key] = value
        return out

    def assigner(self, path, cfg):
        """A train_cfg ``assigner`` (with its parts: an IoU calculator, the match costs of a
        ``HungarianAssigner``) -> ours, checked by building it: a value ours refuses is an
        error naming it."""
        out = self.part(path, cfg, MODEL_REGISTRIES)
        try:
            build_from_cfg(out, BBOX_ASSIGNERS)
        except (ProjectError, TypeError, ValueError) as exc:
            raise self.error(f"{path}: {out['type']} does not build here: {exc}") from exc
        return out

    # ------------------------------------------------------------------ data
    def preprocessing(self, preprocessor):
        """``model.data_preprocessor`` -> the ``Normalize`` and ``Pad`` steps of ours that do
        the same in the pipelines (before ``PackDetInputs``)."""
        if preprocessor is None:
            return []
        prep = dict(preprocessor)
        path = "model.data_preprocessor"
        kind = prep.pop("type", "DetDataPreprocessor")
        if kind != "DetDataPreprocessor":
            self.left_out(f"{path}.type", kind, "read as DetDataPreprocessor's options")
        mean, std = prep.pop("mean", None), prep.pop("std", None)
        bgr_to_rgb, rgb_to_bgr = prep.pop("bgr_to_rgb", False), prep.pop("rgb_to_bgr", False)
        divisor, pad_value = prep.pop("pad_size_divisor", 1), prep.pop("pad_value", 0)
        augments = prep.pop("batch_augments", None) or []
        for i, augment in enumerate(augments):
            if isinstance(augment, dict) and augment.get("type") in BATCH_AUGMENTS:
                self.batch_augments.append(
                    self.part(f"{path}.batch_augments[{i}]", dict(augment), (BATCH_AUGMENTS,))
                )
            else:
                self.left_out(f"{path}.batch_augments[{i}]", augment, "no counterpart here")
        for key, value in prep.items():
            self.drop(f"{path}.{key}", key, value, "no counterpart in the pipelines here")
        steps = []
        if mean is not None or std is not None or bgr_to_rgb or rgb_to_bgr:
            steps.append(
                dict(
                    type="Normalize",
                    mean=list(mean if mean is not None else [0.0, 0.0, 0.0]),
                    std=list(std if std is not None else [1.0, 1.0, 1.0]),
                    to_rgb=bool(bgr_to_rgb or rgb_to_bgr),  # a channel swap either way
                )
            )
        if divisor and divisor > 1:
            steps.append(dict(type="Pad", size_divisor=divisor))
            if pad_value:
                steps[-1]["pad_val"] = pad_value
        return steps

    def pipeline(self, path, steps, preprocessing, test):
        """A 3.x pipeline -> ours: transforms renamed (:data:`TRANSFORM_RULES`), the data
        preprocessor's steps before ``PackDetInputs``; in testing ``LoadAnnotations`` left
        out (ours evaluates against the annotation file) and a single-scale ``Resize``
        written as ``MultiScaleFlipAug`` (ours' test form)."""
        has_pad = any(isinstance(s, dict) and s.get("type") == "Pad" for s in steps)
        prep = [s for s in preprocessing if not (has_pad and s["type"] == "Pad")]
        out, packed = [], False
        for i, step in enumerate(steps):
            step_path = f"{path}[{i}]"
            kind = step.get("type") if isinstance(step, dict) else None
            if test and kind == "LoadAnnotations":
                continue
            if kind == "PackDetInputs":
                meta_keys = step.get("meta_keys")
                if meta_keys is not None and not set(meta_keys) <= MMDET3_META_KEYS:
                    self.left_out(
                        f"{step_path}.meta_keys", meta_keys,
                        "ours packs its own meta keys (filename, ori_shape, img_shape, "
                        "pad_shape, scale_factor, flip, ...)",
                    )  # fmt: skip
                out += [dict(s) for s in prep] + [dict(type="PackDetInputs")]
                packed = True
                continue
            step = self.transform(step_path, step)
            if step is not None:
                out.append(step)
        if not packed:
            self.left_out(path, "no PackDetInputs", "Normalize, Pad and PackDetInputs appended")
            out += [dict(s) for s in prep] + [dict(type="PackDetInputs")]
        return _test_form(out) if test else out

    def transform(self, path, step):
        """One 3.x transform -> ours (:data:`TRANSFORM_RULES`), or ``None`` (left out, and
        listed) when ours has no counterpart."""
        kind = step.get("type") if isinstance(step, dict) else None
        rule = TRANSFORM_RULES.get(kind)
        if rule is not None:
            step = rule(self, path, dict(step))
            if step is None:
                return None
            kind = step["type"]
        if kind not in PIPELINES:
            self.left_out(
                path, step,
                f"mmdet_like has no transform {kind!r}{_closest(kind, PIPELINES.names)}; "
                "left out of the pipeline",
            )  # fmt: skip
            return None
        return self.part(path, step, (PIPELINES,))

    def dataset(self, path, cfg, preprocessing, test):
        cfg = dict(cfg)
        kind = cfg.get("type")
        if kind in ("RepeatDataset", "ClassBalancedDataset"):
            cfg["dataset"] = self.dataset(f"{path}.dataset", cfg["dataset"], preprocessing, test)
            return self.part_keys(path, cfg)
        if kind == "MultiImageMixDataset":  # the inner dataset loads, the wrapper packs
            inner = dict(cfg["dataset"])
            steps = inner.pop("pipeline", None) or []
            cfg["dataset"] = self.dataset(f"{path}.dataset", inner, preprocessing, test)
            where = f"{path}.dataset.pipeline"
            converted = (self.transform(f"{where}[{i}]", step) for i, step in enumerate(steps))
            cfg["dataset"]["pipeline"] = [step for step in converted if step is not None]
            cfg["pipeline"] = self.pipeline(
                f"{path}.pipeline", cfg["pipeline"], preprocessing, test
            )
            return self.part_keys(path, cfg)
        if kind == "ConcatDataset":
            cfg["datasets"] = [
                self.dataset(f"{path}.datasets[{i}]", d, preprocessing, test)
                for i, d in enumerate(cfg["datasets"])
            ]
            return self.part_keys(path, cfg)
        if kind not in DATASETS:
            raise self.error(
                f"{path}.type={kind!r} has no counterpart in mmdet_like"
                f"{_closest(kind, DATASETS.names)} (its datasets: {', '.join(DATASETS.names)}; "
                "an annotation file in COCO format is read by CocoDataset)"
            )
        out = {"type": kind}
        test_mode = bool(cfg.pop("test_mode", False)) or test
        for key in ("data_root", "ann_file"):
            if key in cfg:
                out[key] = cfg.pop(key)
        prefix = cfg.pop("data_prefix", None) or {}
        prefix = dict(prefix) if isinstance(prefix, dict) else {"img": prefix}
        for key in ("img", "img_path", "sub_data_root"):
            if key in prefix:
                out["img_prefix"] = prefix.pop(key)
                break
        for key, value in prefix.items():
            self.left_out(f"{path}.data_prefix.{key}", value, "no counterpart here")
        metainfo = dict(cfg.pop("metainfo", None) or {})
        if "classes" in metainfo:
            out["classes"] = tuple(metainfo.pop("classes"))
        for key, value in metainfo.items():
            self.left_out(f"{path}.metainfo.{key}", value, "no counterpart here")
        filter_cfg = cfg.pop("filter_cfg", None)
        if not test_mode:  # 3.x filters nothing without filter_cfg, ours by default
            filter_cfg = dict(filter_cfg or {})
            out["filter_empty_gt"] = bool(filter_cfg.pop("filter_empty_gt", False))
            out["min_size"] = filter_cfg.pop("min_size", None) or None
            for key, value in filter_cfg.items():
                self.left_out(f"{path}.filter_cfg.{key}", value, "no counterpart here")
        if "proposal_file" in cfg:
            out["proposal_file"] = cfg.pop("proposal_file")
        if "pipeline" in cfg:
            out["pipeline"] = self.pipeline(
                f"{path}.pipeline", cfg.pop("pipeline"), preprocessing, test_mode
            )
        if test_mode:
            out["test_mode"] = True
        cfg.pop("type")
        accepted = accepted_arguments(DATASETS.get(kind))[0]
        for key, value in cfg.items():
            if key in accepted:
                out[key] = value
            else:
                self.drop(f"{path}.{key}", key, value, f"{kind} here takes no {key}")
        return out

    def part_keys(self, path, cfg):
        """A dataset wrapper: the keys its class takes (the rest listed)."""
        accepted = accepted_arguments(DATASETS.get(cfg["type"]))[0]
        out = {}
        for key, value in cfg.items():
            if key == "type" or key in accepted:
                out[key] = value
            else:
                self.drop(f"{path}.{key}", key, value, f"{cfg['type']} here takes no {key}")
        return out

    def data(self, cfg, preprocessing):
        data = {}
        loaders = {s: cfg.get(f"{s}_dataloader") for s in ("train", "val", "test")}
        main = loaders["train"] or loaders["val"] or loaders["test"]
        if main is None:
            return None
        if loaders["train"] is not None and "batch_size" in loaders["train"]:
            data["imgs_per_gpu"] = loaders["train"]["batch_size"]
        if "num_workers" in main:
            data["workers_per_gpu"] = main["num_workers"]
        for split, loader in loaders.items():
            if loader is None:
                continue
            path = f"{split}_dataloader"
            loader = dict(loader)
            dataset = loader.pop("dataset", None)
            batch_size = loader.pop("batch_size", 1)
            if split != "train" and batch_size != 1:
                if data.get("test_imgs_per_gpu", batch_size) != batch_size:
                    self.left_out(f"{path}.batch_size", batch_size, "one test batch size here")
                else:
                    data["test_imgs_per_gpu"] = batch_size
            workers = loader.pop("num_workers", data.get("workers_per_gpu"))
            if workers != data.get("workers_per_gpu"):
                self.left_out(
                    f"{path}.num_workers", workers,
                    f"one workers_per_gpu for every split here ({data.get('workers_per_gpu')})",
                )  # fmt: skip
            sampler = loader.pop("sampler", None)
            if sampler is not None and not (
                sampler.get("type") in ("DefaultSampler", "InfiniteSampler")
                and sampler.get("shuffle", True) == (split == "train")
                and set(sampler) <= {"type", "shuffle", "seed"}
            ):
                self.left_out(
                    f"{path}.sampler", sampler,
                    "ours shuffles the training set in aspect-ratio groups and keeps the "
                    "order in testing",
                )  # fmt: skip
            if split == "train" and "batch_sampler" in loader and loader["batch_sampler"] is None:
                # no aspect-ratio grouping: plain shuffled batches
                loader.pop("batch_sampler")
                data["sampler"] = dict(type="ShuffleSampler")
            for key, value in loader.items():
                self.drop(f"{path}.{key}", key, value, "no counterpart here")
            if dataset is not None:
                data[split] = self.dataset(
                    f"{path}.dataset", dataset, preprocessing, split != "train"
                )
        if self.batch_augments:
            data["batch_augments"] = list(self.batch_augments)
        return data

    # ------------------------------------------------------------------ schedule
    def optimizer(self, wrapper):
        """``optim_wrapper`` -> ``optimizer``, ``optimizer_config`` and ``fp16``."""
        wrapper = dict(wrapper)
        path = "optim_wrapper"
        kind = wrapper.pop("type", "OptimWrapper")
        if kind not in ("OptimWrapper", "AmpOptimWrapper"):
            raise self.error(
                f"{path}.type={kind!r} has no counterpart in mmdet_like (OptimWrapper and "
                "AmpOptimWrapper, read as optimizer and fp16, do)"
            )
        entries = {}
        optimizer = dict(wrapper.pop("optimizer", None) or {})
        if optimizer.get("type") not in OPTIMIZERS:
            raise self.error(
                f"{path}.optimizer.type={optimizer.get('type')!r} is not a torch.optim "
                f"optimizer{_closest(optimizer.get('type'), OPTIMIZERS.names)}"
            )
        optimizer = self.part(f"{path}.optimizer", optimizer, (OPTIMIZERS,))
        constructor = wrapper.pop("constructor", "DefaultOptimWrapperConstructor")
        if constructor in OPTIMIZER_CONSTRUCTORS:  # mmdetection's, e.g. layer-wise lr decay
            optimizer["constructor"] = constructor
        elif constructor != "DefaultOptimWrapperConstructor":  # mmengine's: our default
            self.left_out(f"{path}.constructor", constructor, "no counterpart here")
        paramwise_keys = OPTIMIZER_CONSTRUCTORS.get(
            optimizer.get("constructor", "DefaultOptimizerConstructor")
        ).paramwise_keys
        paramwise = dict(wrapper.pop("paramwise_cfg", None) or {})
        kept = {k: paramwise.pop(k) for k in paramwise_keys if k in paramwise}
        for key, value in paramwise.items():
            self.left_out(f"{path}.paramwise_cfg.{key}", value, "no counterpart here")
        if kept:
            optimizer["paramwise_cfg"] = kept
        entries["optimizer"] = optimizer
        clip = wrapper.pop("clip_grad", None)
        grad_clip = None
        if clip is not None:
            clip = dict(clip)
            if clip.pop("type", "norm") != "norm" or "max_norm" not in clip:
                self.left_out(f"{path}.clip_grad", clip, "ours clips the gradient norm only")
            else:
                grad_clip = clip
        entries["optimizer_config"] = dict(grad_clip=grad_clip)
        if kind == "AmpOptimWrapper":
            dtype = wrapper.pop("dtype", None) or "float16"
            loss_scale = wrapper.pop("loss_scale", "dynamic")
            if isinstance(loss_scale, dict):
                self.left_out(f"{path}.loss_scale", loss_scale, "read as loss_scale='dynamic'")
                loss_scale = "dynamic"
            entries["fp16"] = dict(dtype=str(dtype).replace("torch.", ""), loss_scale=loss_scale)
        counts = wrapper.pop("accumulative_counts", 1)
        if counts != 1:
            entries["optimizer_config"]["cumulative_iters"] = counts
            self.notes.append(
                f"{path}.accumulative_counts={counts} -> optimizer_config.cumulative_iters: "
                "ours starts the accumulation groups again at each epoch (mmengine counts them "
                "over the whole run)"
            )
        for key, value in wrapper.items():
            self.drop(f"{path}.{key}", key, value, "no counterpart here")
        return entries

    def lr_config(self, schedulers, length, run_by_epoch):
        """``param_scheduler`` -> ``lr_config``: a warmup (``LinearLR`` / ``ConstantLR`` from
        0) and one schedule (``MultiStepLR``, ``StepLR``, ``CosineAnnealingLR``, ``PolyLR``,
        ``ExponentialLR`` from 0; the last three over the whole run); anything else is an
        error naming it."""
        if isinstance(schedulers, dict):
            schedulers = [schedulers]
        lr, main = {}, None
        for i, sched in enumerate(schedulers):
            path = f"param_scheduler[{i}]"
            sched = dict(sched)
            kind = sched.pop("type", None)
            by_epoch = sched.pop("by_epoch", True)
            begin, end = sched.pop("begin", 0), sched.pop("end", None)
            if sched.pop("convert_to_iter_based", False) and kind in SMOOTH_SCHEDULES:
                self.left_out(
                    f"{path}.convert_to_iter_based", True,
                    f"ours computes {kind} at each epoch's start (by_epoch=True)",
                )  # fmt: skip
            if kind not in WARMUPS and kind not in SCHEDULERS:
                raise self.error(
                    f"{path}.type={kind!r}: mmdet_like has no such LR schedule (it reads a "
                    f"warmup, {' or '.join(WARMUPS)}, and one of {', '.join(SCHEDULERS)})"
                )
            if begin != 0:
                raise self.error(
                    f"{path}: {kind} from begin={begin}: mmdet_like's warmup and schedule "
                    "start at 0"
                )
            if kind in WARMUPS:
                if "warmup" in lr or end is None:
                    raise self.error(
                        f"{path}: {kind} {'without an end' if end is None else 'twice'}: "
                        "mmdet_like reads LinearLR / ConstantLR as one warmup from 0 to end"
                    )
                lr.update(WARMUPS[kind](self, path, sched, end, by_epoch))
            else:
                if main is not None:
                    raise self.error(
                        f"{path}: a second LR schedule ({kind} besides {main}); mmdet_like "
                        "runs a warmup and one schedule"
                    )
                main = kind
                span = length if by_epoch == run_by_epoch else None
                lr.update(SCHEDULERS[kind](self, path, sched, end, span))
                if not by_epoch:
                    lr["by_epoch"] = False
            for key, value in sched.items():
                self.drop(f"{path}.{key}", key, value, f"{kind} here takes no {key}")
        return {"policy": lr.pop("policy", "fixed"), **lr}

    def loop(self, train_cfg):
        """``train_cfg=dict(type="...TrainLoop", ...)`` -> (entries, run length, by epoch,
        validation interval)."""
        loop = dict(train_cfg)
        kind = loop.pop("type", None)
        if kind is None:  # mmengine's short form: dict(by_epoch=True, max_epochs=N)
            kind = "EpochBasedTrainLoop" if loop.pop("by_epoch", True) else "IterBasedTrainLoop"
        interval = loop.pop("val_interval", 1)
        if loop.pop("val_begin", 1) != 1:
            self.left_out("train_cfg.val_begin", train_cfg["val_begin"], "ours validates from 1")
        length_key = {"EpochBasedTrainLoop": "max_epochs", "IterBasedTrainLoop": "max_iters"}
        if kind in length_key and length_key[kind] not in loop:
            raise self.error(f"train_cfg: {kind} without {length_key[kind]}")
        if kind == "EpochBasedTrainLoop":
            epochs = loop.pop("max_epochs")
            entries, length, by_epoch = {"total_epochs": epochs}, epochs, True
        elif kind == "IterBasedTrainLoop":
            iters = loop.pop("max_iters")
            entries = {"runner": dict(type="IterBasedRunner", max_iters=iters)}
            length, by_epoch = iters, False
            self.notes.append(
                f"train_cfg.type='IterBasedTrainLoop' is written as runner=dict(type="
                f"'IterBasedRunner', max_iters={iters}): training by iterations, evaluation, "
                "checkpoints and the LR schedule counting iterations (docs/config.md)"
            )
        else:
            raise self.error(
                f"train_cfg.type={kind!r}: mmdet_like runs EpochBasedTrainLoop (as "
                "total_epochs) and IterBasedTrainLoop (as an IterBasedRunner)"
            )
        for key, value in loop.items():
            self.left_out(f"train_cfg.{key}", value, "no counterpart here")
        return entries, length, by_epoch, interval

    # ------------------------------------------------------------------ runtime
    def evaluation(self, evaluator, interval, val_data):
        """``val_evaluator`` -> ``evaluation=dict(interval, metric, **options)``."""
        entries = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
        metrics, options = [], {}
        val_ann = None
        if isinstance(val_data, dict) and "ann_file" in val_data:
            root = val_data.get("data_root") or ""
            val_ann = osp.normpath(osp.join(root, val_data["ann_file"]))
        for i, entry in enumerate(entries):
            path = "val_evaluator" if len(entries) == 1 else f"val_evaluator[{i}]"
            entry = dict(entry)
            kind = entry.pop("type", None)
            if kind not in METRIC_RULES:
                self.left_out(path, kind, "mmdet_like has no such metric (CocoMetric, VOCMetric)")
                continue
            names, opts = METRIC_RULES[kind](entry)
            metrics += names
            options.update(opts)
            ann_file = entry.pop("ann_file", None)
            if ann_file is not None and osp.normpath(ann_file) != val_ann:
                self.left_out(
                    f"{path}.ann_file", ann_file,
                    "ours evaluates against the validation set's own ann_file",
                )  # fmt: skip
            for key, value in entry.items():
                self.drop(f"{path}.{key}", key, value, f"{kind} here takes no {key}")
        if not metrics:
            return None
        return dict(interval=interval, metric=metrics[0] if len(metrics) == 1 else metrics,
                    **options)  # fmt: skip

    def hooks(self, cfg, preprocessing=()):
        """``default_hooks``, ``custom_hooks`` and the visualizer -> ``checkpoint_config``,
        ``log_config``, ``custom_hooks`` and ``evaluation``'s ``save_best`` / ``rule``
        (a ``PipelineSwitchHook``'s ``switch_pipeline`` translated as a training pipeline,
        with the data preprocessor's ``preprocessing`` steps)."""
        entries, best = {}, {}
        for name, hook in (cfg.get("default_hooks") or {}).items():
            path = f"default_hooks.{name}"
            if hook is None:
                continue
            hook = dict(hook)
            kind = hook.pop("type", None)
            if BUILT_IN_HOOKS.get(name) == kind and not hook:
                continue
            if kind == "CheckpointHook":
                for key in ("save_best", "rule"):
                    if hook.get(key) is not None:
                        best[key] = hook.pop(key)
                        if key == "save_best" and best[key] != "auto":
                            best[key] = str(best[key]).split("/")[-1]  # coco/bbox_mAP
                hook.pop("save_param_scheduler", None)
                hook.pop("published_keys", None)
                if hook.get("by_epoch", True):  # ours' default
                    hook.pop("by_epoch", None)
                entries["checkpoint_config"] = self.hook_args(path, "CheckpointHook", hook)
            elif kind == "LoggerHook":
                interval = hook.pop("interval", 10)
                hook.pop("log_metric_by_epoch", None)
                text = dict(type="TextLoggerHook", **self.hook_args(path, "TextLoggerHook", hook))
                entries["log_config"] = dict(interval=interval, hooks=[text])
            elif kind == "DetVisualizationHook":
                if hook.get("draw", False):
                    self.left_out(
                        path, hook, "ours draws test results with tools/test.py --show-dir"
                    )
            else:
                self.left_out(path, kind, "no counterpart here")
        backends = cfg.get("vis_backends") or []
        visualizer = dict(cfg.get("visualizer") or {})
        backends = list(visualizer.pop("vis_backends", None) or backends)
        if visualizer.pop("type", "DetLocalVisualizer") != "DetLocalVisualizer" or set(
            visualizer
        ) - {"name"}:
            self.left_out("visualizer", cfg["visualizer"], "ours draws with tools/test.py")
        for i, backend in enumerate(backends):
            kind = backend.get("type")
            if kind == "TensorboardVisBackend":
                log = entries.setdefault(
                    "log_config", dict(interval=50, hooks=[dict(type="TextLoggerHook")])
                )
                log["hooks"].append(dict(type="TensorboardLoggerHook"))
            elif kind != "LocalVisBackend":
                self.left_out(
                    f"visualizer.vis_backends[{i}]", kind, "ours logs text and tensorboard"
                )
        custom = []
        for i, hook in enumerate(cfg.get("custom_hooks") or []):
            kind = hook.get("type")
            if kind == "PipelineSwitchHook" and isinstance(hook.get("switch_pipeline"), list):
                path = f"custom_hooks[{i}].switch_pipeline"
                steps = self.pipeline(path, hook["switch_pipeline"], preprocessing, False)
                hook = dict(hook, switch_pipeline=steps)
            if kind in HOOKS:
                custom.append(dict(type=kind, **self.hook_args(f"custom_hooks[{i}]", kind, hook)))
            else:
                self.left_out(f"custom_hooks[{i}]", kind, "mmdet_like has no such hook")
        if custom:
            entries["custom_hooks"] = custom
        return entries, best

    def hook_args(self, path, ours, hook):
        """The arguments of ``hook`` (a 3.x hook config) that our hook ``ours`` takes (the
        rest listed)."""
        accepted = accepted_arguments(HOOKS.get(ours))[0] | {"priority"}
        out = {}
        for key, value in hook.items():
            if key == "type":
                continue
            if key in accepted:
                out[key] = value
            else:
                self.drop(f"{path}.{key}", key, value, f"ours ({ours}) takes no {key}")
        return out

    def runtime(self, cfg):
        """``env_cfg``, ``randomness``, ``load_from`` / ``resume``, ``log_level``, ..."""
        entries = {}
        env = dict(cfg.get("env_cfg") or {})
        dist = dict(env.pop("dist_cfg", None) or {})
        backend = dist.pop("backend", "nccl")
        dist_params = {}
        if backend != "nccl":  # ours: nccl with CUDA, gloo on the CPU
            dist_params["backend"] = backend
        if "timeout" in dist:
            dist_params["timeout"] = dist.pop("timeout")
        for key, value in dist.items():
            self.left_out(f"env_cfg.dist_cfg.{key}", value, "no counterpart here")
        if dist_params:
            entries["dist_params"] = dist_params
        if env.pop("cudnn_benchmark", False):
            self.left_out("env_cfg.cudnn_benchmark", True, "ours leaves cudnn.benchmark off")
        mp_cfg = env.pop("mp_cfg", None) or {}
        if not _same(mp_cfg, {}) and not _same(
            mp_cfg, {"mp_start_method": "fork", "opencv_num_threads": 0}
        ):
            self.left_out("env_cfg.mp_cfg", mp_cfg, "ours starts its workers its own way")
        for key, value in env.items():
            self.left_out(f"env_cfg.{key}", value, "no counterpart here")
        randomness = dict(cfg.get("randomness") or {})
        for key in ("seed", "deterministic"):
            value = randomness.pop(key, None)
            if value is not None:
                entries[key] = value
        for key, value in randomness.items():
            self.left_out(f"randomness.{key}", value, "no counterpart here")
        log_processor = dict(cfg.get("log_processor") or {})
        log_processor.pop("type", None)
        if (
            not set(log_processor) <= {"window_size", "by_epoch"}
            or log_processor.get("window_size", 50) != 50
        ):
            self.left_out("log_processor", log_processor, "ours logs the mean since the last line")
        for key in ("log_level", "work_dir", "find_unused_parameters"):
            if cfg.get(key) is not None:
                entries[key] = cfg[key]
        load_from, resume = cfg.get("load_from"), cfg.get("resume", False)
        if resume and load_from:
            entries["resume_from"] = load_from
        else:
            entries["load_from"] = load_from
            if resume:
                entries["auto_resume"] = True
        for key in ("tta_model", "tta_pipeline", "custom_imports", "model_wrapper_cfg"):
            if cfg.get(key) is not None:
                why = (
                    "ours tests augmentations with MultiScaleFlipAug in data.test.pipeline"
                    if key.startswith("tta")
                    else "no counterpart here"
                )
                self.left_out(key, cfg[key], why)
        if cfg.get("compile"):
            self.left_out("compile", cfg["compile"], "no counterpart here")
        if cfg.get("launcher", "none") not in ("none", None):
            self.left_out("launcher", cfg["launcher"], "ours takes it from train.py --launcher")
        if cfg.get("default_scope", "mmdet") != "mmdet":
            self.left_out("default_scope", cfg["default_scope"], "ours has mmdetection's parts")
        scale = cfg.get("auto_scale_lr")
        if isinstance(scale, dict) and scale.get("base_batch_size"):
            # read by tools/train.py as mmdetection does (docs/config.md)
            entries["auto_scale_lr"] = dict(
                enable=bool(scale.get("enable", False)), base_batch_size=scale["base_batch_size"]
            )
        return entries


def _test_form(steps):
    """A test pipeline ``[LoadImageFromFile, Resize(img_scale=S), ...]`` -> ours' form,
    ``[LoadImageFromFile, MultiScaleFlipAug(img_scale=S, flip=False, transforms=[Resize,
    RandomFlip, ...])]``; other pipelines as they are (ours runs them too)."""
    resizes = [i for i, s in enumerate(steps) if s["type"] == "Resize"]
    if not steps or steps[0]["type"] != "LoadImageFromFile" or len(resizes) != 1:
        return steps
    resize = dict(steps[resizes[0]])
    scale = resize.pop("img_scale", None)
    if scale is None or isinstance(scale, list) or resize.get("ratio_range") is not None:
        return steps
    inner = [dict(s) for s in steps[1:]]
    inner[resizes[0] - 1] = resize
    if not any(s["type"] == "RandomFlip" for s in inner):
        inner.insert(resizes[0], dict(type="RandomFlip"))
    return [steps[0], dict(type="MultiScaleFlipAug", img_scale=scale, flip=False, transforms=inner)]


# --------------------------------------------------------------------- rules by type
def _fpn(conv, path, cfg):
    upsample = cfg.pop("upsample_cfg", None)
    if upsample is not None:
        if set(upsample) <= {"mode"}:
            cfg["upsample_mode"] = upsample.get("mode", "nearest")
        else:
            conv.left_out(f"{path}.upsample_cfg", upsample, "ours takes upsample_mode only")
    return cfg


def _fcn_mask_head(conv, path, cfg):
    upsample = cfg.pop("upsample_cfg", None)
    if upsample is not None:
        if upsample.get("type") == "deconv" and set(upsample) <= {"type", "scale_factor"}:
            cfg["upsample_ratio"] = upsample.get("scale_factor", 2)
        else:
            conv.left_out(f"{path}.upsample_cfg", upsample, "ours upsamples by a deconv")
    return cfg


def _fcos_head(conv, path, cfg):
    # 3.x's FCOSHead defaults that differ from ours
    cfg.setdefault("norm_cfg", dict(type="GN", num_groups=32, requires_grad=True))
    cfg.setdefault("strides", [4, 8, 16, 32, 64])
    return cfg  # its bbox_coder converts as a part (a type ours lacks is an error)


def _iou_loss(conv, path, cfg):
    mode = cfg.pop("mode", "log")
    if mode == "linear":
        cfg["linear"] = True
    elif mode != "log":
        conv.left_out(f"{path}.mode", mode, "ours takes the log (or linear) IoU loss")
    return cfg


def _bbox_l1_cost(conv, path, cfg):
    # mmdetection's box_format="xywh" is (cx, cy, w, h): ours calls it "cxcywh"
    if cfg.get("box_format") == "xywh":
        cfg["box_format"] = "cxcywh"
    return cfg


def _focal_loss_cost(conv, path, cfg):
    if cfg.pop("binary_input", False):
        raise conv.error(
            f"{path}.binary_input=True: mmdetection's focal cost of binary masks has no "
            "counterpart in mmdet_like (its FocalLossCost scores class logits)"
        )
    return cfg


PART_RULES = {
    "FPN": _fpn,
    "FCNMaskHead": _fcn_mask_head,
    "FCOSHead": _fcos_head,
    "IoULoss": _iou_loss,
    "BBoxL1Cost": _bbox_l1_cost,
    "FocalLossCost": _focal_loss_cost,
}


def _scale(value):
    """An mmcv scale (``(w, h)`` or one int for both) as a tuple."""
    return (value, value) if isinstance(value, int) else tuple(value)


def _resize(conv, path, cfg):
    if cfg.get("scale") is None:
        conv.left_out(path, cfg, "ours resizes to a scale; left out of the pipeline")
        return None
    cfg.pop("scale_factor", None)
    scale, keep_ratio = _scale(cfg.pop("scale")), cfg.pop("keep_ratio", False)  # mmcv's default
    return {"type": cfg.pop("type"), "img_scale": scale, "keep_ratio": keep_ratio, **cfg}


def _random_resize(conv, path, cfg):
    if cfg.get("scale") is None:
        conv.left_out(path, cfg, "ours resizes to a scale; left out of the pipeline")
        return None
    scale, ratio_range = cfg.pop("scale"), cfg.pop("ratio_range", None)
    out = dict(type="Resize", keep_ratio=cfg.pop("keep_ratio", False))
    if ratio_range is not None:
        out.update(img_scale=_scale(scale), ratio_range=tuple(ratio_range))
    else:
        out.update(img_scale=[_scale(s) for s in scale], multiscale_mode="range")
    kwargs = cfg.pop("resize_kwargs", None)
    if kwargs:
        conv.left_out(f"{path}.resize_kwargs", kwargs, "no counterpart here")
    cfg.pop("type")
    return {**cfg, **out}


def _random_choice_resize(conv, path, cfg):
    scales = cfg.pop("scales")
    cfg.update(type="Resize", img_scale=[_scale(s) for s in scales], multiscale_mode="value",
               keep_ratio=cfg.get("keep_ratio", False))  # fmt: skip
    return cfg


def _random_flip(conv, path, cfg):
    prob = cfg.pop("prob", None)
    if isinstance(prob, (list, tuple)):
        conv.left_out(f"{path}.prob", prob, "ours flips with one probability")
        return None
    cfg["flip_ratio"] = prob
    return cfg


def _pad(conv, path, cfg):
    pad_val = cfg.pop("pad_val", 0)
    if isinstance(pad_val, dict):
        pad_val = pad_val.get("img", 0)
    if pad_val:
        cfg["pad_val"] = pad_val
    return cfg


def _random_crop(conv, path, cfg):
    if not cfg.pop("bbox_clip_border", True):
        conv.left_out(f"{path}.bbox_clip_border", False, "ours clips boxes to the crop")
    return cfg


def _random_choice(conv, path, cfg):
    """mmcv's ``RandomChoice``: each sequence converted; in a sequence, a ``Resize`` after
    the first resizes again (3.x's resizes always do; ours keeps a scale set earlier unless
    ``override=True``)."""
    sequences = []
    for i, sequence in enumerate(cfg.pop("transforms")):
        steps = sequence if isinstance(sequence, (list, tuple)) else [sequence]
        converted, resized = [], False
        for j, step in enumerate(steps):
            step = conv.transform(f"{path}.transforms[{i}][{j}]", step)
            if step is None:
                continue
            if step["type"] == "Resize":
                if resized:
                    step["override"] = True
                resized = True
            converted.append(step)
        sequences.append(converted)
    return dict(cfg, transforms=sequences)


TRANSFORM_RULES = {
    "Resize": _resize,
    "RandomResize": _random_resize,
    "RandomChoiceResize": _random_choice_resize,
    "RandomFlip": _random_flip,
    "Pad": _pad,
    "RandomCrop": _random_crop,
    "RandomChoice": _random_choice,
}


def _coco_metric(entry):
    metric = entry.pop("metric", "bbox")
    names = list(metric) if isinstance(metric, (list, tuple)) else [metric]
    options = {k: entry.pop(k) for k in ("classwise", "iou_thrs", "proposal_nums") if k in entry}
    if entry.get("outfile_prefix") is not None:
        options["jsonfile_prefix"] = entry.pop("outfile_prefix")
    if options.get("classwise") is False:
        options.pop("classwise")
    return names, options


def _voc_metric(entry):
    metric = entry.pop("metric", "mAP")
    names = list(metric) if isinstance(metric, (list, tuple)) else [metric]
    options = {}
    if "iou_thrs" in entry:
        thrs = entry.pop("iou_thrs")
        options["iou_thrs"] = list(thrs) if isinstance(thrs, (list, tuple)) else [thrs]
    if "eval_mode" in entry:
        options["ap_mode"] = entry.pop("eval_mode")
    return names, options


METRIC_RULES = {"CocoMetric": _coco_metric, "VOCMetric": _voc_metric}


def _linear_warmup(conv, path, sched, end, by_epoch):
    if sched.pop("end_factor", 1.0) != 1.0:
        raise conv.error(f"{path}: a LinearLR warmup must end at end_factor=1.0")
    length_key = "warmup_epochs" if by_epoch else "warmup_iters"
    return {"warmup": "linear", length_key: end, "warmup_ratio": sched.pop("start_factor", 1 / 3)}


def _constant_warmup(conv, path, sched, end, by_epoch):
    length_key = "warmup_epochs" if by_epoch else "warmup_iters"
    return {"warmup": "constant", length_key: end, "warmup_ratio": sched.pop("factor", 1 / 3)}


def _step_policy(steps, sched):
    out = dict(policy="step", step=steps)
    gamma = sched.pop("gamma", 0.1)
    if gamma != 0.1:
        out["gamma"] = gamma
    return out


def _multi_step(conv, path, sched, end, span):
    return _step_policy(list(sched.pop("milestones")), sched)


def _step(conv, path, sched, end, span):
    return _step_policy(int(sched.pop("step_size")), sched)


def _whole_run(conv, path, kind, end, span, periods=None):
    """A schedule that must span the run of ``span`` epochs or iterations (ours computes it
    over the whole run); ``span`` ``None``: not known."""
    if span is None:
        return
    if (end is not None and end < span) or (periods is not None and periods != span):
        raise conv.error(
            f"{path}: {kind} over {periods or end} of the run's {span} epochs/iterations: "
            "mmdet_like computes it over the whole run (set T_max / end to the run's length)"
        )


def _cosine(conv, path, sched, end, span):
    _whole_run(conv, path, "CosineAnnealingLR", end, span, sched.pop("T_max", None))
    ratio = sched.pop("eta_min_ratio", None)
    if ratio is not None:
        sched.pop("eta_min", None)
        return dict(policy="cosine", min_lr_ratio=ratio)
    return dict(policy="cosine", min_lr=sched.pop("eta_min", 0.0))


def _poly(conv, path, sched, end, span):
    _whole_run(conv, path, "PolyLR", end, span)
    return dict(policy="poly", power=sched.pop("power", 1.0), min_lr=sched.pop("eta_min", 0.0))


def _exponential(conv, path, sched, end, span):
    return dict(policy="exp", gamma=sched.pop("gamma"))


WARMUPS = {"LinearLR": _linear_warmup, "ConstantLR": _constant_warmup}
# schedules whose LR changes within an epoch when 3.x converts them to iterations
SMOOTH_SCHEDULES = ("CosineAnnealingLR", "PolyLR", "ExponentialLR")
SCHEDULERS = {
    "MultiStepLR": _multi_step,
    "StepLR": _step,
    "CosineAnnealingLR": _cosine,
    "PolyLR": _poly,
    "ExponentialLR": _exponential,
}


# --------------------------------------------------------------------------- entry points
def load_mmdet3_config(filename):
    """Read the mmdetection 3.x config ``filename`` with its ``_base_`` files (mmengine's
    ``Config``, no ``custom_imports``); an error names a missing base, a base inside the
    mmdetection package or a file that is not a 3.x config."""
    if not osp.isfile(filename):
        raise ConfigFileNotFoundError(f"{filename}: no such file")
    if "mmengine.config.read_base" in mmdet3_keys_in_source(filename):
        raise Mmdet3ConversionError(
            f"{filename}: a new-style (read_base) mmdetection config, which names "
            "mmdetection's classes; convert its plain twin under mmdetection's configs/ instead"
        )
    try:
        files = check_config_bases(filename)
    except ConfigError as exc:
        raise Mmdet3ConversionError(
            f"{exc} An mmdetection 3.x config's _base_ files are mmdetection's own (its "
            "configs/_base_/...): copy them next to the config at the paths its _base_ names"
        ) from exc
    for path in files:
        with open(path, encoding="utf-8") as f:
            package_base = re.search(r"['\"](\w+::[^'\"]+)['\"]", f.read())
        if package_base:
            raise Mmdet3ConversionError(
                f"{path}: _base_ {package_base.group(1)!r} names a config inside an installed "
                "package, which mmdet_like does not read: copy that file next to the config "
                "and name it by its relative path"
            )
    try:
        cfg = Config.fromfile(filename, import_custom_modules=False)
    except Exception as exc:  # mmengine's errors do not say which file
        raise Mmdet3ConversionError(
            f"{filename} (with its _base_ files {files[1:]}): cannot be loaded: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not mmdet3_keys(cfg):
        raise Mmdet3ConversionError(
            f"{filename}: not an mmdetection 3.x config (it has none of train_cfg.type="
            f"'...TrainLoop', model.data_preprocessor, {', '.join(MMDET3_TOP_LEVEL_KEYS)}); "
            "mmdet_like reads it as it is"
        )
    return cfg


def convert_mmdet3_config(cfg, source="config"):
    """A loaded mmdetection 3.x config -> :class:`Conversion` (``source`` names it in
    messages). Raises :class:`Mmdet3ConversionError` for a part with no counterpart."""
    cfg = _plain(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)
    conv = Conversion(source)
    entries = conv.entries
    model = cfg.get("model")
    preprocessing = conv.preprocessing(model.get("data_preprocessor") if model else None)
    if model is not None:
        entries["model"], (train_cfg, test_cfg) = conv.model(model)
        if train_cfg is not None:
            entries["train_cfg"] = train_cfg
        if test_cfg is not None:
            entries["test_cfg"] = test_cfg
    data = conv.data(cfg, preprocessing)
    if data is not None:
        entries["data"] = data
    schedule, length, by_epoch, interval = {}, None, True, 1
    loop = cfg.get("train_cfg")
    if isinstance(loop, dict) and ({"type", "max_epochs", "max_iters"} & set(loop)):
        schedule, length, by_epoch, interval = conv.loop(loop)
    elif loop is not None:
        conv.left_out("train_cfg", loop, "not a training loop (3.x keeps the model's in model)")
    for key, loop_type in (("val_cfg", "ValLoop"), ("test_cfg", "TestLoop")):
        value = cfg.get(key)
        if value is None:
            continue
        extra = {k: v for k, v in value.items() if k != "type"} if isinstance(value, dict) else {}
        if not isinstance(value, dict) or value.get("type", loop_type) != loop_type or extra:
            conv.left_out(key, value, f"ours runs a plain {loop_type}")
    evaluator = cfg.get("val_evaluator")
    if evaluator is not None:
        evaluation = conv.evaluation(evaluator, interval, (data or {}).get("val"))
        if evaluation is not None:
            if not by_epoch:  # evaluation.interval counts iterations
                evaluation["by_epoch"] = False
            entries["evaluation"] = evaluation
    test_evaluator = cfg.get("test_evaluator")
    if test_evaluator is not None and not _same(test_evaluator, evaluator):
        conv.left_out(
            "test_evaluator", test_evaluator, "tools/test.py --eval METRIC picks test metrics"
        )
    if cfg.get("optim_wrapper") is not None:
        entries.update(conv.optimizer(cfg["optim_wrapper"]))
    if cfg.get("param_scheduler") is not None:
        entries["lr_config"] = conv.lr_config(cfg["param_scheduler"], length, by_epoch)
    entries.update(schedule)
    hooks, best = conv.hooks(cfg, preprocessing)
    if best:
        if "evaluation" in entries:
            entries["evaluation"].update(best)
        else:
            conv.left_out("default_hooks.checkpoint.save_best", best, "no val_evaluator")
    entries.update(hooks)
    entries.update(conv.runtime(cfg))
    helpers = sorted(k for k in cfg if k not in RUNTIME_KEYS and not k.startswith("_"))
    if helpers:
        conv.notes.append(
            "helper variables of the 3.x config, written where it used them: " + ", ".join(helpers)
        )
    return conv


# --------------------------------------------------------------------------- writing
def _flat(value):
    if isinstance(value, dict):
        if all(isinstance(k, str) and k.isidentifier() and not keyword.iskeyword(k) for k in value):
            return "dict(" + ", ".join(f"{k}={_flat(v)}" for k, v in value.items()) + ")"
        return "{" + ", ".join(f"{k!r}: {_flat(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(_flat(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, str):  # double quotes, as our configs
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and not math.isfinite(value):
        return f'float("{value}")'
    return repr(value)


def _source(value, indent=0, taken=0):
    """``value`` as Python source, broken over lines past :data:`LINE` characters."""
    flat = _flat(value)
    if (
        indent + taken + len(flat) <= LINE
        or not isinstance(value, (dict, list, tuple))
        or not value
    ):
        return flat
    inner = " " * (indent + 4)
    if isinstance(value, dict) and flat.startswith("dict("):
        lines = [f"{inner}{k}={_source(v, indent + 4, len(k) + 2)}," for k, v in value.items()]
        opening, closing = "dict(", ")"
    elif isinstance(value, dict):
        lines = [
            f"{inner}{k!r}: {_source(v, indent + 4, len(repr(k)) + 3)}," for k, v in value.items()
        ]
        opening, closing = "{", "}"
    else:
        lines = [f"{inner}{_source(v, indent + 4, 1)}," for v in value]
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ")")
    return opening + "\n" + "\n".join(lines) + "\n" + " " * indent + closing


def format_config(conversion):
    """The converted config as the text of a config file: a comment block (the source, what
    was not translated, notes), then one assignment per top-level key."""
    lines = [
        f"# Converted from the mmdetection 3.x config {conversion.source}",
        f'# by {CONVERTER} (docs/config.md, "mmdetection 3.x configs").',
        "#",
    ]
    if conversion.untranslated:
        lines.append(f"# NOT TRANSLATED ({len(conversion.untranslated)}): check these by hand")
        lines += [f"#   - {item}" for item in conversion.untranslated]
    else:
        lines.append("# Everything was translated.")
    if conversion.notes:
        lines.append("#")
        lines.append("# Notes:")
        lines += [f"#   - {note}" for note in conversion.notes]
    lines.append("")
    for key, value in conversion.entries.items():
        lines.append(f"{key} = {_source(value, 0, len(key) + 3)}")
    return "\n".join(lines) + "\n"
