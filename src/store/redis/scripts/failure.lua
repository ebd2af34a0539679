-- record_failure: counts one failure; a failure over the rate blocks the key until
-- now + cooldown, or later if a block already runs until later (a block is never shortened).
-- KEYS[1]: the key's hash. ARGV[1]: the field of the TAT; ARGV[2], ARGV[3]: t (seconds,
-- nanoseconds); ARGV[4], ARGV[5]: tau; ARGV[6], ARGV[7]: the cooldown.
-- Answers the block's time left (s, n), or -1, -1 when the failure conformed.
local key = KEYS[1]
local now_s, now_n = now()
local state = load(key)
local conforms = gcra(key, state, ARGV[1], now_s, now_n,
  tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
if not conforms then
  local until_s, until_n = add(now_s, now_n, tonumber(ARGV[6]), tonumber(ARGV[7]))
  local s, n = parse(state['b'])
  if not (s and n and after(s, n, until_s, until_n)) then
    state['b'] = format(until_s, until_n)
    redis.call('HSET', key, 'b', state['b'])
  end
end
expire(key, state, now_s, now_n)
if conforms then
  return { -1, -1 }
end
return block_left(state, now_s, now_n)
