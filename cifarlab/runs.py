"""Run folders: where each command leaves its config, metrics, figures and summary.

Every file is written atomically (to a temporary name, then renamed), so a crash or a
kill leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError


def new_run_dir(
    out: str | os.PathLike | None, kind: str, root: str = "runs", create: bool = True
) -> Path:
    """The folder for a run: `out` if given, else runs/KIND-YYYYmmdd-HHMMSS.

    With create=False only the path is chosen; the caller creates it once its setup has
    succeeded, so that bad input leaves no empty run folder behind.
    """
    if out is not None:
        path = Path(out)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(root) / f"{kind}-{stamp}"
        n = 1
        while path.exists():
            n += 1
            path = Path(root) / f"{kind}-{stamp}-{n}"
    if path.exists() and not path.is_dir():
        raise CifarlabError(f"--out {path} is a file, not a folder; choose another path")
    if create:
        make_dir(path)
    return path


def make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CifarlabError(f"cannot create run folder {path}: {e.strerror}") from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CifarlabError(f"{path} does not exist") from None
    except json.JSONDecodeError as e:
        raise CifarlabError(f"{path} is not valid JSON ({e.msg}, line {e.lineno})") from None


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Rewrite a JSON-lines file whole (atomic): one line per row."""
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
