"""COCO error analysis: precision-recall curves broken down by the kind of error.

    python tools/analysis_tools/coco_error_analysis.py RESULTS.bbox.json OUT_DIR
        --ann ANN.json [--types bbox segm] [--extraplots] [--areas 1024 9216 1e10]

``RESULTS`` is a COCO results file (``tools/test.py CONFIG CKPT --format-only
--eval-options jsonfile_prefix=PREFIX`` writes ``PREFIX.bbox.json`` and, for a mask
model, ``PREFIX.segm.json``, the one to give with ``--types segm``), ``--ann`` the COCO
annotation file it was made on. For each category and area range (all, small, medium,
large), and for their mean, the picture stacks the PR curves C75, C50, Loc, Sim, Oth, BG
and FN (each one forgiving one more kind of error; see
``mmdet_like/evaluation/error_analysis.py``), each labelled with its AP. Writes
``OUT_DIR/<type>/<type>-<class>-<area>.png``, ``<type>-allclass-<area>.png``, with
``--extraplots`` bar charts of the APs by area (``<type>-<class>-bars.png``), and
``summary.json`` (each curve's AP, overall and per category).
"""

import argparse
import sys

from mmdet_like.errors import run_tool
from mmdet_like.evaluation.error_analysis import (
    AREA_NAMES,
    CURVES,
    DEFAULT_AREAS,
    analyze_errors,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="COCO error analysis (PR curves by error type)")
    parser.add_argument("results", help="COCO results json (PREFIX.bbox.json / .segm.json)")
    parser.add_argument("out_dir", help="folder for the pictures and summary.json")
    parser.add_argument("--ann", required=True, help="COCO annotation json of the results")
    parser.add_argument("--types", nargs="+", choices=["bbox", "segm"], default=["bbox"],
                        help="IoU types to analyse (default: bbox)")  # fmt: skip
    parser.add_argument("--extraplots", action="store_true",
                        help="also bar charts of each curve's AP by area range")  # fmt: skip
    parser.add_argument("--areas", nargs=3, type=float, default=list(DEFAULT_AREAS),
                        metavar=("SMALL", "MEDIUM", "MAX"),
                        help="area bounds (pixels) of small / medium / large (default: "
                        "COCO's 1024 9216 1e10)")  # fmt: skip
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    summaries = analyze_errors(args.results, args.ann, args.out_dir, args.types,
                               args.extraplots, tuple(args.areas))  # fmt: skip
    for iou_type, summary in summaries.items():
        print(f"{iou_type}: AP of each curve, mean over the categories with ground truth")
        print(f"{'area':8}{'classes':>8}" + "".join(f"{c:>8}" for c in CURVES))
        for area in AREA_NAMES:
            aps = summary["overall"][area]
            cells = "".join("     n/a" if aps[c] is None else f"{aps[c]:8.3f}" for c in CURVES)
            print(f"{area:8}{summary['categories_with_gt'][area]:8d}{cells}")
        print(f"pictures and summary.json written to {args.out_dir}/{iou_type}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
