"""The evaluation hook: ``save_best`` (mmdetection v2's option) keeps the best epoch's
weights, one file at a time, and its state survives a resume; predicted data samples are
kept compacted."""

import os

import pytest
import torch

from mmdet_like.engine import EvalHook
from tests.engine.toy import ToyRegressionDataset, toy_loader, toy_runner


class ScriptedDataset(ToyRegressionDataset):
    """Evaluation returns the next of ``scores``, whatever the results."""

    def __init__(self, scores):
        super().__init__(num_samples=4)
        self.scores = list(scores)

    def evaluate(self, results, logger=None):
        return {"score": self.scores.pop(0), "other": 0.0}


def eval_loader(scores):
    return torch.utils.data.DataLoader(
        ScriptedDataset(scores), batch_size=2, collate_fn=toy_loader().collate_fn
    )


def best_files(work_dir):
    return sorted(p for p in os.listdir(work_dir) if p.startswith("best_"))


@pytest.mark.parametrize(
    "save_best, rule, scores, expected",
    [
        ("score", None, [0.2, 0.5, 0.4], "best_score_epoch_2.pth"),
        ("score", "less", [0.2, 0.5, 0.1], "best_score_epoch_3.pth"),
        ("auto", "greater", [0.2, 0.1, 0.15], "best_score_epoch_1.pth"),
    ],
)
def test_save_best_keeps_one_file_of_the_best_epoch(tmp_path, save_best, rule, scores, expected):
    runner = toy_runner(tmp_path, max_epochs=3)
    hook = EvalHook(eval_loader(scores), save_best=save_best, rule=rule)
    runner.register_hook(hook)
    runner.run([toy_loader()], [("train", 1)])
    assert best_files(tmp_path) == [expected]
    saved = torch.load(tmp_path / expected, weights_only=True)
    assert saved["meta"]["epoch"] == int(expected[-5])
    assert hook.state_dict()["best_score"] == pytest.approx(
        (max if rule != "less" else min)(scores)
    )


def test_save_best_state_is_resumed(tmp_path):
    each_epoch = dict(interval=1)
    runner = toy_runner(tmp_path, max_epochs=2, checkpoint_config=each_epoch)
    runner.register_hook(EvalHook(eval_loader([0.5, 0.3]), save_best="score"))
    runner.run([toy_loader()], [("train", 1)])
    assert best_files(tmp_path) == ["best_score_epoch_1.pth"]
    # resumed from epoch 2, the hook knows the best so far (0.5): a worse third epoch writes
    # nothing, a better fourth replaces the first file
    resumed = toy_runner(tmp_path, max_epochs=4, checkpoint_config=each_epoch)
    resumed.register_hook(EvalHook(eval_loader([0.4, 0.6]), save_best="score"))
    resumed.resume(str(tmp_path / "epoch_2.pth"))
    resumed.run([toy_loader()], [("train", 1)])
    assert best_files(tmp_path) == ["best_score_epoch_4.pth"]


def test_save_best_names_the_metrics_when_its_key_is_missing(tmp_path):
    runner = toy_runner(tmp_path, max_epochs=1)
    runner.register_hook(EvalHook(eval_loader([0.5]), save_best="bbox_mAP"))
    with pytest.raises(KeyError, match="gave no such metric; it gave \\['other', 'score'\\]"):
        runner.run([toy_loader()], [("train", 1)])
