"""Config files: loading (``_base_``, ``_delete_``), ``--cfg-options`` and key checks.

Configs are Python files read by :class:`mmengine.config.Config`. This module adds what the
engine needs around it: command-line overrides parsed as literals (never evaluated as
code), ``custom_imports``, a warning for top-level keys that nothing reads, and
``data_root`` re-derivation: a config that sets its own ``data_root`` moves the data paths
it inherits from the old root to its own (:func:`reroot_inherited_data`).
"""

import argparse
import ast
import contextlib
import copy
import difflib
import importlib
import os.path as osp
import re
import threading
import warnings

from mmengine.config import Config

from mmdet_like.errors import ProjectError

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
    "classes",  # the mmdetection idiom: a helper the data configs use
    "keypoint_meta",  # likewise, for the datasets' keypoint_meta (a keypoint set)
    "data",
    # schedule and hooks
    "optimizer",
    "optimizer_config",
    "fp16",
    "auto_scale_lr",  # dict(enable=..., base_batch_size=N): lr scaled to the real batch
    "lr_config",
    "checkpoint_config",
    "log_config",
    "evaluation",
    "custom_hooks",
    "total_epochs",
    "runner",  # mmdetection v2's runner=dict(max_epochs=...), read as total_epochs
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


class ConfigError(ProjectError, ValueError):
    """A config that cannot be loaded: a missing or circular ``_base_``, a syntax error, a
    malformed ``--cfg-options`` key; the message names the file (and the option)."""


class ConfigFileNotFoundError(ConfigError, FileNotFoundError):
    """The config path names no file."""


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
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
        pass  # not a literal (or nested beyond what the parser takes): kept as text
    if "," in text and not any(c in text for c in "()[]{}"):
        # "a,b" is a list; text with brackets that is no literal (code) stays one string
        return [parse_cfg_value(part) for part in text.split(",") if part != ""]
    return text


_KEY_PART = re.compile(r"^[^\s.=]+$")


def parse_cfg_options(pairs):
    """``["a.b=1", "c=[2, 3]"]`` -> ``{"a.b": 1, "c": [2, 3]}``.

    A pair without ``=`` or a key with an empty part (``=1``, ``a..b=1``) or with spaces
    raises :class:`ConfigError` (a ``ValueError``).
    """
    options = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--cfg-options: {pair!r} is not of the form KEY=VALUE")
        key, value = pair.split("=", 1)
        key = key.strip()
        if not all(_KEY_PART.match(part) for part in key.split(".")):
            raise ConfigError(
                f"--cfg-options: {pair!r}: the key {key!r} must be dot-separated names or list "
                "indices without spaces, e.g. optimizer.lr=0.01 or data.train.pipeline.0.type=X"
            )
        options[key] = parse_cfg_value(value.strip())
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


def _base_entries(path):
    """The ``_base_`` paths a config names, read without running it (``None`` when they
    are computed, which only mmengine can evaluate)."""
    ext = osp.splitext(path)[1]
    if ext in (".json", ".yml", ".yaml"):
        from mmengine import load

        try:
            value = (load(path) or {}).get("_base_", [])
        except Exception as exc:
            raise ConfigError(f"{path}: cannot be parsed ({exc}). Fix the file.") from exc
        lineno = None
    elif ext == ".py":
        with open(path, encoding="utf-8") as f:
            source = f.read()
        try:
            tree = ast.parse(source, filename=path)
        except SyntaxError as exc:
            raise ConfigError(
                f"{path}, line {exc.lineno}: invalid Python ({exc.msg}). Fix the config."
            ) from exc
        node = next(
            (
                n
                for n in tree.body
                if isinstance(n, ast.Assign)
                and isinstance(n.targets[0], ast.Name)
                and n.targets[0].id == "_base_"
            ),
            None,
        )
        if node is None:
            return []
        lineno = node.lineno
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            return None
    else:
        raise ConfigError(f"{path}: a config must be a .py, .json, .yml or .yaml file")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        where = f"{path}, line {lineno}" if lineno else path
        raise ConfigError(
            f"{where}: _base_ must be a config path or a list of paths (relative to this "
            f"file), got {value!r}. Fix the _base_ line."
        )
    return list(value)


