"""Batch inference: Translator and the translate / evaluate / score commands."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seq2seq.checkpoint import load_model
from seq2seq.cli import main
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding.search import SearchOptions
from seq2seq.errors import Seq2SeqError
from seq2seq.translator import MAX_SOURCE_TOKENS, Translator

FIXTURES = Path(__file__).parent / "fixtures"


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


def test_the_translator_imports_no_lightning() -> None:
    code = (
        "import seq2seq.translator, sys;"
        " print([m for m in sys.modules if m.startswith(('lightning', 'torchmetrics'))])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


@pytest.mark.parametrize("beam", [1, 3])
def test_a_checkpoint_written_before_the_inference_core_translates_as_it_did(beam: int) -> None:
    """tests/fixtures/tiny_936a193.ckpt was written by train.py at commit 936a193, and the
    JSON holds what that code's Translator made of 32 sources: the same translations now (and
    for beam search the same scores; greedy scores are now length-normalized like beam's)."""
    expected = json.loads((FIXTURES / "tiny_936a193.json").read_text())
    translator = Translator.from_checkpoint(FIXTURES / "tiny_936a193.ckpt")
    options = SearchOptions(beam_size=beam, nbest=min(beam, 2))
    results = translator.translate_nbest(expected["sources"], options)
    for nbest, before in zip(results, expected["translations"][f"beam{beam}"], strict=True):
        assert [t.text for t in nbest] == [text for text, _ in before]
        if beam > 1:
            assert [t.score for t in nbest] == pytest.approx([score for _, score in before])


def test_the_checkpoint_alone_is_enough(trained, monkeypatch) -> None:
    """Model, tokenizer and search settings come from the file; no data directory is read."""
    monkeypatch.setattr(Tokenizer, "load", lambda directory: pytest.fail("read a tokenizer dir"))
    model, tokenizer, search = load_model(trained.checkpoint)
    assert search == SearchOptions()  # the run's test_search
    sources = (trained.corpus / "test.de").read_text().splitlines()
    targets = (trained.corpus / "test.en").read_text().splitlines()
    translations = Translator(model, tokenizer).translate(sources, beam_size=1)
    exact = sum(t == r for t, r in zip(translations, targets, strict=True)) / len(targets)
    assert exact >= 0.95  # the learning test: word reversal after TRAINED_STEPS updates


def test_translator_keeps_order_and_empty_lines(trained) -> None:
    translator = Translator.from_checkpoint(trained.checkpoint)
    sentences = ["ab cd ef gh ij kl mn", "", "st uv", "   ", "op qr st uv wx ab", "cd"]
    translations = translator.translate(sentences, beam_size=3, batch_tokens=20)
    assert len(translations) == len(sentences)
    assert translations[1] == "" and translations[3] == ""
    alone = [translator.translate([s], beam_size=3)[0] for s in sentences]
    assert translations == alone


def test_nbest_lists_are_sorted(trained) -> None:
    translator = Translator.from_checkpoint(trained.checkpoint)
    nbest = translator.translate_nbest(["ab cd ef"], SearchOptions(beam_size=4, nbest=3))[0]
    assert len(nbest) == 3
    assert [t.score for t in nbest] == sorted((t.score for t in nbest), reverse=True)
    greedy = translator.translate_nbest(["ab cd ef"], SearchOptions(beam_size=1))[0][0]
    assert greedy.text == nbest[0].text and greedy.score == pytest.approx(nbest[0].score)


