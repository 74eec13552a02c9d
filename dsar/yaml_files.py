"""Reading the project's YAML files (systems, register, translations) with libyaml when present.

PyYAML's pure-Python parser costs a quarter of a second for the systems file alone, and every
flow-run process reads these files once; the C parser reads the same documents in a tenth of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["read_yaml"]

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> Any:
    """The document in the UTF-8 file at ``path``, safely loaded (plain data only)."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - a safe loader
