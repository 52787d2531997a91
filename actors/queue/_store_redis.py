"""The queue's Redis twin: every operation one Lua script on one queue's keys (one slot).

Layout: see :mod:`._keys`. A job is a hash: ``r`` (msgpack of the immutable
part) and mutable string fields (``state``, ``attempt``, ``token``, ``run_at``,
``started_at``, ``finished_at``, ``lease_until``, ``progress``, ``pct``,
``result``, ``error``) plus what the scripts need from the options (``prio``,
``seq``, ``attempts``, ``dk``, ``uid``, ``ttl``, ``rc_n``/``rc_age``,
``rf_n``/``rf_age``). Job hashes are named from ``ARGV[1]`` inside the scripts
(same slot as the declared ``KEYS``).

Round trips: ``add`` of N jobs, ``claim`` of N, ``renew`` of N and a
``finish`` batch are one ``EVALSHA`` per queue of the batch. One blocking
read: :meth:`RedisJobStore.wait_events` (the outbox's ``XREAD BLOCK``) has a
dedicated connection of its own; everything else is a script or a single
command (size the link's pool for the callers only).

The outbox is one stream per queue, capped at ``outbox_size`` per queue (the
oldest are dropped and counted in the ``dropped`` field of ``meta``). One
store in the cluster drains a queue's outbox: the holder of its lease
(``outbox:owner``, this store's random token, ``PX outbox_lease_seconds``),
which :meth:`RedisJobStore.events` takes when it is free and renews on each
pass, in the script that reads the stream; so events reach the hub in stream
order, normally once. A drainer that lost its lease (it stalled past it)
still delivers the batch it read before noticing: at a handover an event may
be delivered twice, by at most one batch. The lease is released on a clean
shutdown; a dead drainer's expires. Redis restarted empty just loses the
lease, and the next pass takes it again. The
rate limit is a counter per queue with ``PEXPIRE`` (Redis time, so
cluster-wide); with ``fanout``, ``add`` publishes the queue name on
``queue.wake.<q>``.

Data loss: :meth:`RedisJobStore.open` writes (or adopts) one epoch marker per
queue; afterwards :meth:`RedisJobStore.check` (call it periodically, and
after Redis came back) raises :class:`StoreLost` when a marker is gone or
different, and rewrites it so the next call passes.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import msgspec

from ._keys import QueueKeys
from ._model import Job, JobError, JobEvent, JobOptions, JobState, NewJob, Progress
from ._store import (
    USER_SCAN_LIMIT,
    Added,
    CancelOutcome,
    Claim,
    Finish,
    JobPage,
    OutboxEntry,
    QueueCounts,
    StoreLost,
)
from ._store_memory import LEASE_EXPIRED

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from runtime import RedisFanout, RedisLink

__all__ = ["RedisJobStore"]

logger = logging.getLogger(__name__)


class _Record(msgspec.Struct, frozen=True, array_like=True):
    id: str
    queue: str
    type: str
    payload: bytes
    options: JobOptions
    user_id: str | None
    created_at: float
    repeat_key: str | None


_COMMON: Final = """
local P, OUTBOX_SIZE = ARGV[1], tonumber(ARGV[2])
-- KEYS[1] is the queue's meta key; its other keys share its prefix (and its hash tag: one slot)
local B = string.sub(KEYS[1], 1, -5)
local K = {meta = KEYS[1], waiting = B .. 'waiting', delayed = B .. 'delayed',
  active = B .. 'active', completed = B .. 'completed', failed = B .. 'failed',
  cancelled = B .. 'cancelled', dedup = B .. 'dedup', cancel = B .. 'cancel',
  expires = B .. 'expires', outbox = B .. 'outbox', rate = B .. 'rate'}

local function emit(data)
  if data == nil or data == '' then return end
  if OUTBOX_SIZE <= 0 then redis.call('HINCRBY', K.meta, 'dropped', 1) return end
  local len = redis.call('XLEN', K.outbox)
  if len >= OUTBOX_SIZE then
    redis.call('XTRIM', K.outbox, 'MAXLEN', OUTBOX_SIZE - 1)
    redis.call('HINCRBY', K.meta, 'dropped', len - OUTBOX_SIZE + 1)
  end
  redis.call('XADD', K.outbox, '*', 'e', data)
end

local function wscore(h)
  local f = redis.call('HMGET', h, 'prio', 'seq')
  return (1000 - tonumber(f[1])) * 1099511627776 + tonumber(f[2])
end

local function drop_dedup(h, id)
  local dk = redis.call('HGET', h, 'dk')
  if dk and redis.call('HGET', K.dedup, dk) == id then redis.call('HDEL', K.dedup, dk) end
end

local function remove_job(id)
  local h = P .. id
  for _, set in ipairs({K.waiting, K.delayed, K.active, K.completed, K.failed,
      K.cancelled, K.expires}) do
    redis.call('ZREM', set, id)
  end
  redis.call('SREM', K.cancel, id)
  drop_dedup(h, id)
  redis.call('DEL', h)
end

