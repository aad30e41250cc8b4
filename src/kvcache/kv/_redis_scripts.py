"""The Lua scripts behind every Redis write and listing.

A script runs whole or not at all as far as other clients can tell, so a value and
its index entries never drift apart, and a crash cannot split a write in two.
Key layout and the record header are described in `_redis_format`.

Conventions: KEYS[1] is the namespace's index and KEYS[2] its expiry set; value
keys are built from the namespace's value prefix (same hash tag, same slot).
`now` is the store's clock: a record whose expiration is <= now is dead even if
Redis has not expired it yet (tests move a fake clock; app clocks may lead).
Writes give Redis a relative TTL (PX) so server and app clocks need not agree.
Writes take `purge`, how many expired records to drop on the way (0 = none).
"""

from __future__ import annotations

__all__ = [
    "DELETE",
    "DELETE_IF_EQUALS",
    "DELETE_MANY",
    "LIST",
    "PUT",
    "PUT_IF_ABSENT",
    "PUT_MANY",
    "STORED_BYTES",
]

_COMMON = """
local HDR = 13
local INLINE = 256

-- expiration (0 = never) of the record at vkey, or nil when there is none
local function expiration(vkey)
  local head = redis.call('GETRANGE', vkey, 0, HDR - 1)
  if head == '' then return nil end
  local _, exp = struct.unpack('>Bi8', head)
  return exp
end

-- expiration and header+metadata of the record at vkey (never its value), or nil
local function header(vkey)
  local head = redis.call('GETRANGE', vkey, 0, HDR + INLINE - 1)
  if head == '' then return nil end
  local _, exp, size = struct.unpack('>Bi8I4', head)
  if HDR + size > #head then
    head = redis.call('GETRANGE', vkey, 0, HDR + size - 1)
  end
  return exp, string.sub(head, 1, HDR + size)
end

local function store(vprefix, name, packed, ttl_ms, exp)
  local ttl = tonumber(ttl_ms)
  if ttl > 0 then
    redis.call('SET', vprefix .. name, packed, 'PX', ttl)
    redis.call('ZADD', KEYS[2], exp, name)
  else
    redis.call('SET', vprefix .. name, packed)
    redis.call('ZREM', KEYS[2], name)
  end
  redis.call('ZADD', KEYS[1], 0, name)
end

local function remove(vprefix, name)
  redis.call('UNLINK', vprefix .. name)
  redis.call('ZREM', KEYS[1], name)
  redis.call('ZREM', KEYS[2], name)
end

-- drop up to `count` records that expired by `now`, so unlisted keys do not pile up
local function purge(vprefix, now, count)
  if count == '0' then return end
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, count)
  for _, name in ipairs(gone) do remove(vprefix, name) end
end
"""

_PUT_ONE = """
store(ARGV[1], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
purge(ARGV[1], ARGV[2], ARGV[3])
return 1
"""

#: ARGV: value prefix, now, purge, name, packed record, ttl ms (0 = none), expiration
PUT = _COMMON + _PUT_ONE

#: ARGV: value prefix, now, purge, then (name, packed, ttl ms, expiration) per record
PUT_MANY = (
    _COMMON
    + """
for i = 4, #ARGV, 4 do
  store(ARGV[1], ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
end
purge(ARGV[1], ARGV[2], ARGV[3])
return 1
"""
)

#: ARGV: value prefix, now, purge, name, packed record, ttl ms, expiration -> 1 if written
PUT_IF_ABSENT = (
    _COMMON
    + """
local exp = expiration(ARGV[1] .. ARGV[4])
if exp ~= nil and (exp == 0 or exp > tonumber(ARGV[2])) then return 0 end
"""
    + _PUT_ONE
)

#: ARGV: value prefix, name
DELETE = (
    _COMMON
    + """
remove(ARGV[1], ARGV[2])
return 1
"""
)

#: ARGV: value prefix, names...
DELETE_MANY = (
    _COMMON
    + """
for i = 2, #ARGV do remove(ARGV[1], ARGV[i]) end
return 1
"""
)

#: ARGV: value prefix, now, name, value -> 1 if deleted
DELETE_IF_EQUALS = (
    _COMMON
    + """
local raw = redis.call('GET', ARGV[1] .. ARGV[3])
if not raw then return 0 end
local _, exp, size = struct.unpack('>Bi8I4', raw)
if exp ~= 0 and exp <= tonumber(ARGV[2]) then return 0 end
if #raw ~= HDR + size + #ARGV[4] or string.sub(raw, HDR + size + 1) ~= ARGV[4] then
  return 0
end
remove(ARGV[1], ARGV[3])
return 1
"""
)

#: ARGV: value prefix, now, lex min, lex max, wanted live keys, most members to scan
#: -> {exhausted (1/0), last member scanned, name, header, name, header, ...}
LIST = (
    _COMMON
    + """
local vprefix, now, low, high = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local want, budget = tonumber(ARGV[5]), tonumber(ARGV[6])
local out = {0, ''}
local found, scanned = 0, 0
local dead = {}
while found < want and scanned < budget do
  local batch = math.min(want - found + 8, budget - scanned)
  local names = redis.call('ZRANGEBYLEX', KEYS[1], low, high, 'LIMIT', 0, batch)
  for _, name in ipairs(names) do
    scanned = scanned + 1
    out[2] = name
    low = '(' .. name
    local exp, head = header(vprefix .. name)
    if exp == nil or (exp ~= 0 and exp <= now) then
      dead[#dead + 1] = name
    else
      found = found + 1
      out[#out + 1] = name
      out[#out + 1] = head
      if found == want then break end
    end
  end
  if #names < batch then
    out[1] = 1
    break
  end
end
for _, name in ipairs(dead) do remove(vprefix, name) end
return out
"""
)


#: ARGV: value prefix, now, lex min, most members to scan
#: -> {exhausted (1/0), last member scanned, bytes of live names + metadata + values}
STORED_BYTES = (
    _COMMON
    + """
local vprefix, now, low, budget = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local names = redis.call('ZRANGEBYLEX', KEYS[1], low, '+', 'LIMIT', 0, budget)
local total = 0
for _, name in ipairs(names) do
  local exp = expiration(vprefix .. name)
  if exp ~= nil and (exp == 0 or exp > now) then
    total = total + #name + redis.call('STRLEN', vprefix .. name) - HDR
  end
end
local last = names[#names] or ''
return {#names < budget and 1 or 0, last, total}
"""
)
