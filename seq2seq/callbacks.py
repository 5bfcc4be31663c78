"""Lightning callbacks: the prediction writer that merges every rank's translations in order."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter


class PredictionWriter(BasePredictionWriter):
    """Writes `train.py predict` output: one translation per line, in input order.

    Every rank writes its own share (`<output>.rank<r>`, JSON lines of index and text); after a
    barrier rank zero merges the shares by index into `<output>` through a temporary file and
    removes them, so the result is complete or absent, never half-written.

    Args:
        output: path of the merged translations.
    """

    def __init__(self, output: str) -> None:
        super().__init__(write_interval="epoch")
        self.output = Path(output)

    def write_on_epoch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        predictions: list[Any],
        batch_indices: list[Any],
    ) -> None:
        share = self.output.with_name(f"{self.output.name}.rank{trainer.global_rank}")
        share.parent.mkdir(parents=True, exist_ok=True)
        with share.open("w", encoding="utf-8") as out:
            for batch in predictions:
                for index, text in batch:
                    out.write(json.dumps([index, text], ensure_ascii=False) + "\n")
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            self._merge(trainer.world_size)
        trainer.strategy.barrier()

    def _merge(self, world_size: int) -> None:
        translations: dict[int, str] = {}
        shares = [self.output.with_name(f"{self.output.name}.rank{r}") for r in range(world_size)]
        for share in shares:
            for line in share.read_text(encoding="utf-8").splitlines():
                index, text = json.loads(line)
                translations[index] = text
        temporary = self.output.with_name(f".{self.output.name}.{os.getpid()}")
        temporary.write_text(
            "".join(translations[i] + "\n" for i in range(len(translations))), encoding="utf-8"
        )
        temporary.replace(self.output)
        for share in shares:
            share.unlink()
