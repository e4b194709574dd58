"""Raw multilingual text, per language label, from the input layouts data_prep understands.

- `<label>.txt`, `.txt.gz`, `.txt.zst`: one document per line;
- `<label>.jsonl`, `.jsonl.gz`, `.jsonl.zst`: one JSON object per line with a text field;
- `<label>.parquet`, or FineWeb2's `<label>/train/*.parquet` (plus `<label>/test/*.parquet`, its held-out documents).

A label is `<iso639-3>_<Script>`, `code`, or a code sub-stream `code_<name>` (see `languages.py`).
Bad records are counted and skipped (never a crash); names and files that are not understood are
collected by `discover` and raised together, before any work starts.
"""
from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .languages import is_label

SUFFIXES = {".txt": "txt", ".txt.gz": "txt", ".txt.zst": "txt", ".jsonl": "jsonl", ".jsonl.gz": "jsonl",
            ".jsonl.zst": "jsonl", ".parquet": "parquet"}
DOCUMENTATION = {".md", ".rst"}          # a corpus's README or SOURCE note beside the data
LABELS = "<iso639-3>_<Script> (e.g. rus_Cyrl), code or code_<name>"


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

    def add(self, other: dict[str, int]) -> None:
        for key, value in other.items():
            setattr(self, key, getattr(self, key) + value)


@dataclass(frozen=True)
class InputFile:
    path: Path
    kind: str                        # txt | jsonl | parquet
    held_out: bool = False           # FineWeb2's test/: every document is a validation document

    @property
    def compressed(self) -> bool:
        return self.path.name.endswith((".gz", ".zst"))


@dataclass
class LanguageSource:
    label: str
    files: list[InputFile] = field(default_factory=list)

    @property
    def layout(self) -> str:
        return "+".join(sorted({f.kind for f in self.files}))

    def size_bytes(self) -> int:
        return sum(f.path.stat().st_size for f in self.files)

    def records(self, bad: BadInput, text_field: str = "text", max_chars: int = 1_000_000,
                utf8: bool = False) -> Iterator[tuple[int, str | bytes]]:
        """(record index in the language, text) for every usable document; the index counts skipped records too."""
        index = 0
        for f in self.files:
            for _, text in file_records(f, bad, text_field, max_chars, utf8):
                yield index, text
                index += 1


def file_records(f: InputFile, bad: BadInput, text_field: str = "text", max_chars: int = 1_000_000, utf8: bool = False,
                 span: tuple[int, int] | None = None, first: int = 0) -> Iterator[tuple[int, str | bytes]]:
    """(record index in the file, text) for the usable documents of one file, or of `span` of it: a byte range
    of whole lines (txt, jsonl) or a range of row groups (parquet); `first` is the index of its first record.

    With `utf8`, lines of .txt files come as their validated, stripped UTF-8 bytes: SentencePiece takes
    bytes as they are, where a str would be encoded back to UTF-8 first.
    """
    if f.kind == "txt":
        texts = _txt_texts(_lines(f.path, span), bad, max_chars, utf8)
    else:
        texts = _structured_texts(_field_values(f, text_field, bad, span), bad, max_chars)
    index = first
    for text in texts:
        if text is not None:
            yield index, text
        index += 1
    if index == first and span is None:
        bad.empty_files += 1


