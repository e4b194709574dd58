"""A real Lightning Trainer over the sample's shards with the language-mixture DataModule."""
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from data_prep.tokenizer import ordinary_ids
from mmbert_pl.data.datamodule import MixtureDataModule
from mmbert_pl.data.rows import collate_rows, flatten_rows
from mmbert_pl.model import named_config
from mmbert_pl.training.module import MLMModule


@pytest.fixture(scope="module")
def short_rows(prepared_sample: Path) -> Path:
    """The prepared sample's shards of 128-token rows: for tests of which rows and when, not of what is learned."""
    return next(prepared_sample.glob("sample2-v*/shards-r128-*"))


def test_flatten_rows_drops_padding_and_keeps_boundaries() -> None:
    import numpy as np

    samples = [
        {"input_ids": np.array([2, 7, 1, 2, 8, 1, 0, 0], np.uint32), "cu_seqlens": np.array([0, 3, 6], np.int32)},
        {"input_ids": np.array([2, 5, 6, 9, 9, 9, 9, 1], np.uint32), "cu_seqlens": np.array([0, 8], np.int32)},
    ]
    batch = collate_rows(samples)
    ids, cu, max_len = flatten_rows(batch["input_ids"], batch["cu_seqlens"])
    assert ids.tolist() == [2, 7, 1, 2, 8, 1, 2, 5, 6, 9, 9, 9, 9, 1]
    assert cu.tolist() == [0, 3, 6, 14] and max_len == 8


