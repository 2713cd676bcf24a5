"""State stores: in-memory and real Redis (version-checked saves, TTL, unreachable server)."""

import threading

import pytest

from posestream.tracker.config import TrackerConfig
from posestream.tracker.state import StateFormatError, TrackerState
from posestream.tracker.step import step
from posestream.tracker.stores import MemoryStore, RedisStore, StaleStateError, StoreUnavailableError
from posestream.tracker.synthetic import SimPerson, simulate


def some_state(n_frames=5):
    state = TrackerState.initial()
    for frame in simulate([SimPerson(0, start=(300, 300)), SimPerson(1, start=(800, 300))], n_frames):
        state, _ = step(state, frame.detections, TrackerConfig())
    return state


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_memory_store_round_trip_versions_and_stale_save():
    store = MemoryStore()
    assert store.load("s1") == (None, 0)
    state = some_state()
    assert store.save("s1", state, 0) == 1
    loaded, version = store.load("s1")
    assert version == 1 and loaded == state
    assert store.save("s1", some_state(6), 1) == 2
    with pytest.raises(StaleStateError, match="version 2, not 1"):
        store.save("s1", state, 1)
    assert store.load("s1")[0] == some_state(6)
    store.delete("s1")
    assert store.load("s1") == (None, 0)
    store.delete("never-saved")


def test_memory_store_ttl():
    clock = FakeClock()
    store = MemoryStore(ttl_s=10, clock=clock)
    store.save("s", some_state(), 0)
    clock.now = 9.9
    assert store.load("s")[1] == 1
    store.save("s", some_state(), 1)  # a save refreshes the TTL
    clock.now = 19.8
    assert store.load("s")[1] == 2
    clock.now = 30.0
    assert store.load("s") == (None, 0) and len(store) == 0


def test_store_arguments_are_validated():
    with pytest.raises(ValueError, match="ttl_s"):
        MemoryStore(ttl_s=0)
    with pytest.raises(ValueError, match="session id"):
        MemoryStore().load("")
    with pytest.raises(ValueError, match="expected_version"):
        MemoryStore().save("s", some_state(), -1)


def test_redis_round_trip_and_ttl(redis_store):
    state = some_state()
    assert redis_store.load("cam-1") == (None, 0)
    assert redis_store.save("cam-1", state, 0) == 1
    loaded, version = redis_store.load("cam-1")
    assert version == 1 and loaded.to_bytes() == state.to_bytes()
    client = redis_store._client
    ttl_ms = client.pttl(redis_store.key("cam-1"))
    assert 0 < ttl_ms <= 60_000
    # The stored state drives the next frame exactly like the in-process one.
    frame = next(simulate([SimPerson(0, start=(300, 300)), SimPerson(1, start=(800, 300))], 6)).detections
    assert step(loaded, frame, TrackerConfig())[0] == step(state, frame, TrackerConfig())[0]
    redis_store.delete("cam-1")
    assert redis_store.load("cam-1") == (None, 0)


def test_redis_rejects_a_stale_save(redis_store):
    redis_store.save("cam-2", some_state(3), 0)
    _, v_a = redis_store.load("cam-2")  # worker A
    _, v_b = redis_store.load("cam-2")  # worker B, same frame
    newer = some_state(4)
    assert redis_store.save("cam-2", newer, v_a) == 2
    with pytest.raises(StaleStateError) as err:
        redis_store.save("cam-2", some_state(5), v_b)
    assert (err.value.expected, err.value.current) == (1, 2)
    assert redis_store.load("cam-2") == (newer, 2)


def test_redis_compare_and_set_is_atomic_under_concurrency(redis_store):
    state = some_state(2)
    results = []

    def worker():
        try:
            results.append(redis_store.save("cam-3", state, 0))
        except StaleStateError:
            results.append("stale")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=str) == [1] + ["stale"] * 7


def test_redis_corrupt_state_is_a_clear_error(redis_store):
    redis_store._client.hset(redis_store.key("cam-4"), mapping={"v": 3, "s": b"not msgpack \xc1"})
    with pytest.raises(StateFormatError, match="cam-4"):
        redis_store.load("cam-4")


def test_unreachable_redis_raises_store_unavailable():
    store = RedisStore("redis://:secret@127.0.0.1:1/0", timeout_s=0.5)
    for call in (
        lambda: store.load("s"),
        lambda: store.save("s", TrackerState.initial(), 0),
        lambda: store.delete("s"),
    ):
        with pytest.raises(
            StoreUnavailableError, match="cannot reach Redis at redis://\\*\\*\\*@127.0.0.1:1"
        ) as err:
            call()
        assert "secret" not in str(err.value)


def test_redis_client_must_return_bytes():
    redis = pytest.importorskip("redis")
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisStore(redis.Redis(decode_responses=True))
