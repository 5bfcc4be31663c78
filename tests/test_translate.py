"""Batch inference: Translator and the translate / evaluate / score commands."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seq2seq.cli import main
from seq2seq.decoding.search import SearchOptions
from seq2seq.errors import Seq2SeqError
from seq2seq.lightning_cli import main as train_main
from seq2seq.translator import MAX_SOURCE_TOKENS, Translator
from tests.training_helpers import reversal_corpus, tiny_run_args


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, corpus) of a small model trained on word reversal for 400 updates."""
    root = tmp_path_factory.mktemp("trained")
    corpus = reversal_corpus(root / "corpus")
    train_main(
        [
            "fit",
            *tiny_run_args(
                corpus, root, **{"trainer.max_steps": 400, "trainer.limit_val_batches": 0}
            ),
        ]
    )
    return root / "run/checkpoints/last.ckpt", corpus


def translate_file(
    checkpoint: str | Path, source: str | Path, output: str | Path, *options: str
) -> None:
    """`seq2seq translate` from one file into another."""
    main(
        [
            "translate",
            "--checkpoint",
            str(checkpoint),
            "--input",
            str(source),
            "--output",
            str(output),
            *options,
        ]
    )


def test_translator_keeps_order_and_empty_lines(trained) -> None:
    checkpoint, _ = trained
    translator = Translator.from_checkpoint(checkpoint)
    sentences = ["ab cd ef gh ij kl mn", "", "st uv", "   ", "op qr st uv wx ab", "cd"]
    translations = translator.translate(sentences, beam_size=3, batch_tokens=20)
    assert len(translations) == len(sentences)
    assert translations[1] == "" and translations[3] == ""
    alone = [translator.translate([s], beam_size=3)[0] for s in sentences]
    assert translations == alone


def test_nbest_lists_are_sorted(trained) -> None:
    translator = Translator.from_checkpoint(trained[0])
    nbest = translator.translate_nbest(["ab cd ef"], SearchOptions(beam_size=4, nbest=3))[0]
    assert len(nbest) == 3
    assert [t.score for t in nbest] == sorted((t.score for t in nbest), reverse=True)


@pytest.mark.parametrize("beam", [1, 4])
def test_bf16_search_translates_like_fp32(beam: int, trained) -> None:
    """bf16 autocast in search: the same translations as fp32 but where bf16's rounding breaks
    a near-tie (1 of these 100 sentences in greedy search), and the same scores within bf16's
    precision (fp32 log-probabilities of bf16 logits)."""
    checkpoint, corpus = trained
    sources = (corpus / "test.de").read_text().splitlines()
    options = SearchOptions(beam_size=beam)
    results = [
        Translator.from_checkpoint(checkpoint, precision=precision).translate_nbest(
            sources, options
        )
        for precision in ("fp32", "bf16")
    ]
    plain, low = ([nbest[0] for nbest in result] for result in results)
    same = [pair for pair in zip(low, plain, strict=True) if pair[0].text == pair[1].text]
    assert len(same) >= 0.95 * len(sources)
    for low_translation, plain_translation in same:
        assert low_translation.score == pytest.approx(plain_translation.score, abs=0.05)
    # and bf16 did run: fp32 would reproduce every score to the last bit
    assert any(low_t.score != plain_t.score for low_t, plain_t in same)


def test_precision_is_checked_and_auto_is_fp32_on_a_cpu(trained) -> None:
    assert Translator.from_checkpoint(trained[0], precision="auto").precision == "fp32"  # CPU
    with pytest.raises(Seq2SeqError, match="precision must be one of"):
        Translator.from_checkpoint(trained[0], precision="fp8")


def test_overlong_line_is_truncated_with_a_warning(trained, capsys) -> None:
    translator = Translator.from_checkpoint(trained[0])
    result = translator.translate(["ab " * 10_000], beam_size=1)
    assert len(result) == 1
    assert f"longer than {MAX_SOURCE_TOKENS} subwords were truncated" in capsys.readouterr().err


