-- gen_bump.lua: advance a table's generation past every value it had and,
-- for a write announced with write_begin.lua, end that announcement.
-- KEYS[1]: the generation key. KEYS[2]: the table's writers key.
-- ARGV[1]: "1" to end an announced write, "0" otherwise.
--
-- The new value is the larger of the old value + 1 and the server clock in
-- microseconds, so it also stays above any value the key had before it was
-- lost (see gen_read.lua). Values are decimal strings below 2^53, which Lua
-- numbers hold exactly.
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
local v = redis.call('GET', KEYS[1])
local new = now
if v and tonumber(v) and tonumber(v) >= tonumber(now) then
  new = redis.call('INCR', KEYS[1])
else
  redis.call('SET', KEYS[1], now)
end
if ARGV[1] == '1' and redis.call('DECR', KEYS[2]) <= 0 then
  redis.call('DEL', KEYS[2])
end
return new
