"""Hugging Face interop: our encoder <-> a `ModernBertForMaskedLM` directory.

Parameter names are shared (recipe §1.8), so the work is translating the config. The training-only
attention-output dropout (0.1) has no HF field; exports carry 0.0 like the released mmBERT configs
and imports restore our default.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from data_prep.write_errors import writing

from mmbert_pl.model import EncoderConfig, MMBertForMaskedLM

SPECIAL_IDS = {"pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2, "cls_token_id": 1, "sep_token_id": 1, "mask_token_id": 4}
TIED = "decoder.weight"
SPECIAL_TOKENS = {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>", "mask_token": "<mask>"}
TOKENIZER_CONFIG = {"tokenizer_class": "PreTrainedTokenizerFast", **SPECIAL_TOKENS, "add_bos_token": True, "add_eos_token": True,
                    "clean_up_tokenization_spaces": False, "spaces_between_special_tokens": False}
TOKENIZER_PROBE = "Welsh AMs worried about  'looking like muppets' — Ελληνικά 12345 ፊደል\n\ttabs  and  spaces "


def hf_config_dict(cfg: EncoderConfig) -> dict:
    """The fields of `transformers.ModernBertConfig` that describe our encoder."""
    return {
        "architectures": ["ModernBertForMaskedLM"],
        "model_type": "modernbert",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "hidden_activation": "gelu",
        "classifier_activation": "gelu",
        "classifier_pooling": "mean",
        "max_position_embeddings": cfg.max_position,
        "initializer_range": cfg.init_std,
        "initializer_cutoff_factor": cfg.init_cutoff,
        "norm_eps": cfg.norm_eps,
        "norm_bias": False,
        "global_rope_theta": cfg.global_rope_theta,
        "local_rope_theta": cfg.local_rope_theta,
        "global_attn_every_n_layers": cfg.global_every,
        "local_attention": cfg.local_window,
        "attention_bias": False,
        "mlp_bias": False,
        "decoder_bias": True,
        "classifier_bias": False,
        "attention_dropout": 0.0,
        "mlp_dropout": 0.0,
        "embedding_dropout": 0.0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        **SPECIAL_IDS,
        "pad_token_id": cfg.pad_id,
    }


def rope_thetas(hf: dict) -> tuple[float, float]:
    """(global, local) RoPE theta as transformers reads them: transformers 5 saves `rope_parameters` per layer
    type (or one set for all), transformers 4 flat `global_rope_theta` / `local_rope_theta` (None: the global)."""
    params = hf.get("rope_parameters")
    if params:
        per_type = {t: params.get(t, params) for t in ("full_attention", "sliding_attention")}
        for kind, p in per_type.items():
            if p.get("rope_type", "default") != "default":
                raise ValueError(f"HF config has rope_type {p['rope_type']!r} for {kind}; our encoder implements only "
                                 f"'default' RoPE")
        global_theta = float(per_type["full_attention"].get("rope_theta", 160000.0))
        local = per_type["sliding_attention"].get("rope_theta", 10000.0)
    else:
        global_theta = float(hf.get("global_rope_theta", 160000.0))
        local = hf.get("local_rope_theta", 10000.0)
    return global_theta, global_theta if local is None else float(local)


def encoder_config_from_hf(hf: dict) -> EncoderConfig:
    if hf.get("model_type") != "modernbert":
        raise ValueError(f"expected a ModernBERT config (model_type 'modernbert'), got {hf.get('model_type')!r}")
    for key, want in (("hidden_activation", "gelu"), ("norm_bias", False), ("attention_bias", False), ("mlp_bias", False)):
        if hf.get(key, want) != want:
            raise ValueError(f"HF config has {key}={hf[key]!r}; our encoder implements only {want!r}")
    global_theta, local_theta = rope_thetas(hf)
    cfg = EncoderConfig(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        global_every=hf.get("global_attn_every_n_layers", 3),
        local_window=hf.get("local_attention", 128),
        global_rope_theta=global_theta,
        local_rope_theta=local_theta,
        max_position=hf.get("max_position_embeddings", 8192),
        norm_eps=hf.get("norm_eps", 1e-5),
        init_std=hf.get("initializer_range", 0.02),
        init_cutoff=hf.get("initializer_cutoff_factor", 2.0),
        pad_id=hf.get("pad_token_id", 0),
    )
    ours = ["full_attention" if cfg.is_global(i) else "sliding_attention" for i in range(cfg.num_layers)]
    if hf.get("layer_types") is not None and list(hf["layer_types"]) != ours:
        raise ValueError(f"HF config has layer_types {hf['layer_types']}; our encoder implements only a global layer "
                         f"every {cfg.global_every} starting at layer 0: {ours}")
    return cfg


def export_hf(model: MMBertForMaskedLM, out_dir: str | Path, tokenizer_model: str | Path | None = None) -> Path:
    """Write config.json + model.safetensors (+ tokenizer files) that transformers loads as ModernBertForMaskedLM;
    with the tokenizer, also the files that load it in sentence-transformers as our mean-pooled embedding."""
    from mmbert_pl.files.sentence_transformers_files import sentence_transformers_files

    state = {k: v for k, v in model.state_dict().items() if k != TIED}
    extra = sentence_transformers_files(model.cfg.hidden_size) if tokenizer_model is not None else {}
    return write_hf_dir(state, hf_config_dict(model.cfg), out_dir, tokenizer_model, extra)


def write_hf_dir(state: dict[str, torch.Tensor], config: dict, out_dir: str | Path, tokenizer_model: str | Path | None,
                 extra_files: dict[str, str] | None = None) -> Path:
    """A transformers directory of these weights and config (+ tokenizer files, + `extra_files` {relative path: text}).

    The files go to `OUT.tmp/` and replace `OUT/` only once all are written, so a failed export (a full
    disk) leaves the previous export as it was and raises an OSError naming the file it could not write."""
    out = Path(out_dir)
    tmp, old = out.with_name(out.name + ".tmp"), out.with_name(out.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
        with writing(out / "model.safetensors"):
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        with writing(out / "config.json"):
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if tokenizer_model is not None:
            with writing(out):
                save_hf_tokenizer(tokenizer_model, tmp)
        for name, text in (extra_files or {}).items():
            with writing(out / name):
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_text(text)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def export_task_hf(module, architecture: str, labels: list[str], out_dir: str | Path, tokenizer_model: str | Path,
                   pooling: str = "mean") -> Path:
    """A fine-tuned classifier (ours: `encoder`, `head`, `classifier`) as transformers' `architecture`
    (ModernBertForSequenceClassification or ModernBertForTokenClassification), with id2label."""
    state = {f"model.{k}": v for k, v in module.encoder.state_dict().items()}
    state.update({f"head.{k}": v for k, v in module.head.state_dict().items()})
    state.update({f"classifier.{k}": v for k, v in module.classifier.state_dict().items()})
    config = {**hf_config_dict(module.encoder.cfg), "architectures": [architecture], "classifier_bias": True,
              "classifier_pooling": pooling, "classifier_dropout": float(module.hparams.dropout),
              "id2label": {str(i): k for i, k in enumerate(labels)}, "label2id": {k: i for i, k in enumerate(labels)}}
    return write_hf_dir(state, config, out_dir, tokenizer_model)


def export_problem(hf_dir: str | Path) -> str | None:
    """None if `hf_dir` holds a readable config.json and model.safetensors, else what is wrong."""
    from safetensors import safe_open

    try:
        json.loads((Path(hf_dir) / "config.json").read_text())
        with safe_open(str(Path(hf_dir) / "model.safetensors"), framework="pt") as f:
            if not list(f.keys()):
                return "model.safetensors holds no tensors"
    except Exception as e:     # any failure to read back means: do not call this export done
        return f"{type(e).__name__}: {e}"
    return None


def save_hf_tokenizer(spm_model: str | Path, out_dir: Path) -> None:
    """Tokenizer files over our SentencePiece model (Gemma 2's special pieces), beside an exported config.json.

    We write the files ourselves instead of saving a transformers tokenizer class: transformers 5's
    `GemmaTokenizer(vocab_file=...)` ignores the file and saves an empty vocabulary (every token <unk>).
    tokenizer.json is transformers' own conversion of tokenizer.model: Gemma's converter in transformers 4,
    the generic one that transformers 5 uses beside a ModernBERT config.json (its `GemmaTokenizer` would force
    BPE on a unigram model). The final tokenizer_config names the plain fast tokenizer, so every version loads
    tokenizer.json as it is; the files are checked against SentencePiece before the export counts as done."""
    from transformers import AutoTokenizer

    shutil.copyfile(spm_model, out_dir / "tokenizer.model")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS, indent=2) + "\n")
    (out_dir / "tokenizer.json").unlink(missing_ok=True)      # a stale one would be loaded instead of the conversion
    config = out_dir / "tokenizer_config.json"
    config.write_text(json.dumps({**TOKENIZER_CONFIG, "tokenizer_class": "GemmaTokenizer"}, indent=2) + "\n")
    AutoTokenizer.from_pretrained(str(out_dir)).backend_tokenizer.save(str(out_dir / "tokenizer.json"))
    config.write_text(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")
    check_hf_tokenizer(out_dir, spm_model)


def check_hf_tokenizer(hf_dir: Path, spm_model: str | Path) -> None:
    """Raise unless transformers' tokenizer from `hf_dir` encodes a multi-script probe exactly as SentencePiece
    does, framed <bos> ... <eos> as data_prep frames documents, and decodes it back."""
    import sentencepiece as spm
    import transformers
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    expected = [SPECIAL_IDS["bos_token_id"], *spm.SentencePieceProcessor(model_file=str(spm_model)).encode(TOKENIZER_PROBE),
                SPECIAL_IDS["eos_token_id"]]
    got = tok(TOKENIZER_PROBE)["input_ids"]
    keys = ("pad_token_id", "eos_token_id", "bos_token_id", "mask_token_id")
    ids, want = tuple(getattr(tok, k) for k in keys), tuple(SPECIAL_IDS[k] for k in keys)
    if got != expected or ids != want or tok.decode(got, skip_special_tokens=True) != TOKENIZER_PROBE:
        raise ValueError(
            f"the Hugging Face tokenizer written to {hf_dir} does not reproduce {spm_model} under transformers "
            f"{transformers.__version__} (probe ids {got[:8]}... vs {expected[:8]}..., special ids {ids} vs {want}); "
            f"the model files there are complete; tokenizer.model is the SentencePiece model to load directly")


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def load_weights_dir(path: Path) -> dict[str, torch.Tensor]:
    """The weights of an HF folder as releases ship them: safetensors or PyTorch `.bin` (read with
    `weights_only=True`: no code from a downloaded file runs), whole or sharded under an index."""
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            break
    else:
        raise ValueError(f"{path} holds no weights: none of {', '.join(WEIGHT_FILES)}; give the whole model folder")
    files = [name] if not name.endswith(".index.json") else sorted(set(json.loads((path / name).read_text())["weight_map"].values()))
    state: dict[str, torch.Tensor] = {}
    for file in files:
        if not (path / file).is_file():
            raise ValueError(f"{path / file} is missing: {name} lists it; copy the whole model folder")
        state.update(load_file(str(path / file)) if file.endswith(".safetensors")
                     else torch.load(path / file, map_location="cpu", weights_only=True))
    return state


def import_hf(path: str | Path, attn_backend: str = "auto", **overrides) -> MMBertForMaskedLM:
    """Load an HF ModernBertForMaskedLM directory (e.g. a downloaded mmBERT release) into our model."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.exists():
        raise ValueError(f"{path} is not a Hugging Face model folder: config.json is missing")
    cfg = encoder_config_from_hf(json.loads(config_file.read_text())).with_(**overrides)
    state = load_weights_dir(path)
    state.pop(TIED, None)
    model = MMBertForMaskedLM(cfg, attn_backend=attn_backend)
    expected = set(model.state_dict()) - {TIED}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not hold a ModernBertForMaskedLM of this shape: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    model.load_state_dict(state, strict=False)
    return model
