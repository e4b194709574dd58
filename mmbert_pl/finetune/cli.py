"""Fine-tune an encoder: sequence classification (`head=sequence`, single text or text pair), token
classification (`head=token`: NER, POS) or extractive QA (`head=span`: SQuAD v1.1/v2 JSON).

    python -m mmbert_pl.finetune encoder=runs/sample/hf task=langid
    python -m mmbert_pl.finetune encoder=runs/sample/checkpoints/last.ckpt data.train=train.csv \\
        data.validation=dev.csv data.text=premise data.text_pair=hypothesis data.label=label data.language=lang
    python -m mmbert_pl.finetune head=token encoder=runs/sample/hf data.train=train.jsonl data.validation=dev.conll
    python -m mmbert_pl.finetune head=token encoder=runs/sample/hf task=codeswitch
    python -m mmbert_pl.finetune head=span encoder=runs/sample/hf data.train=train-v2.0.json data.validation=xquad.de.json
    python -m mmbert_pl.finetune head=span encoder=runs/sample/hf task=sentence

    python -m mmbert_pl.finetune -m encoder=runs/sample/hf task=langid seed=1,2,3 lr=5e-5,1e-4   # out_dir-sweep/<overrides>/
    python -m mmbert_pl.evaluate report runs/finetune-langid-sweep                              # median over seeds, best lr

Writes `out_dir/checkpoints/best.ckpt` (best validation accuracy, entity F1 or QA F1), `out_dir/logs/`,
`out_dir/hf/` (the best checkpoint in transformers' own task class, with id2label) and `out_dir/results.json`
(the best checkpoint's scores, the trivial baseline's, per language).
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from mmbert_pl.core.bad_input import exit_on_bad_input


@dataclass
class FinetuneData:
    train: Optional[str] = None          # .csv or .jsonl; head=token: .jsonl or CoNLL; head=span: SQuAD JSON
    validation: Optional[str] = None
    text: str = "text"
    text_pair: Optional[str] = None
    label: str = "label"
    language: Optional[str] = None       # a column naming each example's language: per-language scores
    tokens: str = "tokens"               # head=token, .jsonl: the field of the words
    tags: str = "tags"                   # head=token, .jsonl: the field of their tags (strings)
    max_tokens: int = 256                # head=span: a window, question included
    stride: int = 128                    # head=span: tokens shared by consecutive windows of a long context
    max_question_tokens: int = 64        # head=span: longer questions are cut
    max_answer_tokens: Optional[int] = None   # head=span: longest predicted span; None: the longest training answer
    batch_size: int = 32


@dataclass
class LangIdTask:
    """The built-in task: language identification over the bundled sample (or `corpus`)."""
    corpus: Optional[str] = None
    chunk_chars: int = 200
    per_language: int = 60
    val_share: float = 0.2


@dataclass
class CodeSwitchTask:
    """The built-in token task: sentences switching between two languages of the sample, one language tag per word."""
    corpus: Optional[str] = None
    languages: int = 6
    per_language: int = 60
    val_share: float = 0.2


@dataclass
class SentenceTask:
    """The built-in span task: find the sentence of a multi-sentence context that a fragment of it comes from."""
    corpus: Optional[str] = None
    # the sample's spaced languages that its tokenizer writes shortest: contexts fit one window
    languages: List[str] = field(default_factory=lambda: ["cym_Latn", "deu_Latn", "eng_Latn", "fra_Latn", "kor_Hang", "spa_Latn"])
    per_language: int = 200
    sentences: int = 3                   # sentences per context: the question-blind first-sentence answer is right 1 in 3
    max_words: int = 15                  # longer sentences are left out
    mixed: bool = True                   # each sentence of a context in another language; false: all in one (harder)
    val_share: float = 0.2


@dataclass
class FinetuneConf:
    encoder: Optional[str] = None        # our .ckpt or a Hugging Face directory
    tokenizer: Optional[str] = None      # default: the tokenizer.model or tokenizer.json beside the model
    head: str = "sequence"               # sequence | token | span
    name: Optional[str] = None           # the task's row in `evaluate report`; default: the built-in task or the validation file's name
    task: str = "files"                  # files: data.train / data.validation; built in: langid (sequence), codeswitch (token), sentence (span)
    data: FinetuneData = field(default_factory=FinetuneData)
    langid: LangIdTask = field(default_factory=LangIdTask)
    codeswitch: CodeSwitchTask = field(default_factory=CodeSwitchTask)
    sentence: SentenceTask = field(default_factory=SentenceTask)
    pooling: str = "mean"                # mean | cls
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1                  # share of the steps
    dropout: float = 0.1
    epochs: int = 3
    seed: int = 21
    attn_backend: str = "auto"
    accelerator: str = "auto"
    devices: int = 1
    precision: Optional[str] = None      # None: bf16-mixed on GPU, 32-true on CPU
    progress_bar: bool = True
    out_dir: str = "${oc.env:MMBERT_RUNS,runs}/finetune-${task}"


ConfigStore.instance().store(name="finetune_schema", node=FinetuneConf)


def load_examples(cfg: DictConfig):
    from mmbert_pl.finetune.sequence_data import check_labels, examples_from, language_id_task
    from mmbert_pl.sample.prepare import SAMPLE_TEXT

    if cfg.task == "langid":
        train, val = language_id_task(cfg.langid.corpus or SAMPLE_TEXT, cfg.langid.chunk_chars, cfg.langid.per_language,
                                      cfg.langid.val_share, cfg.seed)
    else:
        if not cfg.data.train or not cfg.data.validation:
            raise ValueError("give data.train=FILE and data.validation=FILE (.csv or .jsonl), or task=langid")
        d = cfg.data
        train = examples_from(d.train, d.text, d.label, d.text_pair, d.language)
        val = examples_from(d.validation, d.text, d.label, d.text_pair, d.language)
    return train, val, check_labels(train, val)


def load_tagged(cfg: DictConfig):
    from mmbert_pl.sample.prepare import SAMPLE_TEXT
    from mmbert_pl.finetune.token_data import check_tags, codeswitch_task, read_tagged

    if cfg.task == "codeswitch":
        c = cfg.codeswitch
        train, val = codeswitch_task(c.corpus or SAMPLE_TEXT, c.languages, c.per_language, c.val_share, cfg.seed)
    elif cfg.task == "files":
        if not cfg.data.train or not cfg.data.validation:
            raise ValueError("give data.train=FILE and data.validation=FILE (.jsonl or CoNLL text), or task=codeswitch")
        d = cfg.data
        train, val = (read_tagged(f, d.tokens, d.tags, d.language) for f in (d.train, d.validation))
    return train, val, check_tags(train, val)


def load_questions(cfg: DictConfig):
    from mmbert_pl.sample.prepare import SAMPLE_TEXT
    from mmbert_pl.finetune.span_data import read_squad, sentence_task

    if cfg.task == "sentence":
        c = cfg.sentence
        return sentence_task(c.corpus or SAMPLE_TEXT, c.languages, c.per_language, c.sentences, c.max_words, c.val_share,
                             c.mixed, cfg.seed)
    if not cfg.data.train or not cfg.data.validation:
        raise ValueError("give data.train=FILE and data.validation=FILE (SQuAD v1.1/v2 JSON), or task=sentence")
    train, val = (read_squad(f, cfg.data.language) for f in (cfg.data.train, cfg.data.validation))
    if not any(e.answers for e in train):
        raise ValueError(f"{cfg.data.train}: no question has an answer; extractive QA needs answered questions to train on")
    return train, val


TASKS = {"sequence": ("langid",), "token": ("codeswitch",), "span": ("sentence",)}


def check_task(cfg: DictConfig) -> None:
    if cfg.head not in TASKS:
        raise ValueError(f"head={cfg.head!r}: choose sequence, token or span")
    if cfg.task != "files" and cfg.task not in TASKS[cfg.head]:
        owner = next((h for h, tasks in TASKS.items() if cfg.task in tasks), None)
        raise ValueError(f"task={cfg.task} is a {owner} task; head={cfg.head} takes task=files or task={TASKS[cfg.head][0]}"
                         if owner else f"task={cfg.task!r}: choose files (data.train / data.validation) or a built-in task: "
                         + ", ".join(f"{t} (head={h})" for h, ts in TASKS.items() for t in ts))


def finetune(cfg: DictConfig) -> dict:
    from mmbert_pl.files.model_files import find_tokenizer

    check_task(cfg)
    if cfg.pooling not in ("mean", "cls"):
        raise ValueError(f"pooling={cfg.pooling!r}: choose mean or cls")
    if not cfg.encoder:
        raise ValueError("give encoder=PATH: one of our .ckpt files or a Hugging Face directory")
    if not Path(cfg.encoder).exists():
        raise ValueError(f"encoder={cfg.encoder} does not exist")
    tokenizer = Path(cfg.tokenizer) if cfg.tokenizer else find_tokenizer([cfg.encoder])
    if tokenizer is None:
        raise ValueError(f"no tokenizer.model or tokenizer.json beside {cfg.encoder}; pass tokenizer=PATH")
    return {"sequence": finetune_sequences, "token": finetune_tokens, "span": finetune_spans}[cfg.head](cfg, tokenizer)


def fit_best(cfg: DictConfig, module, train_dl, val_dl, monitor: str) -> tuple[str, dict]:
    """Train, keep the best checkpoint by `monitor` and load it back into `module`; (its path, its scores)."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    out = Path(cfg.out_dir)
    best = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=monitor, mode="max", save_top_k=1,
                           enable_version_counter=False)
    trainer = L.Trainer(accelerator=cfg.accelerator, devices=cfg.devices, max_epochs=cfg.epochs,
                        precision=cfg.precision or ("bf16-mixed" if torch.cuda.is_available() and cfg.accelerator != "cpu" else "32-true"),
                        logger=CSVLogger(out, name="logs", version=""), callbacks=[best], enable_progress_bar=cfg.progress_bar,
                        log_every_n_steps=10, num_sanity_val_steps=0, default_root_dir=str(out))
    trainer.fit(module, train_dl, val_dl)
    return best.best_model_path, trainer.validate(module, val_dl, ckpt_path="best", verbose=False)[0]


