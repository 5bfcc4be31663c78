"""The `seq2seq` command: train, prepare, translate, evaluate, score, grad-flow, average, serve,
export.

    seq2seq train     fit|validate|test|predict [train.py's options]   train.py itself
    seq2seq prepare   [train.py's options]                  data statistics as JSON
    seq2seq translate (--checkpoint CKPT [--checkpoint CKPT ...] | --model DIR)
                      [--input PATH|-] [--output PATH|-] [search options] [--batch-tokens T]
                      [--device cpu|cuda] [--precision auto|fp32|bf16] [--plot-attention DIR]
    seq2seq evaluate  --checkpoint CKPT [--checkpoint CKPT ...] --input PATH
                      --reference PATH [PATH ...] [--output PATH] [--tokenize TOK]
                      [search options] [--json]
    seq2seq score     --input PATH --reference PATH [PATH ...] [--tokenize TOK] [--json]
    seq2seq grad-flow [--config CFG | --checkpoint CKPT] [--length T] --output DIR
    seq2seq average   (--checkpoints CKPT ... | --run DIR --last K | --run DIR --best K)
                      --output CKPT
    seq2seq serve     --checkpoint CKPT [--checkpoint CKPT ...] [--host H] [--port P]
                      [--device cpu|cuda] [--max-batch-size N] [--batch-timeout MS]
                      [--workers N] [--api-key KEY] [--cors-origin URL] [search options]
    seq2seq export    --checkpoint CKPT --output DIR [--opset N]

translate, evaluate and serve search a checkpoint in PyTorch, or with --model DIR an export in
ONNX Runtime (--engine onnxruntime, implied by --model).

The search options are SearchOptions' fields as flags (`--beam-size` for beam_size, ...); what
is not given is the checkpoint's test setting (the first one's: several --checkpoint flags
decode as an ensemble, with the mean of the models' probabilities). Every user error is one
line on stderr and exit status 1; output files are written through `atomic_write`, so an
interrupted run leaves no half-written file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import typing
from pathlib import Path

from seq2seq.allocator import keep_freed_memory
from seq2seq.errors import Seq2SeqError, one_line
from seq2seq.files import atomic_write, check_file, decode_lines, make_directory, read_lines

if typing.TYPE_CHECKING:  # torch is slow to import: the commands import it when they need it
    from seq2seq.decoding.search import SearchOptions


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line: a `Seq2SeqError` instead of usage text and exit 2."""

    def error(self, message: str):
        """Raise the message as a one-line `Seq2SeqError`."""
        raise Seq2SeqError(f"{message} (see {self.prog} --help)")


def prepare(args: list[str]) -> None:
    """`seq2seq prepare`: fetch the corpora, train the tokenizer, encode them; statistics as JSON.

    It takes train.py's options and configs (so that it prepares what a run would use); its
    --help lists the data options only."""
    if {"-h", "--help"} & set(args):
        _print_data_help()
        return
    from jsonargparse import ArgumentError

    from seq2seq.lightning_cli import build_cli  # Lightning is slow to import: only when needed

    try:
        datamodule = build_cli(args, run=False).datamodule
    except ArgumentError as error:  # a misspelt option, a missing setting: one line
        raise Seq2SeqError(one_line(error)) from error
    datamodule.prepare_data()
    datamodule.setup()
    write_output("-", [json.dumps(datamodule.statistics(), indent=2)])


def add_search_options(parser: argparse.ArgumentParser) -> None:
    """One flag per SearchOptions field (`--beam-size` for beam_size), typed, with the choices
    and help its definition gives; a flag not given leaves the field to the checkpoint."""
    import docstring_parser

    from seq2seq.decoding.search import SearchOptions

    group = parser.add_argument_group("search (not given: the checkpoint's test settings)")
    hints = typing.get_type_hints(SearchOptions)
    documented = docstring_parser.parse(SearchOptions.__doc__).params
    helps = {parameter.arg_name: parameter.description for parameter in documented}
    for field in dataclasses.fields(SearchOptions):
        kind = hints[field.name]
        choices = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else None
        group.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=str if choices else kind,
            choices=choices,
            help=" ".join(helps[field.name].split()),
        )


