"""Writing outputs without loss: never over an input, never half-written.

- A file (JSON, a simulated table) is written to a temporary file beside it and renamed over the
  target in one step.
- A folder (a report, a set of figures) is written into a fresh temporary folder beside the target
  and then swapped into place in one step (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames),
  so a run that is killed leaves the previous folder or the new one, and files of an earlier run never
  linger beside new ones. A folder is replaced only when it is empty or was written by this program
  (it carries :data:`MARKER`); anything else is refused.
- An output never is, contains or lies inside an input.
- File names from data labels go through :func:`slug`.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import shutil
import sys
import tempfile
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from edueffects.core.errors import InputError

MARKER = ".edueffects-output"
# what an edueffects report folder held before it carried the marker
LEGACY_REPORT = frozenset({"index.html", "soma.json", "recovery.json", "meta.json", "tables"})
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?:partial|previous)-(?P<pid>\d+)-[^/]*$")


def slug(label: str, limit: int = 80) -> str:
    """A safe file name from a label: ASCII letters, digits, ``-`` and ``_``; a short hash keeps two labels
    that differ only in other characters apart (``ses/income`` -> ``ses_income-1a2b3c``)."""
    ascii_text = unicodedata.normalize("NFKD", str(label)).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9_-]+", "_", ascii_text).strip("_-")[:limit] or "figure"
    if text != label:
        text += "-" + hashlib.sha1(str(label).encode("utf-8")).hexdigest()[:6]
    return text


def _resolved(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def check_not_input(target: Path, inputs: Sequence[str | Path], option: str) -> None:
    """Refuse an output that is an input, contains one or lies inside one."""
    out = _resolved(target)
    for item in inputs:
        given = _resolved(item)
        if out == given:
            raise InputError(
                "{0}: '{1}' is an input; choose another name (inputs are never overwritten)", option, target
            )
        if given.is_relative_to(out):
            raise InputError(
                "{0}: folder '{1}' contains the input '{2}'; choose another folder (inputs are never overwritten)",
                option,
                target,
                item,
            )
        if out.is_relative_to(given):
            raise InputError("{0}: '{1}' lies inside the input '{2}'", option, target, item)


def _writable_folder(folder: Path, option: str) -> None:
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError("{0}: '{1}' is a file, not a folder", option, existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError("{0}: folder '{1}' is not writable", option, existing)


def check_output_file(target: str | Path, inputs: Sequence[str | Path] = (), option: str = "--json") -> Path:
    """A file output: not a folder, not an input, in an existing, writable folder."""
    path = Path(target)
    if str(target) == "" or path.is_dir():
        raise InputError("{0}: '{1}' is a folder; give a file name", option, target)
    check_not_input(path, inputs, option)
    parent = path.parent
    if not parent.exists():
        raise InputError("{0}: folder '{1}' does not exist", option, parent)
    _writable_folder(parent, option)
    return path


def replaceable(folder: Path) -> bool:
    """An existing folder that a new output may replace: empty, or written by this program."""
    entries = {p.name for p in folder.iterdir()}
    return not entries or MARKER in entries or ("index.html" in entries and entries <= LEGACY_REPORT)


def check_output_folder(target: str | Path, inputs: Sequence[str | Path] = (), option: str = "--out") -> Path:
    """A folder output: not a file, no input inside it, empty or an earlier output, writable."""
    path = Path(target)
    if path.exists() and not path.is_dir():
        raise InputError("{0}: '{1}' is a file, not a folder", option, target)
    check_not_input(path, inputs, option)
    if path.is_dir() and not replaceable(path):
        raise InputError(
            "{0}: folder '{1}' already holds other files; choose a new or empty folder (nothing is deleted)",
            option,
            target,
        )
    _writable_folder(path.parent, option)
    return path


def write_file(target: str | Path, data: str | bytes) -> None:
    """Write a file atomically: a temporary file beside it, renamed over it (never a partial file)."""
    path = Path(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    except OSError as exc:  # name the target, not the temporary file
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_leftovers(parent: Path, name: str) -> None:
    """Remove temporary folders of killed earlier runs for the same target."""
    for entry in parent.iterdir():
        match = _PARTIAL.match(entry.name)
        if match and match.group("name") == name and not _alive(int(match.group("pid"))):
            shutil.rmtree(entry, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 with RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _into_place(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.rename(tmp, target)
        return
    if _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous output
        return
    previous = target.with_name(f".{target.name}.previous-{os.getpid()}-{os.urandom(3).hex()}")
    os.rename(target, previous)
    os.rename(tmp, target)
    shutil.rmtree(previous, ignore_errors=True)


@contextmanager
def new_folder(target: str | Path, option: str = "--out") -> Iterator[Path]:
    """A fresh temporary folder beside ``target``; on success it replaces ``target`` in one step,
    on failure it is removed and ``target`` is untouched."""
    path = Path(target)
    check_output_folder(path, (), option)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(parent, path.name)
    try:
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.partial-{os.getpid()}-"))
    except OSError as exc:  # name the target, not the temporary folder
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        yield tmp
        (tmp / MARKER).write_text("written by edueffects; the folder is replaced as a whole by the next run\n")
        _into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_folder(target: str | Path, files: Mapping[str, str | bytes], option: str = "--out") -> Path:
    """Write a folder of files (relative names, ``tables/x.csv``) in one step; returns the folder."""
    path = Path(target)
    with new_folder(path, option) as tmp:
        for name, data in files.items():
            file = tmp / name
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path
