"""Limit counters in Redis, shared by every gateway replica (``server.redis``).

Each operation is one Lua script, so it runs atomically on the server: there is no
read-modify-write between replicas and no lock. The scripts mirror :class:`MemoryState` exactly
(same arithmetic; tests run both against the same cases). Times are wall-clock seconds passed in
by the caller, so replicas must keep their clocks in sync (NTP) - a few ms of skew only shifts a
window by as much.

Layout under the prefix (default ``aiw:``): a sliding window ``K`` is ``K:z`` (entries by time),
``K:c`` (cost per entry) and ``K:s`` (running total); a budget ``B`` is ``B:spent``, ``B:res``
(reservation per request), ``B:lease`` (their deadlines) and ``B:rt`` (reserved total); a pacing
bucket is one hash. Keys derive from the names the scripts are given, so use a single Redis
(or one cluster slot), not a sharded cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiwire.errors import ConfigError
from aiwire.limits.state import (
    BACKOFF,
    MIN_FACTOR,
    RECOVERY,
    BudgetCheck,
    LimitState,
    PaceCheck,
    RateCheck,
    Verdict,
)

_ADMIT = """
local rid, now, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local nr = tonumber(ARGV[4])
local i = 5
local ok, failed, retry = 1, -1, -1
local rates = {}
for r = 1, nr do
  local base, limit = ARGV[i], tonumber(ARGV[i+1])
  local cost, window = tonumber(ARGV[i+2]), tonumber(ARGV[i+3])
  i = i + 4
  local z, c, s = base .. ':z', base .. ':c', base .. ':s'
  local cutoff = now - window
  local total = tonumber(redis.call('GET', s) or '0')
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', cutoff)
  if #old > 0 then
    for _, m in ipairs(old) do
      total = total - tonumber(redis.call('HGET', c, m) or '0')
      redis.call('HDEL', c, m)
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', cutoff)
    redis.call('SET', s, tostring(total))
  end
  rates[r] = {base, limit, cost, window, total}
  if ok == 1 and total + cost > limit then
    ok, failed = 0, r - 1
    if cost > limit then
      retry = -2
    else
      local excess, freed = total + cost - limit, 0
      local entries = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
      retry = 0
      for k = 1, #entries, 2 do
        freed = freed + tonumber(redis.call('HGET', c, entries[k]) or '0')
        if freed >= excess then
          retry = math.max(0, tonumber(entries[k + 1]) + window - now)
          break
        end
      end
    end
  end
end
local nb = tonumber(ARGV[i])
i = i + 1
local budgets = {}
for b = 1, nb do
  local base, limit, amount = ARGV[i], tonumber(ARGV[i+1]), tonumber(ARGV[i+2])
  local initial, ttl = ARGV[i+3], tonumber(ARGV[i+4])
  i = i + 5
  local sk, rk, lk, tk = base .. ':spent', base .. ':res', base .. ':lease', base .. ':rt'
  if redis.call('SET', sk, initial, 'NX') and ttl > 0 then
    redis.call('EXPIRE', sk, math.ceil(ttl))
  end
  local spent = tonumber(redis.call('GET', sk))
  local reserved = tonumber(redis.call('GET', tk) or '0')
  local stale = redis.call('ZRANGEBYSCORE', lk, '-inf', now)
  if #stale > 0 then
    for _, m in ipairs(stale) do
      reserved = reserved - tonumber(redis.call('HGET', rk, m) or '0')
      redis.call('HDEL', rk, m)
    end
    redis.call('ZREMRANGEBYSCORE', lk, '-inf', now)
    redis.call('SET', tk, tostring(reserved))
  end
  budgets[b] = {base, amount, spent, reserved}
  if ok == 1 and spent + reserved + amount > limit then
    ok, failed, retry = 0, nr + b - 1, -2
  end
end
local out = {tostring(ok), tostring(failed), tostring(retry)}
for r = 1, nr do
  local base, limit, cost, window, total = unpack(rates[r])
  local z, c, s = base .. ':z', base .. ':c', base .. ':s'
  if ok == 1 then
    redis.call('ZADD', z, now, rid)
    redis.call('HSET', c, rid, tostring(cost))
    total = total + cost
    redis.call('SET', s, tostring(total))
    local ms = math.ceil(window * 1000) + 60000
    redis.call('PEXPIRE', z, ms)
    redis.call('PEXPIRE', c, ms)
    redis.call('PEXPIRE', s, ms)
  end
  local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  local reset = 0
  if #first > 0 then reset = math.max(0, tonumber(first[2]) + window - now) end
  table.insert(out, tostring(math.max(0, limit - total)))
  table.insert(out, tostring(reset))