def search_options(defaults: SearchOptions, options: argparse.Namespace) -> SearchOptions:
    """`defaults` with the search flags that were given."""
    from seq2seq.decoding.search import SearchOptions

    given = {
        field.name: getattr(options, field.name)
        for field in dataclasses.fields(SearchOptions)
        if getattr(options, field.name) is not None
    }
    return dataclasses.replace(defaults, **given)


def _print_data_help() -> None:
    from jsonargparse import ArgumentParser

    from seq2seq.datamodule import TranslationDataModule

    parser = ArgumentParser(
        prog="seq2seq prepare",
        description="Prepare the data a run would use and print its statistics as JSON. Takes"
        " train.py's options and --config files; these are the data options:",
    )
    parser.add_class_arguments(TranslationDataModule, "data")
    parser.print_help()


def _translation_arguments(parser: argparse.ArgumentParser) -> None:
    _model_arguments(parser)
    add_search_options(parser)
    parser.add_argument(
        "--batch-tokens", type=positive_int, default=4000, help="source tokens per batch"
    )


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint (repeatable: an ensemble) or --model, --engine, --device and --precision."""
    from seq2seq.translator import PRECISIONS

    parser.add_argument(
        "--checkpoint",
        "--ckpt_path",
        action="append",
        help="a .ckpt written by train.py; given again, the checkpoints decode as an ensemble"
        " (the mean of their probabilities, the first one's search settings)",
    )
    parser.add_argument(
        "--model", type=Path, metavar="DIR", help="a directory written by seq2seq export"
    )
    parser.add_argument(
        "--engine",
        choices=("torch", "onnxruntime"),
        help="what searches: torch (with --checkpoint) or onnxruntime (with --model, CPU, needs"
        " the export extra); default: the one the model given needs",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="bf16 autocast or fp32; auto: bf16 on a CUDA GPU with bf16, fp32 on CPUs",
    )
    parser.add_argument(
        "--shortlist",
        type=Path,
        metavar="FILE",
        help="search each batch over the target words that seq2seq shortlist listed for its"
        " source words (faster; torch engine)",
    )


def _load_translator(options: argparse.Namespace, **fixed: object) -> tuple:
    """The translator of `--checkpoint` (an ensemble when given more than once) and the search
    options asked for (with `fixed` ones), checked before any input is read."""
    from seq2seq.shortlist import Shortlist
    from seq2seq.translator import Translator

    engine = _engine(options)
    if engine == "onnxruntime" and options.shortlist:
        raise Seq2SeqError("the onnxruntime engine searches every word: drop --shortlist")
    shortlist = Shortlist.load(options.shortlist) if options.shortlist else None
    if engine == "torch":
        translator = Translator.from_checkpoints(
            options.checkpoint, options.device, options.precision, shortlist
        )
    else:
        _require_extra("--engine onnxruntime", "export", "onnxruntime")
        translator = Translator.from_export(options.model, options.precision)
    search = dataclasses.replace(search_options(translator.options, options), **fixed)
    return translator, search


def _engine(options: argparse.Namespace) -> str:
    """The engine that --engine, --checkpoint and --model ask for, or a one-line error."""
    engine = options.engine or ("onnxruntime" if options.model else "torch")
    if engine == "torch" and options.model:
        raise Seq2SeqError("--model DIR is an ONNX export: it runs with --engine onnxruntime")
    if engine == "torch" and not options.checkpoint:
        raise Seq2SeqError("give --checkpoint CKPT (or --model DIR, an export, for onnxruntime)")
    if engine == "onnxruntime" and (options.checkpoint or not options.model):
        raise Seq2SeqError(
            "--engine onnxruntime searches an export: give --model DIR, not --checkpoint"
        )
    if engine == "onnxruntime" and options.device != "cpu":
        raise Seq2SeqError(f"--engine onnxruntime runs on cpu, not --device {options.device}")
    return engine


def _require_extra(needer: str, extra: str, module: str) -> None:
    """A one-line error naming the extra to install when `module` cannot be imported."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as error:
        raise Seq2SeqError(
            f"{needer} needs the {extra} extra ({error.name} is missing):"
            f" pip install 'seq2seq[{extra}]'"
        ) from error


