"""Registered metrics and the evaluator that runs them.

A metric object (``METRICS``) computes named floats from a dataset's ground truth
(:class:`~mmdet_like.structures.DatasetGroundTruth`) and the predictions of every image:
the detector's ``pred_instances`` (``bboxes``, ``scores``, ``labels`` [, ``masks``,
``keypoints``]; an RPN's without ``labels``), read as they come. Predicted data samples and
results in mmdetection's per-class format (a ``results.pkl``) are turned into them once, on
the way in (:func:`~mmdet_like.evaluation.predictions.as_predictions`).
:func:`build_evaluator` turns the ``evaluation=dict(metric=...)`` of a config (or
``tools/test.py --eval``) into an :class:`Evaluator`: metric names (``"bbox"``, ``"mAP"``,
...) go to the metric class that answers to them, with the options that class takes;
``dict(type=...)`` entries are built from the registry as they are.

A new metric is one class: subclass :class:`BaseMetric`, set ``names``, implement
``compute``, register it with ``@METRICS.register()``.
"""

import abc
import difflib
import inspect

from mmdet_like.errors import ProjectError
from mmdet_like.evaluation.coco_metric import METRICS as COCO_METRIC_NAMES
from mmdet_like.evaluation.coco_metric import evaluate_coco
from mmdet_like.evaluation.predictions import as_predictions, box_score_rows
from mmdet_like.evaluation.recall import eval_recalls, print_recall_summary
from mmdet_like.evaluation.voc_metric import evaluate_voc
from mmdet_like.registry import METRICS, build_from_cfg


class EvaluationError(ProjectError, ValueError):
    """A metric that cannot be built or cannot run on the ground truth it was given."""


# what a model predicts, as :func:`mmdet_like.apis.startup_check.model_outputs` names it
OUTPUT_WORDS = {
    "boxes": "boxes with classes",
    "masks": "masks",
    "keypoints": "keypoints",
    "proposals": "class-agnostic proposals (an RPN)",
}


class BaseMetric(abc.ABC):
    """A metric: ``compute(results, ground_truth, logger) -> dict of floats``.

    ``names`` are the metric names (``evaluation=dict(metric=...)``) this class answers to;
    ``needs`` maps a name to the model outputs it can be computed from (any one of them:
    ``"boxes"``, ``"masks"``, ``"keypoints"``, ``"proposals"``; a name not in it runs on any).
    """

    names = ()
    needs = {}

    def __init__(self, metric=None):
        metrics = list(self.names[:1]) if metric is None else metric
        self.metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in self.metrics if m not in self.names]
        if unknown:
            raise EvaluationError(
                f"{type(self).__name__}: metric(s) {unknown} not supported; it computes "
                f"{list(self.names)}"
            )

    def check_ground_truth(self, ground_truth, where=None):  # noqa: B027 (most metrics run anywhere)
        """Raise :class:`EvaluationError` when this metric cannot run on ``ground_truth``
        (called at start-up, before any inference; ``where`` names the dataset's config
        key in the message). Every metric runs on every dataset unless it says otherwise."""

    def check_model_outputs(self, outputs, model_name, where=None):
        """Raise :class:`EvaluationError` when a metric needs a prediction that a model
        predicting ``outputs`` (a set of the words of ``needs``) does not make (called at
        start-up, before any inference)."""
        named = f"{where}: " if where else ""
        for metric in self.metrics:
            needs = self.needs.get(metric)
            if needs is None or set(needs) & set(outputs):
                continue
            predicts = " and ".join(OUTPUT_WORDS[o] for o in sorted(outputs))
            usable = [n for n in self.names if set(self.needs.get(n, outputs)) & set(outputs)]
            raise EvaluationError(
                f"{named}metric {metric!r} needs {OUTPUT_WORDS[needs[0]]} and the model "
                f"({model_name}) predicts {predicts}: drop {metric!r} from the metrics (this "
                f"model can be evaluated with {usable}), or test a model that predicts them"
            )

    @abc.abstractmethod
    def compute(self, results, ground_truth, logger=None):
        """The metric's floats of ``results`` (per image, the predictions'
        :class:`~mmdet_like.structures.InstanceData`) against ``ground_truth``."""

    def __call__(self, results, ground_truth, logger=None):
        results = as_predictions(results, len(ground_truth.class_names) or None)
        if len(results) != len(ground_truth):
            raise EvaluationError(
                f"{type(self).__name__}: {len(results)} results for {len(ground_truth)} images "
                f"of {ground_truth.source}"
            )
        return self.compute(results, ground_truth, logger)


