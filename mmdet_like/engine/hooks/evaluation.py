"""Evaluation during training: run inference on a loader, ``dataset.evaluate(results)``.

The interface the datasets implement: ``dataset.evaluate(results, logger=None, **kwargs)``
returns a dict ``{metric name: float}``; ``results[i]`` is the model's output for image
``i`` of the dataset. Inference calls ``model(return_loss=False, rescale=True, **batch)``,
which returns a list with one result per image of the batch.
"""

import os
import os.path as osp
import pickle
import shutil
import tempfile

import torch
import torch.distributed as dist
from tqdm import tqdm

from mmdet_like.engine.dist import get_dist_info
from mmdet_like.engine.hooks.hook import Hook
from mmdet_like.registry import HOOKS
from mmdet_like.structures.instances import compact_prediction


def _run_model(model, data_loader, show_progress, on_batch=None):
    from mmdet_like.engine.runner import move_to_device

    was_training = model.training
    model.eval()
    device = next(iter(model.parameters())).device
    world_size = get_dist_info()[1]
    results = []
    bar = tqdm(
        total=len(data_loader.dataset),
        desc="inference",
        disable=not show_progress,
        dynamic_ncols=True,
    )
    try:
        with torch.no_grad():
            for data_batch in data_loader:
                outputs = model(
                    return_loss=False, rescale=True, **move_to_device(data_batch, device)
                )
                if not isinstance(outputs, list | tuple):
                    raise TypeError(
                        f"inference returned a {type(outputs).__name__}; "
                        "model(return_loss=False, ...) must return a list with one "
                        "result per image"
                    )
                outputs = list(outputs)
                if on_batch is not None:
                    outputs = on_batch(data_batch, outputs)
                results.extend(outputs)
                bar.update(min(len(outputs) * world_size, bar.total - bar.n))
    finally:
        bar.close()
        model.train(was_training)
    return results


def compact_outputs(data_batch, outputs):
    """``on_batch`` step of the evaluation hooks: predicted data samples reduced to what the
    metrics read (meta and ``pred_instances`` on the CPU, masks as RLE), so the predictions
    of a whole validation set fit in memory; other outputs are kept as they are."""
    return [compact_prediction(o) for o in outputs]


def single_process_inference(model, data_loader, show_progress=True, on_batch=None):
    """Results for every image of ``data_loader.dataset``, in order.

    ``on_batch(data_batch, outputs)``, when given, is called after every batch with the
    (CPU) batch and the model's per-image results and returns the results to keep (e.g.
    masks compressed, or images drawn on the way).
    """
    return _run_model(model, data_loader, show_progress, on_batch)


def _interleave(parts, size):
    """Per-rank results of a non-shuffling ``DistributedSampler`` -> dataset order.

    Rank r holds images r, r + world_size, ... (the sampler pads every rank to the same
    length by wrapping around), so the dataset order reads the parts column by column.
    """
    lengths = {len(p) for p in parts}
    if len(lengths) != 1:
        raise RuntimeError(
            f"collect_results: ranks returned {[len(p) for p in parts]} results; a "
            "non-shuffling DistributedSampler gives every rank the same number"
        )
    ordered = [result for group in zip(*parts) for result in group]
    return ordered[:size]


