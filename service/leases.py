"""Leases in Redis: who may act on something right now.

A lease is ``SET key owner NX PX ttl_ms``: one owner at a time, gone on its own when the
owner dies. The owner renews it well before it lapses; renewal and release first compare
the stored owner, in one Lua script, so a process whose lease lapsed and was taken over
can neither extend nor delete the new owner's lease. Workers hold one per session while
they process its frames; gateways hold one per upload while they feed and collect it.

The scripts are plain text so the sync client (worker) and the asyncio client (gateway)
register the same ones.
"""

from __future__ import annotations

import os
import random
import socket

# KEYS[1] lease; ARGV[1] owner, ARGV[2] ttl in ms. 1 when renewed, 0 when not the owner.
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS[1] lease; ARGV[1] owner. 1 when deleted, 0 when not the owner (expired or taken over).
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS[1] lease, KEYS[2] hash; ARGV[1] owner, ARGV[2] hash TTL in s, ARGV[3..] field, value, ...
# Writes the hash only while the caller owns the lease, so an owner that lost its lease
# (stalled, or its object deleted) cannot overwrite what the new owner wrote.
WRITE_HASH_IF_OWNER_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""


def default_owner_id() -> str:
    """A lease owner name unique to this process: ``host-pid-random``."""
    return f"{socket.gethostname()}-{os.getpid()}-{random.randrange(16**6):06x}"


# KEYS[1] lease, KEYS[2] stream; ARGV[1] owner, ARGV[2] approximate MAXLEN, ARGV[3..] field, value, ...
# The entry id when added, false when the caller does not own the lease: an upload whose
# lease is gone (deleted, taken over, or lost with Redis's data) queues no more jobs, so a
# DELETE that removed the lease and then purged the stream leaves none behind.
XADD_IF_OWNER_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
"""
# KEYS[1] hash; ARGV[1] TTL in s, ARGV[2..] field, value, ... Writes the hash only if it does not exist.
CREATE_HASH_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""
