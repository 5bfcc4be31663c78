"""Corpora, tokenizers, the binarized cache, batching and collation."""
