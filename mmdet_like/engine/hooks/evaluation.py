"""Evaluation during training: run inference on a loader, ``dataset.evaluate(results)``.

The interface the datasets implement: ``dataset.evaluate(results, logger=None, **kwargs)``
returns a dict ``{metric name: float}``; ``results[i]`` is the model's output for image
``i`` of the dataset. Inference calls ``model(return_loss=False, rescale=True, **batch)``,
which returns a list with one result per image of the batch.
"""

import torch
import torch.distributed as dist
from tqdm import tqdm

from mmdet_like.engine.dist import get_dist_info
from mmdet_like.engine.hooks.hook import Hook
from mmdet_like.registry import HOOKS


def _run_model(model, data_loader, show_progress):
    from mmdet_like.engine.runner import move_to_device

    was_training = model.training
    model.eval()
    device = next(iter(model.parameters())).device
    results = []
    bar = tqdm(
        total=len(data_loader.dataset),
        desc="inference",
        disable=not show_progress,
        dynamic_ncols=True,
    )
    with torch.no_grad():
        for data_batch in data_loader:
            outputs = model(return_loss=False, rescale=True, **move_to_device(data_batch, device))
            if not isinstance(outputs, list | tuple):
                raise TypeError(
                    f"inference returned a {type(outputs).__name__}; "
                    "model(return_loss=False, ...) must return a list with one "
                    "result per image"
                )
            results.extend(outputs)
            bar.update(len(outputs) * get_dist_info()[1])
    bar.close()
    model.train(was_training)
    return results


def single_process_inference(model, data_loader, show_progress=True):
    """Results for every image of ``data_loader.dataset``, in order."""
    return _run_model(model, data_loader, show_progress)


def multi_process_inference(model, data_loader, show_progress=True):
    """Each rank runs its share (the loader's sampler must be a non-shuffling
    ``torch.utils.data.DistributedSampler``); every rank gets all results, in order.
    """
    rank, world_size = get_dist_info()
    part = _run_model(model, data_loader, show_progress and rank == 0)
    parts = [None] * world_size
    dist.all_gather_object(parts, part)
    # DistributedSampler gives rank r the images r, r + world_size, ... (padded).
    ordered = [result for group in zip(*parts) for result in group]
    return ordered[: len(data_loader.dataset)]


@HOOKS.register()
class EvalHook(Hook):
    """Evaluate ``dataloader`` every ``interval`` epochs; metrics go to the loggers.

    ``eval_kwargs`` are passed to ``dataset.evaluate`` (e.g. ``metric="bbox"``).
    """

    priority = "LOW"

    def __init__(self, dataloader, interval=1, **eval_kwargs):
        if not hasattr(dataloader, "dataset"):
            raise TypeError(f"EvalHook needs a DataLoader, got {type(dataloader).__name__}")
        self.dataloader = dataloader
        self.interval = interval
        self.eval_kwargs = eval_kwargs

    def inference(self, runner):
        return single_process_inference(runner.model, self.dataloader)

    def evaluate(self, runner, results):
        metrics = self.dataloader.dataset.evaluate(
            results, logger=runner.logger, **self.eval_kwargs
        )
        if not isinstance(metrics, dict):
            raise TypeError(
                f"{type(self.dataloader.dataset).__name__}.evaluate returned a "
                f"{type(metrics).__name__}; expected a dict of metrics"
            )
        runner.log_buffer.eval_output.update({k: float(v) for k, v in metrics.items()})
        return metrics

    def after_train_epoch(self, runner):
        if not self.every_n_epochs(runner, self.interval):
            return
        results = self.inference(runner)
        if runner.rank == 0:
            self.evaluate(runner, results)


@HOOKS.register()
class DistEvalHook(EvalHook):
    """:class:`EvalHook` for a process group: every rank infers its share, rank 0
    evaluates."""

    def inference(self, runner):
        return multi_process_inference(runner.model, self.dataloader)
