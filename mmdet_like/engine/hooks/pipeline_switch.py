"""Another training pipeline for the last epochs: ``PipelineSwitchHook``."""

import numbers

from mmdet_like.engine.config import ConfigError
from mmdet_like.engine.hooks.hook import Hook
from mmdet_like.registry import HOOKS, PIPELINES, BuildError, RegistryError, build_from_cfg

WHERE = "custom_hooks PipelineSwitchHook"


def pipeline_holders(dataset):
    """The datasets whose ``pipeline`` makes the items of ``dataset``: ``dataset`` itself
    when it has a pipeline of its own (a wrapper that mixes images, such as mmdetection's
    ``MultiImageMixDataset``, included), else those of the dataset it wraps
    (``RepeatDataset``, ``ClassBalancedDataset``, the loader's ``SeededSamples``, torch's
    ``Subset``: attribute ``dataset``) or of each it joins (``ConcatDataset``: ``datasets``).
    Attributes are read from each object's own ``__dict__``: a wrapper that forwards
    attribute reads (``SeededSamples``) would take an assignment to itself."""
    own = getattr(dataset, "__dict__", {})
    if "pipeline" in own:
        return [dataset]
    children = own.get("datasets")
    if isinstance(children, list | tuple):
        return [holder for child in children for holder in pipeline_holders(child)]
    inner = own.get("dataset")
    if inner is not None:
        return pipeline_holders(inner)
    return []


@HOOKS.register()
class PipelineSwitchHook(Hook):
    """Train the epochs after the first ``switch_epoch`` with ``switch_pipeline``.

    mmdetection 3's hook of this name (YOLOX and RTMDet turn off Mosaic and MixUp for their
    last epochs: ``switch_epoch = max_epochs - num_last_epochs``)::

        custom_hooks = [
            dict(type="PipelineSwitchHook", switch_epoch=285, switch_pipeline=[
                dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True),
                ...,
            ]),
        ]

    Before the training epoch whose index ``runner.epoch`` (epochs done) reaches
    ``switch_epoch``, the train dataset's pipeline becomes ``switch_pipeline`` (built with
    the class of the pipeline it replaces, i.e. ``Compose``): the outermost dataset with a
    pipeline of its own (:func:`pipeline_holders`; every dataset of a ``ConcatDataset``).
    The loader's workers see it: the runner starts new workers each epoch, and a loader
    with ``persistent_workers=True`` has its workers shut down, so that the epoch starts
    new ones. A run resumed at or after ``switch_epoch`` (an epoch or a mid-epoch
    checkpoint) switches before its first epoch, so it trains as the uninterrupted run did.
    With ``IterBasedRunner`` an epoch is one pass over the loader.

    The transforms are built when the hook is (a misspelt transform stops the run at its
    start, not at the switch).
    """

    priority = "NORMAL"

    def __init__(self, switch_epoch, switch_pipeline):
        if (
            not isinstance(switch_epoch, numbers.Integral)
            or isinstance(switch_epoch, bool)
            or switch_epoch < 0
        ):
            raise ConfigError(
                f"{WHERE}: switch_epoch must be a whole number >= 0 (the number of epochs "
                f"trained with the first pipeline), got {switch_epoch!r}. Fix: e.g. "
                "switch_epoch=total_epochs - 15 for 15 last epochs without Mosaic / MixUp"
            )
        if not isinstance(switch_pipeline, list | tuple) or not switch_pipeline:
            raise ConfigError(
                f"{WHERE}: switch_pipeline must be a non-empty list of transform configs "
                f"(dict(type=...)), as data.train.pipeline, got {switch_pipeline!r}"
            )
        self.switch_epoch = int(switch_epoch)
        self.switch_pipeline = list(switch_pipeline)
        self._build()  # every transform can be built: fail now, not at the switch
        self._switched = False

    def _build(self):
        transforms = []
        for index, step in enumerate(self.switch_pipeline):
            if isinstance(step, dict):
                try:
                    transforms.append(build_from_cfg(step, PIPELINES))
                except (RegistryError, BuildError) as exc:
                    raise ConfigError(
                        f"{WHERE}: switch_pipeline[{index}] ({step.get('type')}): {exc}"
                    ) from exc
            elif callable(step):
                transforms.append(step)
            else:
                raise ConfigError(
                    f"{WHERE}: switch_pipeline[{index}] must be a transform config "
                    f"(dict(type=...)) or a callable, got {step!r}"
                )
        return transforms

    def before_run(self, runner):
        self._switched = False
        if runner.max_epochs is not None and self.switch_epoch >= runner.max_epochs:
            runner.logger.warning(
                "PipelineSwitchHook: switch_epoch=%d but the run has %d epochs: the pipeline "
                "is never switched. Fix: switch_epoch below total_epochs",
                self.switch_epoch,
                runner.max_epochs,
            )

    def before_train_epoch(self, runner):
        if self._switched or runner.epoch < self.switch_epoch:
            return
        loader = runner.data_loader
        holders = pipeline_holders(loader.dataset)
        if not holders:
            raise ConfigError(
                f"{WHERE}: the train dataset ({type(loader.dataset).__name__}) has no "
                "pipeline to switch (no 'pipeline' attribute on it or on the datasets it "
                "wraps). Remove the hook, or give the dataset a pipeline"
            )
        for holder in holders:
            current = holder.pipeline
            if not hasattr(current, "transforms"):
                raise ConfigError(
                    f"{WHERE}: {type(holder).__name__}.pipeline is a "
                    f"{type(current).__name__}, not a Compose of transforms; the hook "
                    "replaces Compose pipelines only"
                )
            holder.pipeline = type(current)(self._build())
            check = getattr(holder, "_check_masks_for_pipeline", None)
            if check is not None:  # CustomDataset: refuse masks the annotations lack
                check()
        iterator = getattr(loader, "_iterator", None)
        if getattr(loader, "persistent_workers", False) and iterator is not None:
            # the workers hold a copy of the dataset: end them, the epoch starts new ones
            iterator._shutdown_workers()
            loader._iterator = None
        self._switched = True
        names = [
            step.get("type") if isinstance(step, dict) else type(step).__name__
            for step in self.switch_pipeline
        ]
        runner.logger.info(
            "PipelineSwitchHook: from epoch %d on the train pipeline is [%s]",
            runner.epoch + 1,
            ", ".join(map(str, names)),
        )