def check_config_bases(filename):
    """Follow ``_base_`` from ``filename`` without running any config.

    Raises :class:`ConfigError` naming the config and the missing path, the cycle
    (``a.py -> b.py -> a.py``), a syntax error (file and line) or a malformed ``_base_``.
    Returns the files visited, ``filename`` first.
    """
    visited = []

    def visit(path, chain):  # chain: [(real path, path as followed), ...] down to path
        real = osp.realpath(path)
        reals = [r for r, _ in chain]
        if real in reals:
            names = [shown for _, shown in chain[reals.index(real) :]] + [path]
            raise ConfigError(
                f"_base_ cycle: {' -> '.join(names)}. Fix: remove one of these _base_ entries "
                "(a config cannot inherit from itself)."
            )
        if path not in visited:
            visited.append(path)
        for base in _base_entries(path) or []:
            if "::" in base or "{{" in base:  # package configs and mmengine substitutions
                continue
            base_path = osp.normpath(osp.join(osp.dirname(path), base))
            if not osp.isfile(base_path):
                included = f" (a _base_ of {chain[-1][1]})" if chain else ""
                raise ConfigError(
                    f"{path}{included}: its _base_ file {base!r} does not exist (looked for "
                    f"{osp.abspath(base_path)}). Fix the path: _base_ paths are relative to "
                    "the config that names them."
                )
            visit(base_path, [*chain, (real, path)])

    visit(osp.normpath(filename), [])
    return visited


def _failing_file(files):
    """Which of ``files`` (a config, then its bases) fails to load, for the message: the
    deepest base that fails on its own, else the config itself (e.g. a merge conflict)."""
    for path in reversed(files[1:]):
        try:
            Config.fromfile(path, import_custom_modules=False)
        except Exception:
            return f"{path} (a _base_ of {files[0]}): cannot be loaded"
    chain = f" (it and its _base_ files: {', '.join(files)})" if len(files) > 1 else ""
    return f"{files[0]}: cannot be loaded{chain}"


def _shipped_config_or_raise(filename):
    """The shipped config a non-existent path names (``mask_rcnn_r50_fpn_1x``, or a path such
    as ``configs/mask_rcnn_r50_fpn_1x.py`` typed outside the repository), else the error."""
    from mmdet_like.engine.config_files import ConfigNameError, get_config_path

    name = filename.replace(osp.sep, "/")
    if name.startswith("configs/"):
        name = name[len("configs/") :]
    if not osp.isabs(filename) and not name.startswith("."):
        try:
            return get_config_path(name)
        except ConfigNameError:
            pass
    raise ConfigFileNotFoundError(
        f"config file {filename!r} does not exist; check the path (relative paths are from "
        "the current folder), or give the name of a config that ships with mmdet_like, e.g. "
        "mask_rcnn_r50_fpn_1x (`mmdet-like list-configs` lists them)"
    )


_UNSET = object()  # a key the child config does not set


def _rerooted(path, old_root, new_root):
    """``path`` moved from ``old_root`` to ``new_root``, or None where it is not under
    ``old_root`` (``data/coco`` holds ``data/coco/x`` but not ``data/coco2/x``)."""
    if path == old_root:
        return new_root
    if not path.startswith(old_root):
        return None
    rest = path[len(old_root) :]
    if not old_root.endswith("/"):
        if not rest.startswith("/"):
            return None
        rest = rest[1:]
    return new_root + rest if new_root.endswith("/") or not rest else f"{new_root}/{rest}"


def _reroot_values(value, own, old_root, new_root, where, rewritten):
    """``value`` (inherited, at ``where``) with every string under ``old_root`` that the
    child config does not set itself (``own``: the child's value there, ``_UNSET``) moved
    to ``new_root``; the paths changed are appended to ``rewritten``."""
    if own is not _UNSET and not (isinstance(own, dict) and isinstance(value, dict)):
        return value  # the child's own value replaces it
    if isinstance(own, dict) and own.get("_delete_"):
        return value  # replaced as a whole by the child's
    if isinstance(value, dict):
        for key in list(value):
            child = own.get(key, _UNSET) if isinstance(own, dict) else _UNSET
            value[key] = _reroot_values(value[key], child, old_root, new_root,
                                        f"{where}.{key}", rewritten)  # fmt: skip
        return value
    if isinstance(value, list | tuple):
        items = [_reroot_values(item, _UNSET, old_root, new_root, f"{where}[{i}]", rewritten)
                 for i, item in enumerate(value)]  # fmt: skip
        return type(value)(items)
    if isinstance(value, str):
        moved = _rerooted(value, old_root, new_root)
        if moved is not None and moved != value:
            rewritten.append(where)
            return moved
    return value


