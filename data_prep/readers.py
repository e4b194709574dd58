"""Raw multilingual text, per language, from the three input layouts data_prep understands.

- `<lang>_<Script>.txt`: one document per line;
- `<lang>_<Script>.jsonl` / `.jsonl.gz`: one JSON object per line with a text field;
- `<lang>_<Script>/train/*.parquet`: FineWeb2-style folders with a text column.

Bad records are counted and skipped (never a crash); bad names and unknown layouts are errors
raised by `discover` before any work starts.
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .languages import is_label

IGNORED_SUFFIXES = {".md", ".tsv", ".json", ".csv", ".yaml", ".yml"}
NOT_A_LABEL = "file name {name!r} is not <iso639-3>_<Script> (e.g. rus_Cyrl.txt); rename it or move it out of {root}"


@dataclass
class BadInput:
    """Records skipped while reading one language, by reason."""
    undecodable: int = 0
    with_nul_bytes: int = 0               # a NUL inside text is binary data, not a document
    empty: int = 0
    too_long: int = 0
    empty_files: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class LanguageSource:
    label: str
    layout: str                      # txt | jsonl | parquet
    files: list[Path] = field(default_factory=list)

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)

    def records(self, bad: BadInput, text_field: str = "text", max_chars: int = 1_000_000,
                utf8: bool = False) -> Iterator[tuple[int, str | bytes]]:
        """(record index, text) for every usable document; the index counts skipped records too, so it is stable.

        With `utf8`, lines of .txt files come as their validated, stripped UTF-8 bytes: SentencePiece takes
        bytes as they are, where a str would be encoded back to UTF-8 first.
        """
        index = 0
        for path in self.files:
            start = index
            if self.layout == "txt":
                texts = _txt_texts(path, bad, max_chars, utf8)
            else:
                texts = _structured_texts(path, self.layout, text_field, bad, max_chars)
            for text in texts:
                if text is not None:
                    yield index, text
                index += 1
            if index == start:
                bad.empty_files += 1


def _txt_texts(path: Path, bad: BadInput, max_chars: int, utf8: bool) -> Iterator[str | bytes | None]:
    """One document per line; None marks a line skipped as undecodable, empty or too long."""
    with open(path, "rb") as f:
        while lines := f.readlines(1 << 22):
            for line in lines:
                raw = line.strip()
                if b"\0" in raw:
                    bad.with_nul_bytes += 1
                    yield None
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    bad.undecodable += 1
                    yield None
                    continue
                if not text or text.isspace():
                    bad.empty += 1
                    yield None
                elif len(text) > max_chars:
                    bad.too_long += 1
                    yield None
                elif text[0].isspace() or text[-1].isspace():       # Unicode whitespace (e.g. U+3000) at an end
                    yield text.strip().encode() if utf8 else text.strip()
                else:
                    yield raw if utf8 else text


def _structured_texts(path: Path, layout: str, text_field: str, bad: BadInput, max_chars: int) -> Iterator[str | None]:
    """The text field of each JSONL line or Parquet row; None marks a record skipped as undecodable, empty or too long."""
    for value in _field_values(path, layout, text_field, bad):
        if value is None:
            yield None
        elif "\0" in value:
            bad.with_nul_bytes += 1
            yield None
        elif not (text := value.strip()):
            bad.empty += 1
            yield None
        elif len(text) > max_chars:
            bad.too_long += 1
            yield None
        else:
            yield text


def _field_values(path: Path, layout: str, text_field: str, bad: BadInput) -> Iterator[str | None]:
    if layout == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        if text_field not in pf.schema_arrow.names:
            raise ValueError(f"{path} has no {text_field!r} column (columns: {pf.schema_arrow.names}); pass --text-field")
        for batch in pf.iter_batches(columns=[text_field], batch_size=4096):
            for value in batch.column(0).to_pylist():
                if not isinstance(value, str):
                    bad.undecodable += 1
                    yield None
                else:
                    yield value
        return
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        for line in f:
            if not line.strip():
                yield ""
                continue
            try:
                value = json.loads(line).get(text_field)
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                value = None
            if not isinstance(value, str):
                bad.undecodable += 1
                yield None
            else:
                yield value


def _label_of(path: Path) -> tuple[str, str] | None:
    name = path.name
    for suffix, layout in ((".jsonl.gz", "jsonl"), (".jsonl", "jsonl"), (".txt", "txt")):
        if name.endswith(suffix):
            return name[: -len(suffix)], layout
    return None


def discover(root: str | Path, languages: list[str] | None = None) -> dict[str, LanguageSource]:
    """All languages under `root`, by label. Raises ValueError naming the first bad file or layout."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"input folder {root} does not exist or is not a folder")
    sources: dict[str, LanguageSource] = {}
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            parquet = sorted((path / "train").glob("*.parquet"))
            if not parquet:
                raise ValueError(f"unknown layout: folder {path} has no train/*.parquet (FineWeb2 layout: <lang_Script>/train/*.parquet)")
            if not is_label(path.name):
                raise ValueError(NOT_A_LABEL.format(name=path.name, root=root))
            found = (path.name, "parquet", parquet)
        else:
            parsed = _label_of(path)
            if parsed is None:
                if path.suffix in IGNORED_SUFFIXES:
                    continue
                raise ValueError(f"unknown layout: {path} is not .txt, .jsonl(.gz) or a <lang_Script>/train/*.parquet folder")
            if not is_label(parsed[0]):
                raise ValueError(NOT_A_LABEL.format(name=path.name, root=root))
            found = (parsed[0], parsed[1], [path])
        label, layout, files = found
        if label in sources:
            raise ValueError(f"language {label} appears twice in {root} ({sources[label].layout} and {layout}); keep one")
        sources[label] = LanguageSource(label, layout, files)
    if not sources:
        raise ValueError(f"unknown layout: {root} holds no <lang_Script>.txt, .jsonl(.gz) or <lang_Script>/train/*.parquet")
    if languages:
        missing = sorted(set(languages) - set(sources))
        if missing:
            raise ValueError(f"languages {missing} are not in {root} (it has {len(sources)}: {sorted(sources)[:8]}...)")
        sources = {k: v for k, v in sources.items() if k in set(languages)}
    return sources
