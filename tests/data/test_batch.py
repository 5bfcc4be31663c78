import numpy as np
import torch

from seq2seq.data.batch import collate
from seq2seq.data.tokenizer import BOS_ID, EOS_ID, PAD_ID


def test_collate_pads_and_shifts_the_target() -> None:
    items = [
        (np.array([10, 11, 12], dtype=np.uint16), np.array([20, 21], dtype=np.uint16), 5),
        (np.array([13], dtype=np.uint16), np.array([22, 23, 24], dtype=np.uint16), 9),
    ]
    batch = collate(items)
    assert batch.src.tolist() == [[10, 11, 12], [13, PAD_ID, PAD_ID]]
    assert batch.src_lengths.tolist() == [3, 1]
    assert batch.tgt_in.tolist() == [[BOS_ID, 20, 21, PAD_ID], [BOS_ID, 22, 23, 24]]
    assert batch.tgt_out.tolist() == [[20, 21, EOS_ID, PAD_ID], [22, 23, 24, EOS_ID]]
    assert batch.indices.tolist() == [5, 9]
    assert batch.src.dtype == batch.tgt_in.dtype == torch.int64
    assert batch.num_tgt_tokens == 7
    assert len(batch) == 2


def test_empty_sentences_still_give_a_source_and_an_eos() -> None:
    empty = np.array([], dtype=np.uint16)
    batch = collate([(empty, empty, 0)])
    assert batch.src.tolist() == [[EOS_ID]]
    assert batch.src_lengths.tolist() == [1]
    assert batch.tgt_in.tolist() == [[BOS_ID]]
    assert batch.tgt_out.tolist() == [[EOS_ID]]


def test_references_travel_with_evaluation_batches() -> None:
    ids = np.array([7], dtype=np.uint16)
    batch = collate([(ids, ids, 0, "A dog."), (ids, ids, 1, "Two cats.")])
    assert batch.references == ["A dog.", "Two cats."]
    assert collate([(ids, ids, 0)]).references is None
    assert batch.to("cpu").references == ["A dog.", "Two cats."]
