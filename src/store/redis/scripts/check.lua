-- check: counts one request and reads the key's block, in one call.
-- KEYS[1]: the key's hash. ARGV[1]: the field of the TAT; ARGV[2], ARGV[3]: t (seconds,
-- nanoseconds); ARGV[4], ARGV[5]: tau.
-- Answers {1, s, n, ...} allowed, (s, n) = next TAT - now; {0, s, n, ...} denied, (s, n) = the
-- wait; then the block's time left (s, n), or -1, -1.
local key = KEYS[1]
local now_s, now_n = now()
local state = load(key)
local conforms, s, n = gcra(key, state, ARGV[1], now_s, now_n,
  tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
local block = block_left(state, now_s, now_n)
if conforms then
  expire(key, state, now_s, now_n)
  return { 1, s, n, block[1], block[2] }
end
return { 0, s, n, block[1], block[2] }
