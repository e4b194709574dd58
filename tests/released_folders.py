"""Model folders shaped as the Hub ships them, built here from the bundled sample (nothing is downloaded).

- mmBERT-like: Gemma-style `tokenizer.json` (<bos> … <eos>, specials at 0-4) with its tokenizer_config.json and
  special_tokens_map.json, no tokenizer.model; weights in `pytorch_model.bin`; the vocabulary padded to a
  multiple of 64 beyond the tokenizer's.
- ModernBERT-like: a byte-level BPE `tokenizer.json` trained by `tokenizers`, framing [CLS] … [SEP], its special
  tokens at the end of the vocabulary, then [unused] tokens up to a multiple of 64; no unk in the model.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from data_prep.tokenizer import load_tokenizer
from mmbert_pl.files.hf import export_hf
from mmbert_pl.model import MMBertForMaskedLM, named_config

MODERNBERT_SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]


def modernbert_tokenizer(sample_dir: Path, out: Path, vocab_size: int = 1500) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    lines = [line for f in sorted(sample_dir.glob("*.txt"))[:30] for line in f.read_text(encoding="utf-8").splitlines()[:200]]
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    tok.add_special_tokens(MODERNBERT_SPECIALS)
    n = tok.get_vocab_size()
    tok.add_tokens([f"[unused{i}]" for i in range(-n % 64)])
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    roles = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]", "unk_token": "[UNK]"}
    (out / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", **roles,
                                                           "model_max_length": 8192}, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps(roles, indent=2))
    return out / "tokenizer.json"


def mmbert_tokenizer(spm_model: Path, out: Path) -> Path:
    """Our SentencePiece model as mmBERT ships Gemma's: tokenizer.json and its configs, no tokenizer.model."""
    from mmbert_pl.files.hf_tokenizer import save_hf_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text('{"model_type": "modernbert"}')     # as in an export: transformers 5 reads it
    save_hf_tokenizer(spm_model, out)
    for name in ("tokenizer.model", "config.json"):
        (out / name).unlink()
    return out / "tokenizer.json"


def released_folder(tokenizer_json: Path, out: Path, vocab_size: int, seed: int = 0, **shape) -> Path:
    """A random tiny ModernBERT as a release ships it: config.json, pytorch_model.bin, the tokenizer files."""
    torch.manual_seed(seed)
    pad = load_tokenizer(tokenizer_json).specials.pad
    model = MMBertForMaskedLM(named_config("tiny", vocab_size=vocab_size, **{"pad_id": pad, **shape}), attn_backend="sdpa")
    export_hf(model, out, tokenizer=tokenizer_json)
    state = load_file(str(out / "model.safetensors"))
    torch.save({**state, "decoder.weight": state["model.embeddings.tok_embeddings.weight"]}
               if "model.embeddings.tok_embeddings.weight" in state else state, out / "pytorch_model.bin")
    (out / "model.safetensors").unlink()
    for extra in ("modules.json", "sentence_bert_config.json", "1_Pooling", "config_sentence_transformers.json"):
        shutil.rmtree(out / extra, ignore_errors=True) if (out / extra).is_dir() else (out / extra).unlink(missing_ok=True)
    return out