-- a finished job leaves its state's set: it is in no other state's set, nor in the cancel
-- set, and end_job already dropped its dedup key (so three commands, not remove_job's twelve)
local function remove_finished(set, id)
  redis.call('ZREM', set, id)
  redis.call('ZREM', K.expires, id)
  redis.call('DEL', P .. id)
end

local function trim(set, n, age, now)
  if age then
    local cutoff = tonumber(now) - tonumber(age)
    local old = redis.call('ZRANGEBYSCORE', set, '-inf', '(' .. string.format('%.17g', cutoff))
    for _, id in ipairs(old) do remove_finished(set, id) end
  end
  if n then
    local count, card = tonumber(n), redis.call('ZCARD', set)
    if card > count then
      for _, id in ipairs(redis.call('ZRANGE', set, 0, card - count - 1)) do
        remove_finished(set, id)
      end
    end
  end
end

local function end_job(id, state, at)
  local h = P .. id
  redis.call('HSET', h, 'state', state, 'finished_at', at)
  redis.call('HDEL', h, 'lease_until')
  redis.call('ZREM', K.active, id)
  redis.call('ZREM', K.delayed, id)
  redis.call('ZREM', K.waiting, id)
  redis.call('SREM', K.cancel, id)
  drop_dedup(h, id)
  redis.call('ZADD', K[state], at, id)
  local f = redis.call('HMGET', h, 'ttl', 'rc_n', 'rc_age', 'rf_n', 'rf_age')
  if state == 'completed' and f[1] then
    redis.call('ZADD', K.expires, string.format('%.17g', tonumber(at) + tonumber(f[1])), id)
  end
  if state == 'completed' then
    trim(K[state], f[2], f[3], at)
  else
    trim(K[state], f[4], f[5], at)
  end
end

local function sweep(now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.expires, '-inf', now)) do remove_job(id) end
end

local function lease_event(h, id, kind)
  local f = redis.call('HMGET', h, 'uid', 'pct')
  if f[1] then emit('L' .. kind .. '\\n' .. id .. '\\n' .. (f[2] or '0') .. '\\n' .. f[1]) end
end
"""

_ADD: Final = (
    _COMMON
    + """
local now, channel = tonumber(ARGV[3]), ARGV[4]
local out, woke = {}, false
-- ARGV[5]: msgpack of the jobs, each {id, dedup key, run_at, priority, attempts, then optional
-- field/value pairs}, every value a string; ARGV[5 + i]: the record of the i-th job
for i, job in ipairs(cmsgpack.unpack(ARGV[5])) do
  local id, dk = job[1], job[2]
  local existing = false
  if dk ~= '' then existing = redis.call('HGET', K.dedup, dk) end
  if existing then
    out[#out + 1] = {existing, 0}
  elseif redis.call('EXISTS', P .. id) == 1 then
    out[#out + 1] = {id, 0}
  else
    local h = P .. id
    local run_at, prio = job[3], job[4]
    local seq = redis.call('HINCRBY', K.meta, 'seq', 1)
    local delayed = tonumber(run_at) > now
    local fields = {'r', ARGV[5 + i], 'run_at', run_at, 'prio', prio, 'seq', seq,
      'attempts', job[5], 'attempt', 0, 'token', 0,
      'state', delayed and 'delayed' or 'waiting'}
    for f = 6, #job do fields[#fields + 1] = job[f] end
    redis.call('HSET', h, unpack(fields))
    if dk ~= '' then redis.call('HSET', K.dedup, dk, id) end
    if delayed then
      redis.call('ZADD', K.delayed, run_at, id)
    else
      redis.call('ZADD', K.waiting, (1000 - tonumber(prio)) * 1099511627776 + seq, id)
      woke = true
    end
    out[#out + 1] = {id, 1}
  end
end
if woke and channel ~= '' then redis.call('PUBLISH', channel, 'wake') end
return out
"""
)

_CLAIM_BODY: Final = """
-- claim(c): ARGV[c..c+5] = now, limit, lease_until, rate_max, rate_ms, lease_error
local function claim(c)
local now, limit, lease_until = ARGV[c], tonumber(ARGV[c + 1]), ARGV[c + 2]
local rate_max, rate_ms, lease_error = tonumber(ARGV[c + 3]), tonumber(ARGV[c + 4]), ARGV[c + 5]
sweep(now)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.delayed, '-inf', now)) do
  local h = P .. id
  redis.call('ZREM', K.delayed, id)
  redis.call('HSET', h, 'state', 'waiting')
  redis.call('ZADD', K.waiting, wscore(h), id)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.active, '-inf', now)) do
  local h = P .. id
  if redis.call('SISMEMBER', K.cancel, id) == 1 then
    lease_event(h, id, 'cancelled')
    end_job(id, 'cancelled', now)
  elseif tonumber(redis.call('HGET', h, 'attempt'))
      >= tonumber(redis.call('HGET', h, 'attempts')) then
    redis.call('HSET', h, 'error', lease_error)
    lease_event(h, id, 'failed')
    end_job(id, 'failed', now)
  else
    redis.call('ZREM', K.active, id)
    redis.call('HSET', h, 'state', 'waiting')
    redis.call('HDEL', h, 'lease_until')
    redis.call('ZADD', K.waiting, wscore(h), id)
  end
end
-- {when the earliest delayed job is due ('' if none), claimed job hashes}
local function due()
  local first = redis.call('ZRANGE', K.delayed, 0, 0, 'WITHSCORES')
  return first[2] or ''
