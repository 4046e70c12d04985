"""Read a device emulator's JSON config file with one-line errors (every emulator exits 2 on them)."""

from __future__ import annotations

import json
from typing import Any


def read_json(path: str) -> Any:
    """The parsed file; a ValueError that names the file and what is wrong with it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
