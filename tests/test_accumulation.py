"""Gradient accumulation and DDP are exact: an update from accumulated batches, or from two ranks'
batches, is the update from the one batch that holds them all (the loss is a mean over the
target tokens of the whole group, not a mean of the batches' means)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from seq2seq.data.batch import collate
from seq2seq.lit_module import TranslationModule
from seq2seq.model.seq2seq import Seq2SeqConfig
from seq2seq.schedules import Constant
from tests.models import TINY_SIZES

ARCHITECTURE = Seq2SeqConfig(
    src_vocab_size=40,
    tgt_vocab_size=40,
    dropout=0.0,
    recurrent_dropout=0.0,
    embedding_dropout=0.0,
    **TINY_SIZES,
)


# batches of very different token counts: a mean of their means would weigh them alike
SHAPES = [[(3, 2), (4, 3), (2, 2)], [(9, 14), (12, 11)], [(5, 6)]]
ROOT = Path(__file__).resolve().parents[1]


class KeepGradients(L.Callback):
    """The gradients the first update steps with (what clipping and the optimizer see)."""

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        if not hasattr(self, "gradients"):
            self.gradients = {n: p.grad.clone() for n, p in module.named_parameters()}


def pairs(lengths: list[tuple[int, int]], seed: int) -> list[tuple]:
    generator = np.random.default_rng(seed)
    return [
        (generator.integers(4, 40, s), generator.integers(4, 40, t), index)
        for index, (s, t) in enumerate(lengths)
    ]


def one_update(keep: KeepGradients, **trainer_options: object) -> L.Trainer:
    """A CPU trainer for one update that keeps its gradients in `keep`, nothing else."""
    return L.Trainer(
        max_steps=1,
        accelerator="cpu",
        callbacks=[keep],
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
        **trainer_options,
    )


def first_update_gradients(batches: list, accumulate: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    module = TranslationModule(architecture=ARCHITECTURE, scheduler=Constant())
    keep = KeepGradients()
    trainer = one_update(keep, accumulate_grad_batches=accumulate)
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    return keep.gradients


@pytest.mark.parametrize("accumulate", [2, 3])
def test_accumulated_batches_give_the_update_of_their_union(accumulate: int) -> None:
    groups = [pairs(lengths, seed) for seed, lengths in enumerate(SHAPES[:accumulate])]
    micro = first_update_gradients([collate(items) for items in groups], accumulate)
    assert_same(micro, union_gradients(groups))


def union_gradients(groups: list[list[tuple]]) -> dict[str, torch.Tensor]:
    """The first update's gradients from one batch holding every group's pairs."""
    return first_update_gradients([collate([item for items in groups for item in items])], 1)


def assert_same(gradients: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert gradients.keys() == expected.keys()
    for name, gradient in expected.items():
        torch.testing.assert_close(gradients[name], gradient, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_two_ranks_give_the_update_of_their_union(tmp_path: Path) -> None:
    output = tmp_path / "gradients.pt"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.ddp_gradients", str(output)]
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    groups = [pairs(lengths, seed) for seed, lengths in enumerate(SHAPES[:2])]
    assert_same(torch.load(output), union_gradients(groups))
