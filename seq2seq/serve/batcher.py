"""Batching across requests: the sentences of requests that arrive together are searched as one
batch.

A request becomes a `Job` (its sources as subword ids, its search options) in one queue. A free
worker takes the oldest job, waits up to `batch_timeout` seconds from that job's arrival for
more, then searches the oldest jobs that share its options, up to `max_batch_size` sentences
(the first job always goes, however large), in a thread, so the event loop keeps answering.
While every worker is busy, requests pile up and the next batch takes them all: the busier the
server, the larger its batches. `max_batch_size=1` searches every request alone (batching off).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from seq2seq.decoding.search import SearchOptions
from seq2seq.translator import Translation

# (sources, options, keep attention) -> options.nbest translations of each source
TranslateIds = Callable[[list[list[int]], SearchOptions, bool], list[list[Translation]]]


@dataclass(eq=False)
class Job:
    """One request's sources waiting for a worker; `result` is set when they are translated."""

    sources: list[list[int]]
    options: SearchOptions
    keep_attention: bool
    arrived: float
    result: asyncio.Future = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def shares_search(self, other: Job) -> bool:
        """Whether the two can be searched in one batch: the same options."""
        return (self.options, self.keep_attention) == (other.options, other.keep_attention)


class Batcher:
    """Searches queued jobs in batches on `workers` threads (start, translate..., stop).

    Args:
        translate_ids: searches one batch of sources (Translator.translate_ids).
        max_batch_size: most sentences in one batch (1: every request alone).
        batch_timeout: seconds a batch waits, from its first job's arrival, for more jobs.
        workers: batches searched at the same time.
    """

    def __init__(
        self, translate_ids: TranslateIds, max_batch_size: int, batch_timeout: float, workers: int
    ) -> None:
        self.translate_ids = translate_ids
        self.max_batch_size = max_batch_size
        self.batch_timeout = batch_timeout
        self.workers = workers
        self._pending: deque[Job] = deque()
        self._arrived = asyncio.Event()
        self._forming = asyncio.Lock()  # one worker at a time gathers a batch
        self._stopping = False
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="search")
        self._tasks: list[asyncio.Task] = []
        self.batches = 0  # searched so far
        self.sentences = 0  # in those batches

    @property
    def queued(self) -> int:
        """Requests waiting for a worker."""
        return len(self._pending)

    def start(self) -> None:
        """Start the workers (inside the running event loop)."""
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.workers)]

    async def stop(self) -> None:
        """Search what is queued, then end the workers."""
        self._stopping = True
        self._arrived.set()
        await asyncio.gather(*self._tasks)
        self._executor.shutdown()

    async def translate(
        self, sources: list[list[int]], options: SearchOptions, keep_attention: bool, timeout: float
    ) -> list[list[Translation]]:
        """The translations of `sources`, searched with other requests' sources when they
        arrive together; TimeoutError after `timeout` seconds (the job is then dropped)."""
        if not sources:
            return []
        job = Job(sources, options, keep_attention, asyncio.get_running_loop().time())
        self._pending.append(job)
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.result), timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ValueError):  # still queued: nobody searches it now
                self._pending.remove(job)
            job.result.cancel()
            raise

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            async with self._forming:
                batch = await self._next_batch()
            if not batch:
                return
            sources = [ids for job in batch for ids in job.sources]
            first = batch[0]
            self.batches += 1
            self.sentences += len(sources)
            try:
                found = await loop.run_in_executor(
                    self._executor, self.translate_ids, sources, first.options, first.keep_attention
                )
            except Exception as error:  # each request answers it (as a 500, or one line)
                for job in batch:
                    if not job.result.done():
                        job.result.set_exception(error)
                continue
            for job in batch:
                mine, found = found[: len(job.sources)], found[len(job.sources) :]
                if not job.result.done():  # a request that timed out is no longer waiting
                    job.result.set_result(mine)

    async def _next_batch(self) -> list[Job]:
        """The oldest job and those after it that share its search, once the batch is full or
        its time is up; empty when stopping with nothing queued."""
        while not self._pending:
            if self._stopping:
                return []
            self._arrived.clear()
            await self._arrived.wait()
        first = self._pending[0]
        loop = asyncio.get_running_loop()
        while not self._stopping and self._fellows(first)[1] < self.max_batch_size:
            left = first.arrived + self.batch_timeout - loop.time()
            if left <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        if first not in self._pending:  # it timed out while the batch gathered
            return await self._next_batch()
        batch, _ = self._fellows(first)
        for job in batch:
            self._pending.remove(job)
        return batch

    def _fellows(self, first: Job) -> tuple[list[Job], int]:
        """The queued jobs that would go with `first` (in arrival order, up to max_batch_size
        sentences, `first` always) and their number of sentences."""
        batch, size = [], 0
        for job in self._pending:
            if not job.shares_search(first):
                continue
            if batch and size + len(job.sources) > self.max_batch_size:
                break
            batch.append(job)
            size += len(job.sources)
        return batch, size
