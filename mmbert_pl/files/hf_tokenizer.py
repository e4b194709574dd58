"""The tokenizer files of a Hugging Face export, from the tokenizer the model was trained with.

A tokenizer.json (a released model's) is copied unchanged with the files that say how transformers loads it,
so `AutoTokenizer.from_pretrained(export)` gives the release's ids. A SentencePiece model (ours, Gemma's) is
converted: we write the files ourselves instead of saving a transformers tokenizer class, because transformers
5's `GemmaTokenizer(vocab_file=...)` ignores the file and saves an empty vocabulary (every token <unk>).
tokenizer.json is transformers' own conversion of tokenizer.model: Gemma's converter in transformers 4, the
generic one transformers 5 uses beside a ModernBERT config.json (its `GemmaTokenizer` would force BPE on a
unigram model). The final tokenizer_config names the plain fast tokenizer, so every version loads tokenizer.json
as it is; the conversion is checked against SentencePiece before the export counts as done.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from data_prep.json_tokenizer import JsonTokenizer
from data_prep.sentencepiece_tokenizer import SentencePieceTokenizer
from data_prep.tokenizer import Tokenizer, load_tokenizer

PROBE = "Welsh AMs worried about  'looking like muppets' — Ελληνικά 12345 ፊደል\n\ttabs  and  spaces "
ROLES = ("pad", "eos", "bos", "unk", "mask")


def save_hf_tokenizer(tokenizer: str | Path, out_dir: Path) -> None:
    tok = load_tokenizer(tokenizer)
    if isinstance(tok, JsonTokenizer):
        for path in [tok.path, *tok.companion_files()]:
            shutil.copyfile(path, out_dir / path.name)
        if not (out_dir / "tokenizer_config.json").exists():
            (out_dir / "tokenizer_config.json").write_text(json.dumps(plain_config(tok), indent=2) + "\n")
        return
    assert isinstance(tok, SentencePieceTokenizer)
    from transformers import AutoTokenizer

    shutil.copyfile(tok.path, out_dir / "tokenizer.model")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special_tokens(tok), indent=2) + "\n")
    (out_dir / "tokenizer.json").unlink(missing_ok=True)      # a stale one would be loaded instead of the conversion
    config = out_dir / "tokenizer_config.json"
    config.write_text(json.dumps({**plain_config(tok), "tokenizer_class": "GemmaTokenizer"}, indent=2) + "\n")
    AutoTokenizer.from_pretrained(str(out_dir)).backend_tokenizer.save(str(out_dir / "tokenizer.json"))
    config.write_text(json.dumps(plain_config(tok), indent=2) + "\n")
    check_hf_tokenizer(out_dir, tok.path)


def special_tokens(tok: Tokenizer) -> dict[str, str]:
    return {f"{role}_token": tok.token(getattr(tok.specials, role)) for role in ROLES if getattr(tok.specials, role) >= 0}


def plain_config(tok: Tokenizer) -> dict:
    """A tokenizer_config.json that loads tokenizer.json as it is, naming its special tokens."""
    return {"tokenizer_class": "PreTrainedTokenizerFast", **special_tokens(tok), "add_bos_token": True, "add_eos_token": True,
            "clean_up_tokenization_spaces": False, "spaces_between_special_tokens": False}


def check_hf_tokenizer(hf_dir: Path, source: str | Path) -> None:
    """Raise unless transformers' tokenizer from `hf_dir` encodes a multi-script probe exactly as `source` does,
    framed as data_prep frames documents, and decodes it back."""
    import transformers
    from transformers import AutoTokenizer

    want_tok = load_tokenizer(source)
    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    expected = want_tok.frame(want_tok.encode([PROBE])[0])
    got = tok(PROBE)["input_ids"]
    s = want_tok.specials
    ids, want = (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.mask_token_id), (s.pad, s.eos, s.bos, s.mask)
    if got != expected or ids != want or tok.decode(got, skip_special_tokens=True) != PROBE:
        raise ValueError(
            f"the Hugging Face tokenizer written to {hf_dir} does not reproduce {source} under transformers "
            f"{transformers.__version__} (probe ids {got[:8]}... vs {expected[:8]}..., special ids {ids} vs {want}); "
            f"the model files there are complete; tokenizer.model is the SentencePiece model to load directly")
