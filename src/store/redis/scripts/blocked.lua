-- blocked: the block's time left (s, n), or -1, -1. Reads only.
-- KEYS[1]: the key's hash.
local now_s, now_n = now()
return block_left({ b = redis.call('HGET', KEYS[1], 'b') }, now_s, now_n)
