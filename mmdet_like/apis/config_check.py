"""Start-up check of a config: every key at every depth is one that something reads, and
values have the types their readers need, before anything is built or loaded.

``check_config(cfg, filename)`` is called by ``tools/train.py``, ``tools/test.py`` and
``tools/check_dataset.py`` right after the config is loaded (with ``--cfg-options``
merged), so a misspelt option (``data.imgs_per_gpus``, ``lr_config.warmup_iter``,
``optimizer_config.grad_clip.max_nrom``, ``evaluation.metrc``) or a value of the wrong type
(``optimizer.lr=0,01``, a list) stops the run at once with every problem listed, each named
by its path and with the closest known key. Parts built from a registry (datasets,
transforms, hooks, optimizers, metrics) are checked against the arguments their classes
take; plain dicts against the keys their readers read. The model's own dicts are checked
when it is built (the registry for its parts, the detectors for ``train_cfg`` /
``test_cfg``).

mmdetection v2 names are accepted and rewritten to ours first, each with a one-line note
(:func:`apply_mmdet_v2_aliases`); see docs/config.md.
"""

import difflib
import numbers

from mmdet_like.datasets.samplers import TRAIN_SAMPLERS
from mmdet_like.engine.config import ConfigError, load_notes
from mmdet_like.engine.hooks.lr_updater import LR_POLICIES
from mmdet_like.engine.mmdet3_config import refuse_mmdet3_config
from mmdet_like.engine.optimizer import DefaultOptimizerConstructor
from mmdet_like.models.init_cfg import translate_init_cfgs, whole_model_checkpoint
from mmdet_like.registry import (
    BATCH_AUGMENTS,
    DATASETS,
    HOOKS,
    METRICS,
    OPTIMIZER_CONSTRUCTORS,
    OPTIMIZERS,
    PIPELINES,
    accepted_arguments,
)

DATA_KEYS = (
    "imgs_per_gpu", "workers_per_gpu", "train", "val", "test", "test_imgs_per_gpu", "sampler",
    "batch_augments",
)  # fmt: skip
GRAD_CLIP_KEYS = ("max_norm", "norm_type", "error_if_nonfinite", "foreach")
PARAMWISE_KEYS = DefaultOptimizerConstructor.paramwise_keys
LOG_CONFIG_KEYS = ("interval", "hooks")
# the evaluation hook's own keys; the rest are the metric's options
EVAL_HOOK_KEYS = ("interval", "tmpdir", "gpu_collect", "save_best", "rule", "by_epoch")


class ConfigCheckError(ConfigError):
    """Keys that nothing reads or values of the wrong type, every one named by its path."""


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _shown(value):
    text = repr(value)
    return (text if len(text) <= 60 else text[:57] + "...") + f" (a {type(value).__name__})"


