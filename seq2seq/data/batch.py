"""The Batch the model trains on, and the collate function that pads and shifts the target.

Shapes: B batch, S longest source, T longest target plus one (BOS or EOS).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from seq2seq.data.tokenizer import BOS_ID, EOS_ID, PAD_ID


@dataclass
class Batch:
    """A padded batch of pairs; `indices` are the pairs' positions in their dataset."""

    src: torch.Tensor  # (B, S) source ids, PAD_ID after each sentence
    src_lengths: torch.Tensor  # (B,) source lengths, at least 1
    tgt_in: torch.Tensor  # (B, T) BOS y_1 .. y_n, then PAD_ID
    tgt_out: torch.Tensor  # (B, T) y_1 .. y_n EOS, then PAD_ID
    indices: torch.Tensor  # (B,)
    references: list[str] | None = None  # evaluation data: the original target lines

    def to(self, device: torch.device | str) -> Batch:
        """The batch with its tensors on `device`."""
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=True)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)

    def __len__(self) -> int:
        return self.src.shape[0]

    def head(self, count: int) -> Batch:
        """The first `count` pairs, their padding trimmed to the longest of them."""
        src_length = int(self.src_lengths[:count].max())
        tgt_length = int((self.tgt_out[:count] != PAD_ID).sum(dim=1).max())
        return Batch(
            src=self.src[:count, :src_length],
            src_lengths=self.src_lengths[:count],
            tgt_in=self.tgt_in[:count, :tgt_length],
            tgt_out=self.tgt_out[:count, :tgt_length],
            indices=self.indices[:count],
            references=None if self.references is None else self.references[:count],
        )

    def source_ids(self) -> list[list[int]]:
        """Each source's ids without padding; one that `collate` filled with a lone EOS (an
        empty line: the encoder needs a token to start from) is empty again."""
        rows = [
            row[:length]
            for row, length in zip(self.src.tolist(), self.src_lengths.tolist(), strict=True)
        ]
        return [[] if row == [EOS_ID] else row for row in rows]

    @property
    def num_tgt_tokens(self) -> int:
        """Target tokens the loss sees: subwords plus EOS, no padding."""
        return int((self.tgt_out != PAD_ID).sum())


def collate(items: list[tuple]) -> Batch:
    """Pad (source ids, target ids, index[, reference]) items into a Batch, vectorized.

    An empty source becomes a single EOS so that every sequence has a state to start from.
    """
    src_seqs = [item[0] if len(item[0]) else np.array([EOS_ID]) for item in items]
    tgt_seqs = [item[1] for item in items]
    src, src_lengths = _pad(src_seqs, prefix=None, suffix=None)
    tgt_in, _ = _pad(tgt_seqs, prefix=BOS_ID, suffix=None)
    tgt_out, _ = _pad(tgt_seqs, prefix=None, suffix=EOS_ID)
    return Batch(
        src=torch.from_numpy(src),
        src_lengths=torch.from_numpy(src_lengths),
        tgt_in=torch.from_numpy(tgt_in),
        tgt_out=torch.from_numpy(tgt_out),
        indices=torch.tensor([item[2] for item in items], dtype=torch.int64),
        references=[item[3] for item in items] if len(items[0]) > 3 else None,
    )


def _pad(
    sequences: list[np.ndarray], prefix: int | None, suffix: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(B, L) int64 ids with an optional token before / after each sequence, PAD_ID after."""
    extra = (prefix is not None) + (suffix is not None)
    lengths = np.fromiter((len(s) + extra for s in sequences), dtype=np.int64, count=len(sequences))
    padded = np.full((len(sequences), int(lengths.max())), PAD_ID, dtype=np.int64)  # (B, L)
    first = 0
    if prefix is not None:
        padded[:, 0] = prefix
        first = 1
    body_lengths = lengths - extra
    positions = np.arange(padded.shape[1])  # (L,)
    body = (positions >= first) & (positions < first + body_lengths[:, None])  # (B, L)
    if body.any():
        padded[body] = np.concatenate(sequences)
    if suffix is not None:
        padded[np.arange(len(sequences)), first + body_lengths] = suffix
    return padded, lengths
