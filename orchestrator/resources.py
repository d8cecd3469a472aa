"""Where the templates and the default spec live: inside the package when installed from a wheel,
at the repository root in a source checkout (editable install)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource(name: str) -> Path:
    for base in (_PACKAGE, _PACKAGE.parent):
        if (base / name).exists():
            return base / name
    raise FileNotFoundError(f"crdb-certs is installed without its {name!r}; reinstall the package")
