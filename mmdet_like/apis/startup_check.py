"""Start-up checks of a model against its data, before any data goes through the model.

- :func:`check_class_counts`: every class count of the model config (the box head's, the
  mask head's, a single-stage head's, ... every ``num_classes`` but the RPN's) equals the
  number of classes of the dataset it trains or is tested on;
- :func:`check_evaluator`: the metrics can be computed on that dataset (COCO metrics need a
  COCO annotation file);
- :func:`load_checkpoint_for_testing`: the checkpoint fits the model (every weight, every
  shape) and was trained on the dataset's classes in the dataset's order; ``allow_partial``
  turns a refusal into a warning.

``tools/train.py``, ``tools/test.py``, ``tools/check_dataset.py`` and ``init_detector`` run
them; each mismatch is an error naming both sides and the config key to change.
"""

from mmdet_like.checkpoint_file import CheckpointError
from mmdet_like.engine import load_checkpoint
from mmdet_like.errors import ProjectError


class StartupCheckError(ProjectError, ValueError):
    """The model and its data (or checkpoint) do not fit; the message says which key to
    change."""


class CheckpointMismatchError(StartupCheckError, CheckpointError):
    """A checkpoint that does not fit the model it is loaded into for testing."""


def class_count_fields(model_cfg, path="model"):
    """``(config path, value)`` of every ``num_classes`` in a model config, the RPN's
    excepted (it scores one class, objectness, whatever the dataset has)."""
    found = []
    if isinstance(model_cfg, dict):
        for key, value in model_cfg.items():
            if key == "rpn_head":
                continue
            if key == "num_classes":
                found.append((f"{path}.num_classes", value))
            else:
                found.extend(class_count_fields(value, f"{path}.{key}"))
    elif isinstance(model_cfg, (list, tuple)):
        for i, value in enumerate(model_cfg):
            found.extend(class_count_fields(value, f"{path}[{i}]"))
    return found


def describe_dataset(dataset, split):
    """``data.train (VOCDataset, ann_file=...)`` for messages."""
    ann_file = getattr(dataset, "ann_file", None)
    where = f", {ann_file}" if ann_file else ""
    return f"data.{split} ({type(dataset).__name__}{where})"


def _shown_classes(classes, limit=8):
    names = [str(c) for c in classes]
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _keypoint_heads(model_cfg, path="model"):
    """``(config path, num_keypoints)`` of every keypoint head of a model config."""
    found = []
    if isinstance(model_cfg, dict):
        if model_cfg.get("type") == "KeypointRCNNHead":
            found.append((f"{path}.num_keypoints", model_cfg.get("num_keypoints", 17)))
        for key, value in model_cfg.items():
            found.extend(_keypoint_heads(value, f"{path}.{key}"))
    elif isinstance(model_cfg, (list, tuple)):
        for i, value in enumerate(model_cfg):
            found.extend(_keypoint_heads(value, f"{path}[{i}]"))
    return found


def check_keypoint_counts(model_cfg, dataset, split):
    """Raise :class:`StartupCheckError` when a keypoint head's ``num_keypoints`` differs
    from the keypoints of ``dataset``'s set, or the dataset has none to train it on."""
    heads = _keypoint_heads(model_cfg)
    if not heads or not hasattr(dataset, "keypoint_meta"):
        return
    meta = dataset.keypoint_meta
    if meta is None:
        raise StartupCheckError(
            f"{heads[0][0].rsplit('.', 1)[0]} predicts keypoints, but "
            f"{describe_dataset(dataset, split)} has none (no category lists 'keypoints'). "
            "Fix: use a keypoint annotation file (e.g. person_keypoints_*.json)"
        )
    wrong = [(path, value) for path, value in heads if value != meta.num_keypoints]
    if wrong:
        settings = " ".join(f"{path}={meta.num_keypoints}" for path, _ in wrong)
        raise StartupCheckError(
            f"{wrong[0][0]} is {wrong[0][1]!r}, but {describe_dataset(dataset, split)} has "
            f"{meta.num_keypoints} keypoints ({', '.join(meta.names)}). Fix: set {settings} "
            "in the config (or with --cfg-options)"
        )


