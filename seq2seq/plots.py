"""PNG figures: attention heat maps, gradient norms against position, learning curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seq2seq.files import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    from matplotlib import pyplot

    return pyplot


def _save(figure, path: Path) -> None:
    """Write the figure as a PNG through `atomic_write`: never a half-written file."""
    try:
        with atomic_write(path, binary=True) as out:
            figure.savefig(out, format="png", dpi=100)
    finally:
        _pyplot().close(figure)


def plot_gradient_flow(curves: dict[str, np.ndarray], path: Path, xlabel: str, title: str) -> None:
    """Write a PNG of gradient norms (log scale) against position, one line per label."""
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=(7.0, 4.5))
    for label, norms in curves.items():
        axes.plot(np.arange(len(norms)), norms, label=label)
    axes.set_yscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("||dL/dh(t)||")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def plot_attention(
    weights: np.ndarray, src_pieces: list[str], tgt_pieces: list[str], path: Path
) -> None:
    """Write a PNG of (T, S) attention weights with subwords on the axes (targets down)."""
    pyplot = _pyplot()
    height, width = weights.shape
    figure, axes = pyplot.subplots(figsize=(1.0 + 0.35 * width, 1.0 + 0.35 * height))
    axes.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(width), src_pieces, rotation=90, fontsize=8)
    axes.set_yticks(range(height), tgt_pieces, fontsize=8)
    axes.xaxis.tick_top()
    figure.tight_layout()
    _save(figure, path)


def plot_learning_curves(curves: dict[str, dict[int, float]], path: Path) -> None:
    """Write a PNG of a run's curves against updates: training and validation loss, validation
    BLEU, learning rate (`curves`: name -> {update: value}; empty curves are left out)."""
    pyplot = _pyplot()
    panels = (
        ("loss", ("train/loss", "val/loss")),
        ("BLEU", ("val/bleu",)),
        ("learning rate", ("learning rate",)),
    )
    figure, axes = pyplot.subplots(1, len(panels), figsize=(12.0, 3.6))
    for axis, (label, names) in zip(axes, panels, strict=True):
        for name in names:
            points = sorted(curves.get(name, {}).items())
            if points:
                axis.plot(
                    *zip(*points, strict=True), marker="o" if "val" in name else "", label=name
                )
        axis.set_xlabel("updates")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        if len(names) > 1:
            axis.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)
