"""The hook base class and hook priorities."""

PRIORITIES = {
    "HIGHEST": 0,
    "VERY_HIGH": 10,
    "HIGH": 30,
    "ABOVE_NORMAL": 40,
    "NORMAL": 50,
    "BELOW_NORMAL": 60,
    "LOW": 70,
    "VERY_LOW": 90,
    "LOWEST": 100,
}


def get_priority(priority):
    """A priority as an int in [0, 100] (lower runs first); names as in :data:`PRIORITIES`."""
    if isinstance(priority, int):
        if not 0 <= priority <= 100:
            raise ValueError(f"hook priority must be in [0, 100], got {priority}")
        return priority
    if isinstance(priority, str) and priority.upper() in PRIORITIES:
        return PRIORITIES[priority.upper()]
    raise ValueError(
        f"unknown hook priority {priority!r}; one of {', '.join(PRIORITIES)} or an int in [0, 100]"
    )


class Hook:
    """Something the runner calls at fixed points of a run.

    Override the stages you need; ``before/after_train_iter`` and ``before/after_val_iter``
    default to ``before/after_iter`` (same for epochs). ``state_dict`` / ``load_state_dict``
    let a hook keep state in checkpoints (``meta["hook_states"][class name]``).
    """

    priority = "NORMAL"

    def before_run(self, runner):
        """Called once before the first epoch."""

    def after_run(self, runner):
        """Called once after the last epoch."""

    def before_epoch(self, runner):
        """Called before each epoch (train or val) unless the stage is overridden."""

    def after_epoch(self, runner):
        """Called after each epoch (train or val) unless the stage is overridden."""

    def before_iter(self, runner):
        """Called before each iteration (train or val) unless the stage is overridden."""

    def after_iter(self, runner):
        """Called after each iteration (train or val) unless the stage is overridden."""

    def before_train_epoch(self, runner):
        self.before_epoch(runner)

    def after_train_epoch(self, runner):
        self.after_epoch(runner)

    def before_val_epoch(self, runner):
        self.before_epoch(runner)

    def after_val_epoch(self, runner):
        self.after_epoch(runner)

    def before_train_iter(self, runner):
        self.before_iter(runner)

    def after_train_iter(self, runner):
        self.after_iter(runner)

    def before_val_iter(self, runner):
        self.before_iter(runner)

    def after_val_iter(self, runner):
        self.after_iter(runner)

    def before_evaluation(self, runner):
        """Called by the evaluation hooks before their inference pass over the val set
        during training (``EMAHook`` puts its averaged weights into the model here)."""

    def after_evaluation(self, runner):
        """Called by the evaluation hooks after that inference pass (also when it
        raised)."""

    def before_save_checkpoint(self, runner, checkpoint):
        """Called on rank 0 with the checkpoint dict about to be written (``state_dict``,
        ``optimizer``, ``meta``); a hook may add or change entries (tensors and plain types
        only). Other ranks do not call it, so it must not run collectives."""

    def after_load_checkpoint(self, runner, checkpoint):
        """Called by ``runner.resume`` with the checkpoint dict it read, before the
        weights of ``checkpoint["state_dict"]`` are loaded into the model; a hook may take
        entries out or change them."""

    def state_dict(self):
        """Plain-typed state saved in checkpoints; ``{}`` for stateless hooks."""
        return {}

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned."""

    @staticmethod
    def every_n_epochs(runner, n):
        return n > 0 and (runner.epoch + 1) % n == 0

    @staticmethod
    def every_n_inner_iters(runner, n):
        return n > 0 and (runner.inner_iter + 1) % n == 0

    @staticmethod
    def every_n_iters(runner, n):
        return n > 0 and (runner.iter + 1) % n == 0

    @staticmethod
    def end_of_epoch(runner):
        return runner.inner_iter + 1 == len(runner.data_loader)
