"""Ensembles: several models searched as one by every strategy, from Python and the CLI."""

import json
import math

import pytest
import torch

from seq2seq.checkpoint import store_tokenizer
from seq2seq.cli import main as seq2seq
from seq2seq.data.tokenizer import BOS_ID, EOS_ID
from seq2seq.decoding.search import SearchOptions, search
from seq2seq.errors import Seq2SeqError
from seq2seq.model.ensemble import Ensemble
from seq2seq.translator import Translator
from tests.models import source_batch, tiny_model

STRATEGIES = [
    SearchOptions(strategy="greedy"),
    SearchOptions(beam_size=4, nbest=3),
    SearchOptions(strategy="sample", nbest=3, seed=7),
]


def found(model, options: SearchOptions, **extra: object) -> list:
    src, lengths = source_batch([7, 3, 5, 1, 6], vocab=30, seed=4)
    return search(model, src, lengths, options, BOS_ID, EOS_ID, **extra)


@pytest.mark.parametrize("options", STRATEGIES)
def test_an_ensemble_of_one_is_that_model(options: SearchOptions) -> None:
    model = tiny_model(seed=3)
    assert found(Ensemble([model]), options) == found(model, options)


@pytest.mark.parametrize("options", STRATEGIES)
def test_an_ensemble_of_a_model_with_itself_is_that_model(options: SearchOptions) -> None:
    model = tiny_model(seed=3)
    alone, twice = found(model, options), found(Ensemble([model, model]), options)
    assert [[h.tokens for h in n] for n in twice] == [[h.tokens for h in n] for n in alone]
    for pair in zip(twice, alone, strict=True):
        assert [h.score for h in pair[0]] == pytest.approx([h.score for h in pair[1]], abs=1e-5)


@torch.no_grad()
def test_a_step_is_the_log_of_the_mean_probability_and_the_mean_attention() -> None:
    models = [tiny_model(seed=1), tiny_model(seed=2, decoder_hidden_size=12)]
    ensemble = Ensemble(models)
    src, lengths = source_batch([5, 3], vocab=30)
    tokens = torch.tensor([BOS_ID, BOS_ID])
    state = ensemble.initial_state(ensemble.encode(src, lengths), ensemble.search_weights())
    log_probs, state, attention = ensemble.step(state, tokens)
    alone = [m.step(m.initial_state(m.encode(src, lengths)), tokens) for m in models]
    mean = (alone[0].log_probs.exp() + alone[1].log_probs.exp()) / 2
    torch.testing.assert_close(log_probs, mean.log())
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2))  # a distribution
    torch.testing.assert_close(attention, (alone[0].attention + alone[1].attention) / 2)
    beams = state.reorder(torch.tensor([0, 0, 1, 1]))  # two beams a sentence, in every member
    _, _, second = ensemble.step(beams, torch.tensor([5, 6, 7, 8]))
    assert second.shape == (4, src.shape[1])


def test_kept_attention_is_the_members_mean_and_sums_to_one() -> None:
    ensemble = Ensemble([tiny_model(seed=1), tiny_model(seed=2)])
    for hypotheses in found(ensemble, SearchOptions(beam_size=3), keep_attention=True):
        attention = hypotheses[0].attention
        torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[0]))


def test_models_with_other_target_vocabularies_are_refused() -> None:
    with pytest.raises(Seq2SeqError, match=r"share the target vocabulary, not sizes \[30, 40\]"):
        Ensemble([tiny_model(vocab=30), tiny_model(vocab=40)])


def test_the_cli_decodes_several_checkpoints_as_one(trained, tmp_path, capsys) -> None:
    """`--checkpoint` twice: the same model twice translates as the model alone, and
    evaluate's JSON record names both checkpoints."""
    source, reference = trained.corpus / "test.de", trained.corpus / "test.en"
    alone, twice = tmp_path / "alone.en", tmp_path / "twice.en"
    common = ["--input", str(source), "--beam-size", "3"]
    seq2seq(["translate", "--checkpoint", str(trained.checkpoint), *common, "--output", str(alone)])
    both = ["--checkpoint", str(trained.checkpoint)] * 2
    seq2seq(["translate", *both, *common, "--output", str(twice)])
    assert twice.read_text() == alone.read_text()
    capsys.readouterr()
    seq2seq(["evaluate", *both, *common, "--reference", str(reference), "--json"])
    record = json.loads(capsys.readouterr().out)
    assert record["checkpoint"] == [str(trained.checkpoint)] * 2
    assert all(math.isfinite(score["score"]) for score in record["scores"])


def test_checkpoints_with_other_tokenizers_are_refused(trained, tiny_tokenizer, tmp_path) -> None:
    checkpoint = torch.load(trained.checkpoint, weights_only=True)
    store_tokenizer(checkpoint, tiny_tokenizer)
    other = tmp_path / "other_tokenizer.ckpt"
    torch.save(checkpoint, other)
    with pytest.raises(Seq2SeqError, match=r"has another tokenizer than .*share the tokenizer"):
        Translator.from_checkpoints([trained.checkpoint, other])
