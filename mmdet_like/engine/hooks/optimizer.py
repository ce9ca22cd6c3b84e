"""Backward pass and optimizer step, with grad clipping and mixed precision."""

import torch
from torch.nn.utils import clip_grad_norm_

from mmdet_like.engine.hooks.hook import Hook
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
    """

    priority = "ABOVE_NORMAL"

    def __init__(self, grad_clip=None, fp16=None, skip_nonfinite_loss=False):
        if grad_clip is not None and "max_norm" not in grad_clip:
            raise ValueError(f"grad_clip needs max_norm, got {grad_clip}")
        self.grad_clip = dict(grad_clip) if grad_clip is not None else None
        self.skip_nonfinite_loss = skip_nonfinite_loss
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

    def clip_grads(self, params):
        params = [p for p in params if p.requires_grad and p.grad is not None]
        if not params:
            return None
        return clip_grad_norm_(params, **self.grad_clip)

    def after_train_iter(self, runner):
        if runner.outputs.get("skipped"):
            runner.optimizer.zero_grad(set_to_none=True)
            return
        optimizer = runner.optimizer
        optimizer.zero_grad(set_to_none=True)
        loss = runner.outputs["loss"]
        grad_norm = None
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if self.grad_clip is not None:
                self.scaler.unscale_(optimizer)
                grad_norm = self.clip_grads(runner.model.parameters())
            self.scaler.step(optimizer)
            self.scaler.update()
            runner.log_buffer.update({"loss_scale": self.scaler.get_scale()})
        else:
            loss.backward()
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
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state):
        self._scaler_state = state.get("scaler")
