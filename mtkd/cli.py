"""What every tool does with an error: a user's mistake is one line and a non-zero exit, not a traceback.

A missing file or data root, a config key or type that does not exist, an unusable checkpoint, a bad
sample: the messages raised for these already say which file, key and value, so the tools print just
that line (``error: ...``) and exit with 2. ``--debug`` on any tool, or ``MTKD_DEBUG=1`` in the
environment, shows the full traceback instead. Errors that are not a user's (a RuntimeError from torch,
an AssertionError) always keep their traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from mtkd.checkpoint import CheckpointError
from mtkd.config import ConfigError
from mtkd.data.io import InvalidSampleError

DEBUG_ENV = "MTKD_DEBUG"
USER_ERRORS = (ConfigError, CheckpointError, InvalidSampleError, OSError, ValueError, KeyError, TypeError,
               ImportError)
USAGE_EXIT = 2


def add_debug_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``--debug`` flag every tool takes (read by ``run_tool`` before parsing)."""
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of an error instead of one line (or set {DEBUG_ENV}=1)")
    return parser


def debug_requested(argv: Sequence[str] | None) -> bool:
    args = sys.argv[1:] if argv is None else list(argv)
    return "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def error_line(err: BaseException) -> str:
    """The message of an error as one ``error: ...`` line (a KeyError's message is not quoted)."""
    text = err.args[0] if isinstance(err, KeyError) and len(err.args) == 1 else str(err)
    text = str(text).strip() or type(err).__name__
    if isinstance(err, FileNotFoundError) and err.filename and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    return f"error: {text}"


def run_tool(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """``main(argv)``, with a user error printed as one line on stderr (exit 2) unless debugging."""
    try:
        return main(argv)
    except USER_ERRORS as err:
        if debug_requested(argv):
            raise
        print(error_line(err), file=sys.stderr)
        return USAGE_EXIT
