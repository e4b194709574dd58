"""Extractive QA on top of the encoder: every token's state -> ModernBERT's head -> (start, end) logits, the
layout of transformers' ModernBertForQuestionAnswering. A question's answer is the best-scoring span over all
windows of its context; with SQuAD v2 data it may be empty, when [bos]'s null score beats every span."""
from __future__ import annotations

import lightning as L
import torch
from torch import nn

from mmbert_pl.finetune.classifier import PredictionHead, adamw_with_warmup
from mmbert_pl.model import EncoderConfig
from mmbert_pl.model.encoder import Encoder
from mmbert_pl.finetune.span_data import QAExample, Window
from mmbert_pl.finetune.squad_metrics import qa_scores


class SpanClassifier(L.LightningModule):
    """`validation` (examples, windows) is what the validation loader's window indices refer to; it is not a
    hyperparameter and is set again after loading a checkpoint."""

    def __init__(self, model: dict, languages: list[str], lr: float = 5e-5, weight_decay: float = 0.01, warmup: float = 0.1,
                 total_steps: int = 1000, dropout: float = 0.1, attn_backend: str = "auto", max_answer_tokens: int = 30,
                 allow_null: bool = False, validation: tuple[list[QAExample], list[Window]] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["validation"])
        cfg = EncoderConfig(**model)
        self.encoder = Encoder(cfg, attn_backend)
        self.head, self.drop = PredictionHead(cfg), nn.Dropout(dropout)
        self.classifier = nn.Linear(cfg.hidden_size, 2)
        self.validation = validation
        self._logits: dict[int, torch.Tensor] = {}
        self.scores: dict[str, float] = {}
        self.language_scores: dict[str, dict[str, float]] = {}
        self.predictions: dict[str, str] = {}

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
        """(tokens, 2) start and end logits over the flat stream."""
        lengths = cu_seqlens[1:] - cu_seqlens[:-1]
        hidden = self.encoder(input_ids, cu_seqlens, int(lengths.max()))
        return self.classifier(self.drop(self.head(hidden)))

    @staticmethod
    def per_window(logits: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
        """(windows, longest, 2), -inf past each window's end."""
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
        window = torch.repeat_interleave(torch.arange(len(lengths), device=logits.device), lengths)
        position = torch.arange(len(logits), device=logits.device) - cu_seqlens[:-1].long()[window]
        out = logits.new_full((len(lengths), int(lengths.max()), 2), float("-inf"))
        out[window, position] = logits
        return out

    def loss(self, batch: dict) -> torch.Tensor:
        padded = self.per_window(self(batch["input_ids"], batch["cu_seqlens"]).float(), batch["cu_seqlens"])
        ce = nn.functional.cross_entropy
        return (ce(padded[..., 0], batch["start"]) + ce(padded[..., 1], batch["end"])) / 2

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["start"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch["input_ids"], batch["cu_seqlens"]).float()
        padded = self.per_window(logits, batch["cu_seqlens"])
        ce = nn.functional.cross_entropy
        self.log("val/loss", (ce(padded[..., 0], batch["start"]) + ce(padded[..., 1], batch["end"])) / 2,
                 batch_size=len(batch["start"]))
        cu = batch["cu_seqlens"].tolist()
        for k, w in enumerate(batch["window"].tolist()):
            self._logits[w] = logits[cu[k] : cu[k + 1]].cpu()

    def on_validation_epoch_end(self) -> None:
        if not self._logits or self.validation is None:
            return
        examples, windows = self.validation
        answers = best_answers(examples, windows, self._logits, self.hparams.max_answer_tokens, self.hparams.allow_null)
        self._logits = {}
        golds = [e.gold for e in examples]
        self.predictions = {e.id: answers[k] for k, e in enumerate(examples)}
        self.scores = qa_scores(golds, answers)
        self.log("val/exact_match", self.scores["exact_match"], prog_bar=True)
        self.log("val/f1", self.scores["f1"], prog_bar=True)
        self.language_scores = {}
        for name in self.hparams.languages:
            chosen = [k for k, e in enumerate(examples) if e.language == name]
            self.language_scores[name] = qa_scores([golds[k] for k in chosen], [answers[k] for k in chosen])

    def configure_optimizers(self):
        return adamw_with_warmup(self, self.hparams)


def best_answers(examples: list[QAExample], windows: list[Window], logits: dict[int, torch.Tensor], max_answer_tokens: int,
                 allow_null: bool, n_best: int = 20) -> list[str]:
    """Each example's answer text: the best start+end score over its windows' context tokens (end not before start,
    at most `max_answer_tokens` long), or "" where `allow_null` and the lowest null score (start and end on [bos])
    of its windows is higher."""
    best: list[tuple[float, str]] = [(float("-inf"), "") for _ in examples]
    null = [float("inf")] * len(examples)
    for w_index, w in enumerate(windows):
        if w_index not in logits:
            continue
        scores = logits[w_index]
        null[w.example] = min(null[w.example], float(scores[0, 0] + scores[0, 1]))
        context = scores[w.first : w.first + len(w.spans)]
        if not len(context):
            continue
        k = min(n_best, len(context))
        starts, ends = context[:, 0].topk(k).indices.tolist(), context[:, 1].topk(k).indices.tolist()
        text = examples[w.example].context
        for s in starts:
            for e in ends:
                if e < s or e - s + 1 > max_answer_tokens:
                    continue
                score = float(context[s, 0] + context[e, 1])
                if score > best[w.example][0]:
                    best[w.example] = (score, text[w.spans[s][0] : w.spans[e][1]].strip())
    return ["" if allow_null and null[i] > best[i][0] else best[i][1] for i in range(len(examples))]
