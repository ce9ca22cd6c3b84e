"""The PEP 517 build backend of mmdet_like: setuptools', asking for torch (and ninja) in the
build environment only where the compiled ops are built.

``pip install .`` builds in an isolated environment holding what the backend asks for. The
ops compile against torch, so a build with them needs it there; one without them
(``MMDET_LIKE_WITH_OPS=0``) is pure Python and needs no torch to build (setup.py imports it
only for the ops), so pip does not fetch one into the throw-away build environment.
"""

import os

from setuptools.build_meta import (  # noqa: F401  (the rest of the hooks, unchanged)
    build_editable,
    build_sdist,
    build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

# What setuptools itself asks for (its hooks add "wheel" to pyproject.toml's requires);
# answered without running setup.py, which needs torch where it builds the ops: torch is
# only being asked for here.
SETUPTOOLS_BUILD_REQUIREMENTS = ["wheel"]
OPS_BUILD_REQUIREMENTS = ["ninja", "torch>=2.13"]


def ops_build_requirements():
    """What building the compiled ops needs beyond setuptools: none with
    ``MMDET_LIKE_WITH_OPS=0``."""
    if os.environ.get("MMDET_LIKE_WITH_OPS", "").strip() == "0":
        return []
    return list(OPS_BUILD_REQUIREMENTS)


def get_requires_for_build_wheel(config_settings=None):
    return SETUPTOOLS_BUILD_REQUIREMENTS + ops_build_requirements()


def get_requires_for_build_editable(config_settings=None):
    return SETUPTOOLS_BUILD_REQUIREMENTS + ops_build_requirements()


def get_requires_for_build_sdist(config_settings=None):
    return ops_build_requirements()  # the sdist lists the extension, made with torch's helpers
