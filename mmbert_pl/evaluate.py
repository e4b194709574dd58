"""Offline evaluation of a trained encoder.

    python -m mmbert_pl.evaluate retrieval --model runs/sample/hf --corpus ../shared/corpora/ntrex128 --out eval/

`--model` is one of our checkpoints or a Hugging Face export; the tokenizer is found beside it
(an HF export holds tokenizer.model) or given with `--tokenizer`. Documents longer than
`--max-tokens` are truncated to their head.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .bad_input import exit_on_bad_input
from .embedding import embed, tokenize
from .model_files import find_tokenizer, read_model
from .retrieval import read_parallel, retrieval_scores, table, write_report


def retrieval(args: argparse.Namespace) -> None:
    if not Path(args.model).exists():
        raise ValueError(f"--model {args.model} does not exist; give one of our .ckpt files or a Hugging Face directory")
    tokenizer = Path(args.tokenizer) if args.tokenizer else find_tokenizer([args.model])
    if tokenizer is None:
        raise ValueError(f"no tokenizer.model beside {args.model}; pass --tokenizer PATH")
    languages = args.languages.split(",") if args.languages else None
    if languages and args.pivot not in languages:
        languages.append(args.pivot)
    texts = read_parallel(args.corpus, languages, max_docs=args.max_docs)   # before the model: bad input fails fast
    model = read_model(args.model).to(args.device)
    embeddings = {k: (list(v), embed(model, tokenize(tokenizer, list(v.values()), args.max_tokens))) for k, v in texts.items()}
    scores = retrieval_scores(embeddings, args.pivot)
    print(table(scores, args.pivot))
    csv_path, png_path = write_report(scores, args.pivot, args.out)
    print(f"wrote {csv_path} and {png_path}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mmbert_pl.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="task", required=True)
    r = sub.add_parser("retrieval", help="accuracy@1 of cross-lingual retrieval to and from a pivot language")
    r.add_argument("--model", required=True, help="our .ckpt or a Hugging Face directory")
    r.add_argument("--corpus", required=True, help="folder of <lang>_<Script>.txt, line-aligned")
    r.add_argument("--out", default="retrieval", help="folder for retrieval.csv and retrieval.png")
    r.add_argument("--tokenizer", default=None)
    r.add_argument("--pivot", default="eng_Latn")
    r.add_argument("--languages", default=None, help="comma list of labels (default: every file)")
    r.add_argument("--max-docs", type=int, default=None, help="the first N documents of each language")
    r.add_argument("--max-tokens", type=int, default=512, help="longer documents are truncated to their head")
    r.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    with exit_on_bad_input():
        retrieval(args)


if __name__ == "__main__":
    main()