def _translate_lines(
    translator,
    search: SearchOptions,
    options: argparse.Namespace,
    lines: list[str],
    plots: Path | None = None,
) -> list[list]:
    results = translator.translate_nbest(
        lines, search, options.batch_tokens, progress=True, keep_attention=plots is not None
    )
    if plots is not None:
        _plot(translator, lines, results, plots)
    return results


def _plot(translator, lines: list[str], results: list[list], directory: Path) -> None:
    """One PNG per non-empty line, named by its line number: `000001.png`, ..."""
    from seq2seq.plots import plot_attention

    make_directory(directory)
    for number, (line, nbest) in enumerate(zip(lines, results, strict=True), start=1):
        best = nbest[0]
        if best.attention is not None:
            pieces = (translator.source_pieces(line), translator.target_pieces(best))
            plot_attention(best.attention, *pieces, directory / f"{number:06d}.png")


def translate(args: list[str]) -> None:
    """`seq2seq translate`: translate a file or stdin, a line per line."""
    parser = Parser(
        prog="seq2seq translate",
        description="Translate raw text, a line per line; with --nbest above 1, every"
        " translation is a line 'i ||| text ||| score'.",
    )
    _translation_arguments(parser)
    parser.add_argument("--input", default="-", help="source text, one sentence a line (- stdin)")
    parser.add_argument("--output", default="-", help="where translations go (- stdout)")
    parser.add_argument(
        "--plot-attention", type=Path, metavar="DIR", help="an attention heat map per line in DIR"
    )
    options = parser.parse_args(args)
    _check_output(options.output, options.input)
    translator, search = _load_translator(options)
    lines = read_input(options.input)
    results = _translate_lines(translator, search, options, lines, options.plot_attention)
    if search.nbest == 1:
        output = [best[0].text for best in results]
    else:
        output = [
            f"{i} ||| {t.text} ||| {t.score:.4f}" for i, nbest in enumerate(results) for t in nbest
        ]
    write_output(options.output, output)


def _check_output(output: str, source: str) -> None:
    """Before any work: a one-line error when output goes to a closed stdout, or to the source
    file itself (the same inode)."""
    if output == "-" and sys.stdout is None:
        raise Seq2SeqError("stdout is closed: give --output PATH")
    if "-" in (output, source) or not Path(output).is_file() or not Path(source).is_file():
        return
    if Path(output).samefile(source):
        raise Seq2SeqError(f"--output {output} is the input file: refusing to overwrite it")


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def evaluate(args: list[str]) -> None:
    """`seq2seq evaluate`: translate a source file and score it against references."""
    parser = Parser(prog="seq2seq evaluate", description="Translate a file and score it.")
    _translation_arguments(parser)
    parser.add_argument("--input", "--source", dest="source", required=True, help="source text")
    _scoring_arguments(parser)
    parser.add_argument("--output", help="also keep the translations in this file")
    options = parser.parse_args(args)
    if options.output:
        _check_output(options.output, options.source)
    sources = read_input(options.source)
    references = _references(options, len(sources), options.source)
    translator, search = _load_translator(options, nbest=1)
    results = _translate_lines(translator, search, options, sources)
    hypotheses = [best[0].text for best in results]
    if options.output:
        write_output(options.output, hypotheses)
    checkpoints = [str(path) for path in options.checkpoint or ()]
    run = {
        "checkpoint": checkpoints[0] if len(checkpoints) == 1 else checkpoints or None,
        "model": str(options.model) if options.model else None,
        "shortlist": str(options.shortlist) if options.shortlist else None,
        "search": dataclasses.asdict(search),
    }
    _print_scores(hypotheses, references, options, run)