class _Problems:
    """The problems found, each one line naming the config path."""

    def __init__(self):
        self.lines = []

    def add(self, path, message):
        self.lines.append(f"{path}: {message}")

    def unknown_keys(self, path, mapping, known):
        """Every key of ``mapping`` not in ``known``, with the closest known key."""
        known = list(known)
        for key in mapping:
            if key in known or str(key).startswith("_"):
                continue
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"; did you mean {path}.{close[0]}?" if close else ""
            self.add(
                f"{path}.{key}",
                f"not a key mmdet_like reads{hint} (known: {', '.join(sorted(known))})",
            )

    def integer(self, path, value, minimum):
        if not _is_int(value) or value < minimum:
            self.add(path, f"must be an integer >= {minimum}, got {_shown(value)}")

    def number(self, path, value, positive=False):
        if not _is_number(value) or (positive and value <= 0):
            kind = "a positive number" if positive else "a number"
            hint = ""
            if (
                isinstance(value, (list, tuple))
                and len(value) == 2
                and all(_is_int(v) or str(v).isdigit() for v in value)
            ):  # "0,01" is read as the list [0, "01"]
                hint = (
                    f". A comma in --cfg-options separates list items: write "
                    f"{value[0]}.{value[1]} for a decimal"
                )
            self.add(path, f"must be {kind}, got {_shown(value)}{hint}")

    def typed_part(self, path, cfg, registry, skip=(), default_type=None):
        """A ``dict(type=...)`` part: its type is registered and takes every key given."""
        if not isinstance(cfg, dict):
            self.add(path, f"must be a dict with a type, got {_shown(cfg)}")
            return None
        type_name = cfg.get("type", default_type)
        if type_name is None:
            self.add(path, f"has no 'type' (one of: {', '.join(registry.names)})")
            return None
        if not isinstance(type_name, str):
            return None  # a class given directly: the builder checks it
        if type_name not in registry:
            close = difflib.get_close_matches(type_name, registry.names, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.add(f"{path}.type", f"{type_name!r} is not in the {registry.name} registry{hint}")
            return None
        cls = registry.get(type_name)
        accepted = accepted_arguments(cls)
        if accepted is not None and not accepted[1]:
            keys = {k: v for k, v in cfg.items() if k != "type" and k not in skip}
            self.unknown_keys(path, keys, accepted[0] - {"self"})
        return cls


# ------------------------------------------------------------------ mmdetection v2 names
def apply_mmdet_v2_aliases(cfg):
    """Rewrite mmdetection v2 names to ours in ``cfg`` (in place); returns one note each.

    - ``data.samples_per_gpu`` -> ``data.imgs_per_gpu`` (it replaces an ``imgs_per_gpu``
      inherited from a base config, and the note says so);
    - ``runner=dict(type="EpochBasedRunner", max_epochs=N)`` -> ``total_epochs=N`` (it
      replaces an inherited ``total_epochs``); ``runner=dict(type="IterBasedRunner",
      max_iters=N)`` is kept (training by iterations) and makes checkpoints, evaluation and
      the LR schedule count iterations;
    - ``evaluation.save_best`` (and ``rule``) are read by the evaluation hook as they are;
    - a top-level ``classes`` is a helper variable the data configs use, as any other.
    """
    notes = []
    data = cfg.get("data")
    if isinstance(data, dict) and "samples_per_gpu" in data:
        value = data.pop("samples_per_gpu")
        replaced = ""
        if data.get("imgs_per_gpu", value) != value:
            replaced = f" (replacing imgs_per_gpu={data['imgs_per_gpu']!r})"
        data["imgs_per_gpu"] = value
        notes.append(
            f"data.samples_per_gpu is mmdetection v2's name: read as imgs_per_gpu={value!r}"
            f"{replaced}"
        )
    runner = cfg.get("runner")
    if runner is not None:
        if not isinstance(runner, dict):
            raise ConfigCheckError(
                f"runner: must be dict(type=..., max_epochs=...), got {runner!r}"
            )
        runner = dict(runner)
        kind = runner.pop("type", "EpochBasedRunner")
        if kind == "IterBasedRunner":
            return notes + _iteration_runner_notes(cfg, runner) + _read_init_cfgs(cfg)
        if kind != "EpochBasedRunner":
            raise ConfigCheckError(
                f"runner.type={kind!r}: one of 'EpochBasedRunner' (runner=dict(type="
                "'EpochBasedRunner', max_epochs=N), or total_epochs=N) and 'IterBasedRunner' "
                "(runner=dict(type='IterBasedRunner', max_iters=N))"
            )
        unknown = sorted(set(runner) - {"max_epochs"})
        if unknown:
            raise ConfigCheckError(
                f"runner: key(s) {unknown} are not read; runner takes max_epochs"
            )
        if "max_epochs" in runner:
            epochs = runner["max_epochs"]
            replaced = ""
            if cfg.get("total_epochs") not in (None, epochs):
                replaced = f" (replacing total_epochs={cfg.total_epochs!r})"
            cfg["total_epochs"] = epochs
            notes.append(
                f"runner=dict(type='EpochBasedRunner', max_epochs={epochs!r}) is mmdetection "
                f"v2's: read as total_epochs={epochs!r}{replaced}"
            )
        cfg.pop("runner")
    notes += _read_init_cfgs(cfg)
    return notes


def _iteration_runner_notes(cfg, runner):
    """``runner=dict(type="IterBasedRunner", max_iters=N)``: kept (apis.train builds that
    runner); checkpoints, evaluation and the LR schedule count iterations unless the config
    says ``by_epoch=True`` for them (as mmdetection does)."""
    unknown = sorted(set(runner) - {"max_iters"})
    if unknown or not _is_int(runner.get("max_iters")) or runner["max_iters"] < 1:
        raise ConfigCheckError(
            f"runner: IterBasedRunner takes max_iters, a whole number >= 1 (got "
            f"{ {k: v for k, v in runner.items()} })"
        )
    cfg["runner"] = dict(type="IterBasedRunner", max_iters=runner["max_iters"])
    counted = [key for key in ("checkpoint_config", "evaluation", "lr_config")
               if isinstance(cfg.get(key), dict) and "by_epoch" not in cfg[key]]  # fmt: skip
    for key in counted:
        cfg[key]["by_epoch"] = False
    note = f"runner=dict(type='IterBasedRunner', max_iters={runner['max_iters']}): training by "
    note += "iterations (total_epochs is not read)"
    if counted:
        note += f"; {', '.join(counted)} count iterations (by_epoch=False)"
    return [note]


def _read_init_cfgs(cfg):
    """mmdetection's ``init_cfg`` in the model (mmdet_like/models/init_cfg.py): a whole-model
    ``Pretrained`` becomes ``load_from``, a part's becomes its ``pretrained``."""
    model = cfg.get("model")
    if not isinstance(model, dict):
        return []
    notes = []
    checkpoint = whole_model_checkpoint(model)
    if checkpoint is not None:
        if cfg.get("load_from") not in (None, checkpoint):
            raise ConfigCheckError(
                f"model.init_cfg loads {checkpoint!r} and load_from={cfg.load_from!r}: keep one"
            )
        cfg["load_from"] = checkpoint
        notes.append(
            f"model.init_cfg=dict(type='Pretrained', checkpoint={checkpoint!r}) is "
            f"mmdetection's: read as load_from={checkpoint!r}"
        )
    return notes + translate_init_cfgs(model)


# ---------------------------------------------------------------------------- sections
def _check_pipeline(problems, path, pipeline):
    if not isinstance(pipeline, (list, tuple)):
        problems.add(path, f"must be a list of transform dicts, got {_shown(pipeline)}")
        return
    for i, step in enumerate(pipeline):
        if callable(step) and not isinstance(step, dict):
            continue
        cls = problems.typed_part(f"{path}[{i}]", step, PIPELINES)
        if cls is None or "transforms" not in step:
            continue
        inner = step["transforms"]
        if (
            isinstance(inner, (list, tuple))
            and inner
            and all(isinstance(t, (list, tuple)) for t in inner)
        ):  # RandomChoice: a list of transform sequences
            for j, sequence in enumerate(inner):
                _check_pipeline(problems, f"{path}[{i}].transforms[{j}]", sequence)
        else:
            _check_pipeline(problems, f"{path}[{i}].transforms", inner)


def _check_dataset(problems, path, cfg):
    cls = problems.typed_part(path, cfg, DATASETS)
    if cls is None:
        return
    if "pipeline" in cfg:
        _check_pipeline(problems, f"{path}.pipeline", cfg["pipeline"])
    if isinstance(cfg.get("dataset"), dict):  # RepeatDataset, ClassBalancedDataset
        _check_dataset(problems, f"{path}.dataset", cfg["dataset"])
    if isinstance(cfg.get("datasets"), (list, tuple)):  # ConcatDataset
        for i, part in enumerate(cfg["datasets"]):
            _check_dataset(problems, f"{path}.datasets[{i}]", part)


def _check_data(problems, data):
    if not isinstance(data, dict):
        problems.add(
            "data",
            f"must be a dict (imgs_per_gpu, workers_per_gpu, train, ...), got {_shown(data)}",
        )
        return
    problems.unknown_keys("data", data, DATA_KEYS)
    if "imgs_per_gpu" in data:
        problems.integer("data.imgs_per_gpu", data["imgs_per_gpu"], 1)
    if "test_imgs_per_gpu" in data:
        problems.integer("data.test_imgs_per_gpu", data["test_imgs_per_gpu"], 1)
    if "workers_per_gpu" in data:
        problems.integer("data.workers_per_gpu", data["workers_per_gpu"], 0)
    sampler = data.get("sampler")
    if sampler is not None and (
        not isinstance(sampler, dict)
        or sampler.get("type") not in TRAIN_SAMPLERS
        or set(sampler) != {"type"}
    ):
        problems.add(
            "data.sampler",
            f"must be dict(type=NAME) with NAME one of {', '.join(TRAIN_SAMPLERS)} (or left out "
            f"for GroupSampler), got {_shown(sampler)}",
        )
    for split in ("train", "val", "test"):
        if data.get(split) is not None:
            _check_dataset(problems, f"data.{split}", data[split])
    augments = data.get("batch_augments")
    if augments is not None:
        if not isinstance(augments, (list, tuple)):
            problems.add(
                "data.batch_augments",
                f"must be a list of dicts with a type (e.g. BatchSyncRandomResize), got "
                f"{_shown(augments)}",
            )
        else:
            for i, augment in enumerate(augments):
                problems.typed_part(f"data.batch_augments[{i}]", augment, BATCH_AUGMENTS)


def _check_optimizer(problems, cfg):
    skip = ("paramwise_cfg", "constructor")
    cls = problems.typed_part("optimizer", cfg, OPTIMIZERS, skip=skip)
    if cls is None:
        return
    if "lr" in cfg:
        problems.number("optimizer.lr", cfg["lr"], positive=True)
    for key in ("momentum", "weight_decay"):
        if key in cfg:
            problems.number(f"optimizer.{key}", cfg[key])
    constructor = cfg.get("constructor", "DefaultOptimizerConstructor")
    if isinstance(constructor, str):
        if constructor not in OPTIMIZER_CONSTRUCTORS:
            names = OPTIMIZER_CONSTRUCTORS.names
            close = difflib.get_close_matches(constructor, names, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.add(
                "optimizer.constructor",
                f"{constructor!r} is not in the OPTIMIZER_CONSTRUCTORS registry{hint} "
                f"(one of: {', '.join(names)})",
            )
            return
        constructor = OPTIMIZER_CONSTRUCTORS.get(constructor)
    paramwise = cfg.get("paramwise_cfg")
    if paramwise is None and constructor is DefaultOptimizerConstructor:
        return
    check = getattr(constructor, "check_paramwise", None)
    if check is not None:
        for path, message in check(paramwise or {}, weight_decay=cfg.get("weight_decay")):
            problems.add(path, message)


def _check_optimizer_config(problems, cfg):
    cls = problems.typed_part("optimizer_config", cfg, HOOKS, default_type="OptimizerHook")
    if cls is not None and "cumulative_iters" in cfg:
        problems.integer("optimizer_config.cumulative_iters", cfg["cumulative_iters"], 1)
    grad_clip = cfg.get("grad_clip") if isinstance(cfg, dict) else None
    if cls is None or grad_clip is None:
        return
    if not isinstance(grad_clip, dict):
        problems.add(
            "optimizer_config.grad_clip", f"must be dict(max_norm=...), got {_shown(grad_clip)}"
        )
        return
    problems.unknown_keys("optimizer_config.grad_clip", grad_clip, GRAD_CLIP_KEYS)
    if "max_norm" not in grad_clip:
        problems.add(
            "optimizer_config.grad_clip", "needs max_norm, e.g. grad_clip=dict(max_norm=35)"
        )
    else:
        problems.number("optimizer_config.grad_clip.max_norm", grad_clip["max_norm"], positive=True)
    norm_type = grad_clip.get("norm_type", 2)
    if not (_is_number(norm_type) or norm_type in ("inf", float("inf"))):
        problems.add(
            "optimizer_config.grad_clip.norm_type",
            f"must be a number or 'inf', got {_shown(norm_type)}",
        )


def _check_auto_scale_lr(problems, cfg):
    if not isinstance(cfg, dict):
        problems.add("auto_scale_lr", f"must be dict(enable=..., base_batch_size=N), got {cfg!r}")
        return
    problems.unknown_keys("auto_scale_lr", cfg, ("enable", "base_batch_size"))
    if "base_batch_size" not in cfg:
        problems.add("auto_scale_lr", "needs base_batch_size (the batch optimizer.lr is for)")
    else:
        problems.integer("auto_scale_lr.base_batch_size", cfg["base_batch_size"], 1)
    if not isinstance(cfg.get("enable", False), bool):
        problems.add("auto_scale_lr.enable", f"must be True or False, got {cfg['enable']!r}")


def _check_lr_config(problems, cfg):
    if not isinstance(cfg, dict):
        problems.add("lr_config", f"must be a dict (policy=..., ...), got {_shown(cfg)}")
        return
    cfg = dict(cfg)
    if "type" not in cfg:
        policy = str(cfg.pop("policy", "fixed"))
        if policy.lower() not in LR_POLICIES:
            close = difflib.get_close_matches(policy.lower(), LR_POLICIES, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.add(
                "lr_config.policy",
                f"unknown policy {policy!r}{hint} (one of: "
                f"{', '.join(sorted(set(LR_POLICIES) - {'cosineannealing'}))})",
            )
            return
        cfg["type"] = LR_POLICIES[policy.lower()]
    problems.typed_part("lr_config", cfg, HOOKS)
    if "warmup_iters" in cfg:
        problems.integer("lr_config.warmup_iters", cfg["warmup_iters"], 0)
    if "warmup_ratio" in cfg:
        linear = cfg.get("warmup") == "linear"
        problems.number("lr_config.warmup_ratio", cfg["warmup_ratio"], positive=not linear)
    if "step" in cfg:
        step = cfg["step"]
        steps = step if isinstance(step, (list, tuple)) else [step]
        if not steps or not all(_is_int(s) and s > 0 for s in steps):
            problems.add(
                "lr_config.step",
                f"must be a positive integer or a list of them, got {_shown(step)}",
            )
    if "gamma" in cfg:
        problems.number("lr_config.gamma", cfg["gamma"], positive=True)


def _check_hook_list(problems, path, hooks, default_args=()):
    if not isinstance(hooks, (list, tuple)):
        problems.add(path, f"must be a list of hook dicts, got {_shown(hooks)}")
        return
    for i, hook in enumerate(hooks):
        # a hook's priority is read by the runner when it registers the hook
        problems.typed_part(f"{path}[{i}]", hook, HOOKS, skip=("priority", *default_args))


def _check_log_config(problems, cfg):
    if not isinstance(cfg, dict):
        problems.add("log_config", f"must be a dict (interval, hooks), got {_shown(cfg)}")
        return
    problems.unknown_keys("log_config", cfg, LOG_CONFIG_KEYS)
    if "interval" in cfg:
        problems.integer("log_config.interval", cfg["interval"], 1)
    if "hooks" in cfg:
        _check_hook_list(problems, "log_config.hooks", cfg["hooks"], default_args=("interval",))


def metric_options(metric_names):
    """The option names the metric classes computing ``metric_names`` take (``None`` when
    a name is unknown)."""
    options = set()
    for name in metric_names:
        owner = next(
            (METRICS.get(e) for e in METRICS.names if name in getattr(METRICS.get(e), "names", ())),
            None,
        )
        if owner is None:
            return None
        options |= accepted_arguments(owner)[0] - {"self", "metric"}
    return options


def _check_evaluation(problems, cfg):
    if not isinstance(cfg, dict):
        problems.add("evaluation", f"must be a dict (interval, metric, ...), got {_shown(cfg)}")
        return
    metric = cfg.get("metric")
    names = [] if metric is None else [metric] if isinstance(metric, str) else metric
    if not isinstance(names, (list, tuple)) or not all(isinstance(m, (str, dict)) for m in names):
        problems.add(
            "evaluation.metric", f"must be a metric name or a list of them, got {_shown(metric)}"
        )
        return
    known_metrics = sorted({n for e in METRICS.names for n in getattr(METRICS.get(e), "names", ())})
    plain = [m for m in names if isinstance(m, str)]
    for name in plain:
        if name not in known_metrics:
            close = difflib.get_close_matches(name, known_metrics, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.add(
                "evaluation.metric",
                f"unknown metric {name!r}{hint} (known: {', '.join(known_metrics)})",
            )
    for i, entry in enumerate(m for m in names if isinstance(m, dict)):
        problems.typed_part(f"evaluation.metric[{i}]", entry, METRICS)
    options = metric_options([m for m in plain if m in known_metrics] or ["bbox", "mAP"]) or set()
    problems.unknown_keys("evaluation", cfg, {"metric", *EVAL_HOOK_KEYS, *options})
    if "interval" in cfg:
        problems.integer("evaluation.interval", cfg["interval"], 1)
    rule = cfg.get("rule")
    if rule not in (None, "greater", "less"):
        problems.add("evaluation.rule", f"must be 'greater' or 'less', got {_shown(rule)}")


def check_config(cfg, filename="config"):
    """Check ``cfg`` (a loaded config, changed in place by the mmdetection v2 aliases).

    Returns the notes (one line each, for the log): :func:`load_config`'s (inherited paths
    re-derived for a ``data_root``) and the aliases'; raises :class:`ConfigCheckError`
    listing every problem.
    """
    refuse_mmdet3_config(cfg, filename)
    notes = [*load_notes(cfg), *apply_mmdet_v2_aliases(cfg)]
    problems = _Problems()
    if cfg.get("data") is not None:
        _check_data(problems, cfg.data)
    if cfg.get("optimizer") is not None:
        _check_optimizer(problems, cfg.optimizer)
    if cfg.get("optimizer_config") is not None:
        _check_optimizer_config(problems, cfg.optimizer_config)
    if cfg.get("lr_config") is not None:
        _check_lr_config(problems, cfg.lr_config)
    if cfg.get("checkpoint_config") is not None:
        problems.typed_part(
            "checkpoint_config", cfg.checkpoint_config, HOOKS, default_type="CheckpointHook"
        )
        interval = (
            cfg.checkpoint_config.get("interval", 1)
            if isinstance(cfg.checkpoint_config, dict)
            else 1
        )
        problems.integer("checkpoint_config.interval", interval, 1)
    if cfg.get("log_config") is not None:
        _check_log_config(problems, cfg.log_config)
    if cfg.get("evaluation") is not None:
        _check_evaluation(problems, cfg.evaluation)
    if cfg.get("custom_hooks") is not None:
        _check_hook_list(problems, "custom_hooks", cfg.custom_hooks)
    if cfg.get("total_epochs") is not None:
        problems.integer("total_epochs", cfg.total_epochs, 1)
    if cfg.get("auto_scale_lr") is not None:
        _check_auto_scale_lr(problems, cfg.auto_scale_lr)
    if problems.lines:
        count = len(problems.lines)
        raise ConfigCheckError(
            f"{filename}: {count} problem{'s' if count > 1 else ''} in the config (values from "
            "the file and from --cfg-options):\n  " + "\n  ".join(problems.lines)
        )
    return notes
