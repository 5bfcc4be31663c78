"""Plain torch.nn modules: cells, recurrent layers, attention, encoder, decoder, Seq2Seq."""
