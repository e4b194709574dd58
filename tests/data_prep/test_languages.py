from data_prep.languages import SET_COLUMNS, labels_for, language_set


def test_named_sets_have_mmberts_sizes() -> None:
    sizes = {name: len(language_set(name)) for name in SET_COLUMNS}
    assert sizes == {"pretrain": 61, "ext": 110, "decay_cont": 110, "decay_eng": 110, "decay_all": 1834}
    assert "code" in language_set("pretrain")
    assert set(language_set("ext")) == set(language_set("decay_eng")) == set(language_set("decay_cont"))
    added_at_ext = set(language_set("ext")) - set(language_set("pretrain"))
    assert len(added_at_ext) == 49 and {"cat", "eus", "isl"} <= added_at_ext


def test_codes_map_to_corpus_labels_with_several_scripts() -> None:
    corpus = ["eng_Latn", "srp_Cyrl", "srp_Latn", "fao_Latn", "cat_Latn"]
    assert labels_for("pretrain", corpus) == ["eng_Latn"]
    assert labels_for("ext", corpus) == ["cat_Latn", "eng_Latn", "srp_Cyrl", "srp_Latn"]
    assert labels_for("decay_all", corpus) == sorted(corpus)
    assert labels_for(["srp"], corpus) == ["srp_Cyrl", "srp_Latn"]
