"""Start-up: the package and the command line import only what a command uses (checked in fresh
interpreters through ``sys.modules``), and the lazy package keeps its public names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REF = Path(__file__).resolve().parent / "reference" / "data"
HEAVY = ("pandas", "numpy", "scipy", "matplotlib", "duckdb", "rich", "babel", "formulaic", "ibis", "pyarrow")


def loaded_after(code: str) -> set[str]:
    """The heavy top-level packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.strip().splitlines()[-1])) & set(HEAVY)


def test_import_edueffects_is_light() -> None:
    assert loaded_after("import edueffects") == set()
    assert loaded_after("import edueffects.cli") == set()


@pytest.mark.parametrize("words", [["--version"], ["--help"], ["meta", "--help"], ["recovery", "aggregate", "--help"]])
def test_version_and_help_import_nothing_heavy(words: list[str]) -> None:
    code = f"from edueffects.cli import main\ntry:\n    main({words!r})\nexcept SystemExit:\n    pass"
    assert loaded_after(code) == set()


def test_meta_command_does_not_import_matplotlib(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    words = ["meta", str(REF / "konstantopoulos2011.csv"), "--yi", "yi", "--vi", "vi", "--cluster", "district",
             "--within", "school", "--robust", "district", "--json", str(out), "--quiet"]  # fmt: skip
    loaded = loaded_after(f"from edueffects.cli import main\nassert main({words!r}) == 0")
    assert "matplotlib" not in loaded and "rich" not in loaded and "babel" not in loaded
    assert len(json.loads(out.read_text())["variance_ci"]) == 2
    assert "matplotlib" not in loaded_after("import edueffects\nedueffects.meta")


def test_meta_command_runs_without_pandas(tmp_path: Path) -> None:
    """Numeric moderators, text cluster labels, a missing value dropped and CR2: no DataFrame is needed,
    and the result is the Python API's on a DataFrame."""
    rows = ["study,esid,yi,vi,x"]
    rng = np.random.default_rng(3)
    for i in range(40):
        x = "" if i == 7 else f"{rng.normal():.6f}"
        rows.append(f"s{i // 4},{i},{rng.normal(0.2, 0.4):.6f},{rng.uniform(0.01, 0.1):.6f},{x}")
    data = tmp_path / "effects.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out.json"
    words = ["meta", str(data), "--yi", "yi", "--vi", "vi", "--cluster", "study", "--within", "esid", "--mods", "x",
             "--robust", "study", "--drop-missing", "--json", str(out), "--quiet"]  # fmt: skip
    loaded = loaded_after(f"from edueffects.cli import main\nassert main({words!r}) == 0")
    assert not loaded & {"pandas", "pyarrow", "formulaic", "matplotlib"}, loaded
    import pandas as pd

    import edueffects as ee

    frame = pd.read_csv(data)
    res = ee.meta(frame, "yi", "vi", cluster="study", within="esid", mods=["x"], missing="drop")
    got = json.loads(out.read_text())
    assert [c["estimate"] for c in got["coefficients"]] == pytest.approx(res.coefficients.estimate, rel=1e-12)
    assert [c["se"] for c in got["robust"]["coefficients"]] == pytest.approx(
        res.robust("study").coefficients.se, rel=1e-12
    )
    assert got["input"]["rows_dropped"] == 1


def test_public_names_resolve_lazily() -> None:
    code = (
        "import edueffects\n"
        "from edueffects.meta import fit, result\n"  # binds the subpackage: the public name stays the function
        "from edueffects import InputError, anova, meta, simulate\n"
        "assert callable(edueffects.meta) and edueffects.meta is meta is fit.meta\n"
        "assert callable(edueffects.soma) and callable(edueffects.recovery)\n"
        "assert edueffects.MetaResult is result.MetaResult and callable(simulate.soma)\n"
        "assert issubclass(edueffects.InputError, ValueError) and callable(anova)\n"
        "assert set(edueffects.__all__) <= set(dir(edueffects))\n"
        "try:\n    edueffects.no_such_name\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit(1)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
