"""Build the bundled sample (`mmbert_pl/sample/ntrex/`) from an NTREX-128 folder in our layout.

    python -m data_prep.build_sample --ntrex ../shared/corpora/ntrex128

Forty languages across the three mmBERT phases (20 pretrain, 10 added at ext, 10 only in decay_all)
and 15 scripts. Each keeps the first k documents (lines), k growing with the language's mmBERT token
count, so sampling temperatures have visibly different sizes to work on; line i is the same
document in every file, so the sample stays parallel.
"""
from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

from .languages import code_of, token_counts

PRETRAIN = ["eng_Latn", "cmn_Hani", "rus_Cyrl", "deu_Latn", "spa_Latn", "fra_Latn", "jpn_Jpan", "arb_Arab",
            "hin_Deva", "kor_Hang", "ell_Grek", "heb_Hebr", "tha_Thai", "ukr_Cyrl", "vie_Latn", "tur_Latn",
            "pol_Latn", "ben_Beng", "tam_Taml", "fin_Latn"]
EXT = ["als_Latn", "amh_Ethi", "bel_Cyrl", "bod_Tibt", "cat_Latn", "cym_Latn", "eus_Latn", "hye_Armn", "isl_Latn", "kan_Knda"]
DECAY_ALL = ["fao_Latn", "tir_Ethi", "ewe_Latn", "div_Thaa", "yor_Latn", "zul_Latn", "uig_Arab", "bak_Cyrl", "smo_Latn", "tuk_Latn"]
LANGUAGES = PRETRAIN + EXT + DECAY_ALL
OUT = Path(__file__).resolve().parents[1] / "mmbert_pl" / "sample" / "ntrex"


def documents_for(label: str) -> int:
    """8 documents for the rarest languages up to about 40 for English."""
    tokens_b = max(token_counts()[code_of(label)].values()) / 1e9
    return int(round(8 + 3.5 * math.log2(1 + tokens_b)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ntrex", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for label in LANGUAGES:
        lines = (args.ntrex / f"{label}.txt").read_text(encoding="utf-8").splitlines()[: documents_for(label)]
        text = "\n".join(lines) + "\n"
        (args.out / f"{label}.txt").write_text(text, encoding="utf-8")
        total += len(text.encode())
    shutil.copy(args.ntrex / "LICENSE.md", args.out / "LICENSE.md")
    print(f"{len(LANGUAGES)} languages, {total / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    from data_prep.quick_exit import freeze_at_exit

    freeze_at_exit()
    main()
