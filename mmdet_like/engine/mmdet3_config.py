"""Recognising an mmdetection 3.x (mmengine) config, which mmdet_like does not read.

mmdet_like reads mmdetection 2.x-style configs (``data=dict(...)``, ``optimizer``,
``lr_config``, ``total_epochs``, ...). A 3.x config names the same models but keeps the
rest under other keys (``train_dataloader``, ``optim_wrapper``, ``param_scheduler``,
``train_cfg=dict(type="EpochBasedTrainLoop", ...)``, ``model.data_preprocessor``, ...).
:func:`load_config` and ``check_config`` refuse such a config with one line naming the keys
found and the converter, :data:`CONVERTER`, which writes an equivalent config of ours and
lists what it cannot translate (``mmdet_like.apis.mmdet3_config``). Nothing is translated
at load time: the conversion is explicit, so the user sees what changed.
"""

import ast

from mmdet_like.engine.config import ConfigError, check_config_bases

CONVERTER = "tools/misc/mmdet3_config_to_ours.py"

# top-level keys only mmdetection 3.x (mmengine) configs have
MMDET3_TOP_LEVEL_KEYS = (
    "train_dataloader",
    "val_dataloader",
    "test_dataloader",
    "val_evaluator",
    "test_evaluator",
    "optim_wrapper",
    "param_scheduler",
    "default_hooks",
    "env_cfg",
    "visualizer",
    "vis_backends",
    "log_processor",
    "default_scope",
    "val_cfg",
    "tta_model",
    "tta_pipeline",
    "randomness",
)
# train_cfg / test_cfg: the detector's settings here, mmengine's loops in 3.x
LOOP_SUFFIXES = {"train_cfg": "TrainLoop", "test_cfg": "TestLoop"}


class Mmdet3ConfigError(ConfigError):
    """An mmdetection 3.x config given where a config of ours is read; the message names the
    3.x keys found and the converter."""


def _loop_type(key, value):
    """``"train_cfg.type='EpochBasedTrainLoop'"`` for a loop dict at ``key``, else ``None``."""
    kind = value.get("type") if isinstance(value, dict) else None
    if isinstance(kind, str) and kind.endswith(LOOP_SUFFIXES[key]):
        return f"{key}.type={kind!r}"
    return None


def mmdet3_keys(cfg):
    """The mmdetection 3.x keys of a loaded config ``cfg`` (a dict): top-level keys,
    ``train_cfg.type='...TrainLoop'`` and ``model.data_preprocessor``; ``[]`` for ours."""
    found = []
    for key in LOOP_SUFFIXES:
        loop = _loop_type(key, cfg.get(key))
        if loop:
            found.append(loop)
    found += [key for key in MMDET3_TOP_LEVEL_KEYS if key in cfg]
    model = cfg.get("model")
    if isinstance(model, dict) and "data_preprocessor" in model:
        found.append("model.data_preprocessor")
    return found


def mmdet3_keys_in_source(filename):
    """The mmdetection 3.x keys a config file assigns itself (read without running it, so a
    3.x config whose ``_base_`` files are missing is still recognised); ``[]`` when the file
    cannot be parsed (loading it reports that)."""
    try:
        with open(filename, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=filename)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    assigned = {}
    new_style = False
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any(a.name == "read_base" for a in node.names):
            new_style = True
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned[target.id] = node.value
    found = []
    for key in LOOP_SUFFIXES:
        value = assigned.get(key)
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            kinds = [k.value for k in value.keywords if k.arg == "type"]
            if kinds and isinstance(kinds[0], ast.Constant):
                loop = _loop_type(key, {"type": kinds[0].value})
                if loop:
                    found.append(loop)
    found += [key for key in MMDET3_TOP_LEVEL_KEYS if key in assigned]
    if new_style:
        found.append("mmengine.config.read_base")
    return found


def mmdet3_refusal(filename, found):
    """The one-line message refusing the mmdetection 3.x config ``filename``."""
    return (
        f"{filename}: an mmdetection 3.x config ({', '.join(found)}); mmdet_like reads "
        "mmdetection 2.x-style configs (model, data=dict(imgs_per_gpu, train, val, test), "
        "optimizer, lr_config, total_epochs, ...). Convert it: python "
        f"{CONVERTER} {filename} OUT.py (it lists what it cannot translate), then use OUT.py"
    )


def refuse_mmdet3_source(filename):
    """Raise :class:`Mmdet3ConfigError` if the file ``filename`` is a new-style (read_base)
    mmdetection config, or assigns mmdetection 3.x keys and its ``_base_`` files are missing
    (they are mmdetection's own); with its bases there, :func:`refuse_mmdet3_config` names
    every 3.x key once it is loaded."""
    found = mmdet3_keys_in_source(filename)
    if not found:
        return
    if "mmengine.config.read_base" not in found:
        try:
            check_config_bases(filename)
            return
        except ConfigError:
            pass
    raise Mmdet3ConfigError(mmdet3_refusal(filename, found))


def refuse_mmdet3_config(cfg, filename="config"):
    """Raise :class:`Mmdet3ConfigError` if the loaded config ``cfg`` has mmdetection 3.x keys
    (its own or its ``_base_`` files')."""
    found = mmdet3_keys(cfg)
    if found:
        raise Mmdet3ConfigError(mmdet3_refusal(filename, found))
