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

from data_prep.tokenizer import Specials, load_tokenizer
from data_prep.write_errors import writing

from mmbert_pl.files.hf_tokenizer import save_hf_tokenizer
from mmbert_pl.model import EncoderConfig, MMBertForMaskedLM

TIED = "decoder.weight"


def hf_config_dict(cfg: EncoderConfig, specials: Specials | None = None) -> dict:
    """The fields of `transformers.ModernBertConfig` that describe our encoder, with the special ids of its
    tokenizer (the document's first id is its cls, the last its sep)."""
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
        "pad_token_id": cfg.pad_id,
        **({} if specials is None else {"bos_token_id": specials.bos, "eos_token_id": specials.eos, "cls_token_id": specials.bos,
                                        "sep_token_id": specials.eos, "mask_token_id": specials.mask}),
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


def tokenizer_specials(tokenizer: str | Path | None) -> Specials | None:
    return None if tokenizer is None else load_tokenizer(tokenizer).specials


def export_hf(model: MMBertForMaskedLM, out_dir: str | Path, tokenizer: str | Path | None = None) -> Path:
    """Write config.json + model.safetensors (+ tokenizer files) that transformers loads as ModernBertForMaskedLM;
    with the tokenizer, also the files that load it in sentence-transformers as our mean-pooled embedding."""
    from mmbert_pl.files.sentence_transformers_files import sentence_transformers_files

    state = {k: v for k, v in model.state_dict().items() if k != TIED}
    extra = sentence_transformers_files(model.cfg.hidden_size) if tokenizer is not None else {}
    return write_hf_dir(state, hf_config_dict(model.cfg, tokenizer_specials(tokenizer)), out_dir, tokenizer, extra)


def write_hf_dir(state: dict[str, torch.Tensor], config: dict, out_dir: str | Path, tokenizer: str | Path | None,
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
        if tokenizer is not None:
            with writing(out):
                save_hf_tokenizer(tokenizer, tmp)
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


def export_task_hf(module, architecture: str, labels: list[str], out_dir: str | Path, tokenizer: str | Path,
                   pooling: str = "mean") -> Path:
    """A fine-tuned classifier (ours: `encoder`, `head`, `classifier`) as transformers' `architecture`
    (ModernBertForSequenceClassification or ModernBertForTokenClassification), with id2label."""
    state = {f"model.{k}": v for k, v in module.encoder.state_dict().items()}
    state.update({f"head.{k}": v for k, v in module.head.state_dict().items()})
    state.update({f"classifier.{k}": v for k, v in module.classifier.state_dict().items()})
    config = {**hf_config_dict(module.encoder.cfg, tokenizer_specials(tokenizer)), "architectures": [architecture], "classifier_bias": True,
              "classifier_pooling": pooling, "classifier_dropout": float(module.hparams.dropout),
              "id2label": {str(i): k for i, k in enumerate(labels)}, "label2id": {k: i for i, k in enumerate(labels)}}
    return write_hf_dir(state, config, out_dir, tokenizer)


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
