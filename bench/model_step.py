"""Forward + backward time per training batch for the recurrent-layer variants, on CPU.

Reference sizes (embedding 256, one bidirectional encoder layer of 256 per direction, decoder
512, attention 256, joint vocabulary 8,000) on real Multi30k de->en training batches. Variants:

    fused          encoder LSTM through torch's fused kernel (decoder: custom cell, no LN)
    custom         the same function through our own loop, layer norm and dropout off
    layer_norm     layer norm on, dropout off
    ln_dropout     layer norm on + variational dropout (embedding 0.1, in/out 0.3, recurrent 0.1)

Every variant sees the same batches in the same order; rounds alternate the variants so that
drift of the machine hits all alike. Prints one JSON object. Usage:

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/model_step.py [--batches 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from seq2seq.data.batch import Batch
from seq2seq.data.tokenizer import PAD_ID
from seq2seq.datamodule import TranslationDataModule
from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig

NO_DROPOUT = {"embedding_dropout": 0.0, "dropout": 0.0, "recurrent_dropout": 0.0}
VARIANTS = {
    "fused": {"layer_norm": False, "fused_encoder": True, **NO_DROPOUT},
    "custom": {"layer_norm": False, "fused_encoder": False, **NO_DROPOUT},
    "layer_norm": {"layer_norm": True, **NO_DROPOUT},
    "ln_dropout": {
        "layer_norm": True,
        "embedding_dropout": 0.1,
        "dropout": 0.3,
        "recurrent_dropout": 0.1,
    },
}


def training_batches(count: int, max_tokens: int, data_dir: str) -> list[Batch]:
    datamodule = TranslationDataModule(data_dir=data_dir, max_tokens=max_tokens)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batches = []
    for batch in datamodule.train_dataloader():
        batches.append(batch)
        if len(batches) == count:
            return batches
    return batches


def train_step(model: Seq2Seq, batch: Batch) -> float:
    """Seconds for one forward + backward + zero_grad."""
    start = time.perf_counter()
    logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    loss = F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD_ID)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=20, help="timed batches per variant")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds over the batches")
    parser.add_argument(
        "--max-tokens", type=int, default=2400, help="batch budget, padding included"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = training_batches(args.batches, args.max_tokens, args.data_dir)
    models = {}
    for name, options in VARIANTS.items():
        torch.manual_seed(0)
        models[name] = Seq2Seq(Seq2SeqConfig(**options)).train()
        for batch in batches[:3]:  # warm-up: allocator, thread pools
            train_step(models[name], batch)
    timings: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, model in models.items():
            timings[name].extend(train_step(model, batch) for batch in batches)
    tokens = statistics.mean(b.num_tgt_tokens for b in batches)
    fused = statistics.median(timings["fused"])
    results = {
        name: {
            "ms_per_batch": round(1000 * statistics.median(times), 1),
            "target_tokens_per_s": round(tokens / statistics.median(times)),
            "ratio_to_fused": round(statistics.median(times) / fused, 3),
        }
        for name, times in timings.items()
    }
    print(
        json.dumps(
            {
                "threads": args.threads,
                "batches": len(batches),
                "mean_target_tokens_per_batch": round(tokens),
                "mean_sentences_per_batch": round(statistics.mean(len(b) for b in batches), 1),
                "variants": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
