"""Sequence classification on top of the encoder (fine-tuning): pooled hidden states -> head -> labels."""
from __future__ import annotations

import math

import lightning as L
import torch
import torchmetrics
from torch import nn

from mmbert_pl.embeddings.embedding import pooled
from mmbert_pl.model import EncoderConfig
from mmbert_pl.model.encoder import Encoder
from mmbert_pl.model.layers import layer_norm


class PredictionHead(nn.Module):
    """ModernBERT's classifier head, named as transformers' `ModernBertPredictionHead` (with `classifier_bias`):
    dense, GELU, LayerNorm. Its state dict is the HF export's `head.*` as it is."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.act = nn.GELU()
        self.norm = layer_norm(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(x)))


class SequenceClassifier(L.LightningModule):
    """`pooling` is `mean` (over a document's tokens) or `cls` (the [bos] token's state). The head is
    ModernBERT's: dense, GELU, LayerNorm, dropout, then the classifier."""

    def __init__(self, model: dict, labels: list[str], languages: list[str], pooling: str = "mean", lr: float = 5e-5,
                 weight_decay: float = 0.01, warmup: float = 0.1, total_steps: int = 1000, dropout: float = 0.1,
                 attn_backend: str = "auto") -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling={pooling!r}: choose mean or cls")
        self.save_hyperparameters()
        cfg = EncoderConfig(**model)
        self.encoder = Encoder(cfg, attn_backend)
        self.head, self.drop = PredictionHead(cfg), nn.Dropout(dropout)
        self.classifier = nn.Linear(cfg.hidden_size, len(labels))
        n = len(labels)
        self.val_acc = torchmetrics.classification.MulticlassAccuracy(n, average="micro")
        self.val_f1 = torchmetrics.classification.MulticlassF1Score(n, average="macro")
        self._outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.language_scores: dict[str, dict[str, float]] = {}

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
        lengths = cu_seqlens[1:] - cu_seqlens[:-1]
        hidden = self.encoder(input_ids, cu_seqlens, int(lengths.max()))
        x = pooled(hidden, cu_seqlens) if self.hparams.pooling == "mean" else hidden[cu_seqlens[:-1].long()]
        return self.classifier(self.drop(self.head(x.to(hidden.dtype))))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = nn.functional.cross_entropy(self(batch["input_ids"], batch["cu_seqlens"]).float(), batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch["input_ids"], batch["cu_seqlens"]).float()
        preds, target = logits.argmax(-1), batch["labels"]
        self.val_acc.update(preds, target)
        self.val_f1.update(preds, target)
        self.log("val/loss", nn.functional.cross_entropy(logits, target), batch_size=len(target))
        self._outputs.append((preds.cpu(), target.cpu(), batch["languages"].cpu()))

    def on_validation_epoch_end(self) -> None:
        self.log("val/acc", self.val_acc.compute(), prog_bar=True)
        self.log("val/f1", self.val_f1.compute())
        self.val_acc.reset()
        self.val_f1.reset()
        if not self._outputs:
            return
        preds, target, langs = (torch.cat(t) for t in zip(*self._outputs))
        self._outputs.clear()
        n = len(self.hparams.labels)
        self.language_scores = {}
        for i, name in enumerate(self.hparams.languages):
            sel = langs == i
            if sel.any():
                acc = float((preds[sel] == target[sel]).float().mean())
                f1 = float(torchmetrics.functional.classification.multiclass_f1_score(preds[sel], target[sel], n, average="macro"))
                self.language_scores[name] = {"accuracy": acc, "macro_f1": f1, "examples": int(sel.sum())}
                self.log(f"val/{name}/acc", acc)

    def configure_optimizers(self):
        return adamw_with_warmup(self, self.hparams)


def adamw_with_warmup(module: L.LightningModule, hp) -> dict:
    """AdamW (no decay on biases and norms), linear warmup over `hp.warmup` of the steps, then cosine to 0."""
    decay = [p for n, p in module.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in module.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=hp.lr)
    warm = max(1, int(hp.warmup * hp.total_steps))

    def factor(step: int) -> float:          # linear warmup, then cosine to 0
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, hp.total_steps - warm))))

    return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor), "interval": "step"}}
