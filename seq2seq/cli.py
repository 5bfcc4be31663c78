"""The `seq2seq` command: prepare, translate, evaluate, score.

    seq2seq prepare   [train.py's options]                  data statistics as JSON
    seq2seq translate --checkpoint CKPT [--input PATH|-] [--output PATH|-] [--beam-size K]
                      [--nbest N] [--batch-tokens T] [--device cpu|cuda] [--plot-attention DIR]
    seq2seq evaluate  --checkpoint CKPT --source PATH --reference PATH [--beam-size K] [--json]
    seq2seq score     --hypotheses PATH --reference PATH [--json]

Every user error is one line on stderr and exit status 1; output files are written under a
temporary name and renamed when complete, so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from seq2seq.data.corpus import read_lines
from seq2seq.errors import Seq2SeqError


def prepare(args: list[str]) -> None:
    """Fetch the corpora, train the tokenizer, encode every split, print statistics as JSON."""
    from seq2seq.lightning_cli import build_cli  # Lightning is slow to import: only when needed

    datamodule = build_cli(args, run=False).datamodule
    datamodule.prepare_data()
    datamodule.setup()
    print(json.dumps(datamodule.statistics(), indent=2))


def _search_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a .ckpt written by train.py")
    parser.add_argument("--beam-size", type=int, default=5, help="1 is greedy search")
    parser.add_argument("--length-penalty", choices=["gnmt", "average", "none"], default="gnmt")
    parser.add_argument("--alpha", type=float, default=0.6, help="GNMT length-penalty exponent")
    parser.add_argument("--batch-tokens", type=int, default=4000, help="source tokens per batch")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")


def _load_translator(options: argparse.Namespace, nbest: int):
    """The translator of `--checkpoint`, after checking the search options (before any input)."""
    from seq2seq.translator import Translator

    if not 1 <= nbest <= options.beam_size:
        raise Seq2SeqError(f"--nbest must be between 1 and --beam-size ({options.beam_size})")
    return Translator.from_checkpoint(options.checkpoint, options.device)


def _translate_lines(
    translator, options: argparse.Namespace, lines: list[str], nbest: int, plots: Path | None = None
) -> list[list]:
    from seq2seq.decoding.search import SearchOptions

    search = SearchOptions(
        beam_size=options.beam_size,
        nbest=nbest,
        length_penalty=options.length_penalty,
        alpha=options.alpha,
    )
    results = translator.translate_nbest(
        lines, search, options.batch_tokens, progress=True, keep_attention=plots is not None
    )
    if plots is not None:
        _plot(translator, lines, results, plots)
    return results


def _plot(translator, lines: list[str], results: list[list], directory: Path) -> None:
    """One PNG per non-empty line, named by its line number: `000001.png`, ..."""
    from seq2seq.plots import plot_attention

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise Seq2SeqError(f"cannot create {directory}: {error.strerror}") from error
    for number, (line, nbest) in enumerate(zip(lines, results, strict=True), start=1):
        best = nbest[0]
        if best.attention is not None:
            pieces = (translator.source_pieces(line), translator.target_pieces(best))
            plot_attention(best.attention, *pieces, directory / f"{number:06d}.png")


def translate(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="seq2seq translate", description="Translate raw text.")
    _search_arguments(parser)
    parser.add_argument("--input", default="-", help="source text, one sentence a line (- stdin)")
    parser.add_argument("--output", default="-", help="where translations go (- stdout)")
    parser.add_argument(
        "--plot-attention", type=Path, metavar="DIR", help="an attention heat map per line in DIR"
    )
    parser.add_argument(
        "--nbest",
        type=int,
        default=1,
        help="translations per line; above 1, lines read 'i ||| text ||| score'",
    )
    options = parser.parse_args(args)
    translator = _load_translator(options, options.nbest)
    lines = read_input(options.input)
    results = _translate_lines(translator, options, lines, options.nbest, options.plot_attention)
    if options.nbest == 1:
        output = [best[0].text for best in results]
    else:
        output = [
            f"{i} ||| {t.text} ||| {t.score:.4f}" for i, nbest in enumerate(results) for t in nbest
        ]
    write_output(options.output, output)


def evaluate(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="seq2seq evaluate", description="Translate and score.")
    _search_arguments(parser)
    parser.add_argument("--source", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    options = parser.parse_args(args)
    sources, references = read_input(options.source), read_input(options.reference)
    if len(sources) != len(references):
        raise Seq2SeqError(
            f"{options.source} has {len(sources)} lines, {options.reference} has {len(references)}"
        )
    translator = _load_translator(options, 1)
    hypotheses = [best[0].text for best in _translate_lines(translator, options, sources, 1)]
    _print_scores(hypotheses, references, options.json)


def score(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="seq2seq score", description="Score existing output.")
    parser.add_argument("--hypotheses", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    options = parser.parse_args(args)
    _print_scores(read_input(options.hypotheses), read_input(options.reference), options.json)


def _print_scores(hypotheses: list[str], references: list[str], as_json: bool) -> None:
    from seq2seq.evaluation import score_corpus

    scores = score_corpus(hypotheses, references)
    if as_json:
        print(json.dumps([vars(s) for s in scores], indent=2))
    else:
        print("\n".join(str(s) for s in scores))


def read_input(path: str) -> list[str]:
    """Lines of a file (plain or gzip) or of stdin (`-`), UTF-8 checked, CRLF accepted."""
    if path != "-":
        return list(read_lines(path))
    lines = []
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError as error:
            raise Seq2SeqError(f"stdin: line {number} is not valid UTF-8") from error
    return lines


def write_output(path: str, lines: list[str]) -> None:
    """Write lines to stdout (`-`) or to `path` through a temporary file in the same directory."""
    text = "".join(line + "\n" for line in lines)
    if path == "-":
        sys.stdout.write(text)
        return
    target = Path(path)
    if target.is_dir():
        raise Seq2SeqError(f"output path is a directory: {target}")
    try:
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as error:
        raise Seq2SeqError(f"cannot write to {target.parent}: {error.strerror}") from error
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


COMMANDS = {"prepare": prepare, "translate": translate, "evaluate": evaluate, "score": score}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="seq2seq", description="Recurrent neural machine translation."
    )
    parser.add_argument("command", choices=sorted(COMMANDS), help="what to do")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the command's options (--help)")
    arguments = parser.parse_args(argv)
    try:
        COMMANDS[arguments.command](arguments.options)
    except Seq2SeqError as error:
        print(f"seq2seq: error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
