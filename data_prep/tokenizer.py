"""The tokenizer interface every tool uses, over the two forms tokenizers ship in.

    python -m data_prep.tokenizer train --input DIR --out FILE.model --vocab-size N
    python -m data_prep.tokenizer check TOKENIZER      (a .model, a tokenizer.json, or a model folder)

A SentencePiece `.model` (ours, Gemma's) or a Hugging Face `tokenizer.json` (mmBERT's and ModernBERT's
releases ship only this): both give ids, character spans, the ordinary ids masking may draw, and the special
ids read from the tokenizer itself (pad, unk, mask, and the document framing: `<bos> … <eos>` for Gemma and
mmBERT, `[CLS] … [SEP]` for ModernBERT, whose special ids sit at the end of the vocabulary). A model folder
gives its `tokenizer.model` if it has one (the file our runs were trained with), else its `tokenizer.json`.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .write_errors import write_problem

SPECIAL_PIECES = {"pad": "<pad>", "eos": "<eos>", "bos": "<bos>", "unk": "<unk>", "mask": "<mask>"}
FILE_NAMES = ("tokenizer.model", "tokenizer.json")                 # a folder's tokenizer, in this order


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Specials:
    """The ids training and every tool take from the tokenizer. `bos`/`eos` frame a document (`[bos] text [eos]`;
    a pair is `[bos] a [eos] b [eos]`): Gemma's `<bos>`/`<eos>`, BERT-style `[CLS]`/`[SEP]`. unk is -1 where the
    tokenizer has none (byte-level BPE needs none)."""
    pad: int
    eos: int
    bos: int
    unk: int
    mask: int


class Tokenizer(ABC):
    """One loaded tokenizer. `encode` gives unframed ids; `frame` adds the tokenizer's own framing."""

    file_name: str                 # its name inside a shard folder or a model export

    def __init__(self, path: Path, specials: Specials, vocab_size: int) -> None:
        self.path, self.specials, self.vocab_size = path, specials, vocab_size

    @abstractmethod
    def encode(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text, without framing."""

    @abstractmethod
    def encode_framed(self, texts: list[str | bytes]) -> list[np.ndarray]:
        """`[bos] ids [eos]` of each text (str or UTF-8 bytes) as an integer array: data_prep's hot path."""

    @abstractmethod
    def encode_with_spans(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Ids of each text with each id's character span in it (QA answers are character spans)."""

    @abstractmethod
    def ordinary_ids(self) -> list[int]:
        """Ids MLM's random replacement may draw and masking may choose: no special, control or unused ones."""

    @abstractmethod
    def token(self, i: int) -> str:
        """The piece or token of id `i`."""

    def companion_files(self) -> list[Path]:
        """Files beside it that say how transformers loads it; they travel with it into exports."""
        return []

    def frame(self, first: list[int], second: list[int] | None = None) -> list[int]:
        s = self.specials
        return [s.bos, *first, s.eos] + ([*second, s.eos] if second is not None else [])


def folder_tokenizer(folder: Path) -> Path | None:
    """A model folder's tokenizer.model, else its tokenizer.json; None if it holds neither."""
    return next((folder / name for name in FILE_NAMES if (folder / name).is_file()), None)


def tokenizer_file(path: str | Path) -> Path:
    """The tokenizer file `path` names: the file itself, or a model folder's tokenizer.model / tokenizer.json."""
    path = Path(path)
    if path.is_dir():
        if found := folder_tokenizer(path):
            return found
        raise ValueError(f"{path} holds neither {' nor '.join(FILE_NAMES)}; give the tokenizer file, or the model folder "
                         f"as it was released (with its tokenizer.json)")
    if not path.is_file():
        raise ValueError(f"tokenizer {path} does not exist; train one with `python -m data_prep.tokenizer train`, or give "
                         f"a released model's tokenizer.json (or its folder) or Gemma 2's tokenizer.model")
    return path


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer of a file or folder, loaded once per process and file version: Gemma's 256k vocabulary takes
    a noticeable time to load, and workers forked after the check inherit it."""
    path = tokenizer_file(path)
    stat = path.stat()
    return _load(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int) -> Tokenizer:
    if path.endswith(".json"):
        from .json_tokenizer import JsonTokenizer

        return JsonTokenizer(Path(path))
    from .sentencepiece_tokenizer import SentencePieceTokenizer

    return SentencePieceTokenizer(Path(path))


@dataclass(frozen=True)
class TokenizerInfo:
    path: str
    sha256: str
    vocab_size: int
    pad: int
    eos: int
    bos: int
    unk: int
    mask: int

    def to_dict(self) -> dict:
        return asdict(self)


def check_tokenizer(path: str | Path) -> TokenizerInfo:
    """Vocab size and the special ids training needs (a tokenizer without them is refused when loaded)."""
    tok = load_tokenizer(path)
    return TokenizerInfo(path=str(tok.path), sha256=file_sha256(tok.path), vocab_size=tok.vocab_size, **asdict(tok.specials))


def ordinary_ids(path: str | Path) -> list[int]:
    return load_tokenizer(path).ordinary_ids()


def main(argv: list[str] | None = None) -> int:
    from .tokenizer_training import train_tokenizer

    ap = argparse.ArgumentParser(prog="python -m data_prep.tokenizer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a SentencePiece model on a folder of per-language text")
    t.add_argument("--input", required=True, help="the input folder data_prep.shards reads (any of its layouts)")
    t.add_argument("--out", required=True, help="where to write FILE.model")
    t.add_argument("--vocab-size", type=int, required=True)
    t.add_argument("--model-type", choices=["unigram", "bpe"], default="unigram")
    t.add_argument("--temperature", type=float, default=0.3, help="language sampling temperature τ (p ∝ chars^τ)")
    t.add_argument("--sample-chars", type=int, default=20_000_000, help="characters of training text drawn in all")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("check", help="report vocab size and special ids of a .model, a tokenizer.json or a model folder")
    c.add_argument("model")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "train":
            if args.temperature <= 0:
                raise ValueError(f"--temperature must be > 0, got {args.temperature}")
            info = train_tokenizer(args.input, args.out, args.vocab_size, args.model_type, args.temperature,
                                   args.sample_chars, args.seed, threads=args.threads)
        else:
            info = check_tokenizer(args.model)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if (problem := write_problem(e, getattr(args, "out", None))) is None:
            raise
        print(f"error: {problem}", file=sys.stderr)
        return 2
    for key, value in info.to_dict().items():
        print(f"{key:10s} {value}")
    return 0


if __name__ == "__main__":
    from data_prep.quick_exit import freeze_at_exit

    freeze_at_exit()
    sys.exit(main())
