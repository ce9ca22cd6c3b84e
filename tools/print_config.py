"""Print a config after ``_base_`` merging and ``--cfg-options``.

python tools/print_config.py CONFIG [--cfg-options KEY=VALUE ...]
"""

import argparse
import sys

from mmdet_like.engine import add_cfg_options_argument, load_config
from mmdet_like.errors import run_tool


def main(argv=None):
    parser = argparse.ArgumentParser(description="Print the merged config")
    parser.add_argument("config", help="config file")
    add_cfg_options_argument(parser)
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    print(cfg.pretty_text)


if __name__ == "__main__":
    sys.exit(run_tool(main))
