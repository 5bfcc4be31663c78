"""ONNX export and the ONNX Runtime engine: the graphs compute what PyTorch computes for batch
sizes 1 to 64 and source lengths 1 to 250, for every cell type and stack; an exported model
translates exactly like its checkpoint through the CLI; every bad input is one line."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime", reason="the export extra is not installed")

from seq2seq import cli
from seq2seq.checkpoint import LoadedModel, load_model
from seq2seq.decoding.search import SearchOptions
from seq2seq.errors import Seq2SeqError
from seq2seq.export import manifest
from seq2seq.export.engine import OnnxModel
from seq2seq.export.exporter import check_against_torch, export_loaded
from seq2seq.export.graphs import stack_state
from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig
from seq2seq.serve.server import describe
from seq2seq.translator import Translator
from tests.models import SMALL_SIZES, source_batch

TOLERANCE = 1e-4  # the bound on encoder outputs and step log-probabilities
FACTS = {"path": "in memory", "step": 7, "validation_bleu": None, "data": {"src_lang": "de"}}
VARIANTS = {
    "gru, 2 layers each, residual": {
        "cell_type": "gru",
        "encoder_layers": 2,
        "decoder_layers": 2,
        "residual": True,
    },
    "tanh rnn, untied output": {"cell_type": "rnn", "tie_embeddings": False},
    "lstm without layer norm (fused encoder), 2 decoder layers": {
        "layer_norm": False,
        "recurrent_dropout": 0.0,
        "decoder_layers": 2,
    },
}


def random_model(vocab: int, **overrides: object) -> Seq2Seq:
    """An untrained fp32 model with distinct sizes, in eval mode."""
    torch.manual_seed(0)
    config = Seq2SeqConfig(src_vocab_size=vocab, tgt_vocab_size=vocab, **SMALL_SIZES, **overrides)
    return Seq2Seq(config).eval()


def exported(model: Seq2Seq, tokenizer, directory: Path) -> OnnxModel:
    """`model` exported into `directory` and opened in ONNX Runtime."""
    export_loaded(LoadedModel(model, tokenizer, SearchOptions()), FACTS, directory)
    return OnnxModel(directory)


@pytest.fixture(scope="module")
def tokenizer(trained):
    return load_model(trained.checkpoint).tokenizer


@pytest.fixture(scope="module")
def reference_shaped(trained, exported_checkpoint: Path) -> tuple[Seq2Seq, OnnxModel]:
    """The session's trained model (the reference architecture: layer-normalized LSTMs, tied
    embeddings, small) and its export. Trained, not random: a random recurrent network
    amplifies rounding over 250 steps as much in PyTorch fp32 as in ONNX Runtime (both 1e-4
    from float64 at some positions), a trained one keeps it near 1e-6."""
    return load_model(trained.checkpoint).model, OnnxModel(exported_checkpoint)


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, tolerance: float = TOLERANCE) -> None:
    """Within `tolerance`, -inf (padding) where PyTorch has -inf."""
    assert ours.shape == theirs.shape
    infinite = torch.isinf(ours)
    assert torch.equal(infinite, torch.isinf(theirs))
    assert float((ours - theirs)[~infinite].abs().max()) <= tolerance


def assert_search_steps_match(model: Seq2Seq, engine: OnnxModel, batch: int, length: int) -> None:
    """Encoder outputs, then two steps of 3 hypotheses a sentence, PyTorch against ONNX."""
    generator = torch.Generator().manual_seed(batch * 1000 + length)
    lengths = torch.randint(1, length + 1, (batch,), generator=generator)
    lengths[0] = length
    src, _ = source_batch(lengths.tolist(), vocab=model.config.src_vocab_size)
    with torch.no_grad():
        ours = model.initial_state(model.encode(src, lengths), model.search_weights())
    theirs = engine.initial_state(engine.encode(src, lengths))
    assert_close(ours.memory, theirs.memory)
    # the keys are 2 U h(j) (attention.py): twice the magnitude, twice the rounding
    assert_close(ours.keys, theirs.keys, 2 * TOLERANCE)
    assert torch.equal(ours.padding_bias, theirs.padding_bias)
    assert_close(stack_state(ours), theirs.state)
    rows = torch.arange(batch).repeat_interleave(3)
    ours, theirs = ours.reorder(rows), theirs.reorder(rows)
    for _ in range(2):
        tokens = torch.randint(4, model.output_words().numel(), (3 * batch,), generator=generator)
        with torch.no_grad():
            mine = model.step(ours, tokens)
        other = engine.step(theirs, tokens)
        assert_close(mine.log_probs, other.log_probs)
        assert_close(mine.attention, other.attention)
        assert_close(stack_state(mine.state), other.state.state)
        ours, theirs = mine.state, other.state


@pytest.mark.parametrize(("batch", "length"), [(1, 1), (1, 250), (64, 1), (64, 250), (7, 37)])
def test_the_graphs_compute_what_pytorch_does_for_any_batch_and_length(
    reference_shaped, batch: int, length: int
) -> None:
    """One export (traced at batch 3, length 5) runs every size: the encoder's recurrence is
    an ONNX Scan, not a loop unrolled for one length."""
    assert_search_steps_match(*reference_shaped, batch, length)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_cell_type_and_stack_exports(tokenizer, tmp_path: Path, variant: str) -> None:
    model = random_model(tokenizer.src_vocab_size, **VARIANTS[variant])
    engine = exported(model, tokenizer, tmp_path / "model")
    assert_search_steps_match(model, engine, batch=5, length=23)
    expected_state = (1 if model.config.cell_type != "lstm" else 2, model.config.decoder_layers)
    assert engine.manifest.state_shape[:2] == expected_state


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_a_model_scoring_some_words_exports_them_alone(tokenizer, tmp_path: Path, tied) -> None:
    """The step graph of a model restricted to some target words scores those alone, in the
    order of their ids, and the manifest lists them."""
    model = random_model(tokenizer.src_vocab_size, tie_embeddings=tied)
    words = torch.zeros(tokenizer.tgt_vocab_size, dtype=torch.bool)
    words[: tokenizer.tgt_vocab_size // 2 : 3] = True
    words[[0, 1, 2, 3]] = True
    model.restrict_output(words)
    engine = exported(model, tokenizer, tmp_path / "model")
    assert engine.manifest.output_words == words.nonzero().squeeze(1).tolist()
    assert torch.equal(engine.output_words(), model.output_words())
    assert_search_steps_match(model, engine, batch=5, length=23)
    src, lengths = source_batch([9, 4], vocab=tokenizer.src_vocab_size)
    with torch.no_grad():
        step = engine.step(engine.initial_state(engine.encode(src, lengths)), torch.tensor([2, 2]))
    assert step.log_probs.shape == (2, int(words.sum()))


def run_cli(capsys, *argv: str) -> str:
    """`seq2seq ARGV`'s standard output (it must succeed)."""
    cli.main(list(argv))
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def exported_checkpoint(trained, tmp_path_factory) -> Path:
    """The session's trained checkpoint exported by `seq2seq export`."""
    directory = tmp_path_factory.mktemp("exported") / "reversal"
    cli.main(["export", "--checkpoint", str(trained.checkpoint), "--output", str(directory)])
    return directory


