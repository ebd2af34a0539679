-- hookgate: times as pairs (seconds, nanoseconds), 0 <= nanoseconds < 1e9, so that Lua's
-- doubles hold them exactly. A hash field holds one as a decimal integer of nanoseconds since
-- the Unix epoch. "now" is the server's TIME: every instance sees the same clock.

local function now()
  local time = redis.call('TIME')
  return tonumber(time[1]), tonumber(time[2]) * 1000
end

-- A field's text as a time; nil for a missing field.
local function parse(text)
  if not text then
    return nil
  end
  local len = string.len(text)
  if len <= 9 then
    return 0, tonumber(text)
  end
  return tonumber(string.sub(text, 1, len - 9)), tonumber(string.sub(text, len - 8))
end

local function format(s, n)
  return string.format('%d%09d', s, n)
end

local function add(as, an, bs, bn)
  local s, n = as + bs, an + bn
  if n >= 1e9 then
    return s + 1, n - 1e9
  end
  return s, n
end

local function sub(as, an, bs, bn)
  local s, n = as - bs, an - bn
  if n < 0 then
    return s - 1, n + 1e9
  end
  return s, n
end

-- Whether time a is after time b.
local function after(as, an, bs, bn)
  return as > bs or (as == bs and an > bn)
end

-- Every field of the hash, by name.
local function load(key)
  local flat = redis.call('HGETALL', key)
  local state = {}
  for i = 1, #flat, 2 do
    state[flat[i]] = flat[i + 1]
  end
  return state
end

-- After a write: the key expires once every time in it is past, when it is as good as a key
-- never seen (its bursts refilled, its block over). Computed from all the fields, so a write
-- never shortens the life of another field (a block, say).
local function expire(key, state, now_s, now_n)
  local last_s, last_n = now_s, now_n
  for _, text in pairs(state) do
    local s, n = parse(text)
    if s and n and after(s, n, last_s, last_n) then
      last_s, last_n = s, n
    end
  end
  local ds, dn = sub(last_s, last_n, now_s, now_n)
  local ms = ds * 1000 + math.ceil(dn / 1e6)
  if ms < 1 then
    redis.call('DEL', key)
  else
    redis.call('PEXPIRE', key, string.format('%d', ms))
  end
end

-- GCRA (see hookgate's RateLimitStore): one event at now against the TAT in state[field]
-- (now for a key never seen). It conforms when now >= tat - tau: the TAT becomes
-- max(tat, now) + t (written) and the answer is true, next - now. Otherwise nothing changes
-- and the answer is false, (tat - tau) - now: the wait until the next event conforms.
local function gcra(key, state, field, now_s, now_n, t_s, t_n, tau_s, tau_n)
  local tat_s, tat_n = parse(state[field])
  if not tat_s then
    tat_s, tat_n = now_s, now_n
  end
  local early_s, early_n = sub(tat_s, tat_n, tau_s, tau_n)
  if after(early_s, early_n, now_s, now_n) then
    return false, sub(early_s, early_n, now_s, now_n)
  end
  if after(now_s, now_n, tat_s, tat_n) then
    tat_s, tat_n = now_s, now_n
  end
  local next_s, next_n = add(tat_s, tat_n, t_s, t_n)
  state[field] = format(next_s, next_n)
  redis.call('HSET', key, field, state[field])
  return true, sub(next_s, next_n, now_s, now_n)
end

-- The time left of the block in state.b, as {seconds, nanoseconds}; {-1, -1} if none runs.
local function block_left(state, now_s, now_n)
  local s, n = parse(state['b'])
  if s and n and after(s, n, now_s, now_n) then
    return { sub(s, n, now_s, now_n) }
  end
  return { -1, -1 }
end

