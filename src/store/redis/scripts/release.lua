-- hookgate dedupe release. KEYS[1]: the event's key. ARGV[1]: the caller's claim.
-- Frees the key only while the caller's claim holds it. Answers 1 freed, 0 lease lost.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
