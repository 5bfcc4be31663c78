"""seq2seq_export.json: what an export directory holds and what the graphs expect, written by
the exporter and checked by the engine before it opens a graph.

It records the special ids, the sizes of every graph input and output, the target words the step
scores, the checkpoint's search settings (the engine's defaults), the opset, and each graph's
SHA-256, so that a graph copied in from another export is refused with one line instead of
failing mid-search.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq.checkpoint import LoadedModel
from seq2seq.data.tokenizer import SPECIAL_IDS
from seq2seq.decoding.search import SearchOptions
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write

NAME = "seq2seq_export.json"
ENCODER = "encoder.onnx"
DECODER_STEP = "decoder_step.onnx"
FORMAT = 2  # 2: output_words (the step scores those alone)


@dataclass(frozen=True)
class Manifest:
    """An export's facts, as read from its seq2seq_export.json."""

    special_ids: dict[str, int]
    architecture: dict[str, Any]  # Seq2SeqConfig's fields
    state_shape: tuple[int, int, int]  # (C, L, H) of the recurrent state: C 2 for an LSTM
    parameters: int
    search: SearchOptions
    opset: int
    checkpoint: dict[str, Any]  # path, step, validation_bleu, data settings
    sha256: dict[str, str]  # file name -> digest
    output_words: list[int]  # sorted target ids the step scores: token id i is the i-th


def write(directory: Path, loaded: LoadedModel, facts: dict[str, Any], opset: int) -> None:
    """seq2seq_export.json for the graphs already in `directory`; `facts`: its checkpoint's
    (`checkpoint_facts`)."""
    config = loaded.model.config
    components = 2 if loaded.model.decoder.cells[0].has_cell_state else 1
    content = {
        "format": FORMAT,
        "special_ids": SPECIAL_IDS,
        "architecture": dataclasses.asdict(config),
        "state_shape": [components, config.decoder_layers, config.decoder_hidden_size],
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "search": dataclasses.asdict(loaded.search),
        "opset": opset,
        "checkpoint": facts,
        "sha256": {name: digest(directory / name) for name in (ENCODER, DECODER_STEP)},
        "output_words": loaded.model.output_words().tolist(),
    }
    with atomic_write(directory / NAME) as out:
        json.dump(content, out, indent=2)
        out.write("\n")


def read(directory: Path) -> Manifest:
    """The manifest of the export in `directory`, after checking that the directory holds an
    export whose graphs are the ones it names; a one-line error otherwise."""
    if not directory.is_dir():
        raise Seq2SeqError(f"{directory} is not a directory (give what seq2seq export wrote)")
    path = directory / NAME
    missing = [name for name in (NAME, ENCODER, DECODER_STEP) if not (directory / name).is_file()]
    if missing:
        raise Seq2SeqError(
            f"{directory} is not a seq2seq export: {', '.join(missing)} missing"
            " (write one with seq2seq export --checkpoint CKPT --output DIR)"
        )
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        fields = {field.name for field in dataclasses.fields(Manifest)}
        facts = {name: content[name] for name in fields}
        if content["format"] != FORMAT:
            raise ValueError(f"format {content['format']}, this version reads {FORMAT}")
        facts["state_shape"] = tuple(facts["state_shape"])
        facts["search"] = SearchOptions(**facts["search"])
    except (OSError, ValueError, KeyError, TypeError, Seq2SeqError) as error:
        raise Seq2SeqError(f"{path} is not a seq2seq export manifest ({error})") from error
    for name, expected in facts["sha256"].items():
        if digest(directory / name) != expected:
            raise Seq2SeqError(
                f"{directory / name} is not the graph this export wrote (its SHA-256 differs"
                f" from {NAME}'s): export the model again"
            )
    return Manifest(**facts)


def digest(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    sha = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()