def score(args: list[str]) -> None:
    """`seq2seq score`: score existing translations against references."""
    parser = Parser(prog="seq2seq score", description="Score existing translations.")
    parser.add_argument(
        "--input", "--hypotheses", dest="hypotheses", required=True, help="the translations"
    )
    _scoring_arguments(parser)
    options = parser.parse_args(args)
    hypotheses = read_input(options.hypotheses)
    _print_scores(hypotheses, _references(options, None, None), options, {})


def _scoring_arguments(parser: argparse.ArgumentParser) -> None:
    from seq2seq.evaluation import TOKENIZERS

    parser.add_argument(
        "--reference", nargs="+", required=True, help="one or more reference files, line-aligned"
    )
    parser.add_argument(
        "--tokenize", choices=TOKENIZERS, default="13a", help="BLEU's tokenizer (13a: sacreBLEU's)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _references(options: argparse.Namespace, lines: int | None, source: str | None) -> list:
    """The reference streams; with `lines`, each must have as many lines as the source."""
    streams = [read_input(path) for path in options.reference]
    for path, stream in zip(options.reference, streams, strict=True):
        if lines is not None and len(stream) != lines:
            raise Seq2SeqError(f"{source} has {lines} lines, {path} has {len(stream)}")
    return streams


def _print_scores(
    hypotheses: list[str], references: list[list[str]], options: argparse.Namespace, run: dict
) -> None:
    from seq2seq.evaluation import score_corpus

    scores = score_corpus(hypotheses, references, options.tokenize)
    if options.json:
        record = {**run, "references": options.reference, "scores": [vars(s) for s in scores]}
        write_output("-", [json.dumps(record, indent=2)])
    else:
        write_output("-", [str(s) for s in scores])


def grad_flow(args: list[str]) -> None:
    """`seq2seq grad-flow`: how far gradients travel back through time in rnn, gru and lstm.

    ||dL/dh(t)|| against distance from the loss, without and with layer norm."""
    parser = Parser(
        prog="seq2seq grad-flow",
        description="How far gradients travel back through time in freshly initialized "
        "rnn, gru and lstm layers (and a trained encoder): JSON and PNG in --output.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", help="a train.py config: its sizes and initialization")
    source.add_argument("--checkpoint", help="a .ckpt: its sizes, and its trained encoder layer")
    parser.add_argument("--length", type=int, default=100, help="steps of the synthetic sequences")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and inputs")
    parser.add_argument("--output", required=True, type=Path, help="directory for JSON and PNG")
    options = parser.parse_args(args)
    if options.length < 2:
        raise Seq2SeqError("--length must be at least 2")
    from seq2seq.gradients import FlowCurve, cell_comparison, synthetic_flow
    from seq2seq.plots import plot_gradient_flow

    architecture, trained = _grad_flow_model(options)
    curves = cell_comparison(
        architecture.embedding_size,
        architecture.encoder_hidden_size,
        options.length,
        architecture.forget_bias,
        architecture.recurrent_init,
        options.seed,
    )
    if trained is not None:
        norms = synthetic_flow(trained, options.length, seed=options.seed)
        name = f"trained encoder layer 1 ({architecture.cell_type}, forward direction)"
        curves.append(FlowCurve(name, norms.tolist()))
    make_directory(options.output)
    report = {
        "length": options.length,
        "curves": [{**vars(c), "first_to_last": c.first_to_last} for c in curves],
    }
    write_output(str(options.output / "grad_flow.json"), [json.dumps(report, indent=2)])
    plot_gradient_flow(
        {c.name: c.norms[::-1] for c in curves},
        options.output / "grad_flow.png",
        xlabel="distance from the loss (steps)",
        title=f"||dL/dh(t)|| over {options.length} steps, L reads the last state",
    )
    for curve in curves:
        print(f"{curve.name:<60} ||dL/dh(0)|| / ||dL/dh(T-1)|| = {curve.first_to_last:.3g}")


def _grad_flow_model(options: argparse.Namespace):
    """The architecture to measure, and the trained encoder layer when a checkpoint is given."""
    from seq2seq.model.seq2seq import Seq2SeqConfig

    if options.checkpoint:
        from seq2seq.checkpoint import load_model

        model = load_model(options.checkpoint).model
        return model.config, model.encoder.layers[0]
    if options.config:
        return _architecture_of_config(Path(options.config)), None
    return Seq2SeqConfig(), None


def _architecture_of_config(path: Path):
    """`model.architecture` of a train.py config, read without building data or trainer."""
    import yaml

    from seq2seq.model.seq2seq import Seq2SeqConfig

    try:
        with check_file(path).open(encoding="utf-8") as file:  # errors name the file
            config = yaml.safe_load(file) or {}
        return Seq2SeqConfig(**((config.get("model") or {}).get("architecture") or {}))
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError, TypeError) as error:
        raise Seq2SeqError(f"{path}: not a train.py config ({one_line(error)})") from error


