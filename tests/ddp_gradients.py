"""Run as `python -m tests.ddp_gradients OUT.pt`: one update on two CPU ranks (DDP, gloo), each
rank with its own batch of the pairs in tests/test_accumulation.py, the two of very different
token counts; rank 0 saves the gradients the update steps with."""

from __future__ import annotations

import sys

import torch
from torch.utils.data import DataLoader

from seq2seq.data.batch import collate
from seq2seq.lit_module import TranslationModule
from seq2seq.schedules import Constant
from tests.test_accumulation import ARCHITECTURE, SHAPES, KeepGradients, one_update, pairs


class PerRankBatches(TranslationModule):
    """The module, reading batch `global_rank` of SHAPES."""

    def train_dataloader(self) -> DataLoader:
        """One batch: this rank's."""
        items = pairs(SHAPES[self.global_rank], self.global_rank)
        return DataLoader([collate(items)], batch_size=None)


def main(output: str) -> None:
    torch.manual_seed(0)
    module = PerRankBatches(architecture=ARCHITECTURE, scheduler=Constant())
    keep = KeepGradients()
    trainer = one_update(keep, strategy="ddp", devices=2, use_distributed_sampler=False)
    trainer.fit(module)
    if trainer.global_rank == 0:
        torch.save(keep.gradients, output)


if __name__ == "__main__":
    main(sys.argv[1])
