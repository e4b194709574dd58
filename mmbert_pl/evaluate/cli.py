"""Offline evaluation of a trained encoder.

    python -m mmbert_pl.evaluate retrieval --model runs/sample/hf --corpus ../shared/corpora/ntrex128 --out eval/
    python -m mmbert_pl.evaluate mlm --model runs/sample/hf --data SHARDS --out eval/
    python -m mmbert_pl.evaluate report runs/finetune-langid-sweep --out eval/

`retrieval --held-out-of SHARDS` scores only the lines those shards held out of training. `mlm` gives each
language's masked-LM loss and accuracy on the held-out rows of the shards, with the same fixed masks for
every model (15% by default), so stages and merges compare on equal terms, beside the best a context-blind
model could do on the same positions (`unigram_loss`, `unigram_accuracy`).

`report` gathers every fine-tuning `results.json` below a folder into one table (CSV, markdown, PNG): per task
the learning rate with the best median over seeds, and there the median of each metric, overall and per language.

`--model` is one of our checkpoints or a Hugging Face export; the tokenizer is found beside it
(an HF export holds tokenizer.model) or given with `--tokenizer`. Documents longer than
`--max-tokens` are truncated to their head.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mmbert_pl.core.bad_input import exit_on_bad_input
from mmbert_pl.embeddings.embedding import embed, tokenize
from mmbert_pl.files.model_files import find_tokenizer, read_model
from mmbert_pl.embeddings.retrieval import read_parallel, retrieval_scores, table, write_report
from mmbert_pl.files.sentence_transformers_files import EMBEDDING_MAX_TOKENS


def retrieval(args: argparse.Namespace) -> None:
    if not Path(args.model).exists():
        raise ValueError(f"--model {args.model} does not exist; give one of our .ckpt files or a Hugging Face directory")
    tokenizer = Path(args.tokenizer) if args.tokenizer else find_tokenizer([args.model])
    if tokenizer is None:
        raise ValueError(f"no tokenizer.model or tokenizer.json beside {args.model}; pass --tokenizer PATH")
    languages = args.languages.split(",") if args.languages else None
    if languages and args.pivot not in languages:
        languages.append(args.pivot)
    if args.held_out_of:
        from data_prep.manifest import held_out_lines, read_manifest

        from mmbert_pl.embeddings.retrieval import held_out

        manifest = read_manifest(args.held_out_of)
        if manifest is None:
            raise ValueError(f"--held-out-of {args.held_out_of} has no manifest.json; give a folder data_prep.shards wrote")
        if manifest["settings"].get("parallel"):       # the shards keep their held-out lines
            texts = held_out_lines(args.held_out_of, manifest, languages or sorted(manifest["languages"]))
        elif args.corpus:
            texts = held_out(args.corpus, manifest["settings"], languages)
        else:
            raise ValueError(f"--held-out-of {args.held_out_of} was not built with --parallel, so it keeps no held-out text; "
                             f"give --corpus, the parallel folder it was built from")
    elif not args.corpus:
        raise ValueError("--corpus: give the parallel folder to score (or --held-out-of shards built with --parallel)")
    else:
        texts = read_parallel(args.corpus, languages, max_docs=args.max_docs)   # before the model: bad input fails fast
    model = read_model(args.model).to(args.device)
    embeddings = {k: (list(v), embed(model, tokenize(tokenizer, list(v.values()), args.max_tokens))) for k, v in texts.items()}
    scores = retrieval_scores(embeddings, args.pivot)
    print(table(scores, args.pivot))
    csv_path, png_path = write_report(scores, args.pivot, args.out)
    print(f"wrote {csv_path} and {png_path}")


def mlm(args: argparse.Namespace) -> None:
    import csv

    from streaming import Stream, StreamingDataset

    from data_prep.manifest import read_manifest, shard_tokenizer
    from data_prep.tokenizer import ordinary_ids

    from mmbert_pl.data.rows import collate_rows
    from mmbert_pl.training.masking import ordinary_lookup, row_seeds
    from mmbert_pl.training.step_inputs import step_inputs

    manifest = read_manifest(args.data)
    if manifest is None:
        raise ValueError(f"--data {args.data} has no manifest.json; give a folder data_prep.shards wrote")
    labels = [k for k, v in sorted(manifest["languages"].items()) if v["val"]["rows"] > 0]
    if not labels:
        raise ValueError(f"--data {args.data} holds no held-out rows; rebuild it with --val-fraction > 0")
    tokenizer = shard_tokenizer(args.data, manifest)
    model = read_model(args.model).to(args.device).eval()
    if model.cfg.vocab_size < manifest["tokenizer"]["vocab_size"]:
        raise ValueError(f"--model {args.model} has a vocab of {model.cfg.vocab_size}, smaller than the shards' tokenizer's "
                         f"{manifest['tokenizer']['vocab_size']}; evaluate on shards of its own tokenizer")
    pool = torch.tensor(ordinary_ids(tokenizer))
    ordinary, mask_id = ordinary_lookup(pool, model.cfg.vocab_size), manifest["tokenizer"]["mask"]
    rows, targets_by_language = [], []
    # One dataset over every language's val split: a StreamingDataset each would run out of file descriptors.
    ds = StreamingDataset(streams=[Stream(local=str(Path(args.data) / k), split="val") for k in labels], shuffle=False,
                          batch_size=args.batch)
    with torch.no_grad():
        for i, (label, first, size) in enumerate(zip(labels, ds.sample_offset_per_stream, ds.samples_per_stream)):
            n, first = min(int(size), args.max_rows), int(first)
            loss = correct = count = 0.0
            targets = []
            for start in range(0, n, args.batch):
                end = min(start + args.batch, n)
                batch = collate_rows([ds[first + j] for j in range(start, end)])
                x = step_inputs(batch, args.mask_ratio, mask_id, pool, row_seeds(0, i, range(start, end)), torch.device(args.device),
                                ordinary)
                out = model(x.input_ids, x.cu_seqlens, x.max_seqlen, labels=x.targets, positions=x.positions)
                if out.num_labels:
                    loss += float(out.loss) * out.num_labels
                    correct += float((out.predictions == x.targets).sum())
                    count += out.num_labels
                    targets.append(x.targets.cpu())
            rows.append([label, int(count), loss / max(count, 1), correct / max(count, 1)])
            targets_by_language.append(torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long))
    for row, (loss, accuracy) in zip(rows, unigram_baseline(targets_by_language, model.cfg.vocab_size)):
        row += [loss, accuracy]
    columns = ["language", "labels", "loss", "accuracy", "unigram_loss", "unigram_accuracy"]
    macro = ["macro", sum(r[1] for r in rows), *(sum(r[c] for r in rows) / len(rows) for c in range(2, 6))]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "mlm.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for row in [*rows, macro]:
            w.writerow([*row[:2], *(f"{v:.4f}" for v in row[2:])])
    print(f"MLM on {len(rows)} languages' held-out rows: loss {macro[2]:.4f}, accuracy {macro[3]:.4f} (a context-blind "
          f"model at best: loss {macro[4]:.4f}, accuracy {macro[5]:.4f}); wrote {out / 'mlm.csv'}")


def unigram_baseline(targets_by_language: list[torch.Tensor], vocab_size: int) -> list[tuple[float, float]]:
    """Per language, the loss and accuracy of the best context-blind model in hindsight: one unigram distribution
    fitted to every language's masked targets together, and its most frequent token. A model that learned only
    token frequencies cannot beat it on these positions; one that reads the context (attention, RoPE) must.
    One vocabulary-sized count for all languages (1833 of them over 256k pieces would not fit one each)."""
    pooled = torch.zeros(vocab_size, dtype=torch.float64)
    for targets in targets_by_language:
        pooled.index_add_(0, targets, torch.ones(len(targets), dtype=torch.float64))
    log_p = torch.log(pooled.clamp(min=1) / pooled.sum())
    top = int(pooled.argmax())
    n = [max(len(t), 1) for t in targets_by_language]
    return [(float(-log_p[t].sum() / k), float((t == top).sum() / k)) for t, k in zip(targets_by_language, n)]


def report(args: argparse.Namespace) -> None:
    from mmbert_pl.finetune.report import read_results, report_rows, write_report

    rows = report_rows(read_results(args.folder))
    paths = write_report(rows, args.out)
    print((paths[1]).read_text(), end="")
    print("wrote " + ", ".join(map(str, paths)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mmbert_pl.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="task", required=True)
    r = sub.add_parser("retrieval", help="accuracy@1 of cross-lingual retrieval to and from a pivot language")
    r.add_argument("--model", required=True, help="our .ckpt or a Hugging Face directory")
    r.add_argument("--corpus", default=None, help="folder of <lang>_<Script>.txt, line-aligned (not needed with --held-out-of "
                   "shards built with --parallel: they keep their held-out lines)")
    r.add_argument("--out", default="retrieval", help="folder for retrieval.csv and retrieval.png")
    r.add_argument("--tokenizer", default=None)
    r.add_argument("--pivot", default="eng_Latn")
    r.add_argument("--languages", default=None, help="comma list of labels (default: every file)")
    r.add_argument("--max-docs", type=int, default=None, help="the first N documents of each language")
    r.add_argument("--max-tokens", type=int, default=EMBEDDING_MAX_TOKENS, help="longer documents are truncated to their head")
    r.add_argument("--held-out-of", default=None, help="shards built from --corpus: score only the lines they held out")
    r.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    m = sub.add_parser("mlm", help="per-language masked-LM loss and accuracy on the shards' held-out rows")
    m.add_argument("--model", required=True, help="our .ckpt or a Hugging Face directory")
    m.add_argument("--data", required=True, help="a folder data_prep.shards wrote (its val/ splits are scored)")
    m.add_argument("--out", default="mlm", help="folder for mlm.csv")
    m.add_argument("--mask-ratio", type=float, default=0.15)
    m.add_argument("--max-rows", type=int, default=64, help="held-out rows per language")
    m.add_argument("--batch", type=int, default=8)
    m.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    rp = sub.add_parser("report", help="every finetune results.json below a folder as one table: median over seeds, best lr")
    rp.add_argument("folder", help="a finetune out_dir, its -sweep folder, or any folder above them")
    rp.add_argument("--out", default=None, help="folder for report.csv, report.md and report.png (default: FOLDER)")
    args = ap.parse_args(argv)
    if args.task == "report" and args.out is None:
        args.out = args.folder
    with exit_on_bad_input():
        {"retrieval": retrieval, "mlm": mlm, "report": report}[args.task](args)