def collect_results(part, size, tmpdir=None, gpu_collect=False):
    """Gather every rank's ``part`` into dataset order on rank 0 (``None`` on the others).

    ``gpu_collect=True``: through ``all_gather_object`` on the default process group (NCCL
    or gloo). Otherwise each rank pickles its part into ``tmpdir`` (a directory every rank
    sees; created by rank 0 when ``None`` and removed afterwards) and rank 0 reads them.
    Outside a process group, ``part[:size]``.
    """
    rank, world_size = get_dist_info()
    if world_size == 1:
        return list(part)[:size]
    if gpu_collect:
        parts = [None] * world_size
        dist.all_gather_object(parts, list(part))
        return _interleave(parts, size) if rank == 0 else None
    made_tmpdir = tmpdir is None
    if made_tmpdir:
        tmpdir = tempfile.mkdtemp(prefix="dist_test_") if rank == 0 else None
        holder = [tmpdir]
        dist.broadcast_object_list(holder, src=0)
        tmpdir = holder[0]
    os.makedirs(tmpdir, exist_ok=True)
    with open(osp.join(tmpdir, f"part_{rank}.pkl"), "wb") as f:
        pickle.dump(list(part), f, protocol=pickle.HIGHEST_PROTOCOL)
    dist.barrier()
    if rank != 0:
        dist.barrier()  # rank 0 is reading the parts
        return None
    parts = []
    for r in range(world_size):
        with open(osp.join(tmpdir, f"part_{r}.pkl"), "rb") as f:
            parts.append(pickle.load(f))
    for r in range(world_size):
        os.remove(osp.join(tmpdir, f"part_{r}.pkl"))
    if made_tmpdir:
        shutil.rmtree(tmpdir, ignore_errors=True)
    dist.barrier()
    return _interleave(parts, size)


def multi_process_inference(
    model,
    data_loader,
    show_progress=True,
    on_batch=None,
    tmpdir=None,
    gpu_collect=True,
    all_ranks=True,
):
    """Each rank runs its share (the loader's sampler must be a non-shuffling
    ``torch.utils.data.DistributedSampler``) and the results are gathered in dataset order
    (:func:`collect_results`): on every rank with ``all_ranks=True`` (``gpu_collect``
    only), else on rank 0 (``None`` on the others). The progress bar shows on rank 0.
    """
    rank, _ = get_dist_info()
    part = _run_model(model, data_loader, show_progress and rank == 0, on_batch)
    size = len(data_loader.dataset)
    if all_ranks:
        if not gpu_collect:
            raise ValueError("multi_process_inference: all_ranks=True needs gpu_collect=True")
        parts = [None] * get_dist_info()[1]
        dist.all_gather_object(parts, part)
        return _interleave(parts, size)
    return collect_results(part, size, tmpdir=tmpdir, gpu_collect=gpu_collect)


