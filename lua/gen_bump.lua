-- gen_bump.lua: advance a table's generation past every value it had and
-- end the announcements (write_begin.lua) of the writes it completes.
-- KEYS[1]: the generation key. KEYS[2]: the table's writers key.
-- ARGV: the tokens of the announcements to end, possibly none.
--
-- The new value is the larger of the old value + 1 and the server clock in
-- microseconds, so it also stays above any value the key had before it was
-- lost (see gen_read.lua). Values are decimal strings below 2^53, which Lua
-- numbers hold exactly. Removing a token twice does nothing, so the script
-- can be retried safely; Redis deletes the set with its last member.
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
local v = redis.call('GET', KEYS[1])
local new = now
if v and tonumber(v) and tonumber(v) >= tonumber(now) then
  new = redis.call('INCR', KEYS[1])
else
  redis.call('SET', KEYS[1], now)
end
if #ARGV > 0 then
  redis.call('SREM', KEYS[2], unpack(ARGV))
end
return new