def read_input(path: str) -> list[str]:
    """Lines of a file (plain or gzip) or of stdin (`-`), UTF-8 checked, LF, CRLF or CR."""
    if path != "-":
        return list(read_lines(path))
    if sys.stdin is None:
        raise Seq2SeqError("stdin is closed: give --input PATH")
    return list(decode_lines(sys.stdin.buffer, "stdin"))


def write_output(path: str, lines: list[str]) -> None:
    """Write lines to stdout (`-`) or to `path` (through `atomic_write`)."""
    text = "".join(line + "\n" for line in lines)
    if path == "-":
        if sys.stdout is None:
            raise Seq2SeqError("stdout is closed: give --output PATH")
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as error:
            raise Seq2SeqError(f"cannot write to stdout: {error.strerror or error}") from error
        return
    target = Path(path)
    if target.is_dir():
        raise Seq2SeqError(f"output path is a directory: {target}")
    with atomic_write(target) as out:
        out.write(text)


def average(args: list[str]) -> None:
    """`seq2seq average`: one checkpoint whose weights are the mean of several of one run's."""
    parser = Parser(
        prog="seq2seq average",
        description="Average the weights of checkpoints of one model (float64 mean) into a"
        " checkpoint without optimizer state, which every command reads.",
    )
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--checkpoints", nargs="+", type=Path, help="the checkpoints to average")
    given.add_argument("--run", type=Path, help="a run directory: choose with --last or --best")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--last", type=positive_int, metavar="K", help="the K latest checkpoints")
    choice.add_argument("--best", type=positive_int, metavar="K", help="the K best checkpoints")
    parser.add_argument("--monitor", default="val/bleu", help="what --best ranks by")
    parser.add_argument("--output", type=Path, required=True, help="the averaged checkpoint")
    options = parser.parse_args(args)
    paths = _checkpoints_to_average(options)
    if any(path.resolve() == options.output.resolve() for path in paths):
        raise Seq2SeqError(
            f"--output {options.output} is one of the inputs: refusing to replace it"
        )
    from seq2seq.averaging import average_checkpoints
    from seq2seq.checkpoint import save_checkpoint

    save_checkpoint(average_checkpoints(paths), options.output)
    print(f"{options.output}: the mean of {len(paths)} checkpoints", file=sys.stderr)


def _checkpoints_to_average(options: argparse.Namespace) -> list[Path]:
    """The paths given, or those --last/--best chooses in --run (each said on stderr)."""
    if options.checkpoints:
        if options.last or options.best:
            raise Seq2SeqError(
                "--last and --best choose in a --run directory, not among --checkpoints"
            )
        return options.checkpoints
    if not (options.last or options.best):
        raise Seq2SeqError("--run needs --last K or --best K")
    from seq2seq import averaging

    saved = averaging.saved_checkpoints(options.run)
    if options.last:
        chosen = averaging.last(saved, options.last)
    else:
        chosen = averaging.best(saved, options.best, options.monitor)
    for checkpoint in chosen:
        score = "" if checkpoint.score is None else f"; {options.monitor} {checkpoint.score:.2f}"
        print(f"averaging {checkpoint.path} (update {checkpoint.step}{score})", file=sys.stderr)
    return [checkpoint.path for checkpoint in chosen]


