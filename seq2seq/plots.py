"""Attention heat maps: which source subwords each output subword was translated from."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_attention(
    weights: np.ndarray, src_pieces: list[str], tgt_pieces: list[str], path: Path
) -> None:
    """Write a PNG of (T, S) attention weights with subwords on the axes (targets down)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    from matplotlib import pyplot

    height, width = weights.shape
    figure, axes = pyplot.subplots(figsize=(1.0 + 0.35 * width, 1.0 + 0.35 * height))
    axes.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(width), src_pieces, rotation=90, fontsize=8)
    axes.set_yticks(range(height), tgt_pieces, fontsize=8)
    axes.xaxis.tick_top()
    figure.tight_layout()
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=100)
    pyplot.close(figure)
    temporary.replace(path)
