"""The base of the project's own errors, and how the command-line tools report them.

Every error the project raises on purpose (a bad config, registry entry, dataset file,
checkpoint, ...) derives from :class:`ProjectError` as well as from the built-in class it
has always been (``ValueError``, ``KeyError``, ...), so callers that catch the built-in
class keep working. Its message names the file, the field and the fix, so the tools print
that message alone (:func:`run_tool`) instead of a traceback.
"""

import os
import sys

DEBUG_ENV = "MMDET_LIKE_DEBUG"


class ProjectError(Exception):
    """An error whose message says what is wrong and how to fix it."""


class StoppedBySignal(ProjectError):
    """A run stopped on SIGINT (Ctrl-C) or SIGTERM; the message says what was saved and how
    to go on. The tool prints it as one line (not as an error) and exits with
    ``exit_status``: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as a
    shell reports a process that a signal ended."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_status = 128 + int(signum)


def debug_requested(argv):
    """``--debug`` among ``argv`` or ``MMDET_LIKE_DEBUG`` set (to anything but 0)."""
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run_tool(main, prog=None):
    """Run a tool's ``main()`` as its ``__main__`` block; returns the process exit status.

    A :class:`ProjectError` is printed as one line, ``<prog>: error: <message>``, and the
    status is 1 (a :class:`StoppedBySignal` as ``<prog>: <message>``, its status 130 or
    143; a ``KeyboardInterrupt`` as ``<prog>: interrupted (Ctrl-C)``, status 130); with
    ``--debug`` on the command line (taken out of ``sys.argv`` before ``main`` parses it)
    or ``MMDET_LIKE_DEBUG=1`` it propagates with its traceback. Other exceptions (bugs)
    always show their traceback. An int returned by ``main`` is the
    status; anything else is 0.
    """
    prog = prog or os.path.basename(sys.argv[0])
    debug = debug_requested(sys.argv[1:])
    sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a != "--debug")]
    try:
        result = main()
    except StoppedBySignal as exc:
        if debug:
            raise
        print(f"{prog}: {str(exc).strip()}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except ProjectError as exc:
        if debug:
            raise
        message = str(exc).strip() or type(exc).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        print(f"{prog}: (for the traceback add --debug or set {DEBUG_ENV}=1)", file=sys.stderr)
        return 1
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
