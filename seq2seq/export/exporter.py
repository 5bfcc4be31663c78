"""`export_model`: a checkpoint's model as two ONNX graphs, its tokenizer and a manifest, checked
against PyTorch before the directory appears.

torch.onnx's exporter (`dynamo=True`, through torch.export) traces the graphs of graphs.py with
the batch, source length and hypothesis rows dynamic; the encoder's recurrence is a torch.scan,
exported as an ONNX Scan. The export is written into a temporary directory beside the output,
run in ONNX Runtime on sample sources of several lengths and compared with PyTorch, and only
then moved into place: a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from seq2seq.checkpoint import LoadedModel, checkpoint_facts, load_model
from seq2seq.errors import Seq2SeqError, one_line
from seq2seq.export import manifest
from seq2seq.export.graphs import (
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    STEP_INPUTS,
    STEP_OUTPUTS,
    DecoderStepGraph,
    EncoderGraph,
    stack_state,
)
from seq2seq.files import make_directory

DEFAULT_OPSET = 18  # torch.onnx's own opset: no version conversion
MIN_OPSET = 18  # ONNX Scan as the exporter writes it does not validate below (opset 17 fails)
TOLERANCE = 1e-4  # largest difference from PyTorch accepted, in any output of either graph


def export_model(checkpoint: str | Path, output: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Export the checkpoint's model into the directory `output` (new, empty, or an earlier
    export, which is replaced): encoder.onnx, decoder_step.onnx, the SentencePiece model(s)
    and seq2seq_export.json. Returns the directory."""
    check_opset(opset)  # here too, so that a bad setting fails before the checkpoint is read
    _writable_output(Path(output))
    return export_loaded(load_model(checkpoint), checkpoint_facts(checkpoint), output, opset)


def check_opset(opset: int) -> None:
    """A one-line error unless the exporter writes graphs ONNX Runtime runs at `opset`."""
    import onnx  # the export extra: checked by the caller for a friendly message

    highest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= highest:
        raise Seq2SeqError(f"opset {opset} is not supported: use {MIN_OPSET} to {highest}")


def export_loaded(
    loaded: LoadedModel, facts: dict[str, Any], output: str | Path, opset: int = DEFAULT_OPSET
) -> Path:
    """`export_model` of a model in memory; `facts`: what the manifest says of its checkpoint
    (`checkpoint_facts`)."""
    from seq2seq.export.engine import OnnxModel

    check_opset(opset)
    output = _writable_output(Path(output))
    try:
        with tempfile.TemporaryDirectory(prefix=".export-", dir=output.parent) as scratch:
            staging = Path(scratch) / "export"
            staging.mkdir()
            _export_graphs(loaded.model, staging, opset)
            loaded.tokenizer.save(staging)
            manifest.write(staging, loaded, facts, opset)
            check_against_torch(OnnxModel(staging), loaded.model)
            _replace(output, staging)
    except OSError as error:
        raise Seq2SeqError(f"cannot write the export to {output}: {error.strerror}") from error
    return output


def _writable_output(output: Path) -> Path:
    """`output` if it can take an export: absent, an empty directory or an earlier export."""
    if output.exists() and not output.is_dir():
        raise Seq2SeqError(f"--output {output} is a file: give a directory")
    if output.is_dir() and any(output.iterdir()) and not (output / manifest.NAME).is_file():
        raise Seq2SeqError(
            f"--output {output} is a directory with other files: give a new or empty one"
        )
    make_directory(output.parent)
    return output.resolve()


