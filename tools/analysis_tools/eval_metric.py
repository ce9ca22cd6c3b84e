"""Evaluate saved results (``tools/test.py --out results.pkl``) without the model.

    python tools/analysis_tools/eval_metric.py CONFIG results.pkl --eval bbox segm
        [--eval-options KEY=VALUE ...] [--cfg-options KEY=VALUE ...]

Builds the config's test dataset and evaluates the results as ``tools/test.py --eval``
does (the registered metrics on the dataset's ground truth; ``dataset.evaluate`` for a
dataset without one), and prints the same ``name: value`` lines.
"""

import argparse
import sys

from mmdet_like.apis.analysis import load_results, load_test_dataset
from mmdet_like.apis.startup_check import check_evaluator
from mmdet_like.engine import CfgOptionsAction, add_cfg_options_argument, get_logger
from mmdet_like.errors import run_tool
from mmdet_like.evaluation import build_evaluator


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Evaluate saved detection results")
    parser.add_argument("config", help="config file (its data.test is the ground truth)")
    parser.add_argument("results", help="results pickle written by tools/test.py --out")
    parser.add_argument(
        "--eval",
        nargs="+",
        required=True,
        metavar="METRIC",
        help="metrics, e.g. bbox segm proposal (COCO) or mAP (VOC)",
    )
    parser.add_argument(
        "--eval-options",
        nargs="+",
        action=CfgOptionsAction,
        default={},
        metavar="KEY=VALUE",
        help="keyword arguments of the metrics, e.g. classwise=True",
    )
    add_cfg_options_argument(parser, example="data.test.ann_file=...")
    return parser.parse_args(argv)


def evaluate(dataset, results, metrics, eval_options=None, logger=None):
    """The metrics of ``results`` on ``dataset``, computed as tools/test.py computes them."""
    eval_options = eval_options or {}
    if hasattr(dataset, "ground_truth"):
        evaluator = build_evaluator(metrics, **eval_options)
        check_evaluator(evaluator, dataset.ground_truth(), "test")
        return evaluator(results, dataset.ground_truth(), logger)
    return dataset.evaluate(results, metric=metrics, logger=logger, **eval_options)


def main(argv=None):
    args = parse_args(argv)
    cfg, dataset = load_test_dataset(args.config, args.cfg_options)
    logger = get_logger(log_level=cfg.get("log_level", "INFO"))
    results = load_results(args.results, len(dataset))
    metrics = evaluate(dataset, results, args.eval, args.eval_options, logger)
    for name, value in metrics.items():
        print(f"{name}: {float(value):.4f}")
    return metrics


if __name__ == "__main__":
    sys.exit(run_tool(main))
