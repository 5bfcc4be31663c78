"""The batcher: requests that arrive together are searched together, in order, never mixing
search options, within the batch size; a request past its time is dropped, a failure reaches
only its own batch."""

from __future__ import annotations

import asyncio
import threading

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")

from seq2seq.decoding.search import SearchOptions
from seq2seq.serve.batcher import Batcher
from seq2seq.translator import Translation

BEAM = SearchOptions()
GREEDY = SearchOptions(strategy="greedy", beam_size=1)


class Recorder:
    """A translate_ids that translates ids to their text and records every batch it gets."""

    def __init__(self, gate: threading.Event | None = None, fail_first: bool = False) -> None:
        self.batches: list[tuple[list[list[int]], SearchOptions]] = []
        self.gate = gate
        self.fail_first = fail_first

    def __call__(self, sources, options, keep_attention):
        self.batches.append((sources, options))
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail_first and len(self.batches) == 1:
            raise RuntimeError("the first batch fails")
        return [[Translation(" ".join(map(str, ids)), 0.0)] for ids in sources]


def run(recorder: Recorder, requests, max_batch_size=32, batch_timeout=0.05, timeout=5.0):
    """Send (sources, options) requests at once; their results (or exceptions) in order."""

    async def main():
        batcher = Batcher(recorder, max_batch_size, batch_timeout, workers=1)
        batcher.start()
        answers = await asyncio.gather(
            *(batcher.translate(sources, options, False, timeout) for sources, options in requests),
            return_exceptions=True,
        )
        await batcher.stop()
        return answers

    return asyncio.run(main())


def texts(answer) -> list[str]:
    return [nbest[0].text for nbest in answer]


def test_requests_that_arrive_together_are_one_batch_and_keep_their_order() -> None:
    recorder = Recorder()
    requests = [([[i], [i, i]], BEAM) for i in range(10)]
    answers = run(recorder, requests)
    assert [len(sources) for sources, _ in recorder.batches] == [20]
    assert [texts(a) for a in answers] == [[str(i), f"{i} {i}"] for i in range(10)]


def test_a_batch_size_of_one_searches_every_request_alone() -> None:
    recorder = Recorder()
    answers = run(recorder, [([[i]], BEAM) for i in range(5)], max_batch_size=1)
    assert [len(sources) for sources, _ in recorder.batches] == [1] * 5
    assert [texts(a) for a in answers] == [[str(i)] for i in range(5)]


def test_requests_with_other_search_options_are_never_mixed() -> None:
    recorder = Recorder()
    requests = [([[i]], BEAM if i % 2 else GREEDY) for i in range(6)]
    answers = run(recorder, requests)
    assert [(len(s), o.strategy) for s, o in recorder.batches] == [(3, "greedy"), (3, "beam")]
    assert [texts(a) for a in answers] == [[str(i)] for i in range(6)]


def test_batches_hold_at_most_max_batch_size_sentences_but_a_large_request_goes_whole() -> None:
    recorder = Recorder()
    requests = [([[1]] * 12, BEAM)] + [([[i]] * 3, BEAM) for i in range(5)]
    answers = run(recorder, requests, max_batch_size=8)
    assert [len(sources) for sources, _ in recorder.batches] == [12, 6, 6, 3]
    assert [len(a) for a in answers] == [12, 3, 3, 3, 3, 3]


def test_a_request_past_its_time_is_dropped_and_the_batcher_goes_on() -> None:
    gate = threading.Event()
    recorder = Recorder(gate)

    async def main():
        batcher = Batcher(recorder, 32, 0.0, workers=1)
        batcher.start()
        busy = asyncio.create_task(batcher.translate([[1]], BEAM, False, 5.0))
        await asyncio.sleep(0.05)  # the worker is now searching [[1]], stuck at the gate
        with pytest.raises(asyncio.TimeoutError):
            await batcher.translate([[2]], BEAM, False, 0.05)
        assert batcher.queued == 0  # dropped, never searched
        gate.set()
        first = await busy
        after = await batcher.translate([[3]], BEAM, False, 5.0)
        await batcher.stop()
        return first, after

    first, after = asyncio.run(main())
    assert (texts(first), texts(after)) == (["1"], ["3"])
    assert [sources for sources, _ in recorder.batches] == [[[1]], [[3]]]


def test_a_failing_batch_fails_its_own_requests_only() -> None:
    recorder = Recorder(fail_first=True)
    answers = run(recorder, [([[1]], BEAM), ([[2]], GREEDY)])
    assert isinstance(answers[0], RuntimeError)
    assert texts(answers[1]) == ["2"]


def test_stopping_searches_what_is_queued() -> None:
    recorder = Recorder()

    async def main():
        batcher = Batcher(recorder, 32, 10.0, workers=1)  # a batch would wait 10 s for more
        batcher.start()
        pending = asyncio.create_task(batcher.translate([[7]], BEAM, False, 20.0))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(batcher.stop(), 2.0)
        return await pending

    assert texts(asyncio.run(main())) == ["7"]


def test_two_workers_search_two_batches_at_the_same_time() -> None:
    both_searching = threading.Barrier(2, timeout=5)  # broken unless two searches overlap

    def translate_ids(sources, options, keep_attention):
        both_searching.wait()
        return [[Translation(str(ids[0]), 0.0)] for ids in sources]

    async def main():
        batcher = Batcher(translate_ids, 32, 0.0, workers=2)
        batcher.start()
        answers = await asyncio.gather(
            batcher.translate([[1]], BEAM, False, 10.0),
            batcher.translate([[2]], GREEDY, False, 10.0),
        )
        await batcher.stop()
        return answers

    assert [texts(a) for a in asyncio.run(main())] == [["1"], ["2"]]
