"""An `mteb` task whose data is a local folder, so mteb scores our export with nothing downloaded.

    import mteb
    from sentence_transformers import SentenceTransformer
    from mmbert_pl.evaluate.mteb_local import parallel_bitext_task

    task = parallel_bitext_task("../shared/corpora/ntrex128", ["deu_Latn", "swh_Latn"])
    mteb.evaluate(SentenceTransformer("runs/sample/hf"), tasks=[task], cache=None)

mteb's own tasks fetch their data from the Hugging Face Hub on first use. This one is BitextMining (mteb's
Tatoeba/BUCC/NTREX family) over an ntrex-layout folder: each language's lines retrieve the pivot's, on the lines
the two share, so its `accuracy` is `evaluate retrieval`'s `x -> eng` accuracy@1. mteb is imported only here
(`pip install -e '.[embeddings]'`).
"""
from __future__ import annotations

from pathlib import Path

from mmbert_pl.embeddings.retrieval import read_parallel


def parallel_bitext_task(folder: str | Path, languages: list[str], pivot: str = "eng_Latn", max_docs: int | None = None,
                         name: str = "LocalParallelBitextMining"):
    """A mteb BitextMining task instance with one `<lang>-<pivot>` subset per language (sentence1: the language)."""
    import datasets
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.abstasks.text.bitext_mining import AbsTaskBitextMining

    texts = read_parallel(folder, sorted(set(languages) | {pivot}), max_docs=max_docs)   # bad folders fail here
    subsets = {f"{k}-{pivot}": [k.replace("_", "-"), pivot.replace("_", "-")] for k in languages if k != pivot}
    if not subsets:
        raise ValueError(f"languages={languages}: give at least one language besides the pivot {pivot}")

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        self.dataset = {}
        for subset in subsets:
            label = subset.split("-")[0]
            shared = [i for i in texts[label] if i in texts[pivot]]
            rows = {"sentence1": [texts[label][i] for i in shared], "sentence2": [texts[pivot][i] for i in shared]}
            self.dataset[subset] = datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)})
        self.data_loaded = True

    metadata = TaskMetadata(
        name=name, description=f"Bitext mining against {pivot} on the parallel folder {folder}", reference=None,
        dataset={"path": str(Path(folder).resolve()), "revision": "local"}, type="BitextMining", category="t2t",
        modalities=["text"], eval_splits=["test"], eval_langs=subsets, main_score="accuracy", date=None, domains=None,
        task_subtypes=None, license=None, annotations_creators=None, dialect=None, sample_creation=None,
        bibtex_citation=None)
    task_class = type(name, (AbsTaskBitextMining,), {"metadata": metadata, "load_data": load_data})
    return task_class()
