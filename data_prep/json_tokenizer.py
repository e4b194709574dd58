"""A Hugging Face `tokenizer.json`, encoded by the `tokenizers` library itself (Rust, no Python tokenizer class).

The special ids come from the file: the framing from its post-processor (`TemplateProcessing` `<bos> $A <eos>`
or `[CLS] $A [SEP]`, or BERT/RoBERTa processing), mask/pad/unk from the roles its `tokenizer_config.json` or
`special_tokens_map.json` declare beside it, else from the conventional names among its added tokens. The
file's own truncation and padding are switched off: a document is never cut silently.
"""
from __future__ import annotations

import json
import re
from array import array
from pathlib import Path

import numpy as np

from .tokenizer import Specials, Tokenizer

COMPANIONS = ("tokenizer_config.json", "special_tokens_map.json")
NAMES = {"mask": ("<mask>", "[MASK]", "<MASK>"), "pad": ("<pad>", "[PAD]", "<PAD>"), "unk": ("<unk>", "[UNK]", "<UNK>")}
UNUSED = re.compile(r"^(<unused\d+>|\[unused\d+\])$")


class JsonTokenizer(Tokenizer):
    file_name = "tokenizer.json"

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        try:
            text = path.read_text(encoding="utf-8")
            spec = json.loads(text)
            self.tok = RustTokenizer.from_str(text)
        except Exception as e:           # the library's own errors are plain Exceptions
            raise ValueError(f"{path} is not a Hugging Face tokenizer.json ({type(e).__name__}: {e})") from None
        self.tok.no_truncation()
        self.tok.no_padding()
        vocab = self.tok.get_vocab(with_added_tokens=True)
        self.added = {t["content"]: t for t in spec.get("added_tokens", [])}
        roles = declared_roles(path.parent)
        framing = document_framing(spec.get("post_processor"))
        ids = {role: self._role_id(role, roles.get(role), vocab, spec) for role in ("mask", "pad", "unk")}
        missing = [what for what, value in (("mask token", ids["mask"]), ("pad token", ids["pad"]),
                                            ("document framing (its post_processor adds no start and end token)", framing))
                   if value is None or value == -1]
        if missing:
            raise ValueError(f"tokenizer {path} has no {', no '.join(missing)}; MLM training needs a mask and a pad token "
                             f"and a framed document (<bos> … <eos> or [CLS] … [SEP]). Give the tokenizer of a ModernBERT-"
                             f"architecture model (mmBERT, ModernBERT, Ettin) or a SentencePiece model with those pieces")
        bos, eos = (vocab[t] for t in framing)
        super().__init__(path, Specials(pad=ids["pad"], eos=eos, bos=bos, unk=ids["unk"], mask=ids["mask"]),
                         max(vocab.values()) + 1)
        self.vocab = vocab

    def _role_id(self, role: str, declared: str | None, vocab: dict[str, int], spec: dict) -> int:
        if declared is not None:
            return vocab.get(declared, -1)
        if role == "unk":
            model = spec.get("model") or {}
            if isinstance(model.get("unk_id"), int):
                return model["unk_id"]
            if model.get("unk_token") in vocab:
                return vocab[model["unk_token"]]
        if role == "pad" and isinstance((spec.get("padding") or {}).get("pad_id"), int):
            return spec["padding"]["pad_id"]
        return next((vocab[name] for name in NAMES[role] if name in vocab), -1)

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def encode_framed(self, texts: list[str | bytes]) -> list[np.ndarray]:
        # encode_batch_fast: no character offsets (half the work); array('I') takes the id list in C
        texts = [t.decode("utf-8") if isinstance(t, bytes) else t for t in texts]
        bos, eos = self.specials.bos, self.specials.eos
        out = []
        for e in self.tok.encode_batch_fast(texts, add_special_tokens=False):
            framed = array("I", (bos,))
            framed.extend(e.ids)
            framed.append(eos)
            out.append(np.frombuffer(framed, dtype=np.uint32))
        return out

    def encode_with_spans(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        return [(e.ids, list(e.offsets)) for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def ordinary_ids(self) -> list[int]:
        s = self.specials
        excluded = {s.pad, s.eos, s.bos, s.unk, s.mask}
        excluded |= {t["id"] for t in self.added.values() if t.get("special")}
        excluded |= {i for token, i in self.vocab.items() if UNUSED.match(token)}
        return sorted(set(self.vocab.values()) - excluded)

    def token(self, i: int) -> str:
        return self.tok.id_to_token(i)

    def companion_files(self) -> list[Path]:
        return [self.path.parent / name for name in COMPANIONS if (self.path.parent / name).is_file()]


def declared_roles(folder: Path) -> dict[str, str]:
    """{role: token} that the files beside tokenizer.json declare (`mask_token`, `pad_token`, `unk_token`)."""
    roles: dict[str, str] = {}
    for name in reversed(COMPANIONS):                 # tokenizer_config.json wins
        path = folder / name
        if not path.is_file():
            continue
        try:
            declared = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not readable JSON ({e}); restore it from the model's release") from None
        for role in ("mask", "pad", "unk"):
            value = declared.get(f"{role}_token")
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                roles[role] = value
    return roles


def document_framing(post: dict | None) -> tuple[str, str] | None:
    """(start token, end token) the post-processor puts around one text, or None if it frames none."""
    if not post:
        return None
    kind = post.get("type")
    if kind == "Sequence":
        return next((f for p in post.get("processors", []) if (f := document_framing(p))), None)
    if kind in ("BertProcessing", "RobertaProcessing"):
        return post["cls"][0], post["sep"][0]
    if kind == "TemplateProcessing":
        single = post.get("single", [])
        shape = [("SpecialToken" in item, (item.get("SpecialToken") or item.get("Sequence") or {}).get("id")) for item in single]
        if len(shape) == 3 and shape[0][0] and not shape[1][0] and shape[2][0]:
            tokens = post.get("special_tokens", {})
            start, end = (tokens.get(shape[i][1], {}).get("tokens", [shape[i][1]]) for i in (0, 2))
            if len(start) == 1 and len(end) == 1:
                return start[0], end[0]
    return None