@METRICS.register()
class CocoMetric(BaseMetric):
    """COCO ``bbox`` / ``segm`` / ``keypoints`` AP and AR, ``proposal`` AR (pycocotools) and
    ``proposal_fast`` (our recall); see :func:`evaluate_coco` for the options. Needs a
    COCO-format ground truth (``ground_truth.coco``); ``keypoints`` takes the OKS sigmas of
    the ground truth's keypoint set (``ground_truth.keypoint_sigmas``)."""

    names = COCO_METRIC_NAMES
    needs = {"bbox": ("boxes",), "segm": ("masks",), "keypoints": ("keypoints",)}

    def __init__(self, metric="bbox", classwise=False, proposal_nums=(100, 300, 1000),
                 iou_thrs=None, jsonfile_prefix=None, backend="pycocotools"):  # fmt: skip
        super().__init__(metric)
        self.classwise = classwise
        self.proposal_nums = proposal_nums
        self.iou_thrs = iou_thrs
        self.jsonfile_prefix = jsonfile_prefix
        self.backend = backend

    def check_ground_truth(self, ground_truth, where=None):
        named = f"{where}: " if where else ""
        if "keypoints" in self.metrics and ground_truth.keypoint_sigmas is None:
            raise EvaluationError(
                f"{named}metric 'keypoints' needs the OKS sigmas of the dataset's keypoint "
                f"set, and {ground_truth.source} declares none: a dataset without keypoints, "
                "or a keypoint set other than COCO person's without keypoint_meta=dict("
                "sigmas=[...]) in its config"
            )
        if ground_truth.coco is None or ground_truth.cat_ids is None:
            named = f"{where}: " if where else ""
            raise EvaluationError(
                f"{named}metric {', '.join(map(repr, self.metrics))} (CocoMetric) needs COCO "
                f"annotations, and {ground_truth.source} is not a COCO annotation file; use "
                "metric='mAP' (VOC-style) or 'recall', or convert the annotations to COCO "
                "(tools/dataset_converters/)"
            )

    def compute(self, results, ground_truth, logger=None):
        self.check_ground_truth(ground_truth)
        gt_bboxes = None
        if "proposal_fast" in self.metrics:
            gt_bboxes = [a["bboxes"] for a in ground_truth.annotations()]
        return evaluate_coco(
            ground_truth.coco, results, img_ids=ground_truth.img_ids,
            cat_ids=ground_truth.cat_ids, metric=self.metrics,
            class_names=ground_truth.class_names, classwise=self.classwise,
            proposal_nums=self.proposal_nums, iou_thrs=self.iou_thrs,
            jsonfile_prefix=self.jsonfile_prefix, backend=self.backend, gt_bboxes=gt_bboxes,
            logger=logger, keypoint_sigmas=ground_truth.keypoint_sigmas,
        )  # fmt: skip


@METRICS.register()
class VOCMetric(BaseMetric):
    """VOC-style ``mAP`` (area or 11 points) at one or more IoU thresholds, with a
    per-class table; ignore boxes are neither true nor false positives."""

    names = ("mAP",)
    needs = {"mAP": ("boxes",)}

    def __init__(self, metric="mAP", iou_thrs=(0.5,), ap_mode="area"):
        super().__init__(metric)
        self.iou_thrs = iou_thrs
        self.ap_mode = ap_mode

    def compute(self, results, ground_truth, logger=None):
        return evaluate_voc(
            results, ground_truth.annotations(), ground_truth.class_names, self.iou_thrs,
            self.ap_mode, logger,
        )  # fmt: skip


