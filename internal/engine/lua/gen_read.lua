-- gen_read.lua: return a table's generation for a fill's stamp, creating it
-- if it is missing; while a write to the table is committing, return 'w'
-- (it ends with a bump: wait for it) or 'h' (held: its commit cannot be
-- followed).
-- KEYS[1]: the generation key. KEYS[2]: the table's writers key. KEYS[3]:
-- its held key.
--
-- A missing generation (never written, or lost with an evicted key or a
-- restarted Redis) starts at the server clock in microseconds, never at 0:
-- every value it had before is below the clock, so an entry stamped with an
-- old value can never become valid again.
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 'h'
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 'w'
end
local v = redis.call('GET', KEYS[1])
if v then
  return v
end
local t = redis.call('TIME')
v = t[1] .. string.format('%06d', tonumber(t[2]))
redis.call('SET', KEYS[1], v, 'NX')
return redis.call('GET', KEYS[1])
