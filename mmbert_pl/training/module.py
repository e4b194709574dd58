"""LightningModule: MLM on packed rows with masking inside `training_step` (recipe §3–§4)."""
from __future__ import annotations

import contextlib

import lightning as L
import torch
import torchmetrics

from mmbert_pl.training.step_values import logs_this_batch

from mmbert_pl.training.loop_progress import rescale_batch_progress
from mmbert_pl.training.masking import ordinary_lookup, row_seeds
from mmbert_pl.model import EncoderConfig, MMBertForMaskedLM
from mmbert_pl.model.encoder import MLMOutput
from mmbert_pl.training.optim import StableAdamW, parameter_groups
from mmbert_pl.training.step_inputs import StepInputs, step_inputs


class MLMModule(L.LightningModule):
    """Accumulation is ours (manual optimization): the batch-size warmup changes it between optimizer
    steps, which Lightning's fixed `accumulate_grad_batches` cannot do exactly.

    A training step never makes the host wait for the device: batches stay on the host until
    `step_inputs` sends what the encoder needs, the token clock is a host integer, and values are
    logged only on the batches the logger writes (callbacks/reporting.py).
    """

    def __init__(self, model: EncoderConfig, random_pool: list[int], mask_id: int = 4, mask_ratio: float = 0.3,
                 val_mask_ratio: float = 0.15, val_languages: list[str] | None = None, lr: float = 8e-4,
                 betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8, weight_decay: float = 8e-5,
                 seed: int = 21, attn_backend: str = "auto", accumulate: int = 1, compile: bool = False,
                 loss_chunk_rows: int = 2048, compile_optimizer: bool = False, tokenizer_sha256: str | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.accumulate = accumulate             # micro-batches per optimizer step; the batch warmup sets it
        self.micro_index = 0                     # micro-batches done in the current optimizer step
        self.initial_optimizer_state: dict | None = None   # a previous stage's optimizer state (init_from=)
        self.save_hyperparameters({"model": model.to_dict(), "mask_id": mask_id, "mask_ratio": mask_ratio,
                                   "val_mask_ratio": val_mask_ratio, "val_languages": val_languages, "lr": lr,
                                   "betas": betas, "eps": eps, "weight_decay": weight_decay, "seed": seed,
                                   "attn_backend": attn_backend, "compile": compile,
                                   "loss_chunk_rows": loss_chunk_rows, "compile_optimizer": compile_optimizer,
                                   "tokenizer_sha256": tokenizer_sha256})   # init_from= refuses another tokenizer
        self.model = MMBertForMaskedLM(model, attn_backend=attn_backend, loss_chunk_rows=loss_chunk_rows)
        if compile:
            self.model.compile_blocks()
        self.random_pool = torch.tensor(random_pool, dtype=torch.long)   # on the host, where masks are drawn
        self.ordinary = ordinary_lookup(self.random_pool, model.vocab_size)   # the ids masking may choose
        self.mask_ratio = mask_ratio             # the mask-ratio schedule sets this before each step
        # Global tokens trained on, padding included (Composer's count): the clock every schedule reads.
        # `tokens` is the host copy the schedules read; the buffer carries it in checkpoints and state_dicts.
        self.tokens = 0
        self.register_buffer("tokens_seen", torch.zeros((), dtype=torch.long))
        self.step_values: dict[str, float] = {}  # the callbacks' numbers of the current step, for the logger
        self.shown: dict[str, float] = {}        # host numbers for the progress bar
        self._loss: torch.Tensor | None = None   # the last micro-batch's loss, logged when the logger writes
        self.val_languages = val_languages or []
        self.val_loss = torch.nn.ModuleList(torchmetrics.MeanMetric() for _ in self.val_languages)
        self.val_acc = torch.nn.ModuleList(torchmetrics.MeanMetric() for _ in self.val_languages)

    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        """Batches stay on the host: `step_inputs` works out there what the device needs and sends it."""
        return batch

    def _forward(self, batch: dict, ratio: float, seeds: list[int]) -> tuple[StepInputs, MLMOutput]:
        x = step_inputs(batch, ratio, self.hparams.mask_id, self.random_pool, seeds, self.device, self.ordinary)
        return x, self.model(x.input_ids, x.cu_seqlens, x.max_seqlen, labels=x.targets, positions=x.positions,
                             dropout_keys=x.dropout_keys)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        # Masks and dropout per row, from (seed, step, sample id): the same on any layout, exact on resume.
        seeds = row_seeds(self.hparams.seed, self.global_step, batch["sample_ids"].tolist())
        _, out = self._forward(batch, self.mask_ratio, seeds)
        last_micro = self.micro_index + 1 >= self.accumulate
        block_sync = getattr(self.trainer.strategy, "block_backward_sync", None)   # DDP: all-reduce once per step
        # The step's loss is the sum over its labelled tokens divided by the labels the step's rows would hold at
        # the mask ratio, a number every layout shares (the mean of per-micro-batch means depends on how rows are
        # grouped). The ranks' mean (DDP, FSDP) and the accumulated micro-batches then give the same gradient for
        # any processes x micro-batch x accumulation; Adam does not see the step's scale.
        rows, row_length = batch["input_ids"].shape
        scale = out.num_labels / (self.mask_ratio * rows * self.accumulate * row_length)
        with contextlib.nullcontext() if last_micro or block_sync is None else block_sync():
            self.manual_backward(out.loss * scale)
        self.tokens += batch["input_ids"].numel() * self.trainer.world_size
        self.tokens_seen.fill_(self.tokens)
        self.micro_index += 1
        if self.micro_index >= self.accumulate:
            optimizer = self.optimizers()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            self.micro_index = 0
        self._loss = out.loss.detach()
        return out.loss

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        """After the callbacks' hooks, so the token budget's stop (a batch Lightning writes) is known."""
        if not logs_this_batch(self.trainer):
            return
        loss = float(self._loss)                 # read back only on the batches the logger writes
        self.shown.update(loss=loss, mask=self.mask_ratio)
        self.log_dict({**self.step_values, "train/loss": loss, "train/mask_ratio": self.mask_ratio,
                       "global_step": float(self.global_step)}, on_step=True, on_epoch=False)

    def loader_batch_rows(self) -> int:
        """Rows of one loader batch over every process: what Lightning's loop counters count in."""
        return self.trainer.datamodule.micro_batch * self.trainer.world_size

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["loader_batch_rows"] = self.loader_batch_rows()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Under FSDP the strategy has loaded the weights (and the buffer) already and taken them out of `checkpoint`.
        A checkpoint of another layout has its loop counters rescaled to this one's loader batches."""
        self.tokens = int(checkpoint["state_dict"]["tokens_seen"] if "state_dict" in checkpoint else self.tokens_seen)
        before, now = checkpoint.get("loader_batch_rows"), self.loader_batch_rows()
        if before and before != now and "loops" in checkpoint:
            rescale_batch_progress(checkpoint["loops"], before, now)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        # Fixed masks: the same positions at every validation.
        rows = batch["input_ids"].shape[0]
        seeds = row_seeds(self.hparams.seed, dataloader_idx, range(batch_idx * rows, (batch_idx + 1) * rows))
        x, out = self._forward(batch, self.hparams.val_mask_ratio, seeds)
        if out.num_labels:
            self.val_loss[dataloader_idx].update(out.loss, weight=out.num_labels)
            self.val_acc[dataloader_idx].update((out.predictions == x.targets).float().mean(), weight=out.num_labels)

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

    def configure_model(self) -> None:
        """Under `trainer.strategy=fsdp` (Lightning's ModelParallelStrategy, see mmbert_pl/training/strategy.py), shard the
        encoder over the data-parallel ranks; every other strategy trains it whole."""
        from lightning.pytorch.strategies import ModelParallelStrategy

        from mmbert_pl.training.sharding import is_sharded, shard_model

        if isinstance(self.trainer.strategy, ModelParallelStrategy) and not is_sharded(self.model):
            shard_model(self.model, self.device_mesh["data_parallel"])

    def on_fit_start(self) -> None:
        """A chained stage starts from the previous stage's optimizer state, under this stage's LR and weight decay."""
        from mmbert_pl.training.sharding import is_sharded, load_full_optimizer_state

        if self.initial_optimizer_state is None or self.trainer.ckpt_path:
            return
        optimizer = self.trainer.optimizers[0]
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        if is_sharded(self.model):
            load_full_optimizer_state(self.model, optimizer, self.initial_optimizer_state)
        else:
            optimizer.load_state_dict(self.initial_optimizer_state)
        for group, hyper in zip(optimizer.param_groups, fresh):
            group.update(hyper)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return StableAdamW(parameter_groups(self.model, hp.weight_decay), lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps,
                           weight_decay=hp.weight_decay, compiled=hp.compile_optimizer)