def open_binary(path: Path):
    """A binary stream of a plain, .gz or .zst file, decompressed as it is read (memory does not grow with it)."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith(".zst"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True), 1 << 20)
    return open(path, "rb")


def _lines(path: Path, span: tuple[int, int] | None, block: int = 1 << 22) -> Iterator[bytes]:
    """The lines of a file (a trailing newline makes no extra line), or of a byte range starting at a line."""
    with open_binary(path) as f:
        if span is None:
            while lines := f.readlines(block):
                yield from lines
            return
        f.seek(span[0])
        left, carry = span[1] - span[0], b""
        while left > 0:
            data = f.read(min(block, left))
            if not data:
                break
            left -= len(data)
            lines = (carry + data).split(b"\n")
            carry = lines.pop()
            yield from lines
        if carry:
            yield carry


def _txt_texts(lines: Iterator[bytes], bad: BadInput, max_chars: int, utf8: bool) -> Iterator[str | bytes | None]:
    """One document per line; None marks a line skipped as undecodable, empty or too long."""
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


def _structured_texts(values: Iterator[str | None], bad: BadInput, max_chars: int) -> Iterator[str | None]:
    """The text field of each JSONL line or Parquet row; None marks a record skipped as undecodable, empty or too long."""
    for value in values:
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


def _field_values(f: InputFile, text_field: str, bad: BadInput, span: tuple[int, int] | None) -> Iterator[str | None]:
    if f.kind == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(f.path)
        groups = list(range(*span)) if span else list(range(pf.num_row_groups))
        if not groups:
            return
        for batch in pf.iter_batches(columns=[text_field], batch_size=4096, row_groups=groups):
            for value in batch.column(0).to_pylist():
                if not isinstance(value, str):
                    bad.undecodable += 1
                    yield None
                else:
                    yield value
        return
    for line in _lines(f.path, span):
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


def _parse_name(name: str) -> tuple[str, str] | None:
    """(label, kind) of a data file name, or None when its suffix is not one data_prep reads."""
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], SUFFIXES[suffix]
    return None


def _check_columns(f: InputFile, text_field: str) -> str | None:
    """A problem with a file's text field, found from its schema (parquet) or first record (jsonl); None if fine."""
    try:
        if f.kind == "parquet":
            import pyarrow.parquet as pq

            names = pq.ParquetFile(f.path).schema_arrow.names
            return None if text_field in names else f"{f.path}: no {text_field!r} column (columns: {names}); pass --text-field"
        if f.kind == "jsonl":
            with open_binary(f.path) as stream:
                for line in stream:
                    if line.strip():
                        record = json.loads(line)
                        if isinstance(record, dict) and text_field not in record:
                            return f"{f.path}: its first record has no {text_field!r} field (fields: {sorted(record)}); pass --text-field"
                        return None
    except Exception as e:                        # noqa: BLE001 (an unreadable file is reported with the others)
        return f"{f.path}: not readable as {f.kind} ({type(e).__name__}: {e})"
    return None


def _folder_files(path: Path, problems: list[str]) -> list[InputFile]:
    """FineWeb2's `<label>/train/*.parquet` and optional `<label>/test/*.parquet`."""
    files: list[InputFile] = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith(".") or entry.suffix in DOCUMENTATION:
            continue
        if entry.is_dir() and entry.name in ("train", "test"):
            for part in sorted(entry.iterdir()):
                if part.name.endswith(".parquet") and part.is_file():
                    files.append(InputFile(part, "parquet", held_out=entry.name == "test"))
                elif not part.name.startswith("."):
                    problems.append(f"{part}: only *.parquet files belong in a FineWeb2 {entry.name}/ folder")
        else:
            problems.append(f"{entry}: a language folder holds train/*.parquet and test/*.parquet (FineWeb2), nothing else")
    if not any(not f.held_out for f in files):
        problems.append(f"{path}: no train/*.parquet (the FineWeb2 layout is <label>/train/*.parquet, optionally <label>/test/*.parquet)")
    return files


def discover(root: str | Path, languages: list[str] | None = None, text_field: str = "text") -> dict[str, LanguageSource]:
    """All labels under `root`. Raises one ValueError listing every name, file and layout it did not understand."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"input folder {root} does not exist or is not a folder")
    sources: dict[str, LanguageSource] = {}
    problems: list[str] = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or (path.is_file() and path.suffix in DOCUMENTATION):
            continue
        if path.is_dir():
            label, files = path.name, _folder_files(path, problems)
        elif (parsed := _parse_name(path.name)) is not None:
            label, files = parsed[0], [InputFile(path, parsed[1])]
        else:
            problems.append(f"{path}: not a data file data_prep reads ({', '.join(sorted(SUFFIXES))} or a FineWeb2 <label>/ folder)")
            continue
        if not is_label(label):
            problems.append(f"{path}: {label!r} is not a label: {LABELS}; rename it or move it out")
            continue
        if label in sources:
            problems.append(f"{path}: label {label} appears twice ({sources[label].layout} and {files[0].kind if files else 'folder'}); keep one")
            continue
        sources[label] = LanguageSource(label, files)
    if languages:
        missing = sorted(set(languages) - set(sources))
        if missing:
            problems.append(f"languages {missing} are not in {root} (it has {len(sources)}: {sorted(sources)[:8]}...)")
        sources = {k: v for k, v in sources.items() if k in set(languages)}
    for src in sources.values():
        problems += [p for f in src.files if (p := _check_columns(f, text_field))]
    if not sources and not problems:
        problems.append(f"{root} holds no input: <label>{{{','.join(sorted(SUFFIXES))}}} or <label>/train/*.parquet")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ValueError(f"{len(problems)} input problem(s) in {root}, nothing was done:\n  " + "\n  ".join(shown))
    return sources
