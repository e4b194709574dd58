"""Cross-lingual retrieval on held-out parallel documents while training: is every language improving?

Every `every_tokens` tokens (crossing a multiple of it on the run's token clock) and at the end of
training, rank 0 (under FSDP every rank) embeds the documents and logs `retrieval/<label>/to_<pivot>`, `.../from_<pivot>`
and the macro means. The documents must never be trained on: by default the run uses the lines its
shards held out for validation (the same line numbers in every language).
"""
from __future__ import annotations

from pathlib import Path

import lightning as L

from mmbert_pl.embeddings.embedding import embed, tokenize
from mmbert_pl.embeddings.retrieval import retrieval_scores
from mmbert_pl.training.sharding import is_sharded


class RetrievalEval(L.Callback):
    def __init__(self, documents: dict[str, dict[int, str]], tokenizer: str | Path, every_tokens: float,
                 pivot: str = "eng_Latn", max_tokens: int = 256) -> None:
        if every_tokens <= 0:
            raise ValueError(f"retrieval every_tokens must be > 0, got {every_tokens}")
        if pivot not in documents:
            raise ValueError(f"retrieval pivot {pivot} has no held-out documents; languages: {sorted(documents)[:8]}...")
        self.every = every_tokens
        self.pivot = pivot
        self.docs = {k: (list(v), tokenize(tokenizer, list(v.values()), max_tokens)) for k, v in documents.items()}
        self._done = -1

    def evaluate(self, pl_module: L.LightningModule) -> dict[str, float]:
        embeddings = {k: (lines, embed(pl_module.model, ids)) for k, (lines, ids) in self.docs.items()}
        scores = retrieval_scores(embeddings, self.pivot)
        metrics = {}
        for s in scores:
            metrics[f"retrieval/{s.label}/to_{self.pivot}"] = s.to_pivot
            metrics[f"retrieval/{s.label}/from_{self.pivot}"] = s.from_pivot
        if scores:
            metrics["retrieval/macro_to"] = sum(s.to_pivot for s in scores) / len(scores)
            metrics["retrieval/macro_from"] = sum(s.from_pivot for s in scores) / len(scores)
        return metrics

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Rank 0 embeds alone, except under FSDP: there every forward is a collective, so all ranks embed."""
        if not (trainer.is_global_zero or is_sharded(pl_module.model)):
            return
        metrics = self.evaluate(pl_module)
        if not trainer.is_global_zero:
            return
        step = trainer.fit_loop.epoch_loop._batches_that_stepped     # the step Lightning's own rows of this batch carry
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._done = pl_module.tokens // int(self.every)     # a resumed run does not repeat a finished one

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if pl_module.micro_index != 0:        # only right after an optimizer step
            return
        bucket = pl_module.tokens // int(self.every)
        if bucket > self._done:
            self._done = bucket
            self._log(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.tokens % int(self.every):     # the end is not a multiple: score the final weights too
            self._log(trainer, pl_module)
