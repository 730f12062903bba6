"""How the `cnnlab` command ends: an exit status and, for each way a verb can fail, one line
on stderr saying what to do; no traceback, except for a bug's, which is kept in a file.

    0    done                       1    the command was right, the design was not (a model
    2    a user's error (one line)       that breaks its [spec], a loss that diverged)
    130  stopped by Ctrl-C          143  stopped by SIGTERM         70   a bug: please report it
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import traceback
from collections.abc import Callable

from cnnlab import __version__
from cnnlab.errors import CnnlabError, DivergedError, SpecError

INTERNAL_ERROR = 70  # EX_SOFTWARE (sysexits.h): cnnlab's fault, not the user's


def exit_status(verb: Callable[[], int | None],
                resume_hint: Callable[[KeyboardInterrupt], str]) -> int:
    """Run `verb`; its exit status, with the line for what went wrong. `resume_hint` says how
    to continue what a stop interrupted."""
    try:
        return verb() or 0
    except (SpecError, DivergedError) as exc:
        print(f"cnnlab: {exc}", file=sys.stderr)
        return 1
    except CnnlabError as exc:
        print(f"cnnlab: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a path the user gave: read-only, missing, full
        print(f"cnnlab: error: {_os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        reason = getattr(exc, "reason", exc.args[0] if exc.args else "SIGINT") or "SIGINT"
        print(f"cnnlab: stopped by {reason}{resume_hint(exc)}", file=sys.stderr)
        return 143 if reason == "SIGTERM" else 130
    except Exception as exc:  # a bug: one line for the user, the traceback kept for the report
        if os.environ.get("CNNLAB_DEBUG") == "1":
            raise
        print(f"cnnlab: internal error: {type(exc).__name__}: {_first_line(exc)}; traceback "
              f"written to {_keep_traceback()}; please report it", file=sys.stderr)
        return INTERNAL_ERROR


def terminated(_signum: int, _frame: object) -> None:
    """SIGTERM stops a run the way Ctrl-C does: the write in flight completes or is dropped
    whole, the run folder says so in its log, and it can be resumed."""
    raise KeyboardInterrupt("SIGTERM")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


def _keep_traceback() -> str:
    """The current exception's traceback, in a file of its own under the temp folder."""
    fd, path = tempfile.mkstemp(prefix="cnnlab-crash-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"cnnlab {__version__}, python {sys.version.split()[0]}, argv {sys.argv}\n")
        traceback.print_exc(file=handle)
    return path


def _os_error_line(exc: OSError) -> str:
    """One line: which path, what went wrong, what to do."""
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return (f"{where}the disk is full; free some space (every file written so far is "
                "whole) and run again, or --resume the run")
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"{where}is a file, not a folder; choose another --out"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}cannot write here ({exc.strerror}); choose another --out"
    return f"{where}{exc.strerror or exc}"