@pytest.mark.parametrize(
    "search",
    [["--beam-size", "1"], ["--beam-size", "4"], ["--beam-size", "4", "--row-buckets", "2"]],
)
def test_an_export_translates_like_its_checkpoint(
    trained, exported_checkpoint: Path, capsys, search: list[str]
) -> None:
    """Greedy and beam search (rows padded to a ladder too), through `seq2seq translate`: the
    same lines."""
    source = str(trained.corpus / "test.de")
    with_torch = run_cli(capsys, "translate", "--checkpoint", str(trained.checkpoint),
                         "--input", source, *search)  # fmt: skip
    with_onnx = run_cli(capsys, "translate", "--model", str(exported_checkpoint),
                        "--input", source, *search)  # fmt: skip
    assert with_onnx.splitlines() == with_torch.splitlines()
    assert len(with_torch.splitlines()) == 100 and with_torch.strip()


def test_nbest_scores_and_attention_match(trained, exported_checkpoint: Path) -> None:
    sources = (trained.corpus / "test.de").read_text().splitlines()[:20]
    options = SearchOptions(beam_size=4, nbest=3)
    ours = Translator.from_checkpoint(trained.checkpoint).translate_nbest(
        sources, options, keep_attention=True
    )
    theirs = Translator.from_export(exported_checkpoint).translate_nbest(
        sources, options, keep_attention=True
    )
    for mine, other in zip(ours, theirs, strict=True):
        assert [t.text for t in mine] == [t.text for t in other]
        assert [t.score for t in mine] == pytest.approx([t.score for t in other], abs=TOLERANCE)
        for a, b in zip(mine, other, strict=True):
            assert_close(torch.from_numpy(a.attention), torch.from_numpy(b.attention))


def test_the_export_holds_the_search_settings_and_checkpoint_facts(
    trained, exported_checkpoint: Path
) -> None:
    translator = Translator.from_export(exported_checkpoint)
    assert translator.options == load_model(trained.checkpoint).search
    info = describe((), translator)
    assert info["engine"] == "onnxruntime" and info["device"] == "cpu"
    assert (info["source_language"], info["target_language"]) == ("de", "en")
    assert info["checkpoints"][0]["path"] == str(trained.checkpoint)
    assert info["architecture"][0]["decoder_hidden_size"] == 64
    assert sorted(p.name for p in exported_checkpoint.iterdir()) == sorted(
        [manifest.ENCODER, manifest.DECODER_STEP, manifest.NAME, "joint.model"]
    )


def test_exporting_again_replaces_the_earlier_export(reference_shaped, tokenizer, tmp_path):
    directory = tmp_path / "model"
    first = exported(random_model(tokenizer.src_vocab_size, cell_type="gru"), tokenizer, directory)
    assert first.manifest.state_shape[0] == 1
    second = exported(reference_shaped[0], tokenizer, directory)
    assert second.manifest.state_shape[0] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no scratch left behind