end
for b = 1, nb do
  local base, amount, spent, reserved = unpack(budgets[b])
  if ok == 1 then
    local rk, lk, tk = base .. ':res', base .. ':lease', base .. ':rt'
    redis.call('HSET', rk, rid, tostring(amount))
    redis.call('ZADD', lk, now + lease, rid)
    reserved = reserved + amount
    redis.call('SET', tk, tostring(reserved))
    local secs = math.ceil(lease) + 60
    redis.call('EXPIRE', rk, secs)
    redis.call('EXPIRE', lk, secs)
    redis.call('EXPIRE', tk, secs)
  end
  table.insert(out, tostring(spent + reserved))
end
return out
"""

_SETTLE = """
local rid = ARGV[1]
local nr = tonumber(ARGV[2])
local i = 3
for r = 1, nr do
  local base, actual = ARGV[i], tonumber(ARGV[i+1])
  i = i + 2
  local old = redis.call('HGET', base .. ':c', rid)
  if old then
    redis.call('HSET', base .. ':c', rid, tostring(actual))
    redis.call('INCRBYFLOAT', base .. ':s', tostring(actual - tonumber(old)))
  end
end
local nb = tonumber(ARGV[i])
i = i + 1
local out = {}
for b = 1, nb do
  local base, actual = ARGV[i], ARGV[i+1]
  i = i + 2
  local held = redis.call('HGET', base .. ':res', rid)
  if held then
    redis.call('HDEL', base .. ':res', rid)
    redis.call('ZREM', base .. ':lease', rid)
    redis.call('INCRBYFLOAT', base .. ':rt', tostring(-tonumber(held)))
  end
  table.insert(out, redis.call('INCRBYFLOAT', base .. ':spent', actual))
end
return out
"""

_FACTOR = """
local function factor(h, now)
  local f0 = tonumber(redis.call('HGET', h, 'f0') or '1')
  local ta = tonumber(redis.call('HGET', h, 'ta') or '-1e18')
  return math.min(1, f0 + (1 - f0) * (now - ta) / {recovery})
end
"""

_PACE = (
    _FACTOR
    + """
local h = KEYS[1]
local now, maxw, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local f = factor(h, now)
local wait, new = 0, {}
for d = 1, n do
  local cap, cost = tonumber(ARGV[2 + 2 * d]) * f, tonumber(ARGV[3 + 2 * d])
  local tat = tonumber(redis.call('HGET', h, 't' .. d) or tostring(now))
  local base = math.max(tat, now)
  new[d] = base + cost * 60 / cap
  wait = math.max(wait, new[d] - now - 60)
end
if wait > maxw + 1e-6 then return false end
for d = 1, n do redis.call('HSET', h, 't' .. d, tostring(new[d])) end
redis.call('EXPIRE', h, 3600)
return tostring(wait)
"""
)

_FEEDBACK = (
    _FACTOR
    + """
local h = KEYS[1]
if redis.call('EXISTS', h) == 0 then return 0 end
local now = tonumber(ARGV[1])
local f = factor(h, now)
local nc = tonumber(ARGV[2])
local i = 3
for k = 1, nc do
  local d, cap, delta = ARGV[i], tonumber(ARGV[i+1]), tonumber(ARGV[i+2])
  i = i + 3
  local tat = tonumber(redis.call('HGET', h, 't' .. d) or tostring(now))
  redis.call('HSET', h, 't' .. d, tostring(tat + delta * 60 / (cap * f)))
end
local nrem = tonumber(ARGV[i])
i = i + 1
for k = 1, nrem do
  local d, cap, left = ARGV[i], tonumber(ARGV[i+1]), tonumber(ARGV[i+2])
  i = i + 3
  local tat = tonumber(redis.call('HGET', h, 't' .. d) or tostring(now))
  redis.call('HSET', h, 't' .. d, tostring(math.max(tat, now + 60 - left * 60 / (cap * f))))
end
local throttled = ARGV[i]
if throttled ~= '' then
  local ra = tonumber(throttled)
  local last = tonumber(redis.call('HGET', h, 'l4') or '-1e18')
  if now - last < {recovery} then
    redis.call('HSET', h, 'f0', tostring(math.max({min_factor}, f * {backoff})))
    redis.call('HSET', h, 'ta', tostring(now))
  end
  redis.call('HSET', h, 'l4', tostring(now))
  for _, field in ipairs(redis.call('HKEYS', h)) do
    if string.sub(field, 1, 1) == 't' and field ~= 'ta' then
      local tat = tonumber(redis.call('HGET', h, field))
      redis.call('HSET', h, field, tostring(math.max(tat, now + 60 + ra)))
    end
  end
