"""The worker's ordering rules against real Redis, driven one batch at a time."""

from __future__ import annotations

import json

import pytest
import redis

from posestream.service.messages import JOBS_GROUP, FrameJob, FrameResult, RedisKeys
from posestream.service.pipeline import build_pipeline
from posestream.service.worker.worker import Worker
from tests.service.clips import jpeg, shapes_frame


def _job(seq: int, image: bytes | None = None, session: str = "s") -> dict:
    return FrameJob(
        session=session, seq=seq, frame_index=seq, timestamp=seq / 25, width=320, height=240,
        image=image if image is not None else jpeg(shapes_frame(seq)),
    ).to_fields()  # fmt: skip


def _results(client: redis.Redis, keys: RedisKeys, session: str = "s") -> list[FrameResult]:
    return [FrameResult.from_fields(f) for _, f in client.xrange(keys.results(session))]


def _drain(worker: Worker, rounds: int = 10) -> None:
    for _ in range(rounds):
        worker.run_once()


def test_duplicates_are_acked_without_republishing_and_early_frames_wait(make_settings, redis_client) -> None:
    settings = make_settings(batch_size=8, batch_wait_ms=0)
    keys = RedisKeys(settings.redis_prefix)
    worker = Worker(settings, build_pipeline("blobs", "iou"), worker_id="w1")
    for seq in (0, 1, 2):
        redis_client.xadd(keys.jobs, _job(seq))
    worker.run_once()
    assert [r.seq for r in _results(redis_client, keys)] == [0, 1, 2]

    redis_client.xadd(keys.jobs, _job(1))  # redelivered duplicate
    redis_client.xadd(keys.jobs, _job(4))  # ahead of 3: must wait, not be processed or lost
    _drain(worker, 3)
    assert [r.seq for r in _results(redis_client, keys)] == [0, 1, 2]
    assert redis_client.xlen(keys.jobs) == 1  # seq 4 re-queued, the duplicate gone

    redis_client.xadd(keys.jobs, _job(3))
    _drain(worker, 5)
    assert [r.seq for r in _results(redis_client, keys)] == [0, 1, 2, 3, 4]
    assert redis_client.xlen(keys.jobs) == 0
    assert redis_client.xpending(keys.jobs, JOBS_GROUP)["pending"] == 0
    state, _ = worker.store.load("s")
    assert state.frame_index == 5  # the cursor: last processed seq + 1


def test_an_undecodable_frame_yields_an_error_result_and_the_session_goes_on(
    make_settings, redis_client
) -> None:
    settings = make_settings(batch_size=8, batch_wait_ms=0)
    keys = RedisKeys(settings.redis_prefix)
    worker = Worker(settings, build_pipeline("blobs", "iou"), worker_id="w1")
    redis_client.xadd(keys.jobs, _job(0))
    redis_client.xadd(keys.jobs, _job(1, image=b"\xff\xd8\xffgarbage"))
    redis_client.xadd(keys.jobs, _job(2))
    _drain(worker, 2)
    results = _results(redis_client, keys)
    assert [r.seq for r in results] == [0, 1, 2]
    assert results[1].error and not results[0].error and not results[2].error
    assert json.loads(results[1].frame)["poses"] == []
    ids = [sorted(p["track_id"] for p in json.loads(r.frame)["poses"]) for r in (results[0], results[2])]
    assert ids[0] == ids[1] == [0, 1, 2]  # tracks survive the failed frame


def test_a_session_leased_by_another_worker_is_requeued_not_processed(make_settings, redis_client) -> None:
    settings = make_settings(batch_size=8, batch_wait_ms=0)
    keys = RedisKeys(settings.redis_prefix)
    worker = Worker(settings, build_pipeline("blobs", "iou"), worker_id="w1")
    redis_client.set(keys.lease("s"), "someone-else", px=60_000)
    redis_client.xadd(keys.jobs, _job(0))
    _drain(worker, 2)
    assert _results(redis_client, keys) == [] and redis_client.xlen(keys.jobs) == 1
    redis_client.delete(keys.lease("s"))
    _drain(worker, 2)
    assert [r.seq for r in _results(redis_client, keys)] == [0]


def test_a_worker_recreates_its_group_when_the_jobs_stream_vanishes(make_settings, redis_client) -> None:
    # What a Redis restart without persistence does to a running worker: NOGROUP on its next read.
    import threading
    import time

    settings = make_settings(batch_size=8, batch_wait_ms=0)
    keys = RedisKeys(settings.redis_prefix)
    worker = Worker(settings, build_pipeline("blobs", "iou"), worker_id="w1")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        redis_client.xadd(keys.jobs, _job(0, session="before"))
        deadline = time.monotonic() + 10
        while redis_client.xlen(keys.results("before")) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        redis_client.delete(keys.jobs)  # the stream and its consumer group are gone
        time.sleep(0.7)  # the worker's blocking read returns and meets NOGROUP
        for seq in range(3):
            redis_client.xadd(keys.jobs, _job(seq, session="after"))
        while redis_client.xlen(keys.results("after")) < 3:
            assert thread.is_alive(), "the worker died on NOGROUP"
            assert time.monotonic() < deadline + 10, "the worker stopped processing"
            time.sleep(0.02)
        assert worker.metrics.errors.labels("nogroup")._value.get() >= 1
    finally:
        worker.stop()
        thread.join(timeout=10)


