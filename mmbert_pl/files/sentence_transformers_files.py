"""The files that make an MLM export folder load in `sentence_transformers.SentenceTransformer(path)`: the
transformer (ModernBertModel from the same weights) followed by mean pooling over every token, [bos] and [eos]
included, of at most `EMBEDDING_MAX_TOKENS` tokens: the embedding `evaluate retrieval` scores. The module names
are sentence-transformers' long-standing ones, which its releases up to 6.x load."""
from __future__ import annotations

import json

EMBEDDING_MAX_TOKENS = 512          # also `evaluate retrieval --max-tokens`' default


def sentence_transformers_files(hidden_size: int, max_tokens: int = EMBEDDING_MAX_TOKENS) -> dict[str, str]:
    """{relative path: text} of modules.json, sentence_bert_config.json and 1_Pooling/config.json."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    pooling = {"word_embedding_dimension": hidden_size, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
               "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
               "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False, "include_prompt": True}
    return {"modules.json": json.dumps(modules, indent=2) + "\n",
            "sentence_bert_config.json": json.dumps({"max_seq_length": max_tokens, "do_lower_case": False}, indent=2) + "\n",
            "1_Pooling/config.json": json.dumps(pooling, indent=2) + "\n"}
