"""Convert an mmdetection 3.x config to a config of mmdet_like.

python tools/misc/mmdet3_config_to_ours.py IN.py OUT.py

IN is read with its ``_base_`` files (mmdetection's own ``configs/_base_/...``: put them next
to IN at the paths its ``_base_`` names, or give a self-contained file). OUT gets the same
model, data, schedule and runtime in mmdet_like's (mmdetection 2.x-style) keys; what could
not be translated is listed in a comment block at its top and printed. OUT is then checked
as training checks a config. See docs/config.md, "mmdetection 3.x configs".
"""

import argparse
import os.path as osp
import sys

from mmdet_like.apis.config_check import check_config
from mmdet_like.apis.mmdet3_config import (
    Mmdet3ConversionError,
    convert_mmdet3_config,
    format_config,
    load_mmdet3_config,
)
from mmdet_like.engine import ConfigError, load_config
from mmdet_like.errors import run_tool


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert an mmdetection 3.x config (with its _base_ files next to it) to "
        "a config of mmdet_like; what cannot be translated is listed at the top of OUT"
    )
    parser.add_argument("config", help="the mmdetection 3.x config (.py)")
    parser.add_argument("out", help="the config of ours to write (.py)")
    args = parser.parse_args(argv)
    if osp.abspath(args.out) == osp.abspath(args.config):
        raise Mmdet3ConversionError(f"{args.out}: OUT must not be the input config")
    if not args.out.endswith(".py"):
        raise Mmdet3ConversionError(f"{args.out}: OUT must be a .py file")
    conversion = convert_mmdet3_config(load_mmdet3_config(args.config), args.config)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(format_config(conversion))
    print(f"wrote {args.out}")
    if conversion.untranslated:
        print(f"not translated ({len(conversion.untranslated)}; listed at the top of {args.out}):")
        for item in conversion.untranslated:
            print(f"  - {item}")
    for note in conversion.notes:
        print(f"note: {note}")
    try:
        check_config(load_config(args.out, warn_unknown_keys=False), args.out)
    except ConfigError as exc:
        raise Mmdet3ConversionError(
            f"{args.out} was written but does not pass the config check: {exc}"
        ) from exc
    print(f"{args.out} passes the config check")


if __name__ == "__main__":
    sys.exit(run_tool(main))
