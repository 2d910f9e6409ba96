"""Optional parts of acceltune and the pip extra that installs each: a missing one is a one-line error."""

from __future__ import annotations

import importlib
from types import ModuleType

from acceltune.errors import UserError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or raise a UserError naming ``pip install 'acceltune[extra]'``.

    Only ImportError counts as "not installed": a module that is present but fails on import for
    another reason keeps its own error."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or module
        if missing.split(".")[0] == "acceltune":  # our own code failed to import: a bug, not a missing extra
            raise
        what = f"{module} is not installed" if missing == module else f"{module} cannot be imported ({missing} is missing)"
        raise UserError(f"{what}: pip install 'acceltune[{extra}]'") from None
