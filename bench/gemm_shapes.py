"""Which GEMM shapes training and search see, and how often a shape-keyed cache would hit.

Every GEMM call is recorded by the key a primitive cache is looked up by (shape_census.py: why
shapes matter, what a key holds) and the sequence replayed through least-recently-used caches of
several capacities. It runs in fp32 on any machine: the shapes do not depend on the precision or
the hardware.

- Training: epochs of the real Multi30k batches (the training sampler and collation, budget
  2,400) through forward, the label-smoothed loss and backward of a model with the reference's
  structure and its widths divided by 16 (which shapes recur depends on the batch dimensions;
  the widths only scale them), with the output layer's rows padded to each `--rows-multiple`.
  The hit rate counts the epochs after the first (the first misses every shape once); padding
  is what the batches cost beyond their real tokens: source positions, target positions, output
  layer rows.
- Search (with --checkpoint): val (1,014 sentences), then test_2016 (1,000) translated under
  each search (the checkpoint's test settings with the beam asked for), with its rows and
  source length as they come and padded to each `--row-buckets` ladder (counts per doubling);
  the hit rate counts test_2016's GEMMs, which new batches of unseen text make, and its GEMM
  GFLOP say what the padding costs.

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/gemm_shapes.py \
        [--epochs 3] [--rows-multiple 1,64] [--checkpoint CKPT --beams 1,5 --row-buckets 0,8]
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import torch
from decode_speed import beam_search  # bench/: first on sys.path
from shape_census import CAPACITIES, GemmShapes, summary
from train_throughput import architecture

from seq2seq.data.corpus import read_lines
from seq2seq.data.tokenizer import PAD_ID
from seq2seq.datamodule import TranslationDataModule
from seq2seq.decoding.search import SearchOptions
from seq2seq.model.loss import label_smoothed_loss
from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig
from seq2seq.translator import Translator

SEARCH_PASSES = ("val", "test_2016_flickr")  # hits counted over the last: text it has not seen
WIDTHS = ("embedding_size", "encoder_hidden_size", "decoder_hidden_size", "attention_size")


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
                translator, passes, beam_search(translator, int(b), int(r)), tokens
            )
            for b in args.beams.split(",")
            for r in args.row_buckets.split(",")
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
