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
- Search (with --checkpoint): val (1,014 sentences), then test_2016 (1,000) translated under
  each search, with its rows and source length as they come and padded to each `--row-buckets`
  ladder (counts per doubling); the hit rate counts test_2016's GEMMs, which new batches of
  unseen text make, and its GEMM GFLOP say what the padding costs.

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/gemm_shapes.py \
        [--epochs 3] [--rows-multiple 1,64] [--checkpoint CKPT --beams 1,5 --row-buckets 0,8]
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
SEARCH_PASSES = ("val", "test_2016_flickr")  # hits counted over the last: text it has not seen
WIDTHS = ("embedding_size", "encoder_hidden_size", "decoder_hidden_size", "attention_size")


class GemmShapes(TorchDispatchMode):
    """Records the cache key of every GEMM run inside the `with` block, backward included."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[tuple] = []
        self.flops: list[int] = []  # of each GEMM call: 2 x its multiply-adds
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
            product = func(*args, **(kwargs or {}))
            inner = [a for a in args if isinstance(a, torch.Tensor)][-2].shape[-1]  # K
            self.flops.append(2 * product.numel() * inner)
            return product
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


def search_census(
    translator: Translator, passes: list[list[str]], options: SearchOptions, tokens: int
) -> dict:
    """The GEMM shapes of translating each of `passes` in turn; hits counted over the last, and
    its GEMM GFLOP."""
    recorder = GemmShapes()
    with recorder:
        for sources in passes:  # a pass over a text is a "step" here
            translator.translate_nbest(sources, options, tokens)
            recorder.end_step()
    counted_from = recorder.step_ends[-2]
    flops = sum(recorder.flops[counted_from:])
    return {**summary(recorder, counted_from), "last_pass_gflop": round(flops / 1e9, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3, help="of training (0: search alone)")
    parser.add_argument("--rows-multiple", default="1,64", help="comma-separated")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--checkpoint", help="also census search with this checkpoint")
    parser.add_argument("--beams", default="1,5")
    parser.add_argument("--batch-tokens", type=int, default=4000)
    parser.add_argument(
        "--row-buckets", default="0,8", help="comma-separated: search's row ladders (0: off)"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    report: dict = {"capacities": CAPACITIES}
    if args.epochs > 0:
        datamodule = TranslationDataModule(data_dir=args.data_dir)
        datamodule.prepare_data()
        datamodule.setup("fit")
        report["training"] = {
            f"rows_multiple={m}": training_census(datamodule, args.epochs, int(m))
            for m in args.rows_multiple.split(",")
        }
    if args.checkpoint:
        translator = Translator.from_checkpoint(args.checkpoint, "cpu", "fp32")
        directory = Path(os.environ["SEQ2SEQ_MULTI30K_DIR"])
        passes = [list(read_lines(directory / f"{name}.de.gz")) for name in SEARCH_PASSES]
        tokens = args.batch_tokens
        report["search"] = {
            f"beam={b},row_buckets={r}": search_census(
                translator, passes, SearchOptions(beam_size=int(b), row_buckets=int(r)), tokens
            )
            for b in args.beams.split(",")
            for r in args.row_buckets.split(",")
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
