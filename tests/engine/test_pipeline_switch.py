"""PipelineSwitchHook: the epochs after ``switch_epoch`` get the other pipeline, in the
loader's workers too (none, one, persistent), and a run resumed after the switch (or in
the middle of a switched epoch) uses it from its first batch."""

import re

import pytest
import torch

from mmdet_like.datasets import ConcatDataset, RepeatDataset, build_dataloader
from mmdet_like.datasets.pipelines import Compose
from mmdet_like.datasets.samplers import SeededSamples
from mmdet_like.engine import ConfigError, Hook, PipelineSwitchHook, pipeline_holders
from mmdet_like.registry import HOOKS, PIPELINES
from tests.engine.recipe_toys import make_runner
from tests.engine.toy import ToyRegressionDataset


@PIPELINES.register(force=True)
class ShiftX:
    """Adds ``offset`` to the sample's ``x``: the batches show which pipeline made them."""

    def __init__(self, offset):
        self.offset = offset

    def __call__(self, results):
        return dict(results, x=results["x"] + self.offset)


class PipelineDataset(ToyRegressionDataset):
    """The toy samples through ``pipeline`` (a ``Compose``), by default ``ShiftX(0)``."""

    def __init__(self, num_samples=16, pipeline=None, groups=1):
        super().__init__(num_samples=num_samples, groups=groups)
        self.pipeline = Compose(pipeline or [dict(type="ShiftX", offset=0.0)])

    def __getitem__(self, index):
        return self.pipeline(super().__getitem__(index))


class RecordOffsets(Hook):
    """The offsets the batches of each training epoch came with (one set an epoch)."""

    priority = "LOW"

    def __init__(self, dataset):
        self.x = dataset.x
        self.offsets = []

    def before_train_epoch(self, runner):
        self.offsets.append(set())

    def after_train_iter(self, runner):
        batch = runner.data_batch
        offset = batch["x"] - self.x[batch["index"]]
        self.offsets[-1].add(round(float(offset.mean()), 4))


SWITCH = dict(type="PipelineSwitchHook", switch_epoch=2,
              switch_pipeline=[dict(type="ShiftX", offset=0.25)])  # fmt: skip


def train(work_dir, workers=0, persistent=False, resume=None, checkpoint_config=None):
    """4 epochs of 16 samples in batches of 4; the epochs seen (offsets) and the dataset."""
    dataset = PipelineDataset()
    kwargs = {"persistent_workers": True} if persistent else {}
    loader = build_dataloader(dataset, 4, workers, shuffle=True, seed=0, **kwargs)
    runner = make_runner(work_dir, max_epochs=4, custom_hooks=[SWITCH],
                         checkpoint_config=checkpoint_config)  # fmt: skip
    record = runner.register_hook(RecordOffsets(dataset))
    if resume is not None:
        runner.resume(str(resume))
    runner.run([loader], [("train", 1)])
    return record.offsets, dataset, runner


@pytest.mark.parametrize("workers, persistent", [(0, False), (1, False), (1, True)])
def test_the_epochs_after_switch_epoch_get_the_other_pipeline(tmp_path, workers, persistent):
    offsets, dataset, runner = train(tmp_path, workers, persistent)
    assert offsets == [{0.0}, {0.0}, {0.25}, {0.25}]
    # the loader wraps the dataset (SeededSamples): the dataset's own pipeline was replaced
    assert [t.offset for t in dataset.pipeline.transforms] == [0.25]
    assert "PipelineSwitchHook: from epoch 3 on the train pipeline is [ShiftX]" in (
        runner.log_lines.text()
    )


