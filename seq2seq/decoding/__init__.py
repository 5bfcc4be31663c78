"""Search over the model's step API: greedy (the beam-1 fast path) and beam search."""
