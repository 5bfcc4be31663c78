"""How exactly an export computes its checkpoint's model, on Multi30k test_2016_flickr (1,000
sentences): the largest differences of the encoder's outputs and of every step's
log-probabilities along PyTorch's greedy translations (both engines fed the same tokens), then
greedy and beam translations line for line, BLEU of each, and for every line the engines
translate differently, how far apart PyTorch scores the two translations (a tie when tiny).
Prints one JSON object.

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/export_exactness.py \\
        --checkpoint runs/multi30k_de_en/checkpoints/best.ckpt --model EXPORT_DIR [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from sacrebleu.metrics import BLEU

from seq2seq.data.batch import collate
from seq2seq.data.corpus import read_lines
from seq2seq.data.tokenizer import PAD_ID
from seq2seq.decoding.search import SearchOptions
from seq2seq.export.exporter import largest_difference
from seq2seq.export.graphs import stack_state
from seq2seq.translator import Translator

BATCH = 64  # sentences a batch, sorted by length


def largest_differences(torch_side: Translator, onnx_side: Translator, sources: list[str]) -> dict:
    """Encoder outputs and per-step log-probabilities (at real target positions) of both."""
    model, engine = torch_side.model, onnx_side.model
    ids = torch_side.encode(sources)
    greedy = torch_side.translate_nbest(sources, SearchOptions(beam_size=1))
    targets = [list(best[0].tokens) for best in greedy]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    worst = {"memory": 0.0, "keys": 0.0, "state": 0.0, "log_probs": 0.0, "attention": 0.0}
    for start in range(0, len(order), BATCH):
        rows = [i for i in order[start : start + BATCH] if ids[i]]
        batch = collate([(np.array(ids[i]), np.array(targets[i]), i) for i in rows])
        with torch.no_grad():
            encoded = model.encode(batch.src, batch.src_lengths)
            ours = model.initial_state(encoded, torch_side.weights)
        theirs = engine.encode(batch.src, batch.src_lengths)
        _worse(worst, "memory", ours.memory, theirs.memory)
        _worse(worst, "keys", ours.keys, theirs.keys)
        _worse(worst, "state", stack_state(ours), theirs.state)
        for step, previous in enumerate(batch.tgt_in.t()):  # (B,): BOS, then the greedy output
            previous = model.output_positions(previous).clamp(min=0)  # token ids; padding: 0
            with torch.no_grad():
                mine = model.step(ours, previous)
            other = engine.step(theirs, previous)
            real = batch.tgt_out[:, step] != PAD_ID  # rows whose output reaches this step
            _worse(worst, "log_probs", mine.log_probs[real], other.log_probs[real])
            _worse(worst, "attention", mine.attention[real], other.attention[real])
            ours, theirs = mine.state, other.state
    return {name: float(f"{value:.3g}") for name, value in worst.items()}


def _worse(worst: dict, name: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
    worst[name] = max(worst[name], largest_difference(ours, theirs))


def compare_translations(
    torch_side: Translator, onnx_side: Translator, sources: list[str], references: list[str]
) -> dict:
    """Greedy and beam 5: lines alike, BLEU of each, and the score gaps where lines differ."""
    report = {}
    for beam in (1, 5):
        options = SearchOptions(beam_size=beam, nbest=beam)
        ours = torch_side.translate_nbest(sources, options)
        theirs = onnx_side.translate_nbest(sources, options)
        gaps = []
        for mine, other in zip(ours, theirs, strict=True):
            if mine[0].text != other[0].text:
                scores = {t.text: t.score for t in mine}  # PyTorch's scores of its n-best
                gap = mine[0].score - scores.get(other[0].text, float("nan"))
                gaps.append(round(gap, 7))
        best = [[n[0].text for n in side] for side in (ours, theirs)]
        report[f"beam{beam}"] = {
            "identical_lines": sum(a == b for a, b in zip(*best, strict=True)),
            "bleu_torch": round(BLEU().corpus_score(best[0], [references]).score, 2),
            "bleu_onnxruntime": round(BLEU().corpus_score(best[1], [references]).score, 2),
            "differing_lines_torch_score_gap": gaps,
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--model", required=True, help="the checkpoint's export")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    directory = Path(os.environ["SEQ2SEQ_MULTI30K_DIR"])
    sources = list(read_lines(directory / "test_2016_flickr.de.gz"))
    references = list(read_lines(directory / "test_2016_flickr.en.gz"))
    torch_side = Translator.from_checkpoint(args.checkpoint, precision="fp32")
    onnx_side = Translator.from_export(args.model, "fp32", args.threads)
    report = {
        "sentences": len(sources),
        "largest_differences": largest_differences(torch_side, onnx_side, sources),
        **compare_translations(torch_side, onnx_side, sources, references),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
