"""Atomic file writes and JSON reading: a crash or a kill leaves the old file or the new one,
never half of one."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary name beside `path`, flush it to disk, then rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # interrupted or failed: no half-written temporary file is left
        tmp.unlink(missing_ok=True)
        raise


def file_digest(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex): which file a result was made from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CifarlabError(f"{path} does not exist") from None
    except json.JSONDecodeError as e:
        raise CifarlabError(f"{path} is not valid JSON ({e.msg}, line {e.lineno})") from None


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    """Rewrite a JSON-lines file whole (atomically): one line per row."""
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
