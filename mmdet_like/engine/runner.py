"""The epoch-based training loop.

The model contract (see docs/training.md): the runner calls ``model(**data_batch)`` and
expects a dict of losses, in train mode and (for the ``val`` workflow) in eval mode under
``torch.no_grad()``. :func:`parse_losses` sums every entry whose name contains ``"loss"``.
Everything else (optimizer steps, LR, checkpoints, logging) happens in hooks.
"""

import itertools
import math
import os
import os.path as osp
import time
from collections import OrderedDict

import torch
import torch.distributed as dist

from mmdet_like.engine.checkpoint import (
    CheckpointError,
    build_checkpoint,
    get_rng_states,
    load_checkpoint,
    load_checkpoint_file,
    load_checkpoint_weights,
    set_rng_states,
    write_checkpoint,
)
from mmdet_like.engine.dist import (
    all_reduce_mean,
    collective_failure,
    get_dist_info,
    is_distributed,
)
from mmdet_like.engine.hooks.checkpoint import CheckpointHook, update_latest
from mmdet_like.engine.hooks.hook import Hook, get_priority
from mmdet_like.engine.interrupts import SignalWatcher
from mmdet_like.engine.log_buffer import LogBuffer
from mmdet_like.engine.logging import get_logger
from mmdet_like.errors import ProjectError, StoppedBySignal
from mmdet_like.registry import HOOKS, RUNNERS, build_from_cfg
from mmdet_like.structures.instance_data import DetDataSample, InstanceData


class NonFiniteLossError(ProjectError, RuntimeError):
    """A loss became NaN or infinite during training."""


class NonFiniteWeightsError(NonFiniteLossError):
    """The weights became NaN or infinite (e.g. after a step on non-finite gradients); the
    checkpoint that would have held them is not written."""


class DataLoaderWorkerError(ProjectError, RuntimeError):
    """A data-loader worker process died (killed, crashed in native code, exited)."""


def _is_worker_death(exc):
    """Whether ``exc`` is torch's report of a data-loader worker that died."""
    text = str(exc)
    return "DataLoader worker (pid" in text and (
        "exited unexpectedly" in text or "killed by signal" in text
    )


def parse_losses(losses):
    """``(total_loss, log_vars)`` from the loss dict a model returns.

    Each value is a tensor (its mean is taken) or a list of tensors (the sum of their
    means). ``total_loss`` is the sum of the entries whose name contains ``"loss"``;
    ``log_vars`` maps every entry and ``"loss"`` to a float averaged over ranks.
    """
    if not isinstance(losses, dict):
        raise TypeError(
            f"the model returned a {type(losses).__name__}; the runner expects "
            "model(**data_batch) to return a dict of losses (see docs/training.md)"
        )
    terms = OrderedDict()
    for name, value in losses.items():
        if isinstance(value, torch.Tensor):
            terms[name] = value.mean()
        elif isinstance(value, list | tuple) and all(isinstance(v, torch.Tensor) for v in value):
            terms[name] = sum(v.mean() for v in value)
        else:
            raise TypeError(
                f"loss entry {name!r} is a {type(value).__name__}; expected a "
                "tensor or a list of tensors"
            )
    loss_terms = [v for k, v in terms.items() if "loss" in k]
    if not loss_terms:
        raise ValueError(
            f"the model returned no entry whose name contains 'loss' (entries: {list(terms)})"
        )
    total = sum(loss_terms)
    terms["loss"] = total
    values = torch.stack([v.detach().float().reshape(()) for v in terms.values()])
    values = all_reduce_mean(values).tolist()
    return total, OrderedDict(zip(terms, values))


def move_to_device(data, device):
    """``data`` (tensors in dicts / lists / tuples, data samples) with every tensor on
    ``device``."""
    if isinstance(data, torch.Tensor):
        return data.to(device, non_blocking=True)
    if isinstance(data, dict):
        return type(data)((k, move_to_device(v, device)) for k, v in data.items())
    if isinstance(data, list | tuple):
        return type(data)(move_to_device(v, device) for v in data)
    if isinstance(data, DetDataSample | InstanceData):
        return data.to(device)
    return data


def _batch_size(data_batch):
    for value in data_batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return value.shape[0]
        if isinstance(value, list | tuple):
            return len(value)
    return 1


