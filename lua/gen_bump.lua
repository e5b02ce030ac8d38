-- gen_bump.lua: advance a table's generation past every value it had.
-- KEYS[1]: the generation key.
--
-- The new value is the larger of the old value + 1 and the server clock in
-- microseconds, so it also stays above any value the key had before it was
-- lost (see gen_read.lua). Values are decimal strings below 2^53, which Lua
-- numbers hold exactly.
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
local v = redis.call('GET', KEYS[1])
if v and tonumber(v) and tonumber(v) >= tonumber(now) then
  return redis.call('INCR', KEYS[1])
end
redis.call('SET', KEYS[1], now)
return now
