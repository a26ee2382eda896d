"""What every command of the command line shares.

- Failures end in one line in the user's language and an exit code: 2 for bad input (and for the
  file system refusing a path), 3 for a fault of the program (with the hint to rerun with ``--debug``,
  which shows the traceback), 130 when interrupted. Python warnings become one line each.
- argparse's own messages (a missing or unknown option) are one line too, translated.
- Linear algebra runs on one thread unless the user says otherwise (see :func:`single_threaded_blas`).
- The reading options of every command that reads tables (``--decimal``, ``--delimiter``,
  ``--encoding``, ``--drop-missing``) and the checks of outputs before any work starts.

Kept light: nothing heavy is imported until it is needed.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from edueffects.core.errors import InputError, Message, Phrase

if TYPE_CHECKING:
    from edueffects.io import ReadOptions
    from edueffects.report.i18n import Language

EXIT_INPUT = 2
EXIT_FAULT = 3
EXIT_INTERRUPTED = 130
LANGUAGES = ("en", "nl", "de")

_current = {"code": "en"}

REASONS = {
    errno.EACCES: Phrase("permission denied"),
    errno.EPERM: Phrase("permission denied"),
    errno.ENOSPC: Phrase("no space left on the disk"),
    errno.EROFS: Phrase("the file system is read-only"),
    errno.EISDIR: Phrase("it is a folder"),
    errno.ENOTDIR: Phrase("a part of the path is not a folder"),
    errno.ENOENT: Phrase("it does not exist"),
    errno.ENAMETOOLONG: Phrase("the name is too long"),
    errno.EEXIST: Phrase("it already exists"),
    errno.EDQUOT: Phrase("no space left on the disk"),
}


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_blas() -> None:
    """One BLAS thread for the process, unless a thread count is set in the environment.

    The commands' matrix products are small (clusters, cells, jets of a few parameters): a second
    BLAS thread gains little there, and when the cores are busy (another job, DuckDB's readers) each
    product waits for it to be scheduled, which made a recovery fit 3-5 times slower. Takes effect
    only before numpy is first imported (the command line imports it on first use).
    """
    if "numpy" in sys.modules or any(os.environ.get(name) for name in BLAS_THREAD_VARIABLES):
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


def language() -> Language:
    from edueffects.report.i18n import Language

    return Language.of(_current["code"])


def translate(message: str) -> str:
    """``message`` in the user's language; the catalogue is loaded on the first call."""
    return language()(message)


def prescan_language(words: Sequence[str]) -> str:
    """The ``--lang`` of a command line before it is parsed (errors of parsing speak it too)."""
    code = "en"
    for i, word in enumerate(words):
        if word == "--lang" and i + 1 < len(words):
            code = words[i + 1]
        elif word.startswith("--lang="):
            code = word.split("=", 1)[1]
    return code if code in LANGUAGES else "en"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one translated line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        lang = language()
        line = lang("edueffects: error: {message}").format(message=message)
        hint = lang("(see '{command} --help')").format(command=self.prog)
        self.exit(EXIT_INPUT, f"{line} {hint}\n")


@contextmanager
def argparse_language(code: str) -> Iterator[None]:
    """argparse's messages (``the following arguments are required``) in the user's language."""
    _current["code"] = code if code in LANGUAGES else "en"
    if _current["code"] == "en":
        yield
        return
    lang = language()
    original = argparse._  # type: ignore[attr-defined]
    argparse._ = lang  # type: ignore[attr-defined]
    try:
        yield
    finally:
        argparse._ = original  # type: ignore[attr-defined]


def whole(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum`` (seeds, counts)."""

    def parse(text: str) -> int:
        lang = translate
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(lang("'{value}' is not a whole number").format(value=text)) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                lang("{value} is less than {minimum}").format(value=value, minimum=minimum)
            )
        return value

    return parse


def number(low: float | None = None, high: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number, strictly between ``low`` and ``high`` when given."""

    def parse(text: str) -> float:
        lang = translate
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(lang("'{value}' is not a number").format(value=text)) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(lang("{value} is not a finite number").format(value=text))
        if (low is not None and value <= low) or (high is not None and value >= high):
            bounds = f"({'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'})"
            raise argparse.ArgumentTypeError(lang("{value} lies outside {bounds}").format(value=text, bounds=bounds))
        return value

    return parse


def reading_parent() -> Parser:
    """The reading options of a command that reads tables."""
    parent = Parser(add_help=False)
    group = parent.add_argument_group("reading tables")
    group.add_argument(
        "--decimal",
        choices=[".", ","],
        help="decimal mark of numbers in text files (default: detected when unambiguous, and said)",
    )
    group.add_argument("--delimiter", metavar="CHAR", help="delimiter of text files (default: detected; 'tab' for tab)")
    group.add_argument(
        "--encoding", metavar="NAME", help="encoding of text files (default: UTF-8; cp1252 for older Windows exports)"
    )
    group.add_argument(
        "--drop-missing",
        action="store_true",
        help="drop rows with missing values in the columns the analysis uses (counted per column)",
    )
    return parent


def read_options(args: argparse.Namespace) -> ReadOptions:
    from edueffects.io import ReadOptions

    delimiter = getattr(args, "delimiter", None)
    if delimiter is not None and delimiter.lower() in ("tab", "\\t"):
        delimiter = "\t"
    return ReadOptions(
        decimal=getattr(args, "decimal", None), delimiter=delimiter, encoding=getattr(args, "encoding", None)
    )


def check_outputs(
    inputs: Sequence[str | Path | None], json: str | None = None, folders: Sequence[tuple[str, str | None]] = ()
) -> None:
    """Before any work: ``--json`` and output folders are usable and never inputs."""
    from edueffects.io.outputs import check_output_file, check_output_folder

    given = [Path(p) for p in inputs if p is not None]
    if json is not None and json != "-":
        check_output_file(json, given, "--json")
    for option, folder in folders:
        if folder is not None:
            check_output_folder(folder, given, option)
            if json is not None and json != "-":
                from edueffects.io.outputs import check_not_input

                check_not_input(Path(json), [folder], "--json")


def translated(notes: Sequence[Message | str]) -> list[str]:
    if not notes:  # no catalogue to load
        return []
    lang = language()
    return [n.translated(lang) if isinstance(n, Message) else n for n in notes]


def notes_lines(notes: Sequence[Message | str]) -> list[str]:
    if not notes:
        return []
    lang = language()
    return [lang("Note: {note}").format(note=note) for note in translated(notes)]


def missing_note(counts: dict[str, int], rows: int) -> Message:
    listed = ", ".join(f"{column} {n}" for column, n in counts.items() if n)
    return Message("{0} row(s) with missing values dropped (missing values per column: {1})", rows, listed or "-")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def _os_error(exc: OSError) -> InputError:
    reason = REASONS.get(exc.errno or -1)
    where = exc.filename if exc.filename is not None else exc.filename2
    text: object = reason if reason is not None else (exc.strerror or _first_line(exc) or type(exc).__name__)
    if where is None:
        return InputError("the file system refused: {0}", text)
    return InputError("cannot use '{0}': {1}", where, text)


@contextmanager
def one_line_warnings(debug: bool) -> Iterator[None]:
    """Python warnings as one line each (with ``--debug``: as Python shows them)."""
    if debug:
        yield
        return
    with warnings.catch_warnings():

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: object = None,
            line: str | None = None,
        ) -> None:
            text = _first_line(message if isinstance(message, Warning) else Exception(message)) or category.__name__
            lang = language()
            sys.stderr.write(lang("edueffects: warning: {message}").format(message=text) + "\n")

        warnings.showwarning = show
        yield


def guarded(run: Callable[[], int], debug: bool) -> int:
    """Run a command; every failure becomes one line on stderr and an exit code."""
    single_threaded_blas()
    try:
        with one_line_warnings(debug):
            return run()
    except SystemExit as exc:  # argparse: --help, --version, or a one-line usage error
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_INPUT)
    except InputError as exc:
        if debug:
            traceback.print_exc()
        lang = language()
        print(lang("edueffects: error: {message}").format(message=exc.translated(lang)), file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:
        if debug:
            traceback.print_exc()
        lang = language()
        print(lang("edueffects: error: {message}").format(message=_os_error(exc).translated(lang)), file=sys.stderr)
        return EXIT_INPUT
    except MemoryError:
        if debug:
            traceback.print_exc()
        lang = language()
        line = lang("edueffects: error: {message}").format(
            message=lang("out of memory: the input is too large for this computer")
        )
        print(line, file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print(language()("edueffects: interrupted"), file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            traceback.print_exc()
        lang = language()
        text = lang(
            "edueffects: internal error ({kind}: {message}); this is a fault of the program, not of your input: "
            "please report it, and rerun with --debug to see the traceback"
        ).format(kind=type(exc).__name__, message=_first_line(exc))
        print(text, file=sys.stderr)
        return EXIT_FAULT