def _is_collective_error(exc):
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return any(
        word in text
        for word in (
            "gloo",
            "nccl",
            "timed out",
            "connection closed",
            "connection reset",
            "broken pipe",
        )
    )


@RUNNERS.register()
class EpochBasedRunner:
    """Runs ``workflow`` (e.g. ``[("train", 1), ("val", 1)]``) for ``max_epochs`` epochs.

    Args:
        model: the model, possibly DDP-wrapped, already on its device.
        optimizer: a torch optimizer (None for evaluation-only runs).
        work_dir: where checkpoints and logs go (created on rank 0).
        logger: a ``logging.Logger`` (default: the ``mmdet_like`` logger).
        meta: plain values saved in every checkpoint (config text, seed, CLASSES, ...).
        max_epochs: number of training epochs.

    During :meth:`run` (from the main thread) SIGINT and SIGTERM stop the run after the
    iteration in progress, with an iteration checkpoint (see mmdet_like/engine/interrupts.py;
    ``handle_signals = False`` keeps the process's own handlers).
    """

    handle_signals = True

    def __init__(
        self, model, optimizer=None, work_dir=None, logger=None, meta=None, max_epochs=None
    ):
        self.model = model
        self.optimizer = optimizer
        self.rank, self.world_size = get_dist_info()
        self.work_dir = osp.abspath(work_dir) if work_dir else None
        if self.work_dir and self.rank == 0:
            os.makedirs(self.work_dir, exist_ok=True)
        self.logger = logger or get_logger()
        self.meta = dict(meta or {})
        self.timestamp = time.strftime("%Y%m%d_%H%M%S", time.localtime())
        self.device = next(
            itertools.chain(self.unwrapped_model.parameters(), [torch.empty(0)])
        ).device
        self.mode = None
        self.data_loader = None
        self.data_batch = None
        self.outputs = None
        self.log_buffer = LogBuffer()
        self.autocast_dtype = None  # set by OptimizerHook for mixed precision
        self.skip_nonfinite_loss = False  # set by OptimizerHook
        self.last_checkpoint = None
        self._hooks = []
        self._epoch = 0
        self._iter = 0
        self._inner_iter = 0
        self._resume_inner_iter = 0
        self._max_epochs = max_epochs
        self._max_iters = None
        self._stage = None
        self._signals = None  # the SignalWatcher while run() runs
        self._iter_limit = None  # IterBasedRunner: training ends after this many iterations
        self._loader_iter = None  # the data loader's iterator of the running epoch
        self.stop_reason = None  # set by request_stop

    # --------------------------------------------------------------------- properties
    @property
    def unwrapped_model(self):
        return self.model.module if hasattr(self.model, "module") else self.model

    @property
    def hooks(self):
        return list(self._hooks)

    @property
    def epoch(self):
        """Index of the current epoch (= number of finished epochs between epochs)."""
        return self._epoch

    @property
    def iter(self):
        """Number of training iterations finished (index of the current one)."""
        return self._iter

    @property
    def inner_iter(self):
        """Index of the current iteration within the epoch."""
        return self._inner_iter

    @property
    def max_epochs(self):
        return self._max_epochs

    @property
    def max_iters(self):
        return self._max_iters

    def current_lr(self):
        """Learning rate of each parameter group."""
        if self.optimizer is None:
            return []
        return [group["lr"] for group in self.optimizer.param_groups]

    # -------------------------------------------------------------------------- hooks
    def register_hook(self, hook, priority=None):
        """Insert ``hook`` after every hook of equal or higher priority (lower number)."""
        if not isinstance(hook, Hook):
            raise TypeError(f"{type(hook).__name__} is not a Hook")
        hook.priority = get_priority(priority if priority is not None else hook.priority)
        index = len(self._hooks)
        while index > 0 and self._hooks[index - 1].priority > hook.priority:
            index -= 1
        self._hooks.insert(index, hook)
        return hook

    def _hook_state_keys(self):
        """``(key, hook)`` for every hook: the key of its state in a checkpoint is its class
        name, with ``#k`` added for the k-th further hook of the same class (in running
        order), so two hooks of one class keep their own states."""
        seen = {}
        for hook in self._hooks:
            name = type(hook).__name__
            count = seen.get(name, 0)
            seen[name] = count + 1
            yield (name if count == 0 else f"{name}#{count}"), hook

    def register_hook_from_cfg(self, cfg, default_args=None):
        cfg = dict(cfg)
        priority = cfg.pop("priority", None)
        return self.register_hook(build_from_cfg(cfg, HOOKS, default_args), priority)

    def call_hook(self, stage):
        self._stage = stage
        for hook in self._hooks:
            getattr(hook, stage)(self)

    def notify_hooks(self, stage, *args):
        """Call ``stage`` of every hook in order with ``args``, for the stages that happen
        inside another one (``before_evaluation``, ``before_save_checkpoint``, ...): the
        stage the runner is in (which says what a checkpoint's progress is) stays."""
        for hook in self._hooks:
            getattr(hook, stage)(self, *args)

    def register_training_hooks(
        self,
        lr_config=None,
        optimizer_config=None,
        checkpoint_config=None,
        log_config=None,
        custom_hooks=None,
    ):
        """The standard hooks from their config dicts (see docs/config.md)."""
        from mmdet_like.engine.hooks.lr_updater import build_lr_updater_hook

        if lr_config is not None:
            self.register_hook(build_lr_updater_hook(lr_config))
        if optimizer_config is not None:
            cfg = dict(optimizer_config)
            cfg.setdefault("type", "OptimizerHook")
            self.register_hook_from_cfg(cfg)
        if checkpoint_config is not None:
            cfg = dict(checkpoint_config)
            cfg.setdefault("type", "CheckpointHook")
            self.register_hook_from_cfg(cfg)
        self.register_hook_from_cfg({"type": "IterTimerHook"})
        if log_config is not None:
            interval = log_config.get("interval", 50)
            for hook_cfg in log_config.get("hooks", [{"type": "TextLoggerHook"}]):
                self.register_hook_from_cfg(hook_cfg, {"interval": interval})
        for hook_cfg in custom_hooks or []:
            self.register_hook_from_cfg(hook_cfg)

    # ------------------------------------------------------------------------ running
    def run(self, data_loaders, workflow, max_epochs=None):
        """Run ``workflow`` until ``max_epochs`` training epochs are done (or a hook calls
        :meth:`request_stop`).

        ``data_loaders[i]`` is the loader of ``workflow[i]`` = ``(mode, epochs)`` with mode
        "train" or "val" (val = losses on the val set, no optimizer step).
        """
        if len(data_loaders) != len(workflow):
            raise ValueError(
                f"{len(data_loaders)} data loaders for a workflow of "
                f"{len(workflow)} phases {workflow}"
            )
        self._max_epochs = max_epochs if max_epochs is not None else self._max_epochs
        if self._max_epochs is None:
            raise ValueError("max_epochs is not set (config key total_epochs)")
        for (mode, epochs), loader in zip(workflow, data_loaders):
            if mode not in ("train", "val"):
                raise ValueError(f"workflow mode must be 'train' or 'val', got {mode!r}")
            if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
                raise ValueError(
                    f"workflow {workflow}: phase {mode!r} runs {epochs!r} epochs; each phase "
                    "needs a whole number of epochs >= 1"
                )
            if mode == "train":
                self._max_iters = self._iter_limit or self._max_epochs * len(loader)
        if not any(mode == "train" for mode, _ in workflow):
            raise ValueError(
                f"workflow {workflow} has no 'train' phase: the run ends after "
                f"{self._max_epochs} training epochs, so it would never end. Add "
                "('train', 1) to the workflow; to only evaluate a checkpoint use tools/test.py"
            )
        length = (
            f"{self._iter_limit} iterations" if self._iter_limit else f"{self._max_epochs} epochs"
        )
        self.logger.info("workflow: %s, max: %s; work_dir: %s", workflow, length, self.work_dir)
        watcher = SignalWatcher(self.logger)
        self._signals = watcher if self.handle_signals and watcher.install() else None
        self.stop_reason = None
        try:
            self.call_hook("before_run")
            while (
                self.epoch < self._max_epochs
                and not self._iterations_done()
                and self.stop_reason is None
            ):
                for (mode, epochs), loader in zip(workflow, data_loaders):
                    for _ in range(epochs):
                        if self.stop_reason is not None:  # request_stop: at an epoch's end
                            break
                        if mode == "train" and (
                            self.epoch >= self._max_epochs or self._iterations_done()
                        ):
                            break
                        if self._signalled():
                            self._stop_for_signal(0)
                        self.train(loader) if mode == "train" else self.val(loader)
            if self.stop_reason is not None:
                self.logger.info(
                    "training stopped after epoch %d of %d: %s",
                    self.epoch,
                    self._max_epochs,
                    self.stop_reason,
                )
            self.call_hook("after_run")
        except KeyboardInterrupt as exc:
            if self._signals is None or not self._signals.requested:
                raise
            kept = self.last_checkpoint or "none (no checkpoint was written in this run)"
            raise StoppedBySignal(
                f"stopped at once by a second signal in epoch {self.epoch + 1}, without "
                f"saving; the last checkpoint is {kept}; resume with --auto-resume",
                self._signals.signum,
            ) from exc
        finally:
            if self._signals is not None:
                self._signals.uninstall()
                self._signals = None

    def _iterations_done(self):
        """An iteration-based run (:class:`IterBasedRunner`) has done all its iterations."""
        return self._iter_limit is not None and self._iter >= self._iter_limit

    def _signalled(self):
        """The signal number (SIGINT / SIGTERM) that asked this run to stop, else 0; in a
        process group, the ranks agree (a rank stops when any rank was signalled; a rank
        that died or hangs is named as in the training step)."""
        local = self._signals.signum if self._signals is not None and self._signals.requested else 0
        if not is_distributed():
            return local

        def agree():
            flag = torch.tensor([int(local)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return int(flag.item())

        self._signal_flag = self._guard_collectives(
            agree, f"at epoch {self.epoch + 1}, after global iteration {self.iter}"
        )
        return self._signal_flag

    def _stop_for_signal(self, inner_done):
        """Stop the run on a signal after ``inner_done`` iterations of the running train
        epoch (0 between epochs or in validation): the loader's workers shut down, an
        iteration checkpoint written, and :class:`StoppedBySignal` raised."""
        import signal

        signum = getattr(self, "_signal_flag", 0) or self._signalled() or signal.SIGINT
        shutdown = getattr(self._loader_iter, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self._loader_iter = None
        folder = next(
            (h.out_dir for h in self._hooks if isinstance(h, CheckpointHook) and h.out_dir),
            self.work_dir,
        )
        filename = f"iter_{self.iter}.pth"
        self.save_checkpoint(folder, filename, progress=(self.epoch, self.iter, inner_done))
        if self.rank == 0:
            update_latest(folder, filename)
        if inner_done:
            where = (
                f"epoch {self.epoch + 1}, iteration {inner_done}/{len(self.data_loader)} "
                f"(global iteration {self.iter})"
            )
        else:
            where = f"the end of epoch {self.epoch} (global iteration {self.iter})"
        raise StoppedBySignal(
            f"stopped by {signal.Signals(signum).name} at {where}; checkpoint "
            f"{osp.join(folder, filename)}; resume with --auto-resume",
            signum,
        )

    def request_stop(self, reason):
        """End the run at the next epoch boundary (e.g. early stopping).

        The current train or val epoch finishes with all its hooks (checkpoint, evaluation,
        logging); then :meth:`run` runs no further epoch, logs one line with ``reason`` and
        calls ``after_run`` as at a normal end. The first request's reason is kept
        (``stop_reason``); :meth:`run` clears it as it starts. In a process group every rank
        must request it in the same epoch (e.g. a decision broadcast from rank 0).
        """
        if self.stop_reason is None:
            self.stop_reason = str(reason)

    def _epoch_batches(self, data_loader, skip_batches):
        """Iterator over ``data_loader`` for this epoch, skipping ``skip_batches`` batches
        (the loader's own iterator is kept in ``_loader_iter``, to stop its workers)."""
        sampler = getattr(data_loader, "sampler", None)
        if getattr(data_loader, "batch_sampler", None) is not None:
            sampler = getattr(data_loader.batch_sampler, "sampler", sampler)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        generator = getattr(data_loader, "generator", None)
        if generator is not None:
            # the workers' seeds depend on the run's seed and the epoch only, and starting
            # the epoch's iterator draws nothing from the global generator (which the
            # checkpoint restores): so a resumed epoch draws what the uninterrupted one did
            base = int(getattr(sampler, "seed", 0) or 0)
            generator.manual_seed(base * 1_000_003 + self.epoch)
        if skip_batches and hasattr(sampler, "set_skip") and data_loader.batch_size:
            sampler.set_skip(skip_batches * data_loader.batch_size)
            self._loader_iter = iter(data_loader)
            return self._loader_iter
        self._loader_iter = iter(data_loader)
        return itertools.islice(self._loader_iter, skip_batches, None)

    def _guard_collectives(self, func, where):
        """Run ``func``; in a process group, turn a failed collective into a named error."""
        if not is_distributed():
            return func()
        try:
            return func()
        except RuntimeError as exc:
            if _is_collective_error(exc):
                raise collective_failure(exc, where) from exc
            raise

    def _worker_death_error(self, exc, done):
        """A :class:`DataLoaderWorkerError` for torch's worker-death ``exc``."""
        phase = f"epoch {self.epoch + 1}" if self.mode == "train" else f"val epoch {self.epoch}"
        return DataLoaderWorkerError(
            f"a data-loader worker process died while loading data ({phase}, after "
            f"{done} of {len(self.data_loader)} iterations): {exc}. Its Python traceback, if "
            "it had one, died with it. Common causes: out of memory (the OS killed it; see "
            "`dmesg`), a crash in native code of a transform or image decoder, or a transform "
            "that calls os._exit / sys.exit. To see what fails, run the pipeline in the main "
            "process: --cfg-options data.workers_per_gpu=0"
        )

    def train(self, data_loader):
        """One training epoch."""
        self.model.train()
        self.mode = "train"
        self.data_loader = data_loader
        self.log_buffer.clear()
        if self._max_iters is None:
            self._max_iters = (self._max_epochs or 1) * len(data_loader)
        start, self._resume_inner_iter = self._resume_inner_iter, 0
        self.call_hook("before_train_epoch")
        done = start
        try:
            for index, data_batch in enumerate(self._epoch_batches(data_loader, start), start):
                self._inner_iter = index
                self.data_batch = data_batch

                def step(data_batch=data_batch):
                    self.call_hook("before_train_iter")
                    self.run_iter(data_batch, train_mode=True)
                    self.call_hook("after_train_iter")

                self._guard_collectives(step, f"at epoch {self.epoch + 1}, iteration {index + 1}")
                self._iter += 1
                done = index + 1
                if self._signalled():
                    self._stop_for_signal(done)
                if self._iterations_done():
                    break  # IterBasedRunner: the last, partial epoch ends here
        except RuntimeError as exc:
            if _is_worker_death(exc):
                raise self._worker_death_error(exc, done) from exc
            raise
        self.call_hook("after_train_epoch")
        self._epoch += 1

    @torch.no_grad()
    def val(self, data_loader):
        """One epoch of losses on ``data_loader`` (model in eval mode, no step)."""
        self.model.eval()
        self.mode = "val"
        self.data_loader = data_loader
        self.log_buffer.clear()
        self.call_hook("before_val_epoch")
        done = 0
        try:
            for index, data_batch in enumerate(self._epoch_batches(data_loader, 0)):
                self._inner_iter = index
                self.data_batch = data_batch

                def step(data_batch=data_batch):
                    self.call_hook("before_val_iter")
                    self.run_iter(data_batch, train_mode=False)
                    self.call_hook("after_val_iter")

                self._guard_collectives(step, f"in val epoch {self.epoch}, iteration {index + 1}")
                done = index + 1
                if self._signalled():
                    self._stop_for_signal(0)
        except RuntimeError as exc:
            if _is_worker_death(exc):
                raise self._worker_death_error(exc, done) from exc
            raise
        self.call_hook("after_val_epoch")

    def run_iter(self, data_batch, train_mode):
        """Forward one batch; ``self.outputs = {"loss", "log_vars", "num_samples"}``.

        A non-finite loss in training raises :class:`NonFiniteLossError` (or marks the
        step ``skipped`` when ``skip_nonfinite_loss`` is set). A ``skipped_images`` entry
        (one count per sample, from datasets with ``skip_bad_images=True``) is taken out of
        the batch and added to the ``skipped_images`` counter of the log (summed over ranks).
        """
        skipped_images = data_batch.pop("skipped_images", None)
        if skipped_images is not None and train_mode:
            count = torch.as_tensor(skipped_images).sum().reshape(1).float().to(self.device)
            if is_distributed():  # on the device: NCCL reduces CUDA tensors only
                dist.all_reduce(count)
            self.log_buffer.count("skipped_images", int(count.item()))
        data_batch = move_to_device(data_batch, self.device)
        with torch.autocast(
            device_type=self.device.type,
            dtype=self.autocast_dtype,
            enabled=self.autocast_dtype is not None,
        ):
            losses = self.model(**data_batch)
        loss, log_vars = parse_losses(losses)
        num_samples = _batch_size(data_batch)
        self.outputs = {
            "loss": loss,
            "log_vars": log_vars,
            "num_samples": num_samples,
            "skipped": False,
        }
        bad = {k: v for k, v in log_vars.items() if not math.isfinite(v)}
        if train_mode and bad:
            where = (
                f"epoch {self.epoch + 1}, iteration {self.inner_iter + 1}/"
                f"{len(self.data_loader)} (global iteration {self.iter + 1})"
            )
            terms = ", ".join(f"{k}={v}" for k, v in bad.items() if k != "loss") or "loss"
            if not self.skip_nonfinite_loss:
                kept = self.last_checkpoint or "none (no checkpoint was written in this run)"
                raise NonFiniteLossError(
                    f"non-finite loss at {where}: {terms}. Training stopped; the last good "
                    f"checkpoint is {kept}. Lower the learning rate, add "
                    "optimizer_config.grad_clip, or set optimizer_config.skip_nonfinite_loss="
                    "True to skip such steps."
                )
            self.logger.warning("non-finite loss at %s: %s; step skipped", where, terms)
            self.outputs["skipped"] = True
            self.log_buffer.count("skipped_steps")
            return
        self.log_buffer.update(log_vars, num_samples)

    # -------------------------------------------------------------------- checkpoints
    def _progress_for_checkpoint(self):
        """(finished epochs, finished iterations, finished iterations in this epoch), as the
        hook stage that saves sees them."""
        if self._stage == "after_train_epoch":
            return self.epoch + 1, self.iter, 0
        if self._stage == "after_train_iter":
            return self.epoch, self.iter + 1, self.inner_iter + 1
        return self.epoch, self.iter, 0

    def _check_finite_weights(self, path, iteration):
        """Raise :class:`NonFiniteWeightsError` if a parameter holds NaN or inf."""
        bad = [
            name
            for name, param in self.unwrapped_model.named_parameters()
            if param.is_floating_point() and not bool(torch.isfinite(param.detach()).all())
        ]
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            kept = self.last_checkpoint or "none (no checkpoint was written in this run)"
            raise NonFiniteWeightsError(
                f"the weights are not finite after global iteration {iteration} "
                f"(parameters {shown}), so {path} is not written. Training stopped; the last "
                f"good checkpoint is {kept}. Non-finite gradients on a finite loss do this: "
                "lower the learning rate, add optimizer_config.grad_clip, or set "
                "optimizer_config.skip_nonfinite_loss=True (skips steps whose loss or "
                "gradients are not finite)."
            )

    def save_checkpoint(self, out_dir, filename, save_optimizer=True, meta=None, progress=None):
        """Write ``out_dir/filename`` (rank 0 only) with everything :meth:`resume` needs;
        ``progress``: (finished epochs, iterations, iterations in this epoch) when not
        what the saving hook's stage implies.

        Refuses (:class:`NonFiniteWeightsError`) to save weights that hold NaN or inf.
        """
        epoch, iteration, inner_iter = progress or self._progress_for_checkpoint()
        path = osp.join(out_dir, filename)
        self._check_finite_weights(path, iteration)
        full_meta = dict(self.meta)
        full_meta.update(meta or {})
        full_meta.update(
            epoch=epoch,
            iter=iteration,
            inner_iter=inner_iter,
            rng=get_rng_states(),
            hook_states={
                key: state for key, hook in self._hook_state_keys() if (state := hook.state_dict())
            },
        )
        if self.rank == 0:
            optimizer = self.optimizer if save_optimizer else None
            checkpoint = build_checkpoint(self.model, optimizer=optimizer, meta=full_meta)
            self.notify_hooks("before_save_checkpoint", checkpoint)
            write_checkpoint(checkpoint, path)
        self.last_checkpoint = path
        return path

    def load_checkpoint(self, filename, map_location="cpu", strict=False):
        """Load weights only (``load_from``); mismatches are reported in a table."""
        self.logger.info("load weights from %s", filename)
        return load_checkpoint(self.unwrapped_model, filename, map_location, strict, self.logger)

    def resume(self, checkpoint, resume_optimizer=True, map_location="cpu"):
        """Restore model, optimizer, epoch, iteration, hook states (LR schedule, grad scaler)
        and RNG states from ``checkpoint`` (a path).

        The hooks see the checkpoint first (``after_load_checkpoint``: ``EMAHook`` takes its
        averaged weights). The model gets the weights training goes on from:
        ``source_state_dict`` where the checkpoint has one (a run with ``EMAHook``; without
        that hook now, its averaged weights are dropped with a warning), else
        ``state_dict``."""
        path = checkpoint
        checkpoint = load_checkpoint_file(path, map_location)
        if not isinstance(checkpoint, dict):
            raise CheckpointError(f"{path}: expected a dict, got {type(checkpoint).__name__}")
        if not isinstance(checkpoint.get("meta"), dict) or "epoch" not in checkpoint["meta"]:
            raise ValueError(
                f"{path} has no meta.epoch: it holds weights only; use "
                "load_from instead of resume_from"
            )
        self.notify_hooks("after_load_checkpoint", checkpoint)
        if "source_state_dict" in checkpoint:  # no hook took the averaged weights
            self.logger.warning(
                "%s holds averaged (EMA) weights and the weights they average; training goes "
                "on from the latter, and the average is dropped: this config has no EMAHook "
                "(add custom_hooks=[dict(type='EMAHook', ...)] as in the run that wrote it "
                "to keep averaging)",
                path,
            )
            checkpoint["state_dict"] = checkpoint.pop("source_state_dict")
        load_checkpoint_weights(
            self.unwrapped_model, checkpoint, path, strict=True, logger=self.logger
        )  # the file is read once
        meta = checkpoint["meta"]
        self._epoch = meta["epoch"]
        self._iter = meta["iter"]
        self._resume_inner_iter = meta.get("inner_iter", 0)
        if resume_optimizer and "optimizer" in checkpoint and self.optimizer is not None:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        hook_states = meta.get("hook_states", {})
        for key, hook in self._hook_state_keys():
            if key in hook_states:
                hook.load_state_dict(hook_states[key])
        if "rng" in meta:
            set_rng_states(meta["rng"])
        self.last_checkpoint = path
        self.logger.info(
            "resumed from %s: epoch %d, iter %d (%d done in this epoch); training goes on in "
            "epoch %d",  # epochs count whole epochs done; the log's Epoch [N] counts from 1
            path,
            self._epoch,
            self._iter,
            self._resume_inner_iter,
            self._epoch + 1,
        )
        return checkpoint


@RUNNERS.register()
class IterBasedRunner(EpochBasedRunner):
    """Trains for ``max_iters`` iterations (mmdetection's ``runner=dict(type="IterBasedRunner",
    max_iters=N)``, detectron2's ``SOLVER.MAX_ITER``): the data loader's epochs run one after
    another (reshuffled each, as in epoch-based training) and the last stops at ``max_iters``.
    Count checkpoints, evaluation and the LR schedule in iterations
    (``checkpoint_config.by_epoch=False``, ``evaluation.by_epoch=False``,
    ``lr_config.by_epoch=False``). Resume, mid-epoch included, is as exact as epoch-based.
    """

    def __init__(
        self, model, optimizer=None, work_dir=None, logger=None, meta=None, max_iters=None
    ):
        super().__init__(model, optimizer, work_dir, logger, meta)
        self._iter_limit = max_iters

    def run(self, data_loaders, workflow, max_iters=None):
        """Run ``workflow`` until ``max_iters`` training iterations are done."""
        self._iter_limit = max_iters if max_iters is not None else self._iter_limit
        if not isinstance(self._iter_limit, int) or self._iter_limit < 1:
            raise ValueError(
                f"IterBasedRunner: max_iters must be a whole number >= 1, got {self._iter_limit!r}"
            )
        train = [loader for (mode, _), loader in zip(workflow, data_loaders) if mode == "train"]
        epochs = math.ceil(self._iter_limit / len(train[0])) if train else 1
        super().run(data_loaders, workflow, max_epochs=epochs)