end
if redis.call('HGET', K.meta, 'paused') == '1' or limit <= 0 then return {due(), {}} end
if rate_max >= 0 then
  local used = tonumber(redis.call('GET', K.rate) or '0')
  limit = math.min(limit, rate_max - used)
  if limit <= 0 then return {due(), {}} end
end
local ids = redis.call('ZRANGE', K.waiting, 0, limit - 1)
local out = {}
for i, id in ipairs(ids) do
  local h = P .. id
  redis.call('ZREM', K.waiting, id)
  local token = redis.call('HINCRBY', K.meta, 'token', 1)
  redis.call('HINCRBY', h, 'attempt', 1)
  redis.call('HSET', h, 'state', 'active', 'token', token, 'started_at', now,
    'lease_until', lease_until)
  redis.call('ZADD', K.active, lease_until, id)
  out[i] = redis.call('HGETALL', h)
end
if rate_max >= 0 and #ids > 0 then
  local n = redis.call('INCRBY', K.rate, #ids)
  if n == #ids then redis.call('PEXPIRE', K.rate, rate_ms) end
end
return {due(), out}
end
"""

_CLAIM: Final = _COMMON + _CLAIM_BODY + "return claim(3)\n"

_RENEW: Final = (
    _COMMON
    + """
local lease_until = ARGV[3]
local lost = {}
for a = 4, #ARGV, 2 do
  local id, h = ARGV[a], P .. ARGV[a]
  local f = redis.call('HMGET', h, 'state', 'token')
  if f[1] == 'active' and f[2] == ARGV[a + 1] then
    redis.call('HSET', h, 'lease_until', lease_until)
    redis.call('ZADD', K.active, lease_until, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
"""
)

_PROGRESS: Final = (
    _COMMON
    + """
local id = ARGV[3]
local h = P .. id
local f = redis.call('HMGET', h, 'state', 'token')
if f[1] ~= 'active' or f[2] ~= ARGV[4] then return 0 end
redis.call('HSET', h, 'progress', ARGV[5], 'pct', ARGV[6])
emit(ARGV[7])
return 1
"""
)

_FINISH_BODY: Final = """
local function put(h, field, value)
  if value == '' then redis.call('HDEL', h, field) else redis.call('HSET', h, field, value) end
end
-- finish(first): 8 arguments per outcome from ARGV[first] on; 1 applied, 0 not (fencing)
local function finish(first)
local out, last = {}, '0'
for a = first, #ARGV, 8 do
  local id, outcome, at = ARGV[a], ARGV[a + 2], ARGV[a + 3]
  local h = P .. id
  local f = redis.call('HMGET', h, 'state', 'token')
  if f[1] ~= 'active' or f[2] ~= ARGV[a + 1] then
    out[#out + 1] = 0
  else
    if outcome == 'completed' then
      put(h, 'result', ARGV[a + 4])
      end_job(id, 'completed', at)
    elseif outcome == 'failed' or outcome == 'cancelled' then
      put(h, 'error', ARGV[a + 5])
      end_job(id, outcome, at)
    elseif outcome == 'retry' then
      put(h, 'error', ARGV[a + 5])
      redis.call('HSET', h, 'state', 'delayed', 'run_at', ARGV[a + 6])
      redis.call('HDEL', h, 'lease_until')
      redis.call('ZREM', K.active, id)
      redis.call('ZADD', K.delayed, ARGV[a + 6], id)
    else
      redis.call('HINCRBY', h, 'attempt', -1)
      redis.call('HSET', h, 'state', 'waiting')
      redis.call('HDEL', h, 'lease_until')
      redis.call('ZREM', K.active, id)
      redis.call('SREM', K.cancel, id)
      redis.call('ZADD', K.waiting, wscore(h), id)
    end
    emit(ARGV[a + 7])
    if tonumber(at) > tonumber(last) then last = at end
    out[#out + 1] = 1
  end
end
if last ~= '0' then sweep(last) end  -- once per batch, at its latest outcome
return out
end
"""

_FINISH: Final = _COMMON + _FINISH_BODY + "return finish(3)\n"

_FINISH_CLAIM: Final = (
    _COMMON
    + _FINISH_BODY
    + _CLAIM_BODY
    + """
-- ARGV[3..8]: the claim's arguments, then the outcomes: {applied, due, claimed hashes}
local applied = finish(9)
local claimed = claim(3)
return {applied, claimed[1], claimed[2]}
"""
)

_CANCEL: Final = (
    _COMMON
    + """
local id, now = ARGV[3], ARGV[4]
local state = redis.call('HGET', P .. id, 'state')
if not state then return 'missing' end
if state == 'completed' or state == 'failed' or state == 'cancelled' then return 'finished' end
if state == 'active' then
  redis.call('SADD', K.cancel, id)
  return 'signalled'
end
end_job(id, 'cancelled', now)
emit(ARGV[5])
return 'cancelled'
"""
)

_RETRY: Final = (
    _COMMON
    + """
local id, now = ARGV[3], ARGV[4]
local h = P .. id
local state = redis.call('HGET', h, 'state')
if state ~= 'failed' and state ~= 'cancelled' then return 0 end
redis.call('ZREM', K[state], id)
redis.call('HSET', h, 'state', 'waiting', 'attempt', 0, 'run_at', now)
redis.call('HDEL', h, 'progress', 'pct', 'result', 'error', 'started_at', 'finished_at',
  'lease_until')
local dk = redis.call('HGET', h, 'dk')
if dk then redis.call('HSETNX', K.dedup, dk, id) end
redis.call('ZADD', K.waiting, wscore(h), id)
return 1
"""
)

_JOBS: Final = (
    _COMMON
    + """
-- {next cursor (-1: the end), offset still to skip, rows}; see RedisJobStore.jobs
local state, cursor, skip, limit = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local uid, bound = ARGV[7], tonumber(ARGV[8])
local set, total = K[state], redis.call('ZCARD', K[state])
local range = (state == 'waiting' or state == 'delayed') and 'ZRANGE' or 'ZREVRANGE'
local out = {}
if uid == '' then
  local first = cursor + skip
  local ids = redis.call(range, set, first, first + limit - 1)
  for i, id in ipairs(ids) do out[i] = redis.call('HGETALL', P .. id) end
  local after = first + #ids
  return {after < total and after or -1, 0, out}
end
local position, stop = cursor, math.min(total, cursor + bound)
while position < stop and #out < limit do
  local ids = redis.call(range, set, position, math.min(position + 256, stop) - 1)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    position = position + 1
    if redis.call('HGET', P .. id, 'uid') == uid then
      if skip > 0 then
        skip = skip - 1
      else
        out[#out + 1] = redis.call('HGETALL', P .. id)
        if #out == limit then break end
      end
    end
  end
end
return {position < total and position or -1, skip, out}
"""
)

_COUNTS: Final = (
    _COMMON
    + """
local out = {}
for i, set in ipairs({K.waiting, K.delayed, K.active, K.completed, K.failed, K.cancelled}) do
  out[i] = redis.call('ZCARD', set)
end
out[7] = redis.call('HGET', K.meta, 'paused') == '1' and 1 or 0
return out
"""
)

_OUTBOX_READ: Final = """
-- KEYS: the queue's outbox lease, its outbox; ARGV: this store's token, lease ms, count.
-- Takes the lease if free, renews it if ours; reads the outbox only then (nil: not ours).
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif owner then
  return false
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
local rows = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', ARGV[3])
return rows
"""

_OUTBOX_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_MARKER: Final = """
local value = redis.call('GET', KEYS[1])
if value then return {value, 0} end
redis.call('SET', KEYS[1], ARGV[1])
return {ARGV[1], 1}
"""

_EVENT: Final = msgspec.msgpack.Encoder()
_DECODE_EVENT: Final = msgspec.msgpack.Decoder(JobEvent)
_DECODE_RECORD: Final = msgspec.msgpack.Decoder(_Record)
_DECODE_PROGRESS: Final = msgspec.msgpack.Decoder(Progress)
_DECODE_ERROR: Final = msgspec.msgpack.Decoder(JobError)
_LEASE_EXPIRED: Final = _EVENT.encode(LEASE_EXPIRED)


class _Waiter(Protocol):
    """What the outbox's wait needs of its dedicated connection (the link's, redis-py's)."""

    async def send_command(self, *args: Any, **kwargs: Any) -> None: ...

    async def read_response(self) -> Any: ...


def _stream_id(sid: str) -> tuple[int, int]:
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq or 0)


def _f(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _finish_args(fin: Finish) -> list[str | bytes | int | float]:
    return [
        fin.job_id,
        str(fin.token),
        fin.outcome,
        repr(float(fin.finished_at)),
        fin.result or b"",
        b"" if fin.error is None else _EVENT.encode(fin.error),
        repr(float(fin.retry_at if fin.retry_at is not None else fin.finished_at)),
        _event(fin.event),
    ]


def _claims(rows: Sequence[Sequence[bytes]]) -> list[Claim]:
    claims = []
    for row in rows:
        job = _job(row)
        claims.append(Claim(job=job, token=job.token))
    return claims


def _n(value: int | None) -> str:
    return "" if value is None else str(int(value))


def _event(event: JobEvent | None) -> bytes:
    return b"" if event is None else b"E" + _EVENT.encode(event)


def _opt_float(fields: dict[bytes, bytes], name: bytes) -> float | None:
    value = fields.get(name)
    return float(value) if value else None


def _job(flat: Sequence[bytes]) -> Job:
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    record = _DECODE_RECORD.decode(fields[b"r"])
    progress = fields.get(b"progress")
    error = fields.get(b"error")
    return Job(
        id=record.id,
        queue=record.queue,
        type=record.type,
        payload=record.payload,
        options=record.options,
        user_id=record.user_id,
        state=cast("JobState", fields[b"state"].decode()),
        attempt=int(fields.get(b"attempt", b"0")),
        token=int(fields.get(b"token", b"0")),
        progress=_DECODE_PROGRESS.decode(progress) if progress else None,
        result=fields.get(b"result") or None,
        error=_DECODE_ERROR.decode(error) if error else None,
        created_at=record.created_at,
        run_at=float(fields[b"run_at"]),
        started_at=_opt_float(fields, b"started_at"),
        finished_at=_opt_float(fields, b"finished_at"),
        lease_until=_opt_float(fields, b"lease_until"),
        repeat_key=record.repeat_key,
    )


def _outbox_event(data: bytes) -> JobEvent:
    if data.startswith(b"E"):
        return _DECODE_EVENT.decode(data[1:])
    kind, job_id, pct, user_id = data[1:].decode().split("\n", 3)
    if kind == "failed":
        return JobEvent(
            job_id=job_id,
            user_id=user_id,
            kind="failed",
            percentage=float(pct),
            error=LEASE_EXPIRED.message,
        )
    return JobEvent(job_id=job_id, user_id=user_id, kind="cancelled", percentage=float(pct))


class _Lane(Protocol):
    """What the store needs of the client's lane (``runtime``'s ``CommandLane``)."""

    async def execute(self, commands: Sequence[tuple[object, ...]]) -> list[object]:
        """Send ``commands`` in one write; their raw replies, a refused one as its error."""
        ...

    def missing_script(self, reply: object) -> bool:
        """Whether ``reply`` is Redis's ``NOSCRIPT`` error."""
        ...


class RedisJobStore:
    """The :class:`~actors.queue._store.JobStore` shared by every node through Redis.

    Every method raises :class:`runtime.RedisUnavailable` when Redis fails
    (for writes the outcome is then unknown). ``rate_limits`` maps a queue to
    ``(max_jobs, period_seconds)``, counted in Redis for the whole cluster.
    The outbox holds at most ``outbox_size`` events per queue.
    """

    def __init__(
        self,
        link: RedisLink,
        keys: QueueKeys,
        queues: Sequence[str],
        *,
        fanout: RedisFanout | None = None,
        rate_limits: Mapping[str, tuple[int, float]] | None = None,
        outbox_size: int = 10_000,
        outbox_lease_seconds: float = 5.0,
    ) -> None:
        self._link = link
        self._keys = keys
        self._queues = list(queues)
        self._fanout = fanout
        self._rate_limits = dict(rate_limits or {})
        self._outbox_size = outbox_size
        self._epochs: dict[str, str] = {}
        self._heads: dict[str, tuple[list[str], list[str | bytes | int | float]]] = {}
        self._channels: dict[str, str] = {}
        client = link.client
        # The node's client offers a lane (a connection of its own, no pool bookkeeping per
        # call): a script call takes it when it is free, else goes through the pool.
        make_lane = getattr(client, "lane", None)
        self._lane: _Lane | None = make_lane() if callable(make_lane) else None
        self._lane_busy = False
        self._tail_of: JobOptions | None = None
        self._tail: list[str] = []
        self._add = client.register_script(_ADD)
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._progress = client.register_script(_PROGRESS)
        self._finish = client.register_script(_FINISH)
        self._finish_claim = client.register_script(_FINISH_CLAIM)
        self._cancel = client.register_script(_CANCEL)
        self._retry = client.register_script(_RETRY)
        self._jobs = client.register_script(_JOBS)
        self._counts = client.register_script(_COUNTS)
        self._marker = client.register_script(_MARKER)
        self._outbox_read = client.register_script(_OUTBOX_READ)
        self._outbox_release = client.register_script(_OUTBOX_RELEASE)
        self._owner_token = secrets.token_hex(8)
        self._lease_ms = max(1, round(outbox_lease_seconds * 1000))
        self._drains: set[str] = set()
        self._last: dict[str, str] = {}
        self._waiters = contextlib.AsyncExitStack()
        self._waiter: _Waiter | None = None

    @property
    def epoch(self) -> str | None:
        """The epoch of the data this store opened (``None`` before :meth:`open`)."""
        return self._epochs.get(self._queues[0]) if self._queues else None

    def _queue(self, queue: str) -> str:
        if queue not in self._queues:
            raise ValueError(f"unknown queue {queue!r}")
        return queue

    def _args(self, queue: str) -> list[str | bytes | int | float]:
        return [self._keys.job_prefix(queue), self._outbox_size]

    async def _run(self, script: object, queue: str, args: Sequence[object], what: str) -> object:
        # One declared key, the queue's meta; the scripts derive its other keys (same slot)
        # from it, so a call packs 1 key instead of 12. Keys and common arguments are built once.
        head = self._heads.get(queue)
        if head is None:
            head = self._heads[queue] = ([self._keys.keys(queue)[0]], self._args(queue))
        with self._link.map_errors(what):
            lane = self._lane
            if lane is None or self._lane_busy:
                return await script(  # type: ignore[operator]
                    keys=head[0], args=[*head[1], *args]
                )
            self._lane_busy = True
            try:
                command = ("EVALSHA", script.sha, 1, head[0][0], *head[1], *args)  # type: ignore[attr-defined]
                reply = (await lane.execute([command]))[0]
                if lane.missing_script(reply):
                    await self._link.client.script_load(script.script)  # type: ignore[attr-defined]
                    reply = (await lane.execute([command]))[0]
            finally:
                self._lane_busy = False
            if isinstance(reply, Exception):
                raise reply
            return reply

    # -- lifecycle --------------------------------------------------------------

    async def open(self) -> None:
        """Write or adopt each queue's epoch marker; raise :class:`StoreLost` if one changed."""
        await self.check()

    async def check(self) -> None:
        """Raise :class:`StoreLost` if a queue's marker is gone or changed since :meth:`open`.

        The actor calls it periodically and whenever Redis comes back; the
        marker is rewritten before raising, so the next call passes.
        """
        lost: list[str] = []
        candidate = secrets.token_hex(8)  # a marker written now is never the one known
        for queue in self._queues:
            with self._link.map_errors("queue marker"):
                value, _ = cast(
                    "list[bytes]",
                    await self._marker(keys=[self._keys.marker(queue)], args=[candidate]),
                )
            epoch = value.decode()
            known = self._epochs.get(queue)
            if known is not None and known != epoch:
                lost.append(queue)
            self._epochs[queue] = epoch
        if lost:
            raise StoreLost(f"the queue store's data is gone for {', '.join(lost)}")

    # -- the Protocol -----------------------------------------------------------

    async def add(self, jobs: Sequence[NewJob], now: float) -> list[Added]:
        """Store a batch, one script per queue; dedup per queue by ``dedup_key``."""
        by_queue: dict[str, list[int]] = {}
        for index, new in enumerate(jobs):
            by_queue.setdefault(self._queue(new.queue), []).append(index)
        added: list[Added | None] = [None] * len(jobs)
        for queue, indexes in by_queue.items():
            channel = self._channels.get(queue)
            if channel is None:
                channel = self._channels[queue] = (
                    self._fanout.redis_channel(QueueKeys.channel(queue))
                    if self._fanout is not None
                    else ""
                )
            packed: list[list[str]] = []
            records: list[bytes] = []
            for index in indexes:
                new = jobs[index]
                o = new.options
                record = _Record(
                    id=new.id,
                    queue=new.queue,
                    type=new.type,
                    payload=new.payload,
                    options=o,
                    user_id=new.user_id,
                    created_at=new.created_at,
                    repeat_key=new.repeat_key,
                )
                records.append(_EVENT.encode(record))
                job = [new.id, o.dedup_key or "", repr(float(new.run_at)), *self._options_tail(o)]
                if new.user_id:
                    job += ("uid", new.user_id)
                packed.append(job)
            args = [repr(float(now)), channel, _EVENT.encode(packed), *records]
            rows = cast("list[list[object]]", await self._run(self._add, queue, args, "queue add"))
            for index, (job_id, created) in zip(indexes, rows, strict=True):
                added[index] = Added(id=cast("bytes", job_id).decode(), created=created == 1)
        return [a for a in added if a is not None]

    def _options_tail(self, o: JobOptions) -> list[str]:
        """An add's priority, attempts and the optional fields of ``o`` (cached: the last one)."""
        if o is self._tail_of:
            return self._tail
        tail = [str(o.priority), str(o.attempts)]
        for name, value in (
            ("dk", o.dedup_key or ""),
            ("ttl", _f(o.result_ttl_seconds)),
            ("rc_n", _n(o.remove_on_complete.count)),
            ("rc_age", _f(o.remove_on_complete.age_seconds)),
            ("rf_n", _n(o.remove_on_fail.count)),
            ("rf_age", _f(o.remove_on_fail.age_seconds)),
        ):
            if value:
                tail += (name, value)
        self._tail_of, self._tail = o, tail
        return tail

    async def claim(self, queue: str, limit: int, now: float, lease_seconds: float) -> list[Claim]:
        """Promote due jobs, reclaim expired leases, then claim up to ``limit`` jobs."""
        claims, _ = await self.claim_due(queue, limit, now, lease_seconds)
        return claims

    async def claim_due(
        self, queue: str, limit: int, now: float, lease_seconds: float
    ) -> tuple[list[Claim], float | None]:
        """:meth:`claim`, and :meth:`next_due` after it, in the same script (one round trip)."""
        args = self._claim_args(queue, limit, now, lease_seconds)
        due, rows = cast(
            "tuple[bytes, list[list[bytes]]]",
            await self._run(self._claim, queue, args, "queue claim"),
        )
        return _claims(rows), float(due) if due else None

    def _claim_args(
        self, queue: str, limit: int, now: float, lease_seconds: float
    ) -> list[str | bytes | int | float]:
        rate = self._rate_limits.get(self._queue(queue))
        rate_max, rate_ms = (rate[0], max(1, round(rate[1] * 1000))) if rate else (-1, 0)
        return [
            repr(float(now)),
            limit,
            repr(float(now + lease_seconds)),
            rate_max,
            rate_ms,
            _LEASE_EXPIRED,
        ]

    async def finish_claim(
        self,
        finishes: Sequence[Finish],
        queue: str,
        limit: int,
        now: float,
        lease_seconds: float,
    ) -> tuple[list[bool], list[Claim], float | None]:
        """:meth:`finish`, then :meth:`claim_due` on ``queue``, in one script.

        Outcomes of other queues' jobs (a worker has none) go in their own
        scripts first. Each outcome is still fenced by its own token.
        """
        mine = [i for i, fin in enumerate(finishes) if self._owner(fin.job_id) == queue]
        others = [i for i in range(len(finishes)) if self._owner(finishes[i].job_id) != queue]
        done = [False] * len(finishes)
        if others:
            for i, ok in zip(others, await self.finish([finishes[i] for i in others]), strict=True):
                done[i] = ok
        args = self._claim_args(queue, limit, now, lease_seconds)
        for i in mine:
            args += _finish_args(finishes[i])
        applied, due, rows = cast(
            "tuple[list[int], bytes, list[list[bytes]]]",
            await self._run(self._finish_claim, queue, args, "queue finish"),
        )
        for i, flag in zip(mine, applied, strict=True):
            done[i] = flag == 1
        return done, _claims(rows), float(due) if due else None

    async def next_due(self, queue: str) -> float | None:
        """When the earliest delayed job of ``queue`` is due, or ``None``."""
        key = self._keys.keys(self._queue(queue))[2]
        with self._link.map_errors("queue next_due"):
            first = await self._link.client.zrange(key, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def renew(
        self, queue: str, attempts: Sequence[tuple[str, int]], now: float, lease_seconds: float
    ) -> list[str]:
        """Extend the leases of ``(job_id, token)`` pairs; return the ids no longer theirs."""
        if not attempts:
            return []
        args: list[str | bytes | int | float] = [repr(float(now + lease_seconds))]
        for job_id, token in attempts:
            args += [job_id, str(token)]
        lost = cast("list[bytes]", await self._run(self._renew, queue, args, "queue renew"))
        return [job_id.decode() for job_id in lost]

    async def progress(
        self, job_id: str, token: int, progress: Progress, event: JobEvent | None
    ) -> bool:
        """Record the attempt's progress (and queue its event) if ``token`` is current."""
        queue = self._owner(job_id)
        if queue is None:
            return False
        args = [
            job_id,
            str(token),
            _EVENT.encode(progress),
            repr(float(progress.percentage)),
            _event(event),
        ]
        return await self._run(self._progress, queue, args, "queue progress") == 1

    def _owner(self, job_id: str) -> str | None:
        queue = job_id.partition(".")[0]
        return queue if queue in self._queues else None

    async def finish(self, finishes: Sequence[Finish]) -> list[bool]:
        """Record outcomes, one script per queue; each applies only if its token is current."""
        by_queue: dict[str, list[int]] = {}
        done = [False] * len(finishes)
        for index, fin in enumerate(finishes):
            queue = self._owner(fin.job_id)
            if queue is not None:
                by_queue.setdefault(queue, []).append(index)
        for queue, indexes in by_queue.items():
            args: list[str | bytes | int | float] = []
            for index in indexes:
                args += _finish_args(finishes[index])
            rows = cast("list[int]", await self._run(self._finish, queue, args, "queue finish"))
            for index, ok in zip(indexes, rows, strict=True):
                done[index] = ok == 1
        return done

    async def cancel(self, job_id: str, now: float, event: JobEvent | None) -> CancelOutcome:
        """Cancel a waiting or delayed job, or flag an active one for its worker."""
        queue = self._owner(job_id)
        if queue is None:
            return "missing"
        args = [job_id, repr(float(now)), _event(event)]
        outcome = cast("bytes", await self._run(self._cancel, queue, args, "queue cancel"))
        return cast("CancelOutcome", outcome.decode())

    async def cancel_requested(self, queue: str, job_ids: Sequence[str]) -> list[str]:
        """Which of these active jobs have been asked to stop (on any node)."""
        if not job_ids:
            return []
        key = self._keys.keys(self._queue(queue))[8]
        with self._link.map_errors("queue cancel_requested"):
            flags = await self._link.client.smismember(key, list(job_ids))
        return [job_id for job_id, flag in zip(job_ids, flags, strict=True) if flag]

    async def retry(self, job_id: str, now: float) -> bool:
        """Put a failed or cancelled job back to waiting with fresh attempts, else ``False``."""
        queue = self._owner(job_id)
        if queue is None:
            return False
        return await self._run(self._retry, queue, [job_id, repr(float(now))], "queue retry") == 1

    async def get(self, job_id: str) -> Job | None:
        """A job's record, or ``None``."""
        queue = self._owner(job_id)
        if queue is None:
            return None
        with self._link.map_errors("queue get"):
            fields = await self._link.client.hgetall(self._keys.job(job_id, queue))
        if not fields:
            return None
        flat: list[bytes] = []
        for name, value in cast("dict[bytes, bytes]", fields).items():
            flat += [name, value]
        return _job(flat)

    async def jobs(
        self,
        queue: str,
        state: JobState,
        offset: int,
        limit: int,
        *,
        user_id: str | None = None,
        cursor: int = 0,
    ) -> JobPage:
        """Jobs of one state: waiting/delayed in run order, others newest first.

        One script: from position ``cursor`` it skips ``offset`` matching jobs
        and returns the next ``limit``. With ``user_id`` it walks the state's
        sorted set in chunks of 256, matching each job hash's ``uid``, and
        stops after :data:`~._store.USER_SCAN_LIMIT` positions (a bounded time
        with Redis blocked), returning where it stopped and what is left to skip.
        """
        if limit <= 0:
            return JobPage(jobs=[], next_cursor=cursor + offset)
        args = [state, cursor, offset, limit, user_id or "", USER_SCAN_LIMIT]
        after, skip, rows = cast(
            "tuple[int, int, list[list[bytes]]]",
            await self._run(self._jobs, queue, args, "queue jobs"),
        )
        return JobPage(
            jobs=[_job(row) for row in rows if row],
            next_cursor=None if after < 0 else after,
            next_offset=skip,
        )

    async def counts(self, queue: str) -> QueueCounts:
        """Jobs per state."""
        n = cast("list[int]", await self._run(self._counts, self._queue(queue), [], "queue counts"))
        return QueueCounts(
            waiting=n[0],
            delayed=n[1],
            active=n[2],
            completed=n[3],
            failed=n[4],
            cancelled=n[5],
            paused=n[6] == 1,
        )

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume claiming from ``queue`` (for every node)."""
        meta = self._keys.keys(self._queue(queue))[0]
        with self._link.map_errors("queue pause"):
            await self._link.client.hset(meta, "paused", "1" if paused else "0")

    async def dropped(self) -> int:
        """Outbox events dropped because a queue's outbox was full (all queues)."""
        total = 0
        for queue in self._queues:
            with self._link.map_errors("queue dropped"):
                value = await self._link.client.hget(self._keys.keys(queue)[0], "dropped")
            total += int(value or 0)
        return total

    # -- the outbox: one drainer per queue ---------------------------------------

    async def events(self, limit: int) -> list[OutboxEntry]:
        """Up to ``limit`` outbox events not yet acknowledged, oldest first, of the queues
        this store drains.

        One script per queue takes the queue's outbox lease if nobody holds it,
        renews it if this store does, and reads the stream only then (the read
        is fenced by the lease). Exact order within a queue; across queues by
        the streams' Redis-time IDs (ms).
        """
        if limit <= 0:
            return []
        found: list[tuple[tuple[int, int], str, bytes]] = []
        for queue in self._queues:
            keys = [self._keys.outbox_owner(queue), self._keys.keys(queue)[10]]
            with self._link.map_errors("queue events"):
                rows = cast(
                    "list[tuple[bytes, list[bytes]]] | None",
                    await self._outbox_read(
                        keys=keys, args=[self._owner_token, self._lease_ms, limit]
                    ),
                )
            self._set_drains(queue, rows is not None)
            for stream_id, fields in rows or ():
                sid = stream_id.decode()
                found.append((_stream_id(sid), f"{queue}/{sid}", fields[1]))
        found.sort(key=lambda item: item[0])
        return [
            OutboxEntry(id=event_id, event=_outbox_event(data))
            for _, event_id, data in found[:limit]
        ]

    def _set_drains(self, queue: str, drains: bool) -> None:
        if drains == (queue in self._drains):
            return
        if drains:
            self._drains.add(queue)
            logger.info("queue %s: this node now drains the outbox", queue)
        else:
            self._drains.discard(queue)
            self._last.pop(queue, None)
            logger.info("queue %s: another node drains the outbox", queue)

    def drains_outbox(self) -> bool:
        """Whether the last :meth:`events` found this store draining at least one queue."""
        return bool(self._drains)

    async def ack_events(self, ids: Sequence[str]) -> None:
        """Drop delivered outbox events (and remember the last one per queue)."""
        by_queue: dict[str, list[str]] = {}
        for event_id in ids:
            queue, _, sid = event_id.partition("/")
            if queue in self._queues and sid:
                by_queue.setdefault(queue, []).append(sid)
        for queue, sids in by_queue.items():
            with self._link.map_errors("queue ack"):
                await self._link.client.xdel(self._keys.keys(queue)[10], *sids)
            last = max(sids, key=_stream_id)
            known = self._last.get(queue, "0-0")
            if queue in self._drains and _stream_id(last) > _stream_id(known):
                self._last[queue] = last

    async def wait_events(self, seconds: float) -> None:
        """Return once a queue this store drains has an event after the last one acknowledged,
        or after about ``seconds`` (at most 1 s): one ``XREAD BLOCK`` on a dedicated connection.

        So events other nodes write reach the hub within a round trip, not a poll.
        The connection has no command deadline (a blocked read would miss it),
        only the link's socket timeout, far above the block. Without a queue to
        drain it returns at once. (One ``XREAD`` over every drained stream: on
        Redis Cluster this needs one per slot's node.)
        """
        queues = [queue for queue in self._queues if queue in self._drains]
        if not queues:
            return
        block_ms = max(1, min(1000, round(seconds * 1000)))
        keys = [self._keys.keys(queue)[10] for queue in queues]
        ids = [self._last.get(queue, "0-0") for queue in queues]
        with self._link.map_errors("queue outbox wait"):
            if self._waiter is None:
                self._waiter = await self._waiters.enter_async_context(
                    self._link.dedicated_connection()
                )
            waiter = self._waiter
            command = ("XREAD", "COUNT", 1, "BLOCK", block_ms, "STREAMS", *keys, *ids)
            await waiter.send_command(*command, check_health=False)
            await waiter.read_response()

    async def release_outbox(self) -> None:
        """Give up the outbox leases this store holds (a successor takes over at its next try)
        and close the waiting connection; for a clean shutdown."""
        drained, self._drains = self._drains, set()
        self._last.clear()
        try:
            for queue in self._queues:
                if queue in drained:
                    with self._link.map_errors("queue outbox release"):
                        await self._outbox_release(
                            keys=[self._keys.outbox_owner(queue)], args=[self._owner_token]
                        )
        finally:
            self._waiter = None
            await self._waiters.aclose()

    async def claim_schedule(self, key: str, slot: float, ttl_seconds: float) -> bool:
        """``True`` for exactly one caller per ``(key, slot)`` in the cluster (``SET NX PX``)."""
        ttl_ms = max(1, round(ttl_seconds * 1000))
        with self._link.map_errors("queue schedule"):
            won = await self._link.client.set(
                self._keys.schedule(key, slot), b"1", nx=True, px=ttl_ms
            )
        return bool(won)
