"""Second-order meta-analysis workflow: ``soma()`` and its parts (schema, quality, overlap, Schmidt-Oh)."""

from edueffects.soma.fit import soma
from edueffects.soma.result import SomaResult

__all__ = ["SomaResult", "soma"]