@pytest.mark.parametrize("beam", [1, 4])
def test_bf16_search_translates_like_fp32(beam: int, trained) -> None:
    """bf16 autocast in search: the same translations as fp32 but where bf16's rounding breaks
    a near-tie (1 of these 100 sentences in greedy search), and the same scores within bf16's
    precision (fp32 log-probabilities of bf16 logits)."""
    sources = (trained.corpus / "test.de").read_text().splitlines()
    options = SearchOptions(beam_size=beam)
    results = [
        Translator.from_checkpoint(trained.checkpoint, precision=precision).translate_nbest(
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
    assert Translator.from_checkpoint(trained.checkpoint).precision == "fp32"  # auto, on a CPU
    with pytest.raises(Seq2SeqError, match="precision must be one of"):
        Translator.from_checkpoint(trained.checkpoint, precision="fp8")


def test_overlong_line_is_truncated_with_a_warning(trained, capsys) -> None:
    translator = Translator.from_checkpoint(trained.checkpoint)
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


def test_translate_command_samples_reproducibly(trained, tmp_path: Path) -> None:
    checkpoint, _ = trained
    (tmp_path / "in.de").write_text("ab cd ef gh\nef ij\n")
    runs = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        sampling = ["--strategy", "sample", "--nbest", "3", "--temperature", "3", "--seed", seed]
        translate_file(str(checkpoint), str(tmp_path / "in.de"), str(tmp_path / name), *sampling)
        runs.append((tmp_path / name).read_text().splitlines())
    assert [line.split(" ||| ")[0] for line in runs[0]] == ["0", "0", "0", "1", "1", "1"]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def sacrebleu_command_line(hypotheses: Path, references: list[Path], *options: str) -> list:
    """sacreBLEU's own command line: BLEU, chrF and TER scores (a JSON list)."""
    return json.loads(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "sacrebleu",
                *map(str, references),
                "-i",
                str(hypotheses),
                "-m",
                "bleu",
                "chrf",
                "ter",
                "-b",
                "-w",
                "4",
                *options,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )


def test_evaluate_and_score_match_sacrebleu_command_line(trained, tmp_path: Path, capsys) -> None:
    checkpoint, corpus = trained
    hypotheses = tmp_path / "hyp.en"
    main(
        [
            "evaluate",
            "--checkpoint",
            str(checkpoint),
            "--input",
            str(corpus / "test.de"),
            "--reference",
            str(corpus / "test.en"),
            "--beam-size",
            "2",
            "--output",
            str(hypotheses),
            "--json",
        ]
    )
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["checkpoint"] == str(checkpoint) and evaluated["search"]["beam_size"] == 2
    assert evaluated["shortlist"] is None
    by_metric = {s["metric"]: s for s in evaluated["scores"]}
    assert by_metric["BLEU"]["score"] > 50  # the model reverses word order well
    assert set(by_metric["BLEU"]["details"]) == {"precisions", "bp", "ratio", "hyp_len", "ref_len"}
    main(["score", "--input", str(hypotheses), "--reference", str(corpus / "test.en"), "--json"])
    scored = json.loads(capsys.readouterr().out)
    assert scored["scores"] == evaluated["scores"]
    reference = sacrebleu_command_line(hypotheses, [corpus / "test.en"])
    assert reference == pytest.approx([by_metric[m]["score"] for m in ("BLEU", "chrF2", "TER")])
    assert by_metric["BLEU"]["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")


def test_score_with_several_references_and_another_tokenizer_matches_sacrebleu(
    trained, tmp_path: Path, capsys
) -> None:
    _, corpus = trained
    hypotheses = corpus / "test.en"  # scored against itself and a variant
    variant = tmp_path / "variant.en"
    variant.write_text("".join(line[::-1] + "\n" for line in hypotheses.read_text().splitlines()))
    references = [hypotheses, variant]
    main(
        [
            "score",
            "--hypotheses",
            str(variant),
            "--reference",
            *map(str, references),
            "--tokenize",
            "char",
            "--json",
        ]
    )
    scored = {s["metric"]: s for s in json.loads(capsys.readouterr().out)["scores"]}
    expected = sacrebleu_command_line(variant, references, "-tok", "char")
    assert [scored[m]["score"] for m in ("BLEU", "chrF2", "TER")] == pytest.approx(expected)
    assert "nrefs:2" in scored["BLEU"]["signature"] and "tok:char" in scored["BLEU"]["signature"]
    main(["score", "--input", str(variant), "--reference", str(hypotheses)])
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("BLEU|nrefs:1|case:mixed") and "(BP = " in line and "ref_len = " in line


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


def test_search_flags_are_the_fields_of_the_search_options(trained, tmp_path: Path) -> None:
    """Every SearchOptions field is a flag; the flags not given keep the checkpoint's test
    settings, and bad combinations are refused before any input is read."""
    import argparse
    import dataclasses

    from seq2seq.cli import add_search_options, search_options

    parser = argparse.ArgumentParser()
    add_search_options(parser)
    flags = {action.dest for action in parser._actions} - {"help"}
    assert flags == {field.name for field in dataclasses.fields(SearchOptions)}
    saved = SearchOptions(beam_size=4, alpha=0.8)
    given = search_options(saved, parser.parse_args(["--beam-size", "2", "--min-length", "1"]))
    assert given == SearchOptions(beam_size=2, alpha=0.8, min_length=1)
    with pytest.raises(SystemExit) as exit_info:
        translate_file(trained.checkpoint, tmp_path / "none.de", tmp_path / "out", "--nbest", "9")
    assert exit_info.value.code == 1
    assert not (tmp_path / "out").exists()


def test_translate_takes_the_search_options_the_command_line_has(trained) -> None:
    translator = Translator.from_checkpoint(trained.checkpoint)
    sources = ["ab cd ef", "gh ij"]
    greedy = translator.translate(sources, 1)
    assert translator.translate(sources, strategy="greedy") == greedy
    assert translator.translate(sources, 3, length_penalty="none", alpha=0.0, min_length=1)
    with pytest.raises(Seq2SeqError, match="not alhpa"):
        translator.translate(sources, alhpa=0.5)
    with pytest.raises(Seq2SeqError, match="not nbest"):
        translator.translate(sources, nbest=2)


def test_the_command_lists_its_subcommands_and_trains(trained, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    listing = capsys.readouterr().out
    for command in ("train", "prepare", "translate", "evaluate", "score", "grad-flow", "average"):
        assert f"\n  {command} " in listing
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert capsys.readouterr().out.startswith("usage: seq2seq train ")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "fit", "--config", "configs/multi30k_de_en.yaml", "--print_config"])
    assert exit_info.value.code == 0 and "default_root_dir: runs/multi30k_de_en" in (
        capsys.readouterr().out
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "fit", "--model.learnin_rate=1"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.startswith("seq2seq train: error: ")


def test_a_model_without_finite_scores_is_a_clear_error(trained) -> None:
    """Beam search keeps no hypothesis whose score is NaN; with none left for a sentence the
    translator says why instead of writing an empty line for it."""
    model, tokenizer, _ = load_model(trained.checkpoint)
    with torch.no_grad():
        model.decoder.output.bias.fill_(float("nan"))
    translator = Translator(model, tokenizer)
    with pytest.raises(Seq2SeqError, match="scores are not finite"):
        translator.translate(["ab cd ef", "st uv"], beam_size=2)