def task_name(cfg: DictConfig) -> str:
    if cfg.name:
        return cfg.name
    return cfg.task if cfg.task != "files" else Path(cfg.data.validation).name.split(".")[0]


def write_results(cfg: DictConfig, results: dict) -> None:
    out = Path(cfg.out_dir) / "results.json"
    out.write_text(json.dumps({**results, "name": task_name(cfg), "head": cfg.head, "task": cfg.task, "seed": cfg.seed,
                               "lr": cfg.lr}, indent=1) + "\n")


def finetune_sequences(cfg: DictConfig, tokenizer: Path) -> dict:
    import lightning as L
    import torch

    from mmbert_pl.finetune.classifier import SequenceClassifier
    from mmbert_pl.finetune.sequence_data import Encoded, collate
    from mmbert_pl.files.hf import export_task_hf
    from mmbert_pl.files.model_files import read_model

    train, val, labels = load_examples(cfg)          # data problems surface before the model loads
    languages = sorted({e.language for e in train + val if e.language})
    majority = Counter(e.label for e in val).most_common(1)[0][1] / len(val)
    print(f"{len(train)} training and {len(val)} validation examples, {len(labels)} labels; majority baseline {majority:.1%}")

    L.seed_everything(cfg.seed, workers=True)
    encoder = read_model(cfg.encoder, attn_backend="sdpa")
    train_ds = Encoded(train, tokenizer, labels, cfg.data.max_tokens, languages)
    val_ds = Encoded(val, tokenizer, labels, cfg.data.max_tokens, languages)
    train_dl = torch.utils.data.DataLoader(train_ds, batch_size=cfg.data.batch_size, shuffle=True, collate_fn=collate)
    val_dl = torch.utils.data.DataLoader(val_ds, batch_size=cfg.data.batch_size, collate_fn=collate)
    module = SequenceClassifier(encoder.cfg.to_dict(), labels, languages, cfg.pooling, cfg.lr, cfg.weight_decay,
                                cfg.warmup, cfg.epochs * len(train_dl), cfg.dropout, cfg.attn_backend)
    module.encoder.load_state_dict(encoder.model.state_dict())
    best, scores = fit_best(cfg, module, train_dl, val_dl, "val/acc")
    hf = export_task_hf(module, "ModernBertForSequenceClassification", labels, Path(cfg.out_dir) / "hf", tokenizer, cfg.pooling)
    results = {"accuracy": scores["val/acc"], "macro_f1": scores["val/f1"], "majority_baseline": majority,
               "labels": len(labels), "train_examples": len(train), "validation_examples": len(val),
               "best_checkpoint": best, "hf": str(hf), "per_language": module.language_scores}
    write_results(cfg, results)
    print(f"best checkpoint {best}: accuracy {results['accuracy']:.1%}, macro-F1 {results['macro_f1']:.1%} "
          f"(majority baseline {majority:.1%}); {hf}; {Path(cfg.out_dir) / 'results.json'}")
    return results


