"""Export to ONNX and search exported models in ONNX Runtime (the `export` extra).

An export directory holds:

    encoder.onnx          src (B, S), src_lengths (B,) -> memory, keys, padding_bias, state
    decoder_step.onnx     tokens (R,), state, memory, keys, padding_bias
                          -> log_probs (R, V), next_state, attention (R, S)
    joint.model           the SentencePiece model (or src.model and tgt.model)
    seq2seq_export.json   special ids, sizes, search settings, opset, the graphs' SHA-256

graphs.py defines the two graphs, exporter.py writes and checks them, manifest.py reads and
writes the JSON, engine.py searches an export through ONNX Runtime.
"""