end
return 1
"""
)


def _num(value: Any) -> float:
    return float(value.decode() if isinstance(value, bytes) else value)


class RedisState(LimitState):
    """The :class:`LimitState` contract on a Redis server (``redis://host:port/db``)."""

    def __init__(
        self, url: str, *, prefix: str = "aiw:", clock: Any = None, timeout: float = 1.0
    ) -> None:
        """``timeout``: seconds to connect and per command; past it the call fails (and
        :class:`~aiwire.limits.fallback.FallbackState` counts in process for a while)."""
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover - redis is a dependency
            raise ConfigError("server.redis needs the redis package: pip install redis") from None
        import time

        self.url = url
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._prefix = prefix
        self._clock = clock or time.time
        recovery, floor = repr(RECOVERY), repr(MIN_FACTOR)
        fill = {"recovery": recovery, "min_factor": floor}
        self._admit = self._redis.register_script(_ADMIT)
        self._settle = self._redis.register_script(_SETTLE)
        self._pace = self._redis.register_script(_PACE.replace("{recovery}", fill["recovery"]))
        self._feedback = self._redis.register_script(
            _FEEDBACK.replace("{recovery}", fill["recovery"])
            .replace("{min_factor}", fill["min_factor"])
            .replace("{backoff}", repr(BACKOFF))
        )

    @property
    def redis(self) -> Any:
        return self._redis

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:  # a readiness probe answers yes or no
            return False

    def _k(self, name: str) -> str:
        return self._prefix + name

    async def admit(
        self, rid: str, rates: Sequence[RateCheck], budgets: Sequence[BudgetCheck], lease: float
    ) -> Verdict:
        args: list[Any] = [rid, repr(self._clock()), repr(lease), len(rates)]
        for r in rates:
            args += [self._k(r.key), repr(r.limit), repr(r.cost), repr(r.window)]
        args.append(len(budgets))
        for b in budgets:
            args += [self._k(b.key), repr(b.limit), repr(b.amount), repr(b.initial)]
            args.append(repr(b.ttl) if b.ttl is not None else "-1")
        out = await self._admit(keys=[], args=args)
        ok, failed, retry = int(out[0]), int(out[1]), _num(out[2])
        verdict = Verdict(
            ok=bool(ok),
            failed=failed,
            retry_after=None if retry == -2 else (None if ok else max(0.0, retry)),
        )
        pos = 3
        for _ in rates:
            verdict.remaining.append(_num(out[pos]))
            verdict.resets.append(_num(out[pos + 1]))
            pos += 2
        verdict.committed = [_num(v) for v in out[pos:]]
        return verdict

    async def settle(
        self,
        rid: str,
        rates: Sequence[tuple[str, float]],
        budgets: Sequence[tuple[str, float]],
    ) -> list[float]:
        args: list[Any] = [rid, len(rates)]
        for key, actual in rates:
            args += [self._k(key), repr(actual)]
        args.append(len(budgets))
        for key, actual in budgets:
            args += [self._k(key), repr(actual)]
        out = await self._settle(keys=[], args=args)
        return [_num(v) for v in out]

    async def spent(self, key: str) -> float | None:
        value = await self._redis.get(self._k(key) + ":spent")
        return None if value is None else _num(value)

    async def pace(self, key: str, dims: Sequence[PaceCheck], max_wait: float) -> float | None:
        args: list[Any] = [repr(self._clock()), repr(max_wait), len(dims)]
        for d in dims:
            args += [repr(d.capacity), repr(d.cost)]
        out = await self._pace(keys=[self._k(key)], args=args)
        return None if out is None else _num(out)

    async def pace_feedback(
        self,
        key: str,
        *,
        corrections: Sequence[tuple[int, float, float]] = (),
        remaining: Sequence[tuple[int, float, float]] = (),
        throttled: float | None = None,
    ) -> None:
        args: list[Any] = [repr(self._clock()), len(corrections)]
        for dim, capacity, delta in corrections:
            args += [dim + 1, repr(capacity), repr(delta)]
        args.append(len(remaining))
        for dim, capacity, left in remaining:
            args += [dim + 1, repr(capacity), repr(left)]
        args.append("" if throttled is None else repr(throttled))
        await self._feedback(keys=[self._k(key)], args=args)

    async def aclose(self) -> None:
        await self._redis.aclose()
