"""Check a shard folder in one pass: every file its index.json lists is there, of its size and hash.

    python -m data_prep.verify SHARDS

Shards travel (cp, rsync, a bucket sync, a download) and a byte damaged on the way trains silently unless
it is checked. Training checks what streaming checks (a file's hash on download and when it decompresses a
local shard first); this reads every file, the decompressed copies streaming leaves beside a local shard
included, and names each bad one with the fix. Exit 0: all intact; 2: something is wrong (each problem on
its own line).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import xxhash

from .manifest import read_manifest
from .mds_rows import HASH


def file_hash(path: Path) -> str:
    h = xxhash.xxh64()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 23), b""):
            h.update(block)
    return h.hexdigest()


def split_problems(split: Path) -> tuple[list[str], int, int]:
    """(problems, files checked, bytes read) of one `<label>/<split>` folder."""
    index = split / "index.json"
    try:
        shards = json.loads(index.read_text())["shards"]
    except (OSError, ValueError, KeyError) as e:
        return [f"{index}: unreadable ({type(e).__name__}: {e})"], 0, 0
    problems, files, read = [], 0, 0
    for shard in shards:
        for info, required in ((shard.get("zip_data"), True), (shard["raw_data"], shard.get("zip_data") is None)):
            if not info:
                continue
            path = split / info["basename"]
            if not path.exists():
                if required:
                    problems.append(f"{path}: missing")
                continue                      # a decompressed copy streaming has not made (yet)
            files += 1
            size = path.stat().st_size
            if size != info["bytes"]:
                problems.append(f"{path}: {size} bytes, index.json says {info['bytes']}")
                continue
            want = info.get("hashes", {}).get(HASH)
            if want is None:
                problems.append(f"{path}: index.json holds no {HASH} (shards from before data_prep hashed them: rebuild to check)")
                continue
            read += size
            if file_hash(path) != want:
                problems.append(f"{path}: damaged ({HASH} differs from index.json)")
    return problems, files, read


def verify(root: Path) -> tuple[list[str], int, int]:
    """(problems, files checked, bytes read) of a whole shard folder."""
    manifest = read_manifest(root)
    if manifest is None:
        raise ValueError(f"{root} has no manifest.json; give a folder data_prep.shards wrote")
    problems, files, read = [], 0, 0
    for label in sorted(manifest["languages"]):
        for split in ("train", "val"):
            if (root / label / split).exists() or manifest["languages"][label].get(split, {}).get("rows"):
                p, f, r = split_problems(root / label / split)
                problems, files, read = problems + p, files + f, read + r
    return problems, files, read


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data_prep.verify", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards", type=Path, help="a folder data_prep.shards wrote")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    try:
        problems, files, read = verify(args.shards)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} bad of {files} files checked: copy those files again from where the shards were built "
              f"(or rebuild the folder with data_prep.shards), then run this again", file=sys.stderr)
        return 2
    print(f"{files} shard files intact ({read / 1e6:.1f} MB hashed in {seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    from data_prep.quick_exit import freeze_at_exit

    freeze_at_exit()
    sys.exit(main())