@METRICS.register()
class RecallMetric(BaseMetric):
    """Proposal ``recall`` at ``proposal_nums`` and ``iou_thrs``: ``AR@N`` (mean over the
    thresholds) and ``recall@N@IoU``."""

    names = ("recall",)
    needs = {"recall": ("proposals",)}

    def __init__(self, metric="recall", proposal_nums=(100, 300, 1000), iou_thrs=(0.5,)):
        super().__init__(metric)
        self.proposal_nums = proposal_nums
        self.iou_thrs = iou_thrs

    def compute(self, results, ground_truth, logger=None):
        gts = [a["bboxes"] for a in ground_truth.annotations()]
        proposals = [box_score_rows(pred) for pred in results]
        recalls = eval_recalls(gts, proposals, self.proposal_nums, self.iou_thrs)
        print_recall_summary(recalls, self.proposal_nums, self.iou_thrs, logger=logger)
        out = {}
        for i, num in enumerate(self.proposal_nums):
            out[f"AR@{num}"] = float(recalls[i].mean())
            for j, thr in enumerate(self.iou_thrs):
                out[f"recall@{num}@{thr}"] = float(recalls[i, j])
        return out


class Evaluator:
    """Metrics run one after the other on the same results; their dicts merged (a later
    metric's key wins)."""

    def __init__(self, metrics):
        self.metrics = list(metrics)

    def __call__(self, results, ground_truth, logger=None):
        out = {}
        for metric in self.metrics:
            out.update(metric(results, ground_truth, logger))
        return out

    def __repr__(self):
        return f"Evaluator({[type(m).__name__ for m in self.metrics]})"


def metric_class_of(name):
    """The registered metric class that computes the metric ``name``."""
    for entry in METRICS.names:
        cls = METRICS.get(entry)
        if name in getattr(cls, "names", ()):
            return cls
    known = sorted({n for e in METRICS.names for n in getattr(METRICS.get(e), "names", ())})
    same_but_case = [k for k in known if k.lower() == str(name).lower()]
    close = same_but_case or difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise EvaluationError(
        f"evaluation: unknown metric {name!r}.{hint} Known metrics: {known} (names are "
        "case-sensitive)"
    )


def _accepted(cls, options):
    params = inspect.signature(cls).parameters
    return {k: v for k, v in options.items() if k in params and k != "metric"}


def build_evaluator(metric, strict=True, **options):
    """An :class:`Evaluator` for ``metric``: a name, a ``dict(type=...)`` or a list of
    them. Names that one class computes are grouped into one object of it; ``options``
    (e.g. ``classwise``, ``iou_thrs``, ``proposal_nums``) go to each class that takes them,
    and an option no metric takes is an error (``strict=False``: dropped, for callers that
    pass one fixed set of options whatever the metric, as ``dataset.evaluate`` does)."""
    entries = [metric] if isinstance(metric, (str, dict)) else list(metric)
    grouped, built = {}, []
    for entry in entries:
        if isinstance(entry, dict):
            built.append(build_from_cfg(entry, METRICS))
        else:
            grouped.setdefault(metric_class_of(entry), []).append(entry)
    used = set()
    for cls, names in grouped.items():
        kwargs = _accepted(cls, options)
        used.update(kwargs)
        built.append(cls(metric=names, **kwargs))
    unused = sorted(set(options) - used) if grouped and strict else []
    if unused:
        raise EvaluationError(
            f"evaluation: option(s) {unused} are not taken by the metric(s) "
            f"{[type(m).__name__ for m in built]}; remove them or fix the names"
        )
    return Evaluator(built)
