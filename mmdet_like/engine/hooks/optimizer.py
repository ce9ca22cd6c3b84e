"""Backward pass and optimizer step, with grad clipping, mixed precision and gradient
accumulation."""

import torch
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import clip_grad_norm_

from mmdet_like.engine.config import ConfigError
from mmdet_like.engine.hooks.hook import Hook
from mmdet_like.engine.hooks.lr_updater import LrUpdaterHook
from mmdet_like.registry import HOOKS

_AMP_DTYPES = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


@HOOKS.register()
class OptimizerHook(Hook):
    """``loss.backward()``, optional grad clipping, ``optimizer.step()``.

    Args:
        grad_clip: ``dict(max_norm=35, norm_type=2)`` clips the global grad norm; the norm
            before clipping is logged as ``grad_norm``.
        fp16: ``dict(dtype="bfloat16")`` runs the forward under ``torch.autocast`` in
            bfloat16; ``dict(dtype="float16", loss_scale="dynamic")`` in float16 with a
            grad scaler (a number as ``loss_scale`` is the initial scale, never grown).
        skip_nonfinite_loss: skip the step of an iteration whose loss or gradients are
            NaN/inf instead of stopping the run; skipped steps are counted in the log
            (``skipped_steps``).
        cumulative_iters: gradient accumulation (mmcv's ``GradientCumulativeOptimizerHook``):
            the gradients of this many iterations (batches) make one optimizer step, so a
            batch of ``imgs_per_gpu`` images trains as one of ``cumulative_iters *
            imgs_per_gpu``. Each loss is divided by the size of its group before its
            backward pass; grad clipping, the loss scaler's unscaling and the step happen
            once a group, at its last iteration. Groups start at each epoch's first
            iteration; an epoch whose length is not a multiple of ``cumulative_iters`` ends
            with a shorter group whose losses are divided by its real size (mmcv counts
            groups over the whole run instead, so its groups cross epochs). An *iteration*
            is still one batch: ``runner.iter``, ``lr_config`` (``warmup_iters``,
            by-iteration steps), checkpoint and evaluation intervals and the log count
            batches, not optimizer steps; the step of a group uses the learning rate set for
            its last iteration. The gradients of a group that a checkpoint interrupts are
            saved in the hook's state, so a run resumed in the middle of a group makes the
            same step as an uninterrupted one. In a process group each iteration's backward
            pass still averages the gradients over ranks (correct, not the fastest).

    After each iteration ``runner.outputs["optimizer_step"]`` says whether the weights
    changed (False within a group, for skipped steps and for float16 steps the grad scaler
    skipped on non-finite gradients): ``EMAHook`` averages after real steps only.
    """

    priority = "ABOVE_NORMAL"

    def __init__(self, grad_clip=None, fp16=None, skip_nonfinite_loss=False, cumulative_iters=1):
        if grad_clip is not None and "max_norm" not in grad_clip:
            raise ValueError(f"grad_clip needs max_norm, got {grad_clip}")
        if (
            not isinstance(cumulative_iters, int)
            or isinstance(cumulative_iters, bool)
            or cumulative_iters < 1
        ):
            raise ConfigError(
                f"optimizer_config.cumulative_iters must be a whole number >= 1 (the number of "
                f"batches whose gradients make one optimizer step), got {cumulative_iters!r}. "
                "Fix: e.g. cumulative_iters=4 to train batches of 4 x data.imgs_per_gpu "
                "images, or 1 (no accumulation)"
            )
        self.grad_clip = dict(grad_clip) if grad_clip is not None else None
        self.skip_nonfinite_loss = skip_nonfinite_loss
        self.cumulative_iters = cumulative_iters
        self.fp16 = dict(fp16) if fp16 is not None else None
        self.amp_dtype = None
        self.loss_scale = None
        if self.fp16 is not None:
            unknown = set(self.fp16) - {"dtype", "loss_scale"}
            if unknown:
                raise ValueError(
                    f"fp16: unknown option(s) {sorted(unknown)}; known: dtype, loss_scale"
                )
            dtype = self.fp16.get("dtype", "float16")
            if dtype not in _AMP_DTYPES:
                raise ValueError(f"fp16.dtype must be one of {sorted(_AMP_DTYPES)}, got {dtype!r}")
            self.amp_dtype = _AMP_DTYPES[dtype]
            self.loss_scale = self.fp16.get("loss_scale", "dynamic")
        self.scaler = None
        self._scaler_state = None
        self._model = None  # the unwrapped model, for the accumulated gradients' names
        self._backwards = 0  # backward passes in the group in progress
        self._pending_until = None  # finished iterations when a group's gradients wait
        self._loaded_accumulation = None
        self._first_iter_done = False

    def before_run(self, runner):
        runner.skip_nonfinite_loss = self.skip_nonfinite_loss
        if self.skip_nonfinite_loss:
            runner.log_buffer.count("skipped_steps", 0)  # logged from the start
        runner.autocast_dtype = self.amp_dtype
        if self.amp_dtype == torch.float16:
            if self.loss_scale == "dynamic":
                self.scaler = torch.amp.GradScaler(runner.device.type)
            else:
                self.scaler = torch.amp.GradScaler(
                    runner.device.type,
                    init_scale=float(self.loss_scale),
                    growth_interval=2**31 - 1,
                )
            if self._scaler_state is not None:
                self.scaler.load_state_dict(self._scaler_state)
        self._model = runner.unwrapped_model
        self._first_iter_done = False
        if self.cumulative_iters > 1:
            self._explain_accumulation(runner)
        self._restore_accumulation(runner)

    def _explain_accumulation(self, runner):
        """Log what an iteration is under accumulation; warn where that surprises."""
        n = self.cumulative_iters
        runner.logger.info(
            "optimizer_config.cumulative_iters=%d: one optimizer step every %d iterations "
            "(batches); iterations (runner.iter, lr_config.warmup_iters, by-iteration LR "
            "steps, checkpoint and evaluation intervals, the log) count batches",
            n,
            n,
        )
        for hook in runner.hooks:
            if not isinstance(hook, LrUpdaterHook) or hook.warmup is None:
                continue
            if hook.warmup_epochs is not None:
                continue
            warmup = hook.warmup_iters
            steps = -(-(warmup + 1) // n) - 1  # group ends n-1, 2n-1, ... before warmup_iters
            if steps < 1:
                runner.logger.warning(
                    "lr_config.warmup_iters=%d is shorter than one accumulation group "
                    "(optimizer_config.cumulative_iters=%d): no optimizer step is warmed up. "
                    "Fix: count the warmup in batches, e.g. warmup_iters=%d for %d warmed-up "
                    "steps",
                    warmup,
                    n,
                    n * max(warmup, 1),
                    max(warmup, 1),
                )
            else:
                runner.logger.info(
                    "the warmup (lr_config.warmup_iters=%d batches) covers %d optimizer "
                    "steps; to keep the warmup of a recipe written for one step a batch, "
                    "multiply its warmup_iters by %d",
                    warmup,
                    steps,
                    n,
                )
        if any(isinstance(m, _BatchNorm) for m in runner.unwrapped_model.modules()):
            runner.logger.warning(
                "optimizer_config.cumulative_iters=%d: the model has batch norm layers, whose "
                "statistics come from each batch of data.imgs_per_gpu images, so accumulation "
                "is not the same as a batch %d times larger (frozen or eval-mode batch norm, "
                "as with norm_eval=True, is)",
                n,
                n,
            )

    def _restore_accumulation(self, runner):
        """Put back the gradients of a group a resumed checkpoint interrupted."""
        state, self._loaded_accumulation = self._loaded_accumulation, None
        self._backwards, self._pending_until = 0, None
        if state is None:
            return
        if state["iter"] != runner.iter:
            runner.logger.warning(
                "OptimizerHook: the checkpoint's accumulated gradients are of iteration %d, "
                "but training goes on after iteration %d; they are dropped",
                state["iter"],
                runner.iter,
            )
            return
        params = dict(self._model.named_parameters())
        unknown = sorted(set(state["grads"]) - set(params))
        if unknown:
            raise ConfigError(
                f"the checkpoint holds accumulated gradients of parameters this model lacks "
                f"({', '.join(unknown[:5])}); resume with the config the run was trained with"
            )
        for name, grad in state["grads"].items():
            param = params[name]
            param.grad = grad.to(device=param.device, dtype=param.dtype)
        self._backwards = int(state["backwards"])
        self._pending_until = runner.iter

    def _group(self, runner):
        """``(size, first, last)``: the number of iterations in this iteration's
        accumulation group, and whether it is the group's first and last."""
        n = self.cumulative_iters
        index = runner.inner_iter
        end_of_epoch = len(runner.data_loader)
        if runner.max_iters is not None:  # IterBasedRunner: the run may end mid-epoch
            end_of_epoch = min(end_of_epoch, index + runner.max_iters - runner.iter)
        start = index - index % n
        end = max(min(start + n, end_of_epoch), index + 1)
        return end - start, index == start, index + 1 == end

    def clip_grads(self, params):
        params = [p for p in params if p.requires_grad and p.grad is not None]
        if not params:
            return None
        return clip_grad_norm_(params, **self.grad_clip)

    def after_train_iter(self, runner):
        size, first, last = self._group(runner)
        optimizer = runner.optimizer
        outputs = runner.outputs
        outputs["optimizer_step"] = False
        if not self._first_iter_done:
            self._first_iter_done = True
            if not first and self._pending_until is None:
                runner.logger.warning(
                    "resumed in the middle of an accumulation group (iteration %d of %d) from "
                    "a checkpoint without its accumulated gradients: this group's step has "
                    "only the gradients of the iterations after the resume",
                    runner.inner_iter % self.cumulative_iters + 1,
                    size,
                )
        if first:
            optimizer.zero_grad(set_to_none=True)
            self._backwards = 0
        if not outputs.get("skipped"):
            loss = outputs["loss"] / size if size > 1 else outputs["loss"]
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
            self._backwards += 1
        if not last:
            self._pending_until = runner.iter + 1
            return
        self._pending_until = None
        if self._backwards == 0:  # every iteration of the group was skipped
            optimizer.zero_grad(set_to_none=True)
            return
        self._step(runner)

    def _step(self, runner):
        """Clip, step (through the grad scaler with float16) and log the group's gradients."""
        optimizer = runner.optimizer
        grad_norm = None
        if self.scaler is not None:
            if self.grad_clip is not None:
                self.scaler.unscale_(optimizer)
                grad_norm = self.clip_grads(runner.model.parameters())
            scale = self.scaler.get_scale()
            self.scaler.step(optimizer)
            self.scaler.update()
            # the scaler skips a step with non-finite gradients and lowers its scale
            runner.outputs["optimizer_step"] = self.scaler.get_scale() >= scale
            runner.log_buffer.update({"loss_scale": self.scaler.get_scale()})
        else:
            if self.grad_clip is not None:
                grad_norm = self.clip_grads(runner.model.parameters())
            if self.skip_nonfinite_loss and not self._grads_finite(runner, grad_norm):
                runner.logger.warning(
                    "non-finite gradients at epoch %d, iteration %d (global iteration %d); "
                    "step skipped",
                    runner.epoch + 1,
                    runner.inner_iter + 1,
                    runner.iter + 1,
                )
                optimizer.zero_grad(set_to_none=True)
                runner.outputs["skipped"] = True
                runner.log_buffer.count("skipped_steps")
                return
            optimizer.step()
            runner.outputs["optimizer_step"] = True
        if grad_norm is not None:
            runner.log_buffer.update({"grad_norm": float(grad_norm)}, runner.outputs["num_samples"])

    @staticmethod
    def _grads_finite(runner, grad_norm=None):
        """Whether every gradient is finite (``grad_norm``: their norm, when known)."""
        if grad_norm is None:
            grads = [p.grad for p in runner.model.parameters() if p.grad is not None]
            if not grads:
                return True
            grad_norm = torch.nn.utils.get_total_norm(grads)
        return bool(torch.isfinite(torch.as_tensor(grad_norm)))

    def state_dict(self):
        """The grad scaler's state (float16), and while an accumulation group waits for its
        step, its gradients: ``accumulated = {"iter": finished iterations, "backwards":
        backward passes so far, "grads": {parameter name: tensor}}``."""
        state = {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}
        if self._pending_until is not None and self._model is not None:
            grads = {
                name: param.grad.detach().cpu()
                for name, param in self._model.named_parameters()
                if param.grad is not None
            }
            state["accumulated"] = {
                "iter": self._pending_until,
                "backwards": self._backwards,
                "grads": grads,
            }
        return state

    def load_state_dict(self, state):
        self._scaler_state = state.get("scaler")
        self._loaded_accumulation = state.get("accumulated")


@HOOKS.register()
class GradientCumulativeOptimizerHook(OptimizerHook):
    """mmcv 1.x's name for gradient accumulation: ``optimizer_config =
    dict(type="GradientCumulativeOptimizerHook", cumulative_iters=4)`` is
    :class:`OptimizerHook` with ``cumulative_iters=4`` (see there; groups restart at each
    epoch)."""
