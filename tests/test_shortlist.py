"""Lexical shortlists: counting, ranking, the words of a batch, search over them, and the
`seq2seq shortlist` / `--shortlist` commands."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from seq2seq import shortlist as shortlist_module
from seq2seq.checkpoint import load_model
from seq2seq.cli import main as seq2seq
from seq2seq.data.tokenizer import BOS_ID, EOS_ID
from seq2seq.decoding.search import SearchOptions, search
from seq2seq.decoding.step_api import SearchVocabulary
from seq2seq.errors import Seq2SeqError
from seq2seq.model.ensemble import Ensemble
from seq2seq.shortlist import Shortlist, build_shortlist, co_occurrences, training_corpora
from seq2seq.translator import Translator
from tests.conftest import trained_shortlist
from tests.models import EVERY_STRATEGY, renormalized, source_batch, tiny_model

# (source ids, target ids): 5 is seen with 7 twice and 8 once; 6 with 7, 8 and 9 once each,
# and 8 (two pairs) is a more frequent target word than 9 (one pair)
PAIRS = [([5, 6, 5], [7, 9]), ([5], [7, 8, 8]), ([6, 4], [8]), ([4], []), ([], [7])]
TOKENIZER = SimpleNamespace(src_vocab_size=10, tgt_vocab_size=12, fingerprint="tiny")


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "sorted"])
def test_co_occurrences_count_each_word_once_a_sentence_pair(monkeypatch, dense: bool) -> None:
    monkeypatch.setattr(shortlist_module, "DENSE_LIMIT", 10 * 12 if dense else 0)
    keys, counts, target_counts = co_occurrences(PAIRS, source_size=10, target_size=12)
    seen = {divmod(int(k), 12): int(c) for k, c in zip(keys, counts, strict=True)}
    assert seen == {(4, 8): 1, (5, 7): 2, (5, 8): 1, (5, 9): 1, (6, 7): 1, (6, 8): 1, (6, 9): 1}
    assert target_counts.tolist() == [0] * 7 + [3, 2, 1, 0, 0]


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "sorted"])
def test_counting_in_chunks_counts_the_same(monkeypatch, dense: bool) -> None:
    monkeypatch.setattr(shortlist_module, "DENSE_LIMIT", 10 * 12 if dense else 0)
    whole = co_occurrences(PAIRS, source_size=10, target_size=12)
    monkeypatch.setattr(shortlist_module, "PAIRS_PER_CHUNK", 2)
    chunked = co_occurrences(PAIRS, source_size=10, target_size=12)
    for part, expected in zip(chunked, whole, strict=True):
        np.testing.assert_array_equal(part, expected)


def test_each_source_word_keeps_its_most_frequent_companions() -> None:
    built = build_shortlist(PAIRS, TOKENIZER, per_word=2, frequent=1)
    assert built.candidates.shape == (10, 2) and built.fingerprint == "tiny"
    assert built.candidates[5].tolist() == [7, 8]  # 7 twice; 8 and 9 once, 8 more frequent
    assert built.candidates[6].tolist() == [7, 8]  # all once: by target frequency
    assert built.candidates[4].tolist() == [8, -1]  # fewer than per_word
    assert built.candidates[0].tolist() == [-1, -1]  # padding is never a source word
    assert built.frequent.tolist() == [BOS_ID, EOS_ID, 7]  # the most frequent, BOS and EOS


def test_a_sentence_may_use_its_words_candidates_and_the_frequent_words() -> None:
    built = build_shortlist(PAIRS, TOKENIZER, per_word=1, frequent=0)
    words, outside = built.vocabulary(torch.tensor([[4, 0, 0], [5, 5, 0]]))  # padding: nothing
    assert words.tolist() == [BOS_ID, EOS_ID, 7, 8]  # the batch's: the union of its sentences'
    assert (~outside).tolist() == [[True, True, False, True], [True, True, True, False]]
    words, outside = built.vocabulary(torch.tensor([[6, 5, 4]]))
    assert words.tolist() == [BOS_ID, EOS_ID, 7, 8] and not outside.any()


def test_bad_settings_and_an_empty_corpus_are_refused() -> None:
    with pytest.raises(Seq2SeqError, match="per_word >= 1 and frequent >= 0, not 0 and 1"):
        build_shortlist(PAIRS, TOKENIZER, per_word=0, frequent=1)
    with pytest.raises(Seq2SeqError, match="no sentence pair with words on both sides"):
        build_shortlist([([4], []), ([], [5])], TOKENIZER)


def test_a_saved_shortlist_loads_as_it_was(tmp_path: Path) -> None:
    built = build_shortlist(PAIRS, TOKENIZER, per_word=3, frequent=2)
    built.save(tmp_path / "shortlist.pt")
    loaded = Shortlist.load(tmp_path / "shortlist.pt")
    assert torch.equal(loaded.candidates, built.candidates)
    assert torch.equal(loaded.frequent, built.frequent) and loaded.fingerprint == "tiny"
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    torch.save({"format": "seq2seq-shortlist", "frequent": torch.zeros(2)}, tmp_path / "cut.pt")
    for name in ("other", "cut"):  # not ours; ours without its candidates
        with pytest.raises(Seq2SeqError, match=rf"{name}\.pt is not a shortlist"):
            Shortlist.load(tmp_path / f"{name}.pt")


@pytest.mark.parametrize("options", EVERY_STRATEGY, ids=["greedy", "beam", "sample"])
def test_a_batch_over_a_vocabulary_searches_each_sentence_as_alone_with_its_words(options) -> None:
    """Token ids come back as target ids; each sentence's scores are log-probabilities over
    its own words, as if every other word had probability 0, whatever else is in its batch."""
    model = tiny_model(seed=5)
    src, lengths = source_batch([6, 4, 5], vocab=30, seed=3)
    full = search(model, src, lengths, options, BOS_ID, EOS_ID, model.search_weights())
    chosen = sorted({t for nbest in full for h in nbest for t in h.tokens if t > 5})
    allowed = [[BOS_ID, EOS_ID, *chosen[start::3], 20 + start] for start in range(3)]
    # words 0, 1, 4 and 5 in no list: a column is not its word's id
    words = torch.tensor(sorted({word for own in allowed for word in own}))
    outside = torch.tensor([[word not in own for word in words.tolist()] for own in allowed])
    vocabulary = SearchVocabulary(words, outside)
    batched = search(model, src, lengths, options, BOS_ID, EOS_ID, None, False, vocabulary)
    for row, own in enumerate(allowed):
        sentence = (src[row : row + 1, : lengths[row]], lengths[row : row + 1])
        alone = search(renormalized(model, own), *sentence, options, BOS_ID, EOS_ID)[0]
        assert [h.tokens for h in batched[row]] == [h.tokens for h in alone]
        assert [h.score for h in batched[row]] == pytest.approx([h.score for h in alone], abs=1e-5)
        assert {t for h in batched[row] for t in h.tokens} <= set(own)
    assert batched != full


@pytest.mark.parametrize("make", [lambda m: m, lambda m: Ensemble([m, tiny_model(seed=6)])])
def test_the_whole_vocabulary_as_a_shortlist_changes_nothing(make) -> None:
    model = make(tiny_model(seed=5))
    src, lengths = source_batch([6, 4, 5], vocab=30, seed=3)
    options = SearchOptions(beam_size=3)
    full = search(model, src, lengths, options, BOS_ID, EOS_ID, model.search_weights())
    everything = SearchVocabulary(torch.arange(30), torch.zeros(3, 30, dtype=torch.bool))
    listed = search(model, src, lengths, options, BOS_ID, EOS_ID, None, False, everything)
    assert [[h.tokens for h in n] for n in listed] == [[h.tokens for h in n] for n in full]


def test_a_search_vocabulary_must_hold_bos_and_eos() -> None:
    model = tiny_model()
    src, lengths = source_batch([3], vocab=30)
    vocabulary = SearchVocabulary(torch.arange(3), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="must hold the ids"):
        search(model, src, lengths, SearchOptions(), BOS_ID, EOS_ID, None, False, vocabulary)


def test_the_commands_build_and_search_with_a_shortlist(trained, tmp_path: Path, capsys) -> None:
    """`seq2seq shortlist` over the training corpus the checkpoint records (the reversal
    corpus), then `translate --shortlist`: a sentence may use far fewer words than the
    vocabulary, and the translations stay as they were (the reversal of a sentence uses its own
    words, always among their companions)."""
    corpus, path = trained.corpus, tmp_path / "lists" / "shortlist.pt"
    settings = ["--per-word=3", "--frequent=0"]
    seq2seq(["shortlist", f"--checkpoint={trained.checkpoint}", *settings, f"--output={path}"])
    built, loaded = Shortlist.load(path), load_model(trained.checkpoint)
    from_files = trained_shortlist(trained, per_word=3, frequent=0)
    assert torch.equal(built.candidates, from_files.candidates)
    assert torch.equal(built.frequent, from_files.frequent)
    sentence = torch.tensor([loaded.tokenizer.encode_src(["ab cd ef"])[0]])
    assert built.per_word == 3
    assert len(built.vocabulary(sentence).words) <= 2 + 3 * 3 < loaded.tokenizer.tgt_vocab_size
    outputs = {}
    for name, extra in (("full", []), ("listed", [f"--shortlist={path}"])):
        outputs[name] = tmp_path / f"{name}.txt"
        seq2seq(
            [
                "translate",
                f"--checkpoint={trained.checkpoint}",
                f"--input={corpus / 'test.de'}",
                f"--output={outputs[name]}",
                "--beam-size=1",
                *extra,
            ]
        )
    assert outputs["listed"].read_text() == outputs["full"].read_text()
    test = [f"--input={corpus / 'test.de'}", f"--reference={corpus / 'test.en'}"]
    seq2seq(
        ["evaluate", f"--checkpoint={trained.checkpoint}", *test, f"--shortlist={path}", "--json"]
    )
    assert json.loads(capsys.readouterr().out)["shortlist"] == str(path)


def test_without_a_recorded_corpus_the_files_must_be_given() -> None:
    with pytest.raises(Seq2SeqError, match="records no training corpus: give --source and"):
        training_corpora({"src_lang": "de", "tgt_lang": "en"})


def test_a_shortlist_of_another_tokenizer_is_refused(trained) -> None:
    loaded = load_model(trained.checkpoint)
    ids = torch.arange(loaded.tokenizer.tgt_vocab_size, dtype=torch.int32)
    other = Shortlist(ids.view(-1, 1), ids[:4], len(ids), fingerprint="another tokenizer's")
    with pytest.raises(Seq2SeqError, match="built for another tokenizer than the model's"):
        Translator(loaded.model, loaded.tokenizer, shortlist=other)
