"""tests/engine/cli_utils.call_tool: a tool run in this process ends as its process would
(status, one error line, argparse's status 2, ``sys.exit("message")``) and leaves this
process as it found it (argv, cwd, environment, RNGs, the project's logger)."""

import logging
import os
import sys

import pytest
import torch

from tests.engine.cli_utils import call_tool, run_tool_here, tool_module

FAKE_TOOL = """
import argparse
import os
import sys

import torch

from mmdet_like.engine import get_logger
from mmdet_like.errors import ProjectError, run_tool

os.environ["CLI_UTILS_TEST_IMPORT"] = "set at import"


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("how", choices=["ok", "project_error", "exit_message", "exit_3", "bug"])
    args = parser.parse_args(argv)
    os.environ["CLI_UTILS_TEST_MAIN"] = "set in main"
    os.chdir("sub")
    torch.manual_seed(0)
    get_logger().info("logged from %s", os.path.basename(os.getcwd()))
    print("to stdout")
    print("to stderr", file=sys.stderr)
    if args.how == "project_error":
        raise ProjectError("the file 'x' is wrong")
    if args.how == "exit_message":
        sys.exit("fake_tool: a message")
    if args.how == "exit_3":
        sys.exit(3)
    if args.how == "bug":
        raise ZeroDivisionError("a bug")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
"""


@pytest.fixture
def fake_tool(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "fake_tool.py"
    path.write_text(FAKE_TOOL)
    return path


@pytest.mark.parametrize(
    "how, status, last_line",
    [
        ("ok", 0, "to stderr"),
        ("project_error", 1, "fake_tool.py: (for the traceback add --debug"),
        ("exit_message", 1, "fake_tool: a message"),
        ("exit_3", 3, "to stderr"),
        ("nothing", 2, "fake_tool.py: error: argument how: invalid choice: 'nothing'"),
    ],
)
def test_a_run_ends_as_the_process_and_restores_this_one(
    fake_tool, tmp_path, monkeypatch, how, status, last_line
):
    monkeypatch.delenv("MMDET_LIKE_DEBUG", raising=False)
    logger = logging.getLogger("mmdet_like")
    handlers, argv, cwd = list(logger.handlers), sys.argv, os.getcwd()
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)

    run = call_tool(fake_tool, how, cwd=tmp_path)
    assert run.status == status, run.output
    assert run.output.strip().splitlines()[-1].startswith(last_line), run.output
    if how != "nothing":
        assert run.stdout.endswith("to stdout\n") and "logged from sub" in run.stdout
        assert "to stderr\n" in run.stderr and "to stdout" not in run.stderr
    if how == "project_error":
        assert "fake_tool.py: error: the file 'x' is wrong\n" in run.stderr
    assert torch.equal(torch.rand(3), expected_draw)  # torch.manual_seed(0) undone
    assert sys.argv is argv and os.getcwd() == cwd
    assert "CLI_UTILS_TEST_IMPORT" not in os.environ and "CLI_UTILS_TEST_MAIN" not in os.environ
    assert logger.handlers == handlers


def test_a_bug_propagates_and_a_failing_run_may_not_print_a_traceback(fake_tool, tmp_path):
    with pytest.raises(ZeroDivisionError):
        call_tool(fake_tool, "bug", cwd=tmp_path)
    assert os.getcwd() != str(tmp_path / "sub")
    with pytest.raises(AssertionError, match="the file .x. is wrong"):
        run_tool_here([fake_tool, "project_error"], tmp_path, expect_rc=0)
    module = tool_module(fake_tool)
    original = module.main
    try:
        module.main = lambda: print("Traceback (most recent call last):") or 1
        with pytest.raises(AssertionError, match="Traceback"):
            call_tool(fake_tool, cwd=tmp_path)
    finally:
        module.main = original
    assert tool_module(fake_tool) is module  # imported once


def test_test_py_runs_here_and_the_allocator_it_switches_on_is_put_back(tmp_path):
    """tools/test.py makes the CPU caching allocator torch's (where the compiled ops are);
    after the run this process has the allocator it had, and its import-time variable
    (ONEDNN_PRIMITIVE_CACHE_CAPACITY) is gone again."""
    from mmdet_like.ops import cpu_caching_allocator_available, cpu_caching_allocator_enabled

    environ, before = dict(os.environ), cpu_caching_allocator_enabled()
    switched_on = []
    module = tool_module("test.py")
    original = module.main

    def main():
        switched_on.append(module.enable_cpu_caching_allocator_from_env())
        kept.append(torch.ones(1 << 20))  # a block of the cache, alive after the run
        return 3

    kept = []
    try:
        module.main = main
        assert call_tool("test.py", "config.py", cwd=tmp_path).status == 3
    finally:
        module.main = original
    assert switched_on == [cpu_caching_allocator_available()]
    assert cpu_caching_allocator_enabled() == before
    assert float(kept[0].sum()) == 1 << 20
    assert dict(os.environ) == environ
