"""Token classification on top of the encoder (NER, POS): every sub-token's state -> ModernBERT's head ->
tags, trained and scored on each word's first sub-token (the layout of transformers' ModernBertForTokenClassification)."""
from __future__ import annotations

import lightning as L
import torch
from torch import nn

from mmbert_pl.finetune.classifier import PredictionHead, adamw_with_warmup
from mmbert_pl.model import EncoderConfig
from mmbert_pl.model.encoder import Encoder
from mmbert_pl.finetune.token_data import IGNORED
from mmbert_pl.finetune.token_metrics import token_scores


class TokenClassifier(L.LightningModule):
    def __init__(self, model: dict, tags: list[str], languages: list[str], lr: float = 5e-5, weight_decay: float = 0.01,
                 warmup: float = 0.1, total_steps: int = 1000, dropout: float = 0.1, attn_backend: str = "auto") -> None:
        super().__init__()
        self.save_hyperparameters()
        cfg = EncoderConfig(**model)
        self.encoder = Encoder(cfg, attn_backend)
        self.head, self.drop = PredictionHead(cfg), nn.Dropout(dropout)
        self.classifier = nn.Linear(cfg.hidden_size, len(tags))
        self._outputs: list[tuple[list[list[str]], list[list[str]], list[int]]] = []
        self.scores: dict[str, float] = {}
        self.language_scores: dict[str, dict[str, float]] = {}

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
        lengths = cu_seqlens[1:] - cu_seqlens[:-1]
        hidden = self.encoder(input_ids, cu_seqlens, int(lengths.max()))
        return self.classifier(self.drop(self.head(hidden)))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["cu_seqlens"]).float()
        loss = nn.functional.cross_entropy(logits, batch["labels"], ignore_index=IGNORED)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["languages"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch["input_ids"], batch["cu_seqlens"]).float()
        labels = batch["labels"]
        self.log("val/loss", nn.functional.cross_entropy(logits, labels, ignore_index=IGNORED), batch_size=len(batch["languages"]))
        preds, tags, cu = logits.argmax(-1).cpu(), self.hparams.tags, batch["cu_seqlens"].cpu()
        gold, predicted = [], []
        for start, end in zip(cu[:-1].tolist(), cu[1:].tolist()):
            scored = labels[start:end].cpu() != IGNORED
            gold.append([tags[i] for i in labels[start:end].cpu()[scored].tolist()])
            predicted.append([tags[i] for i in preds[start:end][scored].tolist()])
        self._outputs.append((gold, predicted, batch["languages"].tolist()))

    def on_validation_epoch_end(self) -> None:
        if not self._outputs:
            return
        gold = [s for g, _, _ in self._outputs for s in g]
        predicted = [s for _, p, _ in self._outputs for s in p]
        langs = [x for _, _, ls in self._outputs for x in ls]
        self._outputs.clear()
        self.scores = token_scores(gold, predicted)
        self.log("val/token_acc", self.scores["token_accuracy"], prog_bar=True)
        self.log("val/entity_f1", self.scores["entity_f1"], prog_bar=True)
        self.language_scores = {}
        for i, name in enumerate(self.hparams.languages):
            chosen = [k for k, g in enumerate(langs) if g == i]
            if chosen:
                scores = token_scores([gold[k] for k in chosen], [predicted[k] for k in chosen])
                self.language_scores[name] = {**scores, "sentences": len(chosen)}

    def configure_optimizers(self):
        return adamw_with_warmup(self, self.hparams)