def test_a_job_purged_while_a_worker_holds_it_is_not_requeued(make_settings, redis_client) -> None:
    """DELETE purges a video's jobs (XACK + XDEL) while a worker may hold one it read: the
    worker's re-queue (session leased elsewhere, or waiting for an earlier seq) must not bring
    it back, and must still move a job that was not purged to the end of the stream."""
    settings = make_settings(batch_size=8, batch_wait_ms=0)
    keys = RedisKeys(settings.redis_prefix)
    worker = Worker(settings, build_pipeline("blobs", "iou"), worker_id="w1")
    redis_client.xadd(keys.jobs, _job(0, session="purged"))
    redis_client.xadd(keys.jobs, _job(0, session="kept"))
    held = worker.jobs.read_batch()
    assert sorted(e.job.session for e in held) == ["kept", "purged"]
    purged = [e for e in held if e.job.session == "purged"]
    redis_client.xack(keys.jobs, JOBS_GROUP, purged[0].entry_id)
    redis_client.xdel(keys.jobs, purged[0].entry_id)
    worker.jobs.requeue(held, "session_leased")
    left = [FrameJob.from_fields(f) for _, f in redis_client.xrange(keys.jobs)]
    assert [j.session for j in left] == ["kept"]
    assert redis_client.xpending(keys.jobs, JOBS_GROUP)["pending"] == 0


def test_a_lost_seq_is_reported_with_its_own_frame_index(make_settings, redis_client) -> None:
    """An upload numbers frames like seqs: the frame_lost result of seq 0 must say frame 0 (its
    line in poses.jsonl), not the index of the first frame that waited for it."""
    import time

    settings = make_settings(batch_size=8, batch_wait_ms=0, seq_gap_timeout_ms=100)
    keys = RedisKeys(settings.redis_prefix)
    worker = Worker(settings, build_pipeline("blobs", "iou"), worker_id="w1")
    redis_client.xadd(keys.jobs, _job(2))  # seqs 0 and 1 never reach the stream (lost by Redis)
    redis_client.xadd(keys.jobs, _job(3))
    deadline = time.monotonic() + 10
    while len(_results(redis_client, keys)) < 4 and time.monotonic() < deadline:
        worker.run_once()
        time.sleep(0.05)
    results = sorted(_results(redis_client, keys), key=lambda r: r.seq)
    assert [r.seq for r in results] == [0, 1, 2, 3]
    assert [bool(r.error) for r in results] == [True, True, False, False]
    assert [json.loads(r.frame)["frame_index"] for r in results] == [0, 1, 2, 3]
    assert [json.loads(r.frame)["timestamp"] for r in results] == pytest.approx([0.0, 1 / 25, 2 / 25, 3 / 25])


def test_a_live_frame_past_its_budget_is_answered_expired_and_the_session_goes_on(
    make_settings, redis_client
) -> None:
    """Seq 1's budget ran out in the queue: it comes back expired (not run, no poses), in its place."""
    import time

    from posestream.service.gateway.relay import error_code

    settings = make_settings(batch_size=8, batch_wait_ms=0)
    keys = RedisKeys(settings.redis_prefix)
    worker = Worker(settings, build_pipeline("blobs", "iou"), worker_id="w1")
    redis_client.xadd(keys.jobs, {**_job(0), "max_age_ms": "60000"})
    redis_client.xadd(keys.jobs, {**_job(1), "max_age_ms": "1"})
    redis_client.xadd(keys.jobs, _job(2))  # no budget (an ordered frame)
    time.sleep(0.01)
    _drain(worker, 2)
    results = _results(redis_client, keys)
    assert [r.seq for r in results] == [0, 1, 2]
    assert [error_code(r.error) if r.error else "" for r in results] == ["", "frame_expired", ""]
    assert "1 ms" in results[1].error and json.loads(results[1].frame)["poses"] == []
    ids = [sorted(p["track_id"] for p in json.loads(r.frame)["poses"]) for r in (results[0], results[2])]
    assert ids[0] == ids[1] == [0, 1, 2]  # tracks survive the expired frame
    assert worker.metrics.expired._value.get() == 1
    assert worker.metrics.errors.labels("frame")._value.get() == 0  # expiring is not an error


def test_a_requeued_live_frame_keeps_the_deadline_of_its_first_queueing(make_settings, redis_client) -> None:
    from posestream.service.worker.jobs import EXPIRES_MS

    settings = make_settings(batch_size=8, batch_wait_ms=0)
    keys = RedisKeys(settings.redis_prefix)
    worker = Worker(settings, build_pipeline("blobs", "iou"), worker_id="w1")
    first = redis_client.xadd(keys.jobs, {**_job(0), "max_age_ms": "5000"})
    [entry] = worker.jobs.read_batch()
    assert entry.deadline_ms == int(first.split(b"-")[0]) + 5000
    worker.jobs.requeue([entry], "session_leased")
    [(again_id, fields)] = redis_client.xrange(keys.jobs)
    assert again_id != first and int(fields[EXPIRES_MS]) == entry.deadline_ms
    [again] = worker.jobs.read_batch()
    assert again.deadline_ms == entry.deadline_ms
