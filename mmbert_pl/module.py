"""LightningModule: MLM on packed rows with masking inside `training_step` (recipe §3–§4)."""
from __future__ import annotations

import contextlib

import lightning as L
import torch
import torchmetrics

from .data.rows import flatten_rows
from .masking import mask_seed, mlm_mask
from .model import EncoderConfig, MMBertForMaskedLM
from .optim import StableAdamW, parameter_groups


class MLMModule(L.LightningModule):
    """Accumulation is ours (manual optimization): the batch-size warmup changes it between optimizer
    steps, which Lightning's fixed `accumulate_grad_batches` cannot do exactly."""

    def __init__(self, model: EncoderConfig, random_pool: list[int], mask_id: int = 4, mask_ratio: float = 0.3,
                 val_mask_ratio: float = 0.15, val_languages: list[str] | None = None, lr: float = 8e-4,
                 betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8, weight_decay: float = 8e-5,
                 seed: int = 21, attn_backend: str = "auto", accumulate: int = 1, compile: bool = False,
                 loss_chunk_rows: int = 2048) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.accumulate = accumulate             # micro-batches per optimizer step; the batch warmup sets it
        self.micro_index = 0                     # micro-batches done in the current optimizer step
        self.initial_optimizer_state: dict | None = None   # a previous stage's moments (init_from + init_optimizer)
        self.save_hyperparameters({"model": model.to_dict(), "mask_id": mask_id, "mask_ratio": mask_ratio,
                                   "val_mask_ratio": val_mask_ratio, "val_languages": val_languages, "lr": lr,
                                   "betas": betas, "eps": eps, "weight_decay": weight_decay, "seed": seed,
                                   "attn_backend": attn_backend, "compile": compile,
                                   "loss_chunk_rows": loss_chunk_rows})
        self.model = MMBertForMaskedLM(model, attn_backend=attn_backend, loss_chunk_rows=loss_chunk_rows)
        if compile:
            self.model.compile_blocks()
        self.register_buffer("random_pool", torch.tensor(random_pool, dtype=torch.long), persistent=False)
        self.mask_ratio = mask_ratio             # the mask-ratio schedule sets this before each step
        # Global tokens trained on, padding included (Composer's count): the clock every schedule reads.
        self.register_buffer("tokens_seen", torch.zeros((), dtype=torch.long))
        self.val_languages = val_languages or []
        self.val_loss = torch.nn.ModuleList(torchmetrics.MeanMetric() for _ in self.val_languages)
        self.val_acc = torch.nn.ModuleList(torchmetrics.MeanMetric() for _ in self.val_languages)

    def _masked(self, batch: dict, ratio: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        ids, cu, max_len = flatten_rows(batch["input_ids"], batch["cu_seqlens"])
        gen = torch.Generator(device="cpu").manual_seed(seed)
        inputs, labels = mlm_mask(ids, ratio, self.hparams.mask_id, self.random_pool, gen)
        return inputs, labels, cu, max_len

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        seed = mask_seed(self.hparams.seed, self.global_step, self.global_rank, self.micro_index)
        inputs, labels, cu, max_len = self._masked(batch, self.mask_ratio, seed)
        torch.manual_seed(seed ^ 0x5EED)         # dropout: a function of (seed, step, rank, micro-batch), exact on resume
        out = self.model(inputs, cu, max_len, labels=labels)
        last_micro = self.micro_index + 1 >= self.accumulate
        block_sync = getattr(self.trainer.strategy, "block_backward_sync", None)   # DDP: all-reduce once per step
        with contextlib.nullcontext() if last_micro or block_sync is None else block_sync():
            self.manual_backward(out.loss / self.accumulate)
        self.tokens_seen += batch["input_ids"].numel() * self.trainer.world_size
        self.micro_index += 1
        if self.micro_index >= self.accumulate:
            optimizer = self.optimizers()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            self.micro_index = 0
        self.log("train/loss", out.loss, prog_bar=True)
        self.log("train/mask_ratio", self.mask_ratio, prog_bar=True)
        self.log("global_step", float(self.global_step))
        return out.loss

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        # Fixed masks: the same positions at every validation.
        seed = mask_seed(self.hparams.seed, 0, dataloader_idx, batch_idx)
        inputs, labels, cu, max_len = self._masked(batch, self.hparams.val_mask_ratio, seed)
        out = self.model(inputs, cu, max_len, labels=labels)
        if out.num_labels:
            target = labels[labels != -100]
            self.val_loss[dataloader_idx].update(out.loss, weight=out.num_labels)
            self.val_acc[dataloader_idx].update((out.predictions == target).float().mean(), weight=out.num_labels)

    def on_validation_epoch_end(self) -> None:
        losses, accs = [], []
        for label, loss, acc in zip(self.val_languages, self.val_loss, self.val_acc):
            if loss.update_count == 0:
                continue
            l, a = loss.compute(), acc.compute()
            self.log(f"val/{label}/loss", l, add_dataloader_idx=False)
            self.log(f"val/{label}/acc", a, add_dataloader_idx=False)
            losses.append(l)
            accs.append(a)
            loss.reset()
            acc.reset()
        if losses:
            self.log("val/loss", torch.stack(losses).mean(), prog_bar=True)
            self.log("val/acc", torch.stack(accs).mean())

    def on_fit_start(self) -> None:
        """A new stage may keep the previous stage's moments, under this stage's LR and weight decay."""
        if self.initial_optimizer_state is None or self.trainer.ckpt_path:
            return
        optimizer = self.trainer.optimizers[0]
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        optimizer.load_state_dict(self.initial_optimizer_state)
        for group, hyper in zip(optimizer.param_groups, fresh):
            group.update(hyper)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return StableAdamW(parameter_groups(self.model, hp.weight_decay), lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps,
                           weight_decay=hp.weight_decay)
