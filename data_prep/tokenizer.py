"""Train or check a SentencePiece tokenizer with Gemma 2's special ids (pad 0, eos 1, bos 2, unk 3, mask 4).

    python -m data_prep.tokenizer train --input DIR --out FILE.model --vocab-size N
    python -m data_prep.tokenizer check FILE.model

Training text is drawn across languages with temperature sampling (p_i ∝ bytes_i^τ), so small
languages are not drowned out; a language's text repeats when its share exceeds what it has. The input is
streamed: memory holds the sample (--sample-chars), whatever the corpus size.
"""
from __future__ import annotations

import argparse
import hashlib
import heapq
import io
import random
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from .readers import BadInput, discover
from .write_errors import write_atomically, write_problem

SPECIAL_PIECES = {"pad": "<pad>", "eos": "<eos>", "bos": "<bos>", "unk": "<unk>", "mask": "<mask>"}
GEMMA_IDS = {"pad": 0, "eos": 1, "bos": 2, "unk": 3, "mask": 4}


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def load_tokenizer(path: str | Path):
    """The SentencePiece processor of a model file, loaded once per process and file version: Gemma's 256k
    model takes a noticeable time to load, and workers forked after the check inherit it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"tokenizer {path} does not exist; train one with `python -m data_prep.tokenizer train` or pass Gemma 2's tokenizer.model")
    stat = path.stat()
    return _load(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int):
    import sentencepiece as spm

    try:
        return spm.SentencePieceProcessor(model_file=path)
    except (RuntimeError, OSError) as e:
        raise ValueError(f"{path} is not a SentencePiece model ({e})") from None


def check_tokenizer(path: str | Path) -> TokenizerInfo:
    """Vocab size and the special ids training needs; a missing pad, eos, bos or mask is an error."""
    sp = load_tokenizer(path)
    ids = {"pad": sp.pad_id(), "eos": sp.eos_id(), "bos": sp.bos_id(), "unk": sp.unk_id()}
    mask = sp.piece_to_id(SPECIAL_PIECES["mask"])
    ids["mask"] = mask if mask != sp.unk_id() else -1
    missing = [name for name in ("pad", "eos", "bos", "mask") if ids[name] < 0]
    if missing:
        raise ValueError(
            f"tokenizer {path} has no {', '.join(missing)} id (vocab {sp.get_piece_size()}); MLM training needs "
            f"pad, eos, bos and a '<mask>' piece. Use Gemma 2's tokenizer.model or train one with data_prep.tokenizer"
        )
    return TokenizerInfo(path=str(Path(path).resolve()), sha256=file_sha256(path), vocab_size=sp.get_piece_size(), **ids)


def ordinary_ids(path: str | Path) -> list[int]:
    """Ids that MLM's random replacement may draw: every piece but control, unknown, unused and user-defined ones."""
    sp = load_tokenizer(path)
    return [i for i in range(sp.get_piece_size())
            if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i) or sp.id_to_piece(i) == SPECIAL_PIECES["mask"])]


def sample_sentences(input_dir: str | Path, temperature: float, total_chars: int, seed: int, chunk_chars: int = 2000) -> Iterator[str]:
    """Training text: each language's share ∝ size^τ of `total_chars` (size: its input bytes on disk), documents cut
    to `chunk_chars`. Each language is streamed once through a bottom-k sample (a random key per chunk, the lowest
    keys kept while they fit its share), so memory holds at most one language's share, never the corpus."""
    sources = discover(input_dir)
    weights = {label: max(src.size_bytes(), 1) ** temperature for label, src in sources.items()}
    norm = sum(weights.values())
    rng = random.Random(seed)
    for label in sorted(weights):
        budget = total_chars * weights[label] / norm
        kept: list[tuple[float, int, str]] = []           # a max-heap on the key: (-key, order, chunk)
        chars = 0
        for order, (_, doc) in enumerate(sources[label].records(BadInput())):
            for i in range(0, len(doc), chunk_chars):
                chunk = doc[i : i + chunk_chars]
                heapq.heappush(kept, (-rng.random(), order, chunk))
                chars += len(chunk)
                while chars > budget and len(kept) > 1:
                    chars -= len(heapq.heappop(kept)[2])
        pieces = [chunk for _, _, chunk in sorted(kept, reverse=True)]
        taken = 0
        while pieces and taken < budget:     # a language with less text than its share repeats it
            for chunk in pieces:
                yield chunk
                taken += len(chunk)
                if taken >= budget:
                    break
            rng.shuffle(pieces)


def train_tokenizer(input_dir: str | Path, out: str | Path, vocab_size: int, model_type: str = "unigram",
                    temperature: float = 0.3, sample_chars: int = 20_000_000, seed: int = 0,
                    character_coverage: float = 0.9995, threads: int = 2) -> TokenizerInfo:
    import sentencepiece as spm

    if vocab_size < 300:
        raise ValueError(f"vocab size {vocab_size} is too small: byte fallback alone takes 256 pieces plus 5 specials")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sample_sentences(input_dir, temperature, sample_chars, seed),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            byte_fallback=True,
            split_digits=True,
            # Gemma 2's normalisation: no dummy prefix, whitespace kept as is, no Unicode rule.
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            normalization_rule_name="identity",
            character_coverage=character_coverage,
            hard_vocab_limit=False,
            pad_id=GEMMA_IDS["pad"], eos_id=GEMMA_IDS["eos"], bos_id=GEMMA_IDS["bos"], unk_id=GEMMA_IDS["unk"],
            pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
            user_defined_symbols=[SPECIAL_PIECES["mask"]],
            input_sentence_size=0,
            max_sentence_length=8192,
            num_threads=threads,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise ValueError(f"SentencePiece could not train on {input_dir}: {str(e).splitlines()[-1]}") from None
    pieces = spm.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size()
    if pieces < vocab_size:                  # hard_vocab_limit=False stops where the text runs out of pieces
        raise ValueError(f"--vocab-size {vocab_size}: the text sampled from {input_dir} ({sample_chars:,} characters at most) "
                         f"gives only {pieces:,} pieces; ask for --vocab-size {pieces} or less, or give more text "
                         f"(--sample-chars, more input). Nothing was written")
    write_atomically(out, model.getvalue())
    return check_tokenizer(out)


def main(argv: list[str] | None = None) -> int:
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
    c = sub.add_parser("check", help="report vocab size and special ids of any SentencePiece model")
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
    sys.exit(main())