def test_datamodule_errors_name_the_problem(shard_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no manifest.json"):
        MixtureDataModule(str(tmp_path), "pretrain", 0.7, 1e5, 4)
    with pytest.raises(ValueError, match="vocab of 4096, larger than the model's 4000"):
        MixtureDataModule(str(shard_dir), "pretrain", 0.7, 1e5, 4, vocab_size=4000)
    MixtureDataModule(str(shard_dir), "pretrain", 0.7, 1e5, 4, vocab_size=4160)     # a release pads its vocabulary
    with pytest.raises(ValueError, match="xyz_Latn"):
        MixtureDataModule(str(shard_dir), ["eng_Latn", "xyz_Latn"], 0.7, 1e5, 4)


def test_language_sets_select_the_sample_languages(shard_dir: Path) -> None:
    pre = MixtureDataModule(str(shard_dir), "pretrain", 0.7, 1e5, 4)
    ext = MixtureDataModule(str(shard_dir), "ext", 0.5, 1e5, 4)
    all_ = MixtureDataModule(str(shard_dir), "decay_all", 0.3, 1e5, 4)
    assert (len(pre.labels), len(ext.labels), len(all_.labels)) == (20, 30, 40)
    assert "fao_Latn" in all_.labels and "fao_Latn" not in ext.labels and "cat_Latn" in ext.labels


@pytest.mark.slow
def test_lightning_fit_lowers_the_loss(shard_dir: Path, tokenizer_model: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    dm = MixtureDataModule(str(shard_dir), "decay_all", 0.5, budget_tokens=40 * 4 * 1024, micro_batch=4, vocab_size=4096)
    module = MLMModule(named_config("tiny"), random_pool=ordinary_ids(tokenizer_model), mask_ratio=0.3, lr=3e-3,
                       val_languages=dm.val_labels(), attn_backend="sdpa")
    trainer = L.Trainer(max_steps=40, accelerator="cpu", logger=L.pytorch.loggers.CSVLogger(tmp_path), enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=2, val_check_interval=20, num_sanity_val_steps=0,
                        log_every_n_steps=1)
    trainer.fit(module, datamodule=dm)
    import csv

    rows = list(csv.DictReader(open(Path(trainer.logger.log_dir) / "metrics.csv")))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) >= 5 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5
    assert any(r.get("val/loss") for r in rows) and any(r.get("val/eng_Latn/acc") for r in rows)


def test_drawn_rows_follow_the_mixture(shard_dir: Path) -> None:
    """Languages of the rows the loader yields match the mixture shares (chi-square, 39 df, p = 0.001)."""
    import numpy as np

    from tests.shard_rows import rows_of

    owner = {row: label for label, rows in rows_of(shard_dir).items() for row in rows}
    dm = MixtureDataModule(str(shard_dir), "decay_all", 0.3, budget_tokens=2000 * 1024, micro_batch=8)
    counts = dict.fromkeys(dm.labels, 0)
    for batch in dm.train_dataloader():
        for row in batch["input_ids"].numpy().astype(np.uint32):
            counts[owner[row.tobytes()]] += 1
    total = sum(counts.values())
    expected = {k: dm.mixture.shares[k] * total for k in counts}
    chi2 = sum((counts[k] - expected[k]) ** 2 / expected[k] for k in counts)
    assert total >= 1900 and chi2 < 73.4, (chi2, counts)


def test_truncated_or_missing_shards_are_named(shard_dir: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "shards"
    shutil.copytree(shard_dir, broken)
    for raw in (broken / "fao_Latn" / "train").glob("shard.*.mds"):
        raw.unlink()                   # a decompressed copy that an earlier read may have left
    shard = sorted((broken / "fao_Latn" / "train").glob("shard.*.mds.zstd"))[0]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(ValueError, match=f"{shard.name} is .* bytes, its index says"):
        MixtureDataModule(str(broken), "decay_all", 0.5, 1e5, 4)
    shard.unlink()
    with pytest.raises(ValueError, match="missing bytes"):
        MixtureDataModule(str(broken), "decay_all", 0.5, 1e5, 4)


@pytest.mark.slow
def test_one_run_cascade_switches_languages_and_temperature_at_the_milestones(short_rows: Path, tokenizer_model: Path, tmp_path: Path) -> None:
    """pretrain -> ext -> decay_all with τ 0.7 -> 0.5 -> 0.3 in one Lightning fit, a segment per epoch."""
    from callbacks.language_set import LanguageSetSchedule
    from callbacks.temperature import TemperatureSchedule
    from tests.shard_rows import rows_of

    owner = {row: label for label, rows in rows_of(short_rows).items() for row in rows}
    step_tokens, steps = 8 * 128, 36
    budget = steps * step_tokens
    languages = LanguageSetSchedule("pretrain", [(budget / 3, "ext"), (2 * budget / 3, "decay_all")])
    temperature = TemperatureSchedule(0.7, [(budget / 3, 0.5), (2 * budget / 3, 0.3)])
    dm = MixtureDataModule(str(short_rows), "pretrain", 0.7, budget, micro_batch=8, language_milestones=languages.milestones,
                           temperature_milestones=temperature.milestones, step_tokens=step_tokens)
    assert [(s.start // step_tokens, s.end // step_tokens, s.temperature) for s in dm.segments] == [(0, 12, 0.7), (12, 24, 0.5), (24, 36, 0.3)]

    seen: dict[int, set[str]] = {}

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            rows = batch["input_ids"].numpy().astype("uint32")
            seen[trainer.global_step] = {owner[r.tobytes()] for r in rows}

    module = MLMModule(named_config("tiny"), random_pool=ordinary_ids(tokenizer_model), val_languages=[], attn_backend="sdpa")
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=L.pytorch.loggers.CSVLogger(tmp_path), enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0, reload_dataloaders_every_n_epochs=1, log_every_n_steps=1,
                        callbacks=[languages, temperature, Record()])
    trainer.fit(module, datamodule=dm)
    for seg, name in zip(dm.segments, ("pretrain", "ext", "decay_all")):
        served = set().union(*(seen[s] for s in range(seg.start // step_tokens, seg.end // step_tokens)))
        assert served == set(seg.labels), name                 # exactly the configured set, all of it
    assert len(dm.segments[0].labels) == 20 and len(dm.segments[2].labels) == 40

    import csv

    taus = {int(r["step"]): round(float(r["schedule/temperature"]), 5) for r in csv.DictReader(open(Path(trainer.logger.log_dir) / "metrics.csv"))
            if r.get("schedule/temperature")}
    assert {s: t for s, t in taus.items() if s in (0, 11, 12, 23, 24, 35)} == {0: 0.7, 11: 0.7, 12: 0.5, 23: 0.5, 24: 0.3, 35: 0.3}


def test_resuming_into_another_mixture_is_an_error(shard_dir: Path) -> None:
    a = MixtureDataModule(str(shard_dir), "decay_all", 0.5, 1e5, 4)
    b = MixtureDataModule(str(shard_dir), "decay_all", 0.3, 1e5, 4)
    a.load_state_dict(MixtureDataModule(str(shard_dir), "decay_all", 0.5, 1e5, 4).state_dict())
    with pytest.raises(ValueError, match="another data mixture"):
        b.load_state_dict(a.state_dict())


@pytest.mark.slow
def test_resume_mid_segment_serves_the_same_rows(short_rows: Path, tokenizer_model: Path, tmp_path: Path) -> None:
    """Stopped in the middle of the second segment and resumed: the same mixture, the same next rows."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    step_tokens, steps = 8 * 128, 36
    budget = steps * step_tokens

    def run(ckpt_path=None, checkpoint_dir=None) -> dict[int, list[bytes]]:
        seen: dict[int, list[bytes]] = {}

        class Record(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                seen[trainer.global_step] = [r.tobytes() for r in batch["input_ids"].numpy().astype("uint32")]

        dm = MixtureDataModule(str(short_rows), "pretrain", 0.7, budget, micro_batch=8, step_tokens=step_tokens,
                               language_milestones=[(budget / 3, "ext"), (2 * budget / 3, "decay_all")],
                               temperature_milestones=[(budget / 3, 0.5), (2 * budget / 3, 0.3)])
        module = MLMModule(named_config("tiny"), random_pool=ordinary_ids(tokenizer_model), attn_backend="sdpa")
        callbacks = [Record()]
        if checkpoint_dir:
            callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir, every_n_train_steps=18, save_top_k=-1,
                                             filename="s{step}"))
        trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False, limit_val_batches=0,
                            reload_dataloaders_every_n_epochs=1, callbacks=callbacks, enable_checkpointing=bool(checkpoint_dir))
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
        return seen

    whole = run(checkpoint_dir=tmp_path / "ck")
    mid = next((tmp_path / "ck").glob("s*18*.ckpt"))
    resumed = run(ckpt_path=str(mid))
    assert sorted(resumed) == list(range(18, 36))
    assert all(resumed[s] == whole[s] for s in range(18, 36))


@pytest.mark.slow
def test_validation_counts_optimizer_steps_and_never_splits_an_accumulation(short_rows: Path, tokenizer_model: Path) -> None:
    """3 micro-batches per step after a batch warmup from 1: validation every 4 optimizer steps and at the end, each
    time right after a step's last micro-batch. Without ValidationCadence, Lightning's val_check_interval=4 counts
    micro-batches and validates inside accumulations (checked below)."""
    from callbacks.batch_warmup import BatchWarmup
    from callbacks.validation_cadence import ValidationCadence
    from callbacks.token_budget import TokenBudget

    round_tokens, steps = 4 * 128, 14
    warmup = 6 * round_tokens                                   # steps of 1, 2, 3 micro-batches, then 3 each

    def validations(cadence: bool) -> list[tuple[int, int]]:
        seen: list[tuple[int, int]] = []

        class Record(L.Callback):
            def on_validation_start(self, trainer, pl_module):
                seen.append((trainer.global_step, pl_module.micro_index))

        budget = round_tokens * (6 + 3 * (steps - 3))
        # two languages: each validation is one batch per language, and when it runs is what is checked
        dm = MixtureDataModule(str(short_rows), ["eng_Latn", "deu_Latn"], 0.7, budget, micro_batch=4, step_tokens=3 * round_tokens)
        module = MLMModule(named_config("tiny"), random_pool=ordinary_ids(tokenizer_model), val_languages=dm.val_labels(),
                           attn_backend="sdpa", accumulate=3)
        extra = [ValidationCadence(4)] if cadence else []
        trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            limit_val_batches=1, num_sanity_val_steps=0, check_val_every_n_epoch=None,
                            val_check_interval=sys.maxsize if cadence else 4,
                            callbacks=[BatchWarmup(1, 3, warmup, 4), TokenBudget(budget), *extra, Record()])
        trainer.fit(module, datamodule=dm)
        assert trainer.global_step == steps
        return seen

    assert validations(cadence=True) == [(4, 0), (8, 0), (12, 0), (14, 0)]
    assert any(micro for _, micro in validations(cadence=False))   # Lightning alone splits an accumulation
