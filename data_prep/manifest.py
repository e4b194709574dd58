"""`manifest.json`: what a shard folder holds, rewritten atomically as languages finish.

A language is complete exactly when it has an entry here; folders without one are leftovers
of an interrupted run and are rebuilt.
"""
from __future__ import annotations

import json
from pathlib import Path

from .mds_rows import HASH
from .write_errors import write_atomically

MANIFEST = "manifest.json"
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
        "shard_hash": HASH,                            # every shard file's hash is in its index.json
        "languages": {},
        "empty": {},                                   # labels with no training rows, and why
    }


def shard_tokenizer(root: str | Path, manifest: dict) -> Path:
    """The tokenizer a shard folder was made with: inside the folder (relative path) or, for folders from before it
    travelled with them, where the manifest says; checked by sha256 either way."""
    from .tokenizer import file_sha256

    named = Path(manifest["tokenizer"]["path"])
    path = named if named.is_absolute() else Path(root) / named
    if not path.exists():
        raise ValueError(f"the tokenizer of {root} ({path}) is missing; copy the whole shard folder (it holds "
                         f"{named.name}) or rebuild it with data_prep.shards")
    if file_sha256(path) != manifest["tokenizer"]["sha256"]:
        raise ValueError(f"the tokenizer {path} is not the one {root} was made with (sha256 differs); restore it or rebuild the shards")
    return path


def held_out_lines(root: str | Path, manifest: dict, labels: list[str]) -> dict[str, dict[int, str]]:
    """label -> {line number: text} of the documents a `--parallel` build held out (its heldout.jsonl files)."""
    import json

    out = {}
    for label in labels:
        path = Path(root) / label / "heldout.jsonl"
        if label in manifest["languages"] and path.exists():
            records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
            out[label] = {r["line"]: r["text"] for r in records}
    return out
