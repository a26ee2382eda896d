"""Real example data shipped with the package (read with :func:`load`)."""

from __future__ import annotations

from importlib import resources
from typing import Literal

import pandas as pd

Dataset = Literal["konstantopoulos2011", "oh2009"]

DESCRIPTIONS: dict[str, str] = {
    "konstantopoulos2011": (
        "Konstantopoulos (2011): 56 standardized mean differences of modified school calendars on achievement, "
        "from schools nested in 11 districts (real data; metafor's dat.konstantopoulos2011)."
    ),
    "oh2009": (
        "Oh (2009): Big Five validities for job performance by country (k, mean r, observed variance of r, "
        "corrected mean rho), for Schmidt & Oh's second-order meta-analysis (real data; psychmeta's data_r_oh_2009)."
    ),
}


def load(name: Dataset) -> pd.DataFrame:
    """Load an embedded data set by name."""
    with resources.files(__package__).joinpath(f"{name}.csv").open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle)