def finetune_tokens(cfg: DictConfig, tokenizer: Path) -> dict:
    import lightning as L
    import torch

    from mmbert_pl.files.hf import export_task_hf
    from mmbert_pl.files.model_files import read_model
    from mmbert_pl.finetune.token_classifier import TokenClassifier
    from mmbert_pl.finetune.token_data import EncodedTags, collate_tags
    from mmbert_pl.finetune.token_metrics import token_scores

    train, val, tags = load_tagged(cfg)
    languages = sorted({s.language for s in train + val if s.language})
    common = Counter(t for s in train for t in s.tags).most_common(1)[0][0]
    baseline = token_scores([s.tags for s in val], [[common] * len(s.tags) for s in val])
    print(f"{len(train)} training and {len(val)} validation sentences, {len(tags)} tags; most frequent tag {common!r}: "
          f"token accuracy {baseline['token_accuracy']:.1%}, entity F1 {baseline['entity_f1']:.1%}")

    L.seed_everything(cfg.seed, workers=True)
    encoder = read_model(cfg.encoder, attn_backend="sdpa")
    train_dl = torch.utils.data.DataLoader(EncodedTags(train, tokenizer, tags, cfg.data.max_tokens, languages),
                                           batch_size=cfg.data.batch_size, shuffle=True, collate_fn=collate_tags)
    val_dl = torch.utils.data.DataLoader(EncodedTags(val, tokenizer, tags, cfg.data.max_tokens, languages),
                                         batch_size=cfg.data.batch_size, collate_fn=collate_tags)
    module = TokenClassifier(encoder.cfg.to_dict(), tags, languages, cfg.lr, cfg.weight_decay, cfg.warmup,
                             cfg.epochs * len(train_dl), cfg.dropout, cfg.attn_backend)
    module.encoder.load_state_dict(encoder.model.state_dict())
    best, _ = fit_best(cfg, module, train_dl, val_dl, "val/entity_f1")
    hf = export_task_hf(module, "ModernBertForTokenClassification", tags, Path(cfg.out_dir) / "hf", tokenizer)
    results = {**module.scores, "baseline": {"tag": common, **baseline}, "tags": len(tags), "train_sentences": len(train),
               "validation_sentences": len(val), "best_checkpoint": best, "hf": str(hf), "per_language": module.language_scores}
    write_results(cfg, results)
    print(f"best checkpoint {best}: token accuracy {results['token_accuracy']:.1%}, entity F1 {results['entity_f1']:.1%} "
          f"(most frequent tag: {baseline['token_accuracy']:.1%}, {baseline['entity_f1']:.1%}); {hf}; {Path(cfg.out_dir) / 'results.json'}")
    return results


