"""Outputs: never an input, never half-written, replaced in one step, named by safe slugs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edueffects import InputError
from edueffects.io.outputs import (
    MARKER,
    check_not_input,
    check_output_file,
    check_output_folder,
    new_folder,
    slug,
    write_file,
    write_folder,
)


def test_slugs_are_safe_file_names() -> None:
    assert slug("forest") == "forest"
    assert slug("gain_by_ses_tercile") == "gain_by_ses_tercile"
    for label in ("ses/income", "../../etc/passwd", "$x$", "a b", "ö", "", "con", "x" * 300, "\u202eevil"):
        name = slug(label)
        assert name and "/" not in name and ".." not in name and len(name) <= 87
        assert all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in name)
    assert slug("ses/income") != slug("ses_income")


def test_an_output_is_never_an_input(tmp_path: Path) -> None:
    data = tmp_path / "tables" / "effects.csv"
    data.parent.mkdir()
    data.write_text("yi,vi\n")
    with pytest.raises(InputError, match="is an input"):
        check_output_file(data, [data], "--json")
    with pytest.raises(InputError, match="contains the input"):
        check_output_folder(tmp_path, [data], "--out")
    with pytest.raises(InputError, match="contains the input"):
        check_output_folder(tmp_path / "tables", [data], "--out")
    with pytest.raises(InputError, match="lies inside the input"):
        check_not_input(data / "x", [data], "--out")
    os.chdir(tmp_path)
    with pytest.raises(InputError, match="contains the input"):
        check_output_folder(Path("."), [Path("tables/effects.csv")], "--out")
    check_output_folder(tmp_path / "report", [data], "--out")  # beside the inputs: fine


def test_output_paths_of_the_wrong_kind(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("mine")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "mine.txt").write_text("mine")
    with pytest.raises(InputError, match="is a folder; give a file name"):
        check_output_file(tmp_path / "folder")
    with pytest.raises(InputError, match=r"folder '.*' does not exist"):
        check_output_file(tmp_path / "nope" / "x.json")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "file.txt")
    with pytest.raises(InputError, match="already holds other files"):
        check_output_folder(tmp_path / "folder")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "file.txt" / "report")
    assert (tmp_path / "folder" / "mine.txt").read_text() == "mine"


def test_files_are_written_whole(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_file(target, "first")
    write_file(target, b"second")
    assert target.read_text() == "second" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_folders_are_replaced_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "report"
    write_folder(target, {"index.html": "one", "tables/a.csv": "a", "old.csv": "stale"})
    assert (target / MARKER).exists()
    write_folder(target, {"index.html": "two", "tables/b.csv": "b"})
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == [
        MARKER, "index.html", "tables", "tables/b.csv"
    ]  # fmt: skip
    with pytest.raises(RuntimeError), new_folder(target) as tmp:
        (tmp / "index.html").write_text("three")
        raise RuntimeError("the analysis failed")
    assert (target / "index.html").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temporary folder left


def test_legacy_reports_and_empty_folders_are_replaceable(tmp_path: Path) -> None:
    legacy = tmp_path / "old"
    (legacy / "tables").mkdir(parents=True)
    (legacy / "index.html").write_text("old")
    (legacy / "soma.json").write_text("{}")
    write_folder(legacy, {"index.html": "new"})
    assert sorted(p.name for p in legacy.iterdir()) == sorted([MARKER, "index.html"])
    (tmp_path / "empty").mkdir()
    write_folder(tmp_path / "empty", {"x.txt": "x"})


WRITER = textwrap.dedent(
    """
    import sys
    from edueffects.io.outputs import write_folder
    target, start = sys.argv[1], int(sys.argv[2])
    for version in range(start, start + 10_000):
        files = {f"tables/t{i:03d}.csv": f"{version}\\n" + "x" * 20_000 for i in range(60)}
        files["index.html"] = f"{version}\\n"
        write_folder(target, files)
        print(version, flush=True)
    """
)


def _state(folder: Path) -> set[str] | None:
    """The versions the folder's files hold (one version: consistent), or None when it is absent."""
    if not folder.exists():
        return None
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != MARKER]
    assert len(files) == 61 and (folder / MARKER).exists(), sorted(p.name for p in folder.rglob("*"))
    return {p.read_text().split("\n", 1)[0] for p in files}


def test_a_killed_writer_leaves_the_previous_or_the_new_folder(tmp_path: Path) -> None:
    """SIGKILL at random points of repeated folder writes: every time, one complete version."""
    target = tmp_path / "report"
    rng = random.Random(2026)
    for version in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), str(version * 10_000)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one folder written
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        versions = _state(target)
        assert versions is not None and len(versions) == 1, versions
    write_folder(target, {"index.html": "done"})  # a later run clears the killed runs' temporary folders
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