def serve(args: list[str]) -> None:
    """`seq2seq serve`: a translation API that batches concurrent requests, and a web page."""
    parser = Parser(
        prog="seq2seq serve",
        description="Serve translations over HTTP: POST /translate, GET /health, GET /info, the"
        " page at /, the API's schema at /docs. Needs the serve extra (pip install"
        " 'seq2seq[serve]'). SIGTERM answers the requests in flight, then exits 0.",
    )
    _model_arguments(parser)
    add_search_options(parser)
    _server_arguments(parser)
    options = parser.parse_args(args)
    for extra_module in ("fastapi", "uvicorn"):
        _require_extra("seq2seq serve", "serve", extra_module)
    from seq2seq.serve import app, server

    settings = app.ServerSettings(
        max_batch_size=options.max_batch_size,
        batch_timeout=options.batch_timeout / 1000,
        workers=options.workers,
        timeout=options.timeout,
        max_chars=options.max_chars,
        max_lines=options.max_lines,
        max_beam=options.max_beam,
        max_nbest=options.max_nbest,
        api_key=options.api_key or os.environ.get("SEQ2SEQ_API_KEY") or None,
        cors_origins=tuple(options.cors_origin or ()),
    )
    listener = server.listen(options.host, options.port)  # before the model: fails at once
    translator, search = _load_translator(options)
    if search.beam_size > settings.max_beam or search.nbest > settings.max_nbest:
        raise Seq2SeqError(
            f"the default search (beam_size {search.beam_size}, nbest {search.nbest}) is past"
            f" --max-beam {settings.max_beam} or --max-nbest {settings.max_nbest}: raise the"
            " limit or give --beam-size"
        )
    if not (settings.api_key or options.host in ("127.0.0.1", "localhost", "::1")):
        print(f"warning: serving on {options.host} without --api-key", file=sys.stderr)
    info = server.describe(options.checkpoint or (), translator)
    server.run(app.create_app(translator, search, settings, info), listener)


def _server_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    group.add_argument("--host", default="127.0.0.1", help="address to listen on")
    group.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free)")
    group.add_argument(
        "--max-batch-size",
        type=positive_int,
        default=32,
        help="most sentences searched together, across requests (1: no batching)",
    )
    group.add_argument(
        "--batch-timeout",
        type=float,
        default=5.0,
        metavar="MS",
        help="milliseconds a batch waits for more requests after its first one",
    )
    group.add_argument("--workers", type=positive_int, default=1, help="batches searched at once")
    group.add_argument(
        "--timeout", type=float, default=30.0, help="seconds a request may wait (then 503)"
    )
    group.add_argument("--max-chars", type=positive_int, default=1000, help="characters a line")
    group.add_argument("--max-lines", type=positive_int, default=64, help="lines a request")
    group.add_argument("--max-beam", type=positive_int, default=16, help="largest beam_size")
    group.add_argument("--max-nbest", type=positive_int, default=16, help="largest nbest")
    group.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' (all but /health and the page); the"
        " environment variable SEQ2SEQ_API_KEY does the same without showing the key in ps",
    )
    group.add_argument(
        "--cors-origin", action="append", help="an origin whose pages may call the API"
    )