def test_a_graph_that_differs_from_pytorch_is_not_written(reference_shaped) -> None:
    model, engine = reference_shaped
    torch.manual_seed(1)
    other = Seq2Seq(model.config).eval()  # the same shapes and words, other weights
    other.restrict_output(model.decoder.target_words)
    with pytest.raises(Seq2SeqError, match=r"computes \w+ .* away from PyTorch"):
        check_against_torch(engine, other)
    assert check_against_torch(engine, model) <= TOLERANCE


def cli_error(capsys, *argv: str) -> str:
    """The one-line error of `seq2seq ARGV`, which must fail with status 1."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(argv))
    assert exit_.value.code == 1
    error = capsys.readouterr().err
    assert error.startswith("seq2seq: error: ") and error.count("\n") == 1, error
    return error


def test_a_directory_without_an_export_is_one_line(tmp_path: Path, capsys) -> None:
    error = cli_error(capsys, "translate", "--model", str(tmp_path), "--input", "/dev/null")
    assert f"{tmp_path} is not a seq2seq export: seq2seq_export.json, encoder.onnx," in error


def test_a_graph_from_another_export_is_one_line(
    exported_checkpoint: Path, tokenizer, tmp_path: Path, capsys
) -> None:
    other = exported(random_model(tokenizer.src_vocab_size), tokenizer, tmp_path / "other")
    mixed = tmp_path / "mixed"
    shutil.copytree(exported_checkpoint, mixed)
    shutil.copy(other.directory / manifest.DECODER_STEP, mixed)
    error = cli_error(capsys, "translate", "--model", str(mixed), "--input", "/dev/null")
    assert "decoder_step.onnx is not the graph this export wrote (its SHA-256 differs" in error


def test_a_broken_manifest_is_one_line(exported_checkpoint: Path, tmp_path: Path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(exported_checkpoint, broken)
    (broken / manifest.NAME).write_text('{"format": 1, "opset": 18')
    error = cli_error(capsys, "translate", "--model", str(broken), "--input", "/dev/null")
    assert f"{broken / manifest.NAME} is not a seq2seq export manifest" in error


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--opset", "17"], "opset 17 is not supported: use 18 to"),
        (["--opset", "99"], "opset 99 is not supported: use 18 to"),
        (["--output", "FILE"], "is a file: give a directory"),
        (["--output", "FULL"], "is a directory with other files: give a new or empty one"),
    ],
)
def test_bad_export_settings_are_one_line(
    trained, tmp_path: Path, capsys, options: list[str], words: str
) -> None:
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "FULL").mkdir()
    (tmp_path / "FULL" / "notes.txt").write_text("mine")
    options = [str(tmp_path / o) if o in ("FILE", "FULL") else o for o in options]
    if "--output" not in options:
        options += ["--output", str(tmp_path / "out")]
    error = cli_error(capsys, "export", "--checkpoint", str(trained.checkpoint), *options)
    assert words in error
    assert (tmp_path / "FULL" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "out").exists()


def test_an_operation_the_exporter_cannot_export_is_one_line(
    trained, tmp_path: Path, capsys, monkeypatch
) -> None:
    def refuse(*args, **kwargs):
        raise RuntimeError("no ONNX function for aten::made_up\n(a long exporter report)")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    output = tmp_path / "out"
    error = cli_error(
        capsys, "export", "--checkpoint", str(trained.checkpoint), "--output", str(output)
    )
    assert "exporting encoder.onnx at opset 18 failed: no ONNX function for aten::made_up" in error
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing half-written


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--engine", "onnxruntime", "--checkpoint", "C"], "give --model DIR, not --checkpoint"),
        (["--engine", "torch", "--model", "D"], "--model DIR is an ONNX export: it runs with"),
        (["--model", "D", "--device", "cuda"], "runs on cpu, not --device cuda"),
        ([], "give --checkpoint CKPT (or --model DIR, an export, for onnxruntime)"),
    ],
)
def test_engine_and_model_flags_that_do_not_go_together_are_one_line(
    capsys, options: list[str], words: str
) -> None:
    assert words in cli_error(capsys, "translate", *options, "--input", "/dev/null")


def test_the_engine_searches_in_fp32_only(exported_checkpoint: Path, capsys) -> None:
    error = cli_error(capsys, "translate", "--model", str(exported_checkpoint), "--precision",
                      "bf16", "--input", "/dev/null")  # fmt: skip
    assert "the onnxruntime engine searches in fp32: drop --precision bf16" in error


@pytest.mark.parametrize(
    ("argv", "missing", "needer"),
    [
        (["export", "--checkpoint", "m.ckpt", "--output", "out"], "onnx", "seq2seq export"),
        (["translate", "--model", "out", "--input", "/dev/null"], "onnxruntime",
         "--engine onnxruntime"),
    ],
)  # fmt: skip
def test_without_the_export_extra_commands_say_how_to_install_it(
    monkeypatch, capsys, argv: list[str], missing: str, needer: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # `import MISSING` now fails
    assert cli_error(capsys, *argv) == (
        f"seq2seq: error: {needer} needs the export extra ({missing} is missing):"
        " pip install 'seq2seq[export]'\n"
    )
