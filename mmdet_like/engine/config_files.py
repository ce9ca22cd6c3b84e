"""The config files and tools that ship with mmdet_like, found by name.

A source checkout (or an editable install) reads them from the repository: ``configs/``,
``tools/`` and ``demo/`` beside the package. A wheel or a plain ``pip install .`` carries
copies in ``mmdet_like/.mim/`` (setup.py puts them there, as mmdetection does), so that an
installed package finds the same files without the repository::

    from mmdet_like import get_config
    cfg = get_config("mask_rcnn_r50_fpn_1x")           # a loaded Config
    get_config_path("demo/mask_rcnn_r18_fpn_demo")      # the file's path

A name is a config's path below ``configs/``, with or without ``.py``; a bare file name
(``mask_rcnn_r50_fpn_1x``) is enough when only one config has it.
"""

import difflib
import os
import os.path as osp

from mmdet_like.errors import ProjectError

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHIPPED_DIR = osp.join(PACKAGE_DIR, ".mim")
RESOURCE_KINDS = ("configs", "tools", "demo")


class ConfigNameError(ProjectError, LookupError):
    """No shipped config has this name, or more than one has it."""


def resource_root(kind):
    """The folder of the shipped ``configs``, ``tools`` or ``demo`` files.

    The repository's folder in a source checkout, else the installed copy in
    ``mmdet_like/.mim``. Raises :class:`ProjectError` when neither exists.
    """
    if kind not in RESOURCE_KINDS:
        raise ValueError(f"resource_root: kind must be one of {RESOURCE_KINDS}, got {kind!r}")
    checkout = osp.join(osp.dirname(PACKAGE_DIR), kind)
    if osp.isdir(checkout) and osp.isfile(osp.join(osp.dirname(PACKAGE_DIR), "setup.py")):
        return checkout
    shipped = osp.join(SHIPPED_DIR, kind)
    if osp.isdir(shipped):
        return shipped
    raise ProjectError(
        f"mmdet_like: no {kind}/ folder next to the package ({checkout}) and none installed "
        f"with it ({shipped}); reinstall mmdet_like with pip (the wheel carries them)"
    )


def list_configs():
    """Every shipped config name (path below ``configs/`` without ``.py``), sorted.

    ``_base_`` fragments are left out: they are not whole experiments.
    """
    root = resource_root("configs")
    names = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d != "_base_" and not d.startswith("."))
        for name in files:
            if name.endswith(".py"):
                rel = osp.relpath(osp.join(folder, name), root)
                names.append(rel[: -len(".py")].replace(os.sep, "/"))
    return sorted(names)


def get_config_path(name):
    """The path of the shipped config called ``name`` (see the module doc for names)."""
    stem = name[: -len(".py")] if name.endswith(".py") else name
    stem = stem.replace(os.sep, "/").strip("/")
    names = list_configs()
    if stem in names:
        return osp.join(resource_root("configs"), stem + ".py")
    by_file_name = [n for n in names if n.rsplit("/", 1)[-1] == stem]
    if len(by_file_name) == 1:
        return osp.join(resource_root("configs"), by_file_name[0] + ".py")
    if by_file_name:
        raise ConfigNameError(
            f"config name {name!r} is ambiguous: {', '.join(by_file_name)}; give the folder too"
        )
    close = difflib.get_close_matches(stem, names, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigNameError(
        f"no shipped config is called {name!r}{hint} (`mmdet-like list-configs` lists all "
        f"{len(names)})"
    )


def resolve_config_argument(path_or_name):
    """A tool's config argument as a file: itself where that file exists, else the shipped
    config of that name, else unchanged (so that the tool's own check reports it)."""
    if os.path.isfile(path_or_name):
        return path_or_name
    try:
        return get_config_path(path_or_name)
    except ConfigNameError:
        return path_or_name


def get_config(name, cfg_options=None):
    """Load the shipped config called ``name`` (``load_config`` on its path)."""
    from mmdet_like.engine.config import load_config

    return load_config(get_config_path(name), cfg_options)
