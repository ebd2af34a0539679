-- hookgate dedupe claim. KEYS[1]: the event's key. ARGV[1]: the claim ('c:' and the token in
-- hex); ARGV[2]: the lease in milliseconds.
-- The key holds 'c:<token>' while claimed (expiring with the lease) or 'd' once done (expiring
-- after the keep time); no key: free.
-- Answers {0, 0} claimed now, {1, 0} done, {2, ms} claimed by another for ms more.
local state = redis.call('GET', KEYS[1])
if not state then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return { 0, 0 }
end
if state == 'd' then
  return { 1, 0 }
end
return { 2, redis.call('PTTL', KEYS[1]) }
