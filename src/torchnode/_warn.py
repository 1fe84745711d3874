"""Warnings that point at the caller's line, not into torchnode."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

__all__ = ["warn"]


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the innermost frame outside this package and torch."""
    frame = sys._getframe(2)
    level = 2
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        inside = path.startswith(_PACKAGE_DIR) or f"{os.sep}torch{os.sep}" in path
        if not inside:
            return level
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` with the stacklevel of the first frame outside torchnode."""
    warnings.warn(message, category, stacklevel=_user_stacklevel())