def check_class_counts(model_cfg, dataset, split):
    """Raise :class:`StartupCheckError` when a ``num_classes`` of ``model_cfg`` differs from
    the number of classes of ``dataset`` (``data.<split>``), or a keypoint head's
    ``num_keypoints`` from its keypoints."""
    check_keypoint_counts(model_cfg, dataset, split)
    classes = getattr(dataset, "CLASSES", None)
    if classes is None:
        return
    count = len(classes)
    wrong = [(path, value) for path, value in class_count_fields(model_cfg) if value != count]
    if not wrong:
        return
    lines = [f"{path} is {value!r}" for path, value in wrong]
    settings = " ".join(f"{path}={count}" for path, _ in wrong)
    raise StartupCheckError(
        f"{'; '.join(lines)}, but {describe_dataset(dataset, split)} has {count} classes: "
        f"{_shown_classes(classes)}. Fix: set {settings} in the config (or with "
        f"--cfg-options {settings}), or name the {wrong[0][1]} classes the model predicts in "
        f"data.{split}.classes"
    )


def check_evaluator(evaluator, ground_truth, split="val"):
    """Every metric of ``evaluator`` can run on ``ground_truth`` (before any inference)."""
    for metric in getattr(evaluator, "metrics", []):
        check = getattr(metric, "check_ground_truth", None)
        if check is not None:
            check(ground_truth, f"data.{split}")


def model_outputs(model):
    """What ``model`` (a detector, possibly wrapped) predicts: ``{"proposals"}`` for an RPN,
    else ``"boxes"`` plus ``"masks"`` and ``"keypoints"`` when it has those heads."""
    model = getattr(model, "module", model)
    from mmdet_like.models.detectors.rpn import RPN

    if isinstance(model, RPN):
        return {"proposals"}
    outputs = {"boxes"}
    if getattr(model, "with_mask", False):
        outputs.add("masks")
    if getattr(getattr(model, "roi_head", None), "with_keypoint", False):
        outputs.add("keypoints")
    return outputs


def check_evaluator_outputs(evaluator, model, where="evaluation.metric"):
    """Every metric of ``evaluator`` can be computed from what ``model`` predicts (before any
    inference): e.g. ``segm`` needs a mask head. ``where``: the option that named the
    metrics, for the message."""
    outputs = model_outputs(model)
    name = type(getattr(model, "module", model)).__name__
    for metric in getattr(evaluator, "metrics", []):
        check = getattr(metric, "check_model_outputs", None)
        if check is not None:
            check(outputs, name, where)


def _classes_problem(checkpoint_classes, dataset_classes, split):
    ours, theirs = [str(c) for c in checkpoint_classes], [str(c) for c in dataset_classes]
    if ours == theirs:
        return None
    if sorted(ours) == sorted(theirs):
        return (
            f"the checkpoint was trained on the classes ({', '.join(ours)}) in that order, but "
            f"data.{split} names them ({', '.join(theirs)}): its label {theirs.index(ours[0])} "
            f"would be scored as {theirs[0]!r}, not {ours[0]!r}. Fix: set "
            f"data.{split}.classes={tuple(ours)!r} (the checkpoint's order)"
        )
    return (
        f"the checkpoint was trained on the classes ({_shown_classes(ours)}), data.{split} has "
        f"({_shown_classes(theirs)}). Fix: test on the dataset the checkpoint was trained for, "
        f"or set data.{split}.classes to the checkpoint's classes"
    )


def load_checkpoint_for_testing(
    model, filename, dataset_classes=None, split="test", allow_partial=False, logger=None
):
    """Load ``filename`` into ``model`` for testing; returns the checkpoint dict.

    Refused (:class:`StartupCheckError`) unless ``allow_partial``: a weight of the model
    the checkpoint lacks, a weight of the checkpoint the model lacks, a weight of another
    shape (e.g. another class count), or classes (``meta["CLASSES"]``) other than
    ``dataset_classes`` or in another order. With ``allow_partial`` the mismatches are
    reported in the log and the unloaded weights keep their initial values.
    """
    try:
        checkpoint = load_checkpoint(
            model, filename, map_location="cpu", strict=not allow_partial, logger=logger
        )
    except CheckpointError as exc:
        if allow_partial or "weights not loaded" not in str(exc):
            raise
        raise CheckpointMismatchError(
            f"{filename} does not fit the model of the config: {exc}\nFix: test with the config "
            "the checkpoint was trained with, or pass --allow-partial to evaluate anyway with "
            "the weights above left at their initial (random) values"
        ) from exc
    if "source_state_dict" in checkpoint and logger is not None:
        logger.info(
            "%s: loaded its averaged weights (state_dict, written by EMAHook); the weights they "
            "average are in its source_state_dict",
            filename,
        )
    classes = (checkpoint.get("meta") or {}).get("CLASSES")
    if classes is not None and dataset_classes is not None:
        problem = _classes_problem(classes, dataset_classes, split)
        if problem is not None:
            if not allow_partial:
                raise CheckpointMismatchError(f"{filename}: {problem} (or pass --allow-partial)")
            if logger is not None:
                logger.warning("%s: %s", filename, problem)
    return checkpoint
