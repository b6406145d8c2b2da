"""Dynamic batching: requests waiting together share a forward; a full queue refuses; failures stay apart."""

import asyncio
import threading

import pytest
import torch

from freezetune.serve.batcher import Busy, Work, Worker
from freezetune.serve.trunk import Batch, classify

TEXTS = ["a great film", "awful", "the plot was fun and the story good", "ok"]


def rows_of(base, texts):
    return [(ids, None) for ids in base.tokenizer(texts)["input_ids"]]


async def submit_all(worker, works):
    for work in works:
        worker.submit(work)
    return await asyncio.gather(*(w.future for w in works), return_exceptions=True)


def work(loop, **fields):
    return Work(loop.create_future(), loop, **fields)


def test_concurrent_requests_share_batches_and_get_their_own_results(encoder_base):
    worker = Worker(encoder_base, max_batch=64, max_wait_s=0.2)
    rows = rows_of(encoder_base, TEXTS)

    async def main():
        loop = asyncio.get_running_loop()
        works = [work(loop, rows=[rows[i]], wants={"k1" if i % 2 else "k2": [0]}) for i in range(len(rows))]
        return await submit_all(worker, works)

    try:
        results = asyncio.run(main())
    finally:
        worker.stop()
    assert worker.batches == 1 and worker.rows == 4  # four requests, one forward
    for i, result in enumerate(results):
        name = "k1" if i % 2 else "k2"
        alone = classify(encoder_base, Batch.collate([rows[i]], {name: [0]}, 0))[name]
        assert torch.allclose(result[name], alone, atol=1e-5, rtol=0)  # float32 rounding of a wider batch only


def test_a_batch_never_exceeds_max_batch_rows(encoder_base):
    worker = Worker(encoder_base, max_batch=2, max_wait_s=0.2)
    rows = rows_of(encoder_base, TEXTS)

    async def main():
        loop = asyncio.get_running_loop()
        return await submit_all(worker, [work(loop, rows=[r], wants={"k1": [0]}) for r in rows])

    try:
        asyncio.run(main())
    finally:
        worker.stop()
    assert worker.batches == 2 and worker.rows == 4


def test_a_full_queue_refuses_at_once(encoder_base):
    release = threading.Event()
    worker = Worker(encoder_base, max_queue=1)

    async def main():
        loop = asyncio.get_running_loop()
        busy = work(loop, run=lambda: release.wait(10))
        worker.submit(busy)
        while worker.queue.qsize():  # the worker took it and is busy with it
            await asyncio.sleep(0.01)
        worker.submit(work(loop, run=lambda: "queued"))
        with pytest.raises(Busy):
            worker.submit(work(loop, run=lambda: "refused"))
        release.set()
        return await busy.future

    try:
        assert asyncio.run(main()) is True
    finally:
        worker.stop()


def test_one_failing_request_does_not_fail_the_others_of_its_batch(encoder_base):
    worker = Worker(encoder_base, max_wait_s=0.2)
    rows = rows_of(encoder_base, TEXTS)

    def boom():
        raise RuntimeError("this request's own failure")

    async def main():
        loop = asyncio.get_running_loop()
        good = [work(loop, rows=[rows[0]], wants={"k1": [0]}), work(loop, rows=[rows[1]], wants={"emb": [0]})]
        bad = work(loop, rows=[rows[2]], wants={"no-such-task": [0]})  # slipped past the checks: fails in the batch
        failing = work(loop, run=boom)
        return await submit_all(worker, [good[0], bad, good[1], failing, work(loop, run=lambda: "after")])

    try:
        first, bad, second, failing, after = asyncio.run(main())
    finally:
        worker.stop()
    assert isinstance(bad, KeyError) and isinstance(failing, RuntimeError)
    assert set(first) == {"k1"} and set(second) == {"emb"} and after == "after"
