"""Config files: loading (``_base_``, ``_delete_``), ``--cfg-options`` and key checks.

Configs are Python files read by :class:`mmengine.config.Config`. This module adds what the
engine needs around it: command-line overrides parsed as literals (never evaluated as
code), ``custom_imports``, and a warning for top-level keys that nothing reads.
"""

import argparse
import ast
import difflib
import importlib
import os.path as osp
import warnings

from mmengine.config import Config

# Every top-level key something in mmdet_like reads. Keys starting with "_" are private
# helper variables and are never reported.
KNOWN_TOP_LEVEL_KEYS = {
    # model
    "model",
    "train_cfg",
    "test_cfg",
    # data
    "dataset_type",
    "data_root",
    "img_norm_cfg",
    "train_pipeline",
    "test_pipeline",
    "data",
    # schedule and hooks
    "optimizer",
    "optimizer_config",
    "fp16",
    "lr_config",
    "checkpoint_config",
    "log_config",
    "evaluation",
    "custom_hooks",
    "total_epochs",
    "workflow",
    # run
    "dist_params",
    "log_level",
    "work_dir",
    "load_from",
    "resume_from",
    "auto_resume",
    "seed",
    "deterministic",
    "gpu_ids",
    "find_unused_parameters",
    "custom_imports",
}


class ConfigKeyWarning(UserWarning):
    """A top-level config key that nothing in mmdet_like reads."""


def register_top_level_keys(*names):
    """Declare extra top-level keys read by a component (so they are not reported)."""
    KNOWN_TOP_LEVEL_KEYS.update(names)


def unknown_top_level_keys(cfg, filename="config"):
    """Messages for the keys of ``cfg`` that nothing reads, each with the closest known key."""
    messages = []
    for key in cfg.keys():
        if key.startswith("_") or key in KNOWN_TOP_LEVEL_KEYS:
            continue
        close = difflib.get_close_matches(key, KNOWN_TOP_LEVEL_KEYS, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        messages.append(
            f"{osp.basename(str(filename))}: top-level key {key!r} is not read by mmdet_like{hint}"
        )
    return messages


def _literal(node):
    """Value of a literal AST node; also ``dict(key=literal, ...)``. Anything else raises."""
    if isinstance(node, ast.Call):
        if (
            isinstance(node.func, ast.Name)
            and node.func.id == "dict"
            and not node.args
            and all(k.arg is not None for k in node.keywords)
        ):
            return {k.arg: _literal(k.value) for k in node.keywords}
        raise ValueError("only dict(...) calls are allowed")
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)


def parse_cfg_value(text):
    """Parse one ``--cfg-options`` value as a Python literal; plain words stay strings.

    ``"4"`` -> 4, ``"[1,2]"`` -> [1, 2], ``"(0.1,0.2)"`` -> (0.1, 0.2), ``"None"`` -> None,
    ``"dict(type='X', a=1)"`` -> {"type": "X", "a": 1}, ``"a,b"`` -> ["a", "b"],
    ``"sgd"`` -> "sgd". Nothing is ever evaluated as code.
    """
    try:
        return _literal(ast.parse(text, mode="eval").body)
    except (ValueError, SyntaxError, TypeError):
        pass
    if "," in text and not text.startswith(("[", "(", "{")):
        return [parse_cfg_value(part) for part in text.split(",") if part != ""]
    return text


def parse_cfg_options(pairs):
    """``["a.b=1", "c=[2, 3]"]`` -> ``{"a.b": 1, "c": [2, 3]}``."""
    options = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"--cfg-options: {pair!r} is not of the form KEY=VALUE")
        key, value = pair.split("=", 1)
        options[key.strip()] = parse_cfg_value(value.strip())
    return options


class CfgOptionsAction(argparse.Action):
    """argparse action for ``--cfg-options a.b=1 data.imgs_per_gpu=4`` (literals only)."""

    def __call__(self, parser, namespace, values, option_string=None):
        options = getattr(namespace, self.dest, None) or {}
        try:
            options.update(parse_cfg_options(values))
        except ValueError as exc:
            parser.error(str(exc))
        setattr(namespace, self.dest, options)


def add_cfg_options_argument(parser, example="data.imgs_per_gpu=4 optimizer.lr=0.01"):
    """Add the ``--cfg-options KEY=VALUE ...`` argument every tool shares to ``parser``."""
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=CfgOptionsAction,
        default={},
        metavar="KEY=VALUE",
        help=f"override config keys, e.g. {example} (values are Python literals)",
    )


def import_custom_modules(cfg):
    """Import the modules listed in ``custom_imports=dict(imports=[...])`` (they register)."""
    custom = cfg.get("custom_imports")
    if not custom:
        return []
    imports = custom.get("imports", [])
    if isinstance(imports, str):
        imports = [imports]
    allow_failed = custom.get("allow_failed_imports", False)
    modules = []
    for name in imports:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:
            if not allow_failed:
                raise ImportError(
                    f"custom_imports: cannot import {name!r} ({exc}). The module must be "
                    "importable: install it, or add its folder to PYTHONPATH."
                ) from exc
            warnings.warn(
                f"custom_imports: {name!r} failed to import and is skipped: {exc}", stacklevel=2
            )
    return modules


def load_config(filename, cfg_options=None, warn_unknown_keys=True):
    """Read a config file, apply ``cfg_options`` (a dict or KEY=VALUE strings), import
    ``custom_imports`` and warn about unknown top-level keys.

    Returns an :class:`mmengine.config.Config` (a dict with attribute access).
    """
    if not osp.isfile(filename):
        raise FileNotFoundError(f"config file {filename!r} does not exist")
    cfg = Config.fromfile(filename, import_custom_modules=False)
    if cfg_options:
        if not isinstance(cfg_options, dict):
            cfg_options = parse_cfg_options(cfg_options)
        cfg.merge_from_dict(cfg_options)
    import_custom_modules(cfg)
    if warn_unknown_keys:
        for message in unknown_top_level_keys(cfg, filename):
            warnings.warn(message, ConfigKeyWarning, stacklevel=2)
    return cfg