@HOOKS.register()
class EvalHook(Hook):
    """Evaluate ``dataloader`` every ``interval`` epochs (``by_epoch=False``: iterations, for
    iteration-based training); metrics go to the loggers.

    ``evaluator``: a callable ``(results, ground_truth, logger) -> dict`` (an
    :class:`mmdet_like.evaluation.Evaluator`, built by ``apis.train`` from the config's
    ``evaluation``), run on ``dataset.ground_truth()``. Without one, ``eval_kwargs`` are
    passed to ``dataset.evaluate`` (e.g. ``metric="bbox"``).
    ``tmpdir`` / ``gpu_collect`` choose how :class:`DistEvalHook` gathers results (see
    :func:`collect_results`); one process ignores them, so one ``evaluation`` config serves
    both.

    ``save_best`` (mmdetection v2's option): after each evaluation whose metric ``save_best``
    (``"auto"``: the first metric computed, e.g. ``bbox_mAP``) beats the best so far by
    ``rule`` (``"greater"``, the default, or ``"less"``), the weights are saved as
    ``best_<metric>_epoch_<N>.pth`` in the work dir and the previous best file is removed.
    The best score and file are part of the hook's state, so a resumed run keeps them.
    """

    priority = "LOW"

    def __init__(
        self,
        dataloader,
        interval=1,
        tmpdir=None,
        gpu_collect=True,
        evaluator=None,
        save_best=None,
        rule=None,
        by_epoch=True,
        **eval_kwargs,
    ):
        if not hasattr(dataloader, "dataset"):
            raise TypeError(f"EvalHook needs a DataLoader, got {type(dataloader).__name__}")
        if evaluator is not None and eval_kwargs:
            raise ValueError(
                f"EvalHook: options {sorted(eval_kwargs)} go to the evaluator when it is built, "
                "not to the hook"
            )
        self.dataloader = dataloader
        self.interval = interval
        self.by_epoch = by_epoch
        self.tmpdir = tmpdir
        self.gpu_collect = gpu_collect
        self.evaluator = evaluator
        self.eval_kwargs = eval_kwargs
        if rule not in (None, "greater", "less"):
            raise ValueError(f"EvalHook: rule must be 'greater' or 'less', got {rule!r}")
        if save_best is not None and not isinstance(save_best, str):
            raise ValueError(
                f"EvalHook: save_best must be a metric name or 'auto', got {save_best!r}"
            )
        self.save_best = save_best
        self.rule = rule or "greater"
        self.best_score = None
        self.best_checkpoint = None

    def state_dict(self):
        if self.save_best is None or self.best_score is None:
            return {}
        return {"best_score": float(self.best_score), "best_checkpoint": self.best_checkpoint}

    def load_state_dict(self, state):
        self.best_score = state.get("best_score")
        self.best_checkpoint = state.get("best_checkpoint")

    def _save_if_best(self, runner, metrics):
        key = next(iter(metrics)) if self.save_best == "auto" else self.save_best
        if key not in metrics:
            raise KeyError(
                f"evaluation.save_best={self.save_best!r}: the evaluation gave no such metric; "
                f"it gave {sorted(metrics)}"
            )
        score = float(metrics[key])
        better = self.best_score is None or (
            score > self.best_score if self.rule == "greater" else score < self.best_score
        )
        if not better:
            return
        previous = self.best_checkpoint
        self.best_score = score
        unit, number = ("epoch", runner.epoch + 1) if self.by_epoch else ("iter", runner.iter + 1)
        name = f"best_{key}_{unit}_{number}.pth"
        self.best_checkpoint = runner.save_checkpoint(runner.work_dir, name)
        if (
            previous
            and previous != self.best_checkpoint
            and osp.isfile(previous)
            and runner.rank == 0
        ):
            os.remove(previous)
        runner.logger.info("best %s so far: %.4f, saved as %s", key, score, self.best_checkpoint)

    def inference(self, runner):
        return single_process_inference(runner.model, self.dataloader, on_batch=compact_outputs)

    def _hooked_inference(self, runner):
        """:meth:`inference` between every hook's ``before_evaluation`` and
        ``after_evaluation`` (``EMAHook``: the averaged weights are evaluated)."""
        runner.notify_hooks("before_evaluation")
        try:
            return self.inference(runner)
        finally:
            runner.notify_hooks("after_evaluation")

    def evaluate(self, runner, results):
        dataset = self.dataloader.dataset
        if self.evaluator is not None:
            metrics = self.evaluator(results, dataset.ground_truth(), runner.logger)
        else:
            metrics = dataset.evaluate(results, logger=runner.logger, **self.eval_kwargs)
        if not isinstance(metrics, dict):
            raise TypeError(
                f"{type(self.dataloader.dataset).__name__}.evaluate returned a "
                f"{type(metrics).__name__}; expected a dict of metrics"
            )
        runner.log_buffer.eval_output.update({k: float(v) for k, v in metrics.items()})
        if self.save_best is not None:
            self._save_if_best(runner, metrics)
        return metrics

    def after_train_epoch(self, runner):
        if not self.by_epoch or not self.every_n_epochs(runner, self.interval):
            return
        results = self._hooked_inference(runner)
        if runner.rank == 0:
            self.evaluate(runner, results)

    def after_train_iter(self, runner):
        last = runner.max_iters is not None and runner.iter + 1 == runner.max_iters
        if self.by_epoch or not (self.every_n_iters(runner, self.interval) or last):
            return
        results = self._hooked_inference(runner)
        runner.model.train()  # back to training for the rest of the epoch
        if runner.rank == 0:
            self.evaluate(runner, results)
            runner.log_buffer.eval_iter = runner.iter + 1


@HOOKS.register()
class DistEvalHook(EvalHook):
    """:class:`EvalHook` for a process group: every rank infers its share, rank 0
    evaluates."""

    def inference(self, runner):
        return multi_process_inference(
            runner.model,
            self.dataloader,
            on_batch=compact_outputs,
            tmpdir=self.tmpdir,
            gpu_collect=self.gpu_collect,
            all_ranks=False,
        )
