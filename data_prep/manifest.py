"""`manifest.json`: what a shard folder holds, rewritten atomically as languages finish.

A language is complete exactly when it has an entry here; folders without one are leftovers
of an interrupted run and are rebuilt.
"""
from __future__ import annotations

import json
from pathlib import Path

from .write_errors import write_atomically

MANIFEST = "manifest.json"
TOKENIZER_FILE = "tokenizer.model"      # inside the shard folder; the manifest names it relative to the folder
FORMAT_VERSION = 1


def manifest_path(root: str | Path) -> Path:
    return Path(root) / MANIFEST


def read_manifest(root: str | Path) -> dict | None:
    path = manifest_path(root)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a data_prep manifest ({e}); point data.root / --out at a folder "
                         f"data_prep.shards wrote, or delete this one and build it again") from None


def write_manifest(root: str | Path, manifest: dict) -> None:
    write_atomically(manifest_path(root), _dumps(manifest))


def _dumps(manifest: dict) -> str:
    """One key per line and one language per line: readable, diffable, and written by json's C encoder
    (an indented dump is pure Python and, rewritten after every language, cost more than a small language)."""
    def line(key: str, value, indent: str) -> str:
        return f"{indent}{json.dumps(key)}: {json.dumps(value, sort_keys=True)}"

    items = []
    for key in sorted(manifest):
        if key == "languages" and manifest[key]:
            langs = manifest[key]
            body = ",\n".join(line(label, langs[label], "  ") for label in sorted(langs))
            items.append(f' "languages": {{\n{body}\n }}')
        else:
            items.append(line(key, manifest[key], " "))
    return "{\n" + ",\n".join(items) + "\n}\n"


def new_manifest(row_length: int, tokenizer: dict, command: list[str], settings: dict) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "row_length": row_length,
        "tokenizer": tokenizer,
        "command": command,
        "settings": settings,
        "columns": {"input_ids": f"ndarray:uint32:{row_length}", "cu_seqlens": "ndarray:int32"},
        "languages": {},
        "empty": {},                                   # labels with no training rows, and why
    }
