-- hookgate dedupe complete. KEYS[1]: the event's key. ARGV[1]: the caller's claim; ARGV[2]:
-- how long to keep the done mark, in milliseconds.
-- Marks the key done only while the caller's claim holds it. Answers 1 done, 0 lease lost.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], 'd', 'PX', ARGV[2])
  return 1
end
return 0
