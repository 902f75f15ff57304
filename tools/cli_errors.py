"""Command-line input problems as one line, found before any work starts.

An analyst who gives a wrong path or number should learn it at once, in one line that
names the flag, the value as typed and what is expected, and find nothing half-written
on disk. A traceback, a three-line usage dump or a ``PermissionError`` after minutes of
model work teaches nothing. So every ``dara`` command:

- parses with :class:`OneLineParser` (an ``argparse`` error is one line, exit 2);
- checks its output paths with :func:`check_output_file` / :func:`check_output_dir`
  before doing anything, *without creating them* (a failed check leaves nothing behind);
- raises :class:`InputError` for a bad value, which :func:`report` prints as
  ``dara <command>: error: <flag> <value>: <problem>``.

Exit codes shared by every command: 0 done, 1 done but some episodes failed, 2 bad input
(nothing was done), 3 no new plan (``dara allocate``: the model's answer could not be used).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import NoReturn, TextIO

__all__ = ["InputError", "OneLineParser", "check_output_file", "check_output_dir", "check_number",
           "one_line", "report", "EXIT_OK", "EXIT_EPISODES_FAILED", "EXIT_BAD_INPUT", "EXIT_NO_PLAN"]

EXIT_OK, EXIT_EPISODES_FAILED, EXIT_BAD_INPUT, EXIT_NO_PLAN = 0, 1, 2, 3


class InputError(ValueError):
    """A bad command-line value: ``flag`` (``--json``), the ``value`` as given (or None)
    and the ``problem``; its message is one line."""

    def __init__(self, flag: str, value: object, problem: str):
        self.flag, self.value, self.problem = flag, value, problem
        shown = "" if value is None else f" {value}"
        super().__init__(one_line(f"{flag}{shown}: {problem}"))


def one_line(text: str) -> str:
    """``text`` with its line breaks folded (messages from libraries may hold several)."""
    return " ".join(str(text).split())


def report(prog: str, error: BaseException, stream: TextIO | None = None) -> int:
    """Print ``error`` as one line (``prog: error: ...``) and return the bad-input exit code."""
    print(f"{prog}: error: {one_line(error)}", file=stream or sys.stderr)
    return EXIT_BAD_INPUT


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line on stderr (exit 2), with a hint to ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def check_number(flag: str, value, *, minimum: float | None = None, above: float | None = None,
                 integer: bool = False) -> None:
    """``value`` is a finite number (a whole one with ``integer``) >= ``minimum`` / > ``above``."""
    if value is None:
        return
    kind = "a whole number" if integer else "a finite number"
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    bad = bad or (integer and float(value) != int(value))
    if not bad and minimum is not None and value < minimum:
        raise InputError(flag, _show(value), f"expected {kind} >= {_show(minimum)}")
    if not bad and above is not None and value <= above:
        raise InputError(flag, _show(value), f"expected {kind} > {_show(above)}")
    if bad:
        raise InputError(flag, _show(value), f"expected {kind}")


def _show(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _writable_dir(flag: str, path: Path, given: Path) -> None:
    """The directory that will hold ``given`` can be made and written to."""
    anc = _existing_ancestor(path)
    if not anc.is_dir():
        raise InputError(flag, given, f"{anc} is a file, not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise InputError(flag, given, f"cannot write in {anc} (permission denied)")


def check_output_file(flag: str, path: str | os.PathLike | None) -> None:
    """``path`` can be written as a file: not a directory, not read-only, its directory
    writable or creatable. Creates nothing."""
    if path is None:
        return
    p = Path(path)
    if str(path).endswith(os.sep) or p.is_dir():
        raise InputError(flag, path, "is a directory; expected a file name")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise InputError(flag, path, "cannot be overwritten (permission denied)")
        return
    _writable_dir(flag, p.parent, p)


def check_output_dir(flag: str, path: str | os.PathLike | None) -> None:
    """``path`` is an existing writable directory or can be created. Creates nothing."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(flag, path, "is a file; expected a directory")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise InputError(flag, path, "cannot write in this directory (permission denied)")
        return
    _writable_dir(flag, p, p)
