"""Which GEMM shapes training and search see, and how often a shape-keyed cache would hit.

oneDNN's bf16 GEMMs on the CPU build a primitive per new GEMM shape (milliseconds each) and keep
the last ONEDNN_PRIMITIVE_CACHE_CAPACITY of them (64, seq2seq/__init__.py); CUDA graphs need
shapes that recur too. This census records every GEMM call (aten mm, addmm, bmm, baddbmm:
operand shapes, strides and dtype, the key a primitive cache is looked up by) and replays the
sequence through least-recently-used caches of several capacities. It runs in fp32 on any
machine: the shapes do not depend on the precision or the hardware.

- Training: epochs of the real Multi30k batches (the training sampler and collation, budget
  2,400) through forward, the label-smoothed loss and backward of a model with the reference's
  structure and its widths divided by 16 (which shapes recur depends on the batch dimensions;
  the widths only scale them), with the output layer's rows padded to each `--rows-multiple`.
  The hit rate counts the epochs after the first (the first misses every shape once); padding
  is what the batches cost beyond their real tokens: source positions, target positions, output
  layer rows.
- Search (with --checkpoint): test_2016 translated twice under each search; the hit rate counts
  the second pass.

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/gemm_shapes.py \
        [--epochs 3] [--rows-multiple 1,64] [--checkpoint CKPT --beams 1,5]
"""

from __future__ import annotations

import argparse
import json
import os
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from train_throughput import architecture  # bench/ is this script's directory, first on sys.path

from seq2seq.data.corpus import read_lines
from seq2seq.data.tokenizer import PAD_ID
from seq2seq.datamodule import TranslationDataModule
from seq2seq.decoding.search import SearchOptions
from seq2seq.model.loss import label_smoothed_loss
from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig
from seq2seq.translator import Translator

GEMMS = (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm, torch.ops.aten.baddbmm)
CAPACITIES = (64, 256, 1024)
WIDTHS = ("embedding_size", "encoder_hidden_size", "decoder_hidden_size", "attention_size")


class GemmShapes(TorchDispatchMode):
    """Records the cache key of every GEMM run inside the `with` block, backward included."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[tuple] = []
        self.step_ends: list[int] = []  # len(keys) after each training step or search pass

    def end_step(self) -> None:
        """Mark the end of a training step (or of a search's pass over the test set)."""
        self.step_ends.append(len(self.keys))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in GEMMS:
            operands = tuple(
                (tuple(a.shape), a.stride(), a.dtype) for a in args if isinstance(a, torch.Tensor)
            )
            self.keys.append((func.overloadpacket.__name__, operands))
        return func(*args, **(kwargs or {}))


def hit_rate(keys: list[tuple], capacity: int, counted_from: int) -> float:
    """Share of `keys[counted_from:]` found in a least-recently-used cache of `capacity` keys
    that has seen every key before it."""
    cache: OrderedDict[tuple, None] = OrderedDict()
    hits = 0
    for position, key in enumerate(keys):
        if key in cache:
            cache.move_to_end(key)
            hits += position >= counted_from
        else:
            cache[key] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return hits / max(1, len(keys) - counted_from)


def summary(recorder: GemmShapes, counted_from: int) -> dict:
    """Calls and distinct shapes (in all, and per step on average) and the cache hit rates of
    the calls from `counted_from` on."""
    keys, ends = recorder.keys, recorder.step_ends
    per_step = [len(set(keys[start:end])) for start, end in zip([0, *ends], ends, strict=False)]
    return {
        "gemm_calls": len(keys) - counted_from,
        "distinct_shapes": len(set(keys)),
        "distinct_shapes_per_step": round(sum(per_step) / len(per_step), 1),
        "hit_rate": {str(c): round(hit_rate(keys, c, counted_from), 4) for c in CAPACITIES},
    }


def narrow_model() -> Seq2Seq:
    """The reference structure with every width divided by 16 (vocabularies kept)."""
    config = Seq2SeqConfig(**architecture(["configs/multi30k_de_en.yaml"]))
    return Seq2Seq(replace(config, **{w: getattr(config, w) // 16 for w in WIDTHS}))


def training_census(datamodule: TranslationDataModule, epochs: int, rows_multiple: int) -> dict:
    torch.manual_seed(0)
    model = narrow_model().train()
    loader = datamodule.train_dataloader()
    recorder = GemmShapes()
    padded = {"source": [0, 0], "target": [0, 0], "output_rows": [0, 0]}  # [padded, real]
    for epoch in range(epochs):
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            positions = batch.tgt_out != PAD_ID  # (B, T)
            with recorder:
                logits = model(batch.src, batch.src_lengths, batch.tgt_in, positions, rows_multiple)
                loss, _, tokens = label_smoothed_loss(logits, batch.tgt_out[positions], 0.1)
                loss.backward()
            recorder.end_step()
            model.zero_grad(set_to_none=True)
            for name, total, real in (
                ("source", batch.src.numel(), int(batch.src_lengths.sum())),
                ("target", batch.tgt_out.numel(), tokens),
                ("output_rows", logits.shape[0], tokens),
            ):
                padded[name][0] += total
                padded[name][1] += real
    overhead = {name: round(total / real - 1, 4) for name, (total, real) in padded.items()}
    first_epoch = recorder.step_ends[len(loader) - 1]  # every epoch has as many batches
    return {**summary(recorder, first_epoch), "padding": overhead}


def search_census(translator: Translator, sources: list[str], beam: int, tokens: int) -> dict:
    recorder = GemmShapes()
    with recorder:
        for _ in range(2):  # a pass over the test set is a "step" here
            translator.translate_nbest(sources, SearchOptions(beam_size=beam), tokens)
            recorder.end_step()
    return summary(recorder, recorder.step_ends[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows-multiple", default="1,64", help="comma-separated")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--checkpoint", help="also census search with this checkpoint")
    parser.add_argument("--beams", default="1,5")
    parser.add_argument("--batch-tokens", type=int, default=4000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    datamodule = TranslationDataModule(data_dir=args.data_dir)
    datamodule.prepare_data()
    datamodule.setup("fit")
    report = {
        "capacities": CAPACITIES,
        "training": {
            f"rows_multiple={m}": training_census(datamodule, args.epochs, int(m))
            for m in args.rows_multiple.split(",")
        },
    }
    if args.checkpoint:
        translator = Translator.from_checkpoint(args.checkpoint, "cpu", "fp32")
        directory = Path(os.environ["SEQ2SEQ_MULTI30K_DIR"])
        sources = list(read_lines(directory / "test_2016_flickr.de.gz"))
        report["search"] = {
            f"beam={b}": search_census(translator, sources, int(b), args.batch_tokens)
            for b in args.beams.split(",")
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
