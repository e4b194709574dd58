"""A SentencePiece `.model` (ours or Gemma's): special ids from its pad/eos/bos/unk pieces and a `<mask>` piece."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .tokenizer import SPECIAL_PIECES, Specials, Tokenizer


class SentencePieceTokenizer(Tokenizer):
    file_name = "tokenizer.model"

    def __init__(self, path: Path) -> None:
        import sentencepiece as spm

        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(path))
        except (RuntimeError, OSError) as e:
            raise ValueError(f"{path} is not a SentencePiece model ({e}); give a .model file, a tokenizer.json or a "
                             f"model folder") from None
        sp = self.sp
        mask = sp.piece_to_id(SPECIAL_PIECES["mask"])
        ids = {"pad": sp.pad_id(), "eos": sp.eos_id(), "bos": sp.bos_id(), "unk": sp.unk_id(),
               "mask": mask if mask != sp.unk_id() else -1}
        missing = [name for name in ("pad", "eos", "bos", "mask") if ids[name] < 0]
        if missing:
            raise ValueError(
                f"tokenizer {path} has no {', '.join(missing)} id (vocab {sp.get_piece_size()}); MLM training needs "
                f"pad, eos, bos and a '<mask>' piece. Use Gemma 2's tokenizer.model or train one with data_prep.tokenizer"
            )
        super().__init__(path, Specials(**ids), sp.get_piece_size())

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts)

    def encode_framed(self, texts: list[str | bytes]) -> list[np.ndarray]:
        # One thread (data_prep's parallelism is its workers); arrays skip building a Python int per token.
        return self.sp.encode(texts, add_bos=True, add_eos=True, num_threads=1, return_type="numpy")

    def encode_with_spans(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        return [([p.id for p in proto.pieces], char_spans(text, proto.pieces))
                for text, proto in zip(texts, self.sp.encode(texts, return_type="proto"))]

    def token(self, i: int) -> str:
        return self.sp.id_to_piece(i)

    def ordinary_ids(self) -> list[int]:
        sp = self.sp
        return [i for i in range(sp.get_piece_size())
                if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i) or sp.id_to_piece(i) == SPECIAL_PIECES["mask"])]


def char_spans(text: str, pieces) -> list[tuple[int, int]]:
    """SentencePiece's byte spans of `pieces` as character spans of `text` (a byte-fallback run shares its char)."""
    char_at = [0] * (len(text.encode("utf-8")) + 1)
    at = 0
    for i, ch in enumerate(text):
        n = len(ch.encode("utf-8"))
        for b in range(at, at + n):
            char_at[b] = i
        at += n
        char_at[at] = i + 1
    return [(char_at[p.begin], char_at[p.end]) for p in pieces]