def test_translate_command_files_and_filters(trained, tmp_path: Path, capsys, monkeypatch) -> None:
    checkpoint, corpus = trained
    output = tmp_path / "out.en"
    translate_file(str(checkpoint), str(corpus / "test.de"), str(output), "--beam-size", "2")
    sources = (corpus / "test.de").read_text().splitlines()
    translations = output.read_text().splitlines()
    assert len(translations) == len(sources)
    assert list(tmp_path.iterdir()) == [output]  # no temporary file left behind

    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ab cd ef\r\n\nst uv wx\n")))
    main(["translate", "--checkpoint", str(checkpoint), "--beam-size", "1"])
    expected = Translator.from_checkpoint(checkpoint).translate(["ab cd ef", "", "st uv wx"], 1)
    assert capsys.readouterr().out.splitlines() == expected
    assert expected[1] == ""


def test_translate_command_nbest_format(trained, tmp_path: Path) -> None:
    checkpoint, _ = trained
    (tmp_path / "in.de").write_text("ab cd\nef\n")
    translate_file(
        str(checkpoint),
        str(tmp_path / "in.de"),
        str(tmp_path / "out"),
        "--beam-size",
        "3",
        "--nbest",
        "2",
    )
    lines = (tmp_path / "out").read_text().splitlines()
    assert [line.split(" ||| ")[0] for line in lines] == ["0", "0", "1", "1"]
    float(lines[0].split(" ||| ")[2])


def test_evaluate_and_score_match_sacrebleu_command_line(trained, tmp_path: Path, capsys) -> None:
    checkpoint, corpus = trained
    main(
        [
            "evaluate",
            "--checkpoint",
            str(checkpoint),
            "--source",
            str(corpus / "test.de"),
            "--reference",
            str(corpus / "test.en"),
            "--beam-size",
            "2",
            "--json",
        ]
    )
    evaluated = {s["metric"]: s for s in json.loads(capsys.readouterr().out)}
    assert evaluated["BLEU"]["score"] > 50  # the model reverses word order well

    hypotheses = tmp_path / "hyp.en"
    translate_file(str(checkpoint), str(corpus / "test.de"), str(hypotheses), "--beam-size", "2")
    main(
        ["score", "--hypotheses", str(hypotheses), "--reference", str(corpus / "test.en"), "--json"]
    )
    scored = {s["metric"]: s for s in json.loads(capsys.readouterr().out)}
    assert scored == evaluated
    reference = subprocess.run(
        [
            sys.executable,
            "-m",
            "sacrebleu",
            str(corpus / "test.en"),
            "-i",
            str(hypotheses),
            "-m",
            "bleu",
            "chrf",
            "ter",
            "-b",
            "-w",
            "4",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # a JSON list when several metrics are asked for
    assert json.loads(reference) == pytest.approx(
        [scored[m]["score"] for m in ("BLEU", "chrF2", "TER")], abs=0.01
    )
    assert scored["BLEU"]["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_attention_plots_one_png_per_non_empty_line(
    precision: str, trained, tmp_path: Path
) -> None:
    checkpoint, _ = trained
    (tmp_path / "in.de").write_text("ab cd ef\n\nst uv wx ab\n")
    translate_file(
        str(checkpoint),
        str(tmp_path / "in.de"),
        str(tmp_path / "out"),
        "--beam-size",
        "2",
        "--precision",
        precision,
        "--plot-attention",
        str(tmp_path / "plots"),
    )
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert plots == ["000001.png", "000003.png"]
    assert (tmp_path / "plots/000001.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    translator = Translator.from_checkpoint(checkpoint, precision=precision)
    translation = translator.translate_nbest(
        ["ab cd ef"], SearchOptions(beam_size=2), keep_attention=True
    )[0][0]
    assert translation.attention.dtype == np.float32
    rows = len(translator.target_pieces(translation))
    assert translation.attention.shape == (rows, len(translator.source_pieces("ab cd ef")))