@pytest.mark.parametrize("workers", [0, 1])
def test_a_run_resumed_after_the_switch_uses_the_switched_pipeline(tmp_path, workers):
    """Checkpoints every 3 iterations of 4-iteration epochs: iter_9 is epoch 3 after one
    iteration (switched), iter_6 epoch 2 after two (not yet)."""
    every_3 = dict(interval=3, by_epoch=False)
    full, _, _ = train(tmp_path / "full", workers, checkpoint_config=every_3)
    assert full == [{0.0}, {0.0}, {0.25}, {0.25}]
    resumed, _, _ = train(tmp_path / "a", workers, resume=tmp_path / "full" / "iter_9.pth")
    assert resumed == [{0.25}, {0.25}]
    resumed, _, _ = train(tmp_path / "b", workers, resume=tmp_path / "full" / "iter_6.pth")
    assert resumed == [{0.0}, {0.25}, {0.25}]


def test_the_pipelines_are_found_through_the_wrappers():
    a, b = PipelineDataset(8, groups=2), PipelineDataset(8, groups=2)
    wrapped = SeededSamples(RepeatDataset(ConcatDataset([a, b]), times=2))
    assert pipeline_holders(wrapped) == [a, b]
    assert pipeline_holders(SeededSamples(ToyRegressionDataset(4))) == []
    # a wrapper with a pipeline of its own (mmdetection's MultiImageMixDataset) is the one
    mixing = RepeatDataset(a, times=1)
    mixing.pipeline = Compose([dict(type="ShiftX", offset=1.0)])
    assert pipeline_holders(SeededSamples(mixing)) == [mixing]
    # every dataset of a ConcatDataset is switched
    hook = PipelineSwitchHook(switch_epoch=0, switch_pipeline=[dict(type="ShiftX", offset=2.0)])
    runner = make_runner("unused", log_name="concat")
    runner.data_loader = torch.utils.data.DataLoader(wrapped)
    runner._epoch = 0
    hook.before_train_epoch(runner)
    assert [t.offset for d in (a, b) for t in d.pipeline.transforms] == [2.0, 2.0]
    assert a.pipeline is not b.pipeline


def test_registered_and_bad_values_name_the_field_and_the_fix(tmp_path):
    assert HOOKS.get("PipelineSwitchHook") is PipelineSwitchHook
    cases = [
        (dict(switch_epoch=-1), "custom_hooks PipelineSwitchHook: switch_epoch must be a whole "
                                "number >= 0 (the number of epochs trained with the first "
                                "pipeline), got -1"),
        (dict(switch_epoch="3"), "got '3'"),
        (dict(switch_epoch=True), "got True"),
        (dict(switch_pipeline=[]), "switch_pipeline must be a non-empty list of transform "
                                   "configs"),
        (dict(switch_pipeline=[dict(type="ShiftY", offset=1.0)]),
         "custom_hooks PipelineSwitchHook: switch_pipeline[0] (ShiftY): type 'ShiftY' is not in "
         "the PIPELINES registry. Did you mean 'ShiftX'"),
        (dict(switch_pipeline=[dict(type="ShiftX", offest=1.0)]),
         "switch_pipeline[0] (ShiftX): PIPELINES: ShiftX got unexpected argument(s)"),
    ]  # fmt: skip
    for args, message in cases:
        kwargs = dict(switch_epoch=1, switch_pipeline=[dict(type="ShiftX", offset=1.0)])
        with pytest.raises(ConfigError, match=re.escape(message)):
            PipelineSwitchHook(**dict(kwargs, **args))
    # a dataset without a pipeline, at the switch
    runner = make_runner(tmp_path, max_epochs=2, custom_hooks=[dict(SWITCH, switch_epoch=1)])
    loader = build_dataloader(ToyRegressionDataset(8), 4, 0, shuffle=True, seed=0)
    with pytest.raises(ConfigError, match="the train dataset .* has no pipeline to switch"):
        runner.run([loader], [("train", 1)])
    # a switch after the last epoch is never made: said at the start
    late = make_runner(tmp_path, max_epochs=2, custom_hooks=[dict(SWITCH, switch_epoch=2)],
                       log_name="late")  # fmt: skip
    late.run([build_dataloader(PipelineDataset(8), 4, 0, seed=0)], [("train", 1)])
    assert "switch_epoch=2 but the run has 2 epochs: the pipeline is never switched" in (
        late.log_lines.text()
    )