def _export_graphs(model: torch.nn.Module, directory: Path, opset: int) -> None:
    """encoder.onnx and decoder_step.onnx from sample inputs, every batch and length dynamic."""
    model = model.eval()
    generator = torch.Generator().manual_seed(0)
    src = torch.randint(4, model.config.src_vocab_size, (3, 5), generator=generator)
    src_lengths = torch.tensor([5, 4, 2])
    batch, source = torch.export.Dim("batch"), torch.export.Dim("source")
    rows = torch.export.Dim("rows")
    encoder = EncoderGraph(model).eval()
    with torch.no_grad():
        memory, keys, padding_bias, state = encoder(src, src_lengths)
    beams = torch.arange(3).repeat_interleave(2)  # 2 hypotheses a sentence: rows != batch
    step_inputs = (torch.full((6,), 2), state[:, :, beams], memory, keys, padding_bias)
    sentences = {0: batch, 1: source}
    _export(
        encoder,
        (src, src_lengths),
        (sentences, {0: batch}),
        ENCODER_INPUTS,
        ENCODER_OUTPUTS,
        directory / manifest.ENCODER,
        opset,
    )
    _export(
        DecoderStepGraph(model).eval(),
        step_inputs,
        ({0: rows}, {2: rows}, sentences, sentences, sentences),
        STEP_INPUTS,
        STEP_OUTPUTS,
        directory / manifest.DECODER_STEP,
        opset,
    )


def _export(
    graph: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    dynamic_shapes: tuple[dict, ...],
    input_names: tuple[str, ...],
    output_names: tuple[str, ...],
    path: Path,
    opset: int,
) -> None:
    """One graph to one .onnx file (weights inside it up to ONNX's 2 GB, beside it past)."""
    try:
        with torch.no_grad(), _quiet():
            program = torch.onnx.export(
                graph,
                inputs,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                input_names=list(input_names),
                output_names=list(output_names),
                opset_version=opset,
                verbose=False,
            )
    except Exception as error:  # the exporter raises many kinds; all mean the same to a user
        message = f"exporting {path.name} at opset {opset} failed: {one_line(error)}"
        raise Seq2SeqError(message) from error
    program.save(str(path))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress lines, warnings and log messages kept off the user's terminal."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


@torch.no_grad()
def check_against_torch(exported, model: torch.nn.Module) -> float:
    """The largest difference between the exported graphs in ONNX Runtime and the model in
    PyTorch over sample sources (lengths 1 to 40, 3 hypotheses a sentence); a one-line error
    past TOLERANCE."""
    if not torch.equal(exported.output_words(), model.output_words()):
        raise Seq2SeqError("the export scores other target words than the model: not written")
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([40, 1, 17, 3])
    src = torch.randint(4, model.config.src_vocab_size, (4, 40), generator=generator)
    src = src.masked_fill(torch.arange(40) >= lengths.unsqueeze(1), model.config.pad_id)
    ours = model.initial_state(model.encode(src, lengths), model.search_weights())
    theirs = exported.initial_state(exported.encode(src, lengths))
    rows = torch.arange(4).repeat_interleave(3)
    tokens = torch.randint(4, model.output_words().numel(), (12,), generator=generator)
    ours_step = model.step(ours.reorder(rows), tokens)
    theirs_step = exported.step(theirs.reorder(rows), tokens)
    pairs = {
        "state": (stack_state(ours), theirs.state),
        "memory": (ours.memory, theirs.memory),
        "keys": (ours.keys, theirs.keys),
        "log_probs": (ours_step.log_probs, theirs_step.log_probs),
        "attention": (ours_step.attention, theirs_step.attention),
    }
    worst = max((largest_difference(a, b), name) for name, (a, b) in pairs.items())
    if not worst[0] <= TOLERANCE:
        raise Seq2SeqError(
            f"the export computes {worst[1]} {worst[0]:.2e} away from PyTorch (tolerance"
            f" {TOLERANCE}): not written"
        )
    return worst[0]


def largest_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """Largest absolute difference (0 for empty tensors); -inf against -inf (padding,
    forbidden tokens) is none."""
    same = ours == theirs
    difference = torch.where(same, 0.0, (ours.float() - theirs.float()).abs())
    return float(difference.max()) if difference.numel() else 0.0


def _replace(output: Path, staging: Path) -> None:
    """Move the finished export to `output`, replacing an earlier export there."""
    if output.exists():
        previous = staging.parent / "previous"
        output.rename(previous)
    staging.rename(output)