def reroot_inherited_data(own, base, notes):
    """``base`` (the merged base configs of a config file) with its ``data`` paths
    re-derived for the file's own ``data_root`` (``own``: the file's own top-level values).

    mmdetection-style configs build their paths from a helper, ``ann_file=data_root +
    "annotations/..."`` in a base; the strings are made when the base is read, so a child
    that only sets ``data_root = "data/mine/"`` would keep every path under the base's root.
    Where the child's ``data_root`` differs from the base's, each string in the base's
    ``data`` (datasets, their wrappers' datasets, lists) that starts with the base's root and
    that the child does not set itself is moved to the child's root. One line naming the
    roots and the keys moved is appended to ``notes``."""
    old_root, new_root = base.get("data_root"), own.get("data_root")
    if not (isinstance(old_root, str) and isinstance(new_root, str) and old_root):
        return base
    if old_root == new_root or not isinstance(base.get("data"), dict):
        return base
    own_data = own.get("data", _UNSET)
    rewritten = []
    data = _reroot_values(copy.deepcopy(base["data"]), own_data, old_root, new_root, "data",
                          rewritten)  # fmt: skip
    if not rewritten:
        return base
    base = copy.copy(base)
    base["data"] = data
    notes.append(
        f"data_root {new_root!r} replaces the base's {old_root!r}: the inherited paths under "
        f"it moved to {new_root!r} ({', '.join(rewritten)}); paths the config sets itself are "
        "kept"
    )
    return base


_MERGE_LOCK = threading.Lock()


@contextlib.contextmanager
def _rerooting_merges(notes):
    """While mmengine reads a config, each file's merge onto its bases goes through
    :func:`reroot_inherited_data` (mmengine merges a file's own values, ``a``, into its
    merged bases, ``b``, with ``Config._merge_a_into_b``; nested calls are left as they
    are)."""
    merge = Config.__dict__["_merge_a_into_b"].__func__
    depth = 0

    def merging(a, b, allow_list_keys=False):
        nonlocal depth
        if depth == 0 and isinstance(a, dict) and isinstance(b, dict):
            b = reroot_inherited_data(a, b, notes)
        depth += 1
        try:
            return merge(a, b, allow_list_keys)
        finally:
            depth -= 1

    with _MERGE_LOCK:
        Config._merge_a_into_b = staticmethod(merging)
        try:
            yield
        finally:
            Config._merge_a_into_b = staticmethod(merge)


def load_notes(cfg):
    """The notes :func:`load_config` made while reading ``cfg`` (inherited paths
    re-derived for a ``data_root``), one line each, for the log."""
    return list(vars(cfg).get("_load_notes", ()))


def load_config(filename, cfg_options=None, warn_unknown_keys=True):
    """Read a config file, apply ``cfg_options`` (a dict or KEY=VALUE strings), import
    ``custom_imports`` and warn about unknown top-level keys. An mmdetection 3.x config is
    refused (:class:`~mmdet_like.engine.mmdet3_config.Mmdet3ConfigError`, naming the
    converter).

    A file that sets its own ``data_root`` re-derives the data paths it inherits from its
    bases' (:func:`reroot_inherited_data`); :func:`load_notes` gives the line saying so.

    Returns an :class:`mmengine.config.Config` (a dict with attribute access).
    """
    from mmdet_like.engine.mmdet3_config import refuse_mmdet3_config, refuse_mmdet3_source

    if not osp.isfile(filename):
        filename = _shipped_config_or_raise(filename)
    refuse_mmdet3_source(filename)  # before its _base_ files, which may be mmdetection's
    files = check_config_bases(filename)
    notes = []
    try:
        with _rerooting_merges(notes):
            cfg = Config.fromfile(filename, import_custom_modules=False)
    except Exception as exc:  # mmengine's errors do not say which file
        raise ConfigError(f"{_failing_file(files)}: {type(exc).__name__}: {exc}") from exc
    object.__setattr__(cfg, "_load_notes", notes)  # not a config key: not dumped
    refuse_mmdet3_config(cfg, filename)
    if cfg_options:
        if not isinstance(cfg_options, dict):
            cfg_options = parse_cfg_options(cfg_options)
        for key, value in cfg_options.items():
            try:
                cfg.merge_from_dict({key: value})
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                raise ConfigError(
                    f"{filename}: --cfg-options {key}={value!r} cannot be applied: "
                    f"{str(exc).strip(chr(34))}"
                ) from exc
    import_custom_modules(cfg)
    if warn_unknown_keys:
        for message in unknown_top_level_keys(cfg, filename):
            warnings.warn(message, ConfigKeyWarning, stacklevel=2)
    return cfg