def first_sentence_baseline(val: list) -> dict:
    """The question-blind answer: the context's first sentence, whatever was asked."""
    from mmbert_pl.finetune.span_data import SENTENCE_END
    from mmbert_pl.finetune.squad_metrics import qa_scores

    return {"answer": "first sentence", **qa_scores([e.gold for e in val],
                                                    [SENTENCE_END.split(e.context.strip(), maxsplit=1)[0] for e in val])}


def finetune_spans(cfg: DictConfig, tokenizer: Path) -> dict:
    import lightning as L
    import torch

    from data_prep.tokenizer import load_tokenizer

    from mmbert_pl.files.hf import export_task_hf
    from mmbert_pl.files.model_files import read_model
    from mmbert_pl.finetune.span_classifier import SpanClassifier
    from mmbert_pl.finetune.span_data import EncodedSpans, collate_spans, make_windows
    from mmbert_pl.finetune.squad_metrics import qa_scores

    train, val = load_questions(cfg)
    d = cfg.data
    longest = max(len(ids) for ids in load_tokenizer(tokenizer).encode([e.answers[0][0] for e in train if e.answers]))
    max_answer = d.max_answer_tokens or longest
    allow_null = any(not e.answers for e in train)
    train_w, val_w = (make_windows(x, tokenizer, d.max_tokens, d.stride, d.max_question_tokens) for x in (train, val))
    languages = sorted({e.language for e in train + val if e.language})
    baseline = first_sentence_baseline(val)
    print(f"{len(train)} training and {len(val)} validation questions in {len(train_w)} and {len(val_w)} windows of at most "
          f"{d.max_tokens} tokens (stride {d.stride}); {'SQuAD v2: empty answers allowed' if allow_null else 'every question answered'}; "
          f"answers up to {max_answer} tokens; first sentence: exact match {baseline['exact_match']:.1%}, F1 {baseline['f1']:.1%}")

    L.seed_everything(cfg.seed, workers=True)
    encoder = read_model(cfg.encoder, attn_backend="sdpa")
    train_dl = torch.utils.data.DataLoader(EncodedSpans(train_w), batch_size=d.batch_size, shuffle=True, collate_fn=collate_spans)
    val_dl = torch.utils.data.DataLoader(EncodedSpans(val_w), batch_size=d.batch_size, collate_fn=collate_spans)
    module = SpanClassifier(encoder.cfg.to_dict(), languages, cfg.lr, cfg.weight_decay, cfg.warmup, cfg.epochs * len(train_dl),
                            cfg.dropout, cfg.attn_backend, max_answer, allow_null, validation=(val, val_w))
    module.encoder.load_state_dict(encoder.model.state_dict())
    best, _ = fit_best(cfg, module, train_dl, val_dl, "val/f1")
    hf = export_task_hf(module, "ModernBertForQuestionAnswering", ["start", "end"], Path(cfg.out_dir) / "hf", tokenizer)
    (Path(cfg.out_dir) / "predictions.json").write_text(json.dumps(module.predictions, ensure_ascii=False, indent=0) + "\n")
    split = {}
    if any(not e.answers for e in val):                 # the official v2 script's HasAns / NoAns breakdown
        for name, rows in (("has_answer", [e for e in val if e.answers]), ("no_answer", [e for e in val if not e.answers])):
            split[name] = qa_scores([e.gold for e in rows], [module.predictions[e.id] for e in rows])
    results = {**{k: module.scores[k] for k in ("exact_match", "f1")}, **split, "baseline": baseline, "squad_v2": allow_null,
               "train_questions": len(train), "validation_questions": len(val), "max_answer_tokens": max_answer,
               "best_checkpoint": best, "hf": str(hf), "per_language": module.language_scores}
    write_results(cfg, results)
    print(f"best checkpoint {best}: exact match {results['exact_match']:.1%}, F1 {results['f1']:.1%} (first "
          f"sentence: {baseline['exact_match']:.1%}, {baseline['f1']:.1%}); {hf}; "
          f"{Path(cfg.out_dir) / 'results.json'}")
    return results


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="finetune")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    if HydraConfig.get().mode == RunMode.MULTIRUN:    # each job of a seeds x lr sweep writes to its own folder
        cfg.out_dir = HydraConfig.get().runtime.output_dir
    with exit_on_bad_input():
        finetune(cfg)
