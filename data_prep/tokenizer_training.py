"""Train a SentencePiece tokenizer with Gemma 2's special ids (pad 0, eos 1, bos 2, unk 3, mask 4) on per-language text.

Training text is drawn across languages with temperature sampling (p_i ∝ bytes_i^τ), so small
languages are not drowned out; a language's text repeats when its share exceeds what it has. The input is
streamed: memory holds the sample (--sample-chars), whatever the corpus size.
"""
from __future__ import annotations

import heapq
import io
import random
from collections.abc import Iterator
from pathlib import Path

from .readers import BadInput, discover
from .tokenizer import SPECIAL_PIECES, TokenizerInfo, check_tokenizer
from .write_errors import write_atomically

GEMMA_IDS = {"pad": 0, "eos": 1, "bos": 2, "unk": 3, "mask": 4}


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
