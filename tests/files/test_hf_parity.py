"""Same weights, same MLM logits in our encoder and in transformers' ModernBertForMaskedLM."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForMaskedLM, ModernBertConfig, ModernBertForMaskedLM

from data_prep.tokenizer_training import train_tokenizer
from mmbert_pl.files.hf_tokenizer import check_hf_tokenizer
from mmbert_pl.files.hf import encoder_config_from_hf, export_hf, hf_config_dict, import_hf
from mmbert_pl.model import MMBertForMaskedLM, named_config
from tests.random_weights import randomise_every_parameter

LENGTHS = [300, 129, 200, 64, 17, 1]


def padded_batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(5, vocab, (len(LENGTHS), max(LENGTHS)), generator=gen)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(LENGTHS):
        mask[row, :n] = 1
    return ids * mask, mask


@pytest.mark.parametrize("window", [32, 128])
def test_export_loads_in_transformers_with_same_logits(tmp_path: Path, window: int) -> None:
    torch.manual_seed(0)
    cfg = named_config("tiny", local_window=window, global_rope_theta=160000.0, local_rope_theta=10000.0)
    ours = randomise_every_parameter(MMBertForMaskedLM(cfg, attn_backend="sdpa"), seed=window).eval()
    export_hf(ours, tmp_path)
    theirs = AutoModelForMaskedLM.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    assert isinstance(theirs, ModernBertForMaskedLM)
    assert theirs.config.local_attention == window and theirs.config.pad_token_id == 0
    ids, mask = padded_batch(cfg.vocab_size)
    with torch.no_grad():
        diff = (ours.forward_padded(ids, mask) - theirs(input_ids=ids, attention_mask=mask).logits)[mask.bool()]
    assert diff.abs().max() <= 1e-4


def test_transformers_model_imports_with_same_logits(tmp_path: Path) -> None:
    torch.manual_seed(1)
    # Distinct thetas: transformers 5 saves them as rope_parameters per layer type, which import must read.
    cfg = named_config("tiny", global_rope_theta=160000.0, local_rope_theta=20000.0)
    hf_cfg = ModernBertConfig(**{k: v for k, v in hf_config_dict(cfg).items() if k not in ("architectures", "model_type")})
    theirs = randomise_every_parameter(ModernBertForMaskedLM(hf_cfg), seed=1).eval()
    theirs.save_pretrained(tmp_path)
    ours = import_hf(tmp_path, attn_backend="sdpa").eval()
    assert ours.cfg == cfg
    ids, mask = padded_batch(cfg.vocab_size)
    with torch.no_grad():
        diff = (ours.forward_padded(ids, mask) - theirs(input_ids=ids, attention_mask=mask).logits)[mask.bool()]
    assert diff.abs().max() <= 1e-4


def test_config_of_transformers_5_imports_like_transformers_4() -> None:
    """transformers 5 writes RoPE as rope_parameters per layer type plus layer_types (as its save_pretrained of
    ModernBertConfig does in 5.24); transformers 4 flat thetas, where a null local theta means the global one."""
    v4 = hf_config_dict(named_config("tiny", global_rope_theta=160000.0, local_rope_theta=20000.0))
    v5 = {k: v for k, v in v4.items() if k not in ("global_rope_theta", "local_rope_theta")}
    v5["rope_parameters"] = {"full_attention": {"rope_theta": 160000.0, "rope_type": "default"},
                             "sliding_attention": {"rope_theta": 20000.0, "rope_type": "default"}}
    v5["layer_types"] = ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]
    cfg = encoder_config_from_hf(v5)
    assert (cfg.global_rope_theta, cfg.local_rope_theta) == (160000.0, 20000.0)
    assert cfg == encoder_config_from_hf(v4)
    assert encoder_config_from_hf({**v4, "local_rope_theta": None}).local_rope_theta == 160000.0
    one_set = {**v5, "rope_parameters": {"rope_theta": 50000.0, "rope_type": "default"}}
    assert (encoder_config_from_hf(one_set).global_rope_theta, encoder_config_from_hf(one_set).local_rope_theta) == (50000.0, 50000.0)
    with pytest.raises(ValueError, match="rope_type 'yarn'"):
        encoder_config_from_hf({**v5, "rope_parameters": {**v5["rope_parameters"], "full_attention": {"rope_theta": 1.0, "rope_type": "yarn"}}})
    with pytest.raises(ValueError, match="layer_types"):
        encoder_config_from_hf({**v5, "layer_types": ["full_attention"] * 4})


def test_import_rejects_a_non_modernbert_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="config.json is missing"):
        import_hf(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="modernbert"):
        import_hf(tmp_path)


@pytest.mark.parametrize("layout", ["safetensors", "bin", "sharded safetensors", "sharded bin"])
def test_weights_load_as_releases_ship_them(tmp_path: Path, layout: str) -> None:
    """mmBERT's release ships `pytorch_model.bin`; large models shard under an index. Every layout gives the same
    model; a folder without weights, or an index naming a missing shard, is one line naming the files."""
    from safetensors.torch import load_file, save_file

    ours = MMBertForMaskedLM(named_config("tiny"), attn_backend="sdpa")
    randomise_every_parameter(ours, seed=3)
    export_hf(ours, tmp_path / "hf")
    folder = tmp_path / "hf"
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    keys = sorted(state)
    parts = {"safetensors": [keys], "bin": [keys]}.get(layout, [keys[: len(keys) // 2], keys[len(keys) // 2:]])
    suffix = "safetensors" if "safetensors" in layout else "bin"
    names = ["model.safetensors" if suffix == "safetensors" else "pytorch_model.bin"] if len(parts) == 1 else \
        [f"{'model' if suffix == 'safetensors' else 'pytorch_model'}-0000{i + 1}-of-00002.{suffix}" for i in range(2)]
    for name, part in zip(names, parts):
        tensors = {k: state[k].contiguous() for k in part}
        save_file(tensors, str(folder / name), metadata={"format": "pt"}) if suffix == "safetensors" else torch.save(tensors, folder / name)
    if len(parts) == 2:
        index = "model.safetensors.index.json" if suffix == "safetensors" else "pytorch_model.bin.index.json"
        (folder / index).write_text(json.dumps({"weight_map": {k: n for n, part in zip(names, parts) for k in part}}))
    got = import_hf(folder, attn_backend="sdpa").state_dict()
    assert all(torch.equal(got[k], v) for k, v in ours.state_dict().items())
    if len(parts) == 2:
        (folder / names[1]).unlink()
        with pytest.raises(ValueError, match=f"{names[1]} is missing"):
            import_hf(folder)
    for name in [*names, "model.safetensors.index.json", "pytorch_model.bin.index.json"]:
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(ValueError, match="holds no weights: none of model.safetensors, .*pytorch_model.bin"):
        import_hf(folder)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])   # data_prep's default, and Gemma 2's
def test_exported_tokenizer_matches_sentencepiece(tmp_path: Path, tokenizer_model: Path, sample_dir: Path,
                                                 model_type: str) -> None:
    import sentencepiece as spm
    from transformers import AutoTokenizer

    if model_type == "bpe":
        tokenizer_model = tmp_path / "bpe.model"
        train_tokenizer(sample_dir, tokenizer_model, vocab_size=4096, model_type="bpe", sample_chars=1_500_000)
    ours = MMBertForMaskedLM(named_config("tiny"), attn_backend="sdpa")
    export_hf(ours, tmp_path / "hf", tokenizer=tokenizer_model)
    # The tokenizer files alone, without config.json (transformers 5 picks the tokenizer class from it) and
    # without tokenizer.model (tokenizer.json is enough: no SentencePiece at load time).
    alone = tmp_path / "tokenizer_only"
    alone.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(tmp_path / "hf" / name, alone / name)
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    text = "Welsh AMs worried about  'looking like muppets' — Ελληνικά 12345 ፊደል"
    config = json.loads((tmp_path / "hf" / "config.json").read_text())      # special ids read from the tokenizer
    assert [config[f"{k}_token_id"] for k in ("pad", "bos", "eos", "cls", "sep", "mask")] == [0, 2, 1, 2, 1, 4]
    for where in (tmp_path / "hf", alone):
        tok = AutoTokenizer.from_pretrained(where)
        assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.mask_token_id) == (0, 1, 2, 4)
        assert tok.vocab_size == sp.get_piece_size()
        assert tok(text)["input_ids"] == [2, *sp.encode(text), 1]     # the framing data_prep uses
        assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text


def test_tokenizer_check_rejects_an_empty_vocabulary(tmp_path: Path, tokenizer_model: Path) -> None:
    """What transformers 5's GemmaTokenizer(vocab_file=...) saves: the specials only, every other token <unk>."""
    from tokenizers import Tokenizer, models

    export_hf(MMBertForMaskedLM(named_config("tiny"), attn_backend="sdpa"), tmp_path, tokenizer=tokenizer_model)
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    empty = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(specials)}, merges=[], unk_token="<unk>"))
    empty.add_special_tokens(specials)
    empty.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match="does not reproduce"):
        check_hf_tokenizer(tmp_path, tokenizer_model)