def export(args: list[str]) -> None:
    """`seq2seq export`: a checkpoint's model as ONNX graphs that ONNX Runtime searches."""
    from seq2seq.export.exporter import DEFAULT_OPSET

    parser = Parser(
        prog="seq2seq export",
        description="Write encoder.onnx, decoder_step.onnx, the SentencePiece model(s) and"
        " seq2seq_export.json into DIR, after checking the graphs against PyTorch in ONNX"
        " Runtime; seq2seq translate --model DIR searches them. Needs the export extra (pip"
        " install 'seq2seq[export]').",
    )
    parser.add_argument("--checkpoint", "--ckpt_path", required=True, help="a .ckpt to export")
    parser.add_argument(
        "--output", required=True, type=Path, metavar="DIR", help="new or empty directory"
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset of the graphs")
    options = parser.parse_args(args)
    for extra_module in ("onnx", "onnxscript", "onnxruntime"):
        _require_extra("seq2seq export", "export", extra_module)
    from seq2seq.export.exporter import export_model

    check_file(options.checkpoint)
    directory = export_model(options.checkpoint, options.output, options.opset)
    print(f"exported {options.checkpoint} to {directory}", file=sys.stderr)


def shortlist(args: list[str]) -> None:
    """`seq2seq shortlist`: the target words each source word may bring, from parallel text."""
    parser = Parser(
        prog="seq2seq shortlist",
        description="Count which target subwords come with each source subword in a parallel"
        " corpus (by default the training corpus the checkpoint records) and keep the most"
        " frequent: with --shortlist FILE, each sentence is searched over those of its source"
        " words and the most frequent target words only.",
    )
    parser.add_argument(
        "--checkpoint", "--ckpt_path", required=True, help="the model whose tokenizer to use"
    )
    parser.add_argument(
        "--source",
        help="source side of the corpus to count, one sentence a line (default: the training"
        " corpus the checkpoint records)",
    )
    parser.add_argument("--target", help="its target side, line-aligned")
    parser.add_argument("--output", required=True, type=Path, help="the shortlist file")
    parser.add_argument(
        "--per-word", type=positive_int, default=100, help="target words kept per source word"
    )
    parser.add_argument(
        "--frequent",
        type=int,
        default=100,
        help="most frequent target words every sentence may use",
    )
    options = parser.parse_args(args)
    from seq2seq.checkpoint import load_checkpoint, tokenizer_of
    from seq2seq.data.corpus import CorpusFiles
    from seq2seq.shortlist import build_shortlist, encoded_pairs, training_corpora

    if options.frequent < 0:
        raise Seq2SeqError(f"--frequent must be 0 or more, not {options.frequent}")
    if (options.source is None) != (options.target is None):
        raise Seq2SeqError("give --source and --target, or neither (the training corpus)")
    _check_output(str(options.output), options.source or "-")
    checkpoint = load_checkpoint(options.checkpoint, mmap=True)
    tokenizer = tokenizer_of(checkpoint)
    if options.source:
        corpora = [CorpusFiles(options.source, options.target)]
    else:
        corpora = training_corpora(checkpoint.get("datamodule_hyper_parameters") or {})
    pairs = encoded_pairs(corpora, tokenizer)
    built = build_shortlist(pairs, tokenizer, options.per_word, options.frequent)
    built.save(options.output)
    print(f"wrote {options.output}", file=sys.stderr)


def train(args: list[str]) -> None:
    """`seq2seq train fit|validate|test|predict`: train.py itself (configs, --ckpt_path, ...)."""
    from seq2seq.lightning_cli import main as train_main  # Lightning: only when needed

    train_main(args, prog="seq2seq train")


COMMANDS = {
    "train": train,
    "prepare": prepare,
    "translate": translate,
    "evaluate": evaluate,
    "score": score,
    "grad-flow": grad_flow,
    "average": average,
    "serve": serve,
    "export": export,
    "shortlist": shortlist,
}


def main(argv: list[str] | None = None) -> None:
    """The `seq2seq` command: run a subcommand; a user error is one line and exit status 1."""
    summaries = "\n".join(
        f"  {name:<10} {command.__doc__.split(': ', 1)[1].splitlines()[0]}"
        for name, command in COMMANDS.items()
    )
    parser = Parser(
        prog="seq2seq",
        description="Recurrent neural machine translation.",
        epilog=f"commands:\n{summaries}\n\n`seq2seq COMMAND --help` lists a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="command", help="what to do")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the command's options (--help)")
    try:
        arguments = parser.parse_args(argv)
        keep_freed_memory()
        COMMANDS[arguments.command](arguments.options)
    except Seq2SeqError as error:
        print(f"seq2seq: error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # output files are whole or absent (atomic_write)
        print("seq2seq: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # `... | head`: the reader has gone, as for `cat`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        sys.exit(128 + signal.SIGPIPE)


if __name__ == "__main__":
    main()
