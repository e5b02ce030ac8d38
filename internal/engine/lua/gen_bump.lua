-- gen_bump.lua: advance a table's generation past every value it had, end
-- the announcements (write_begin.lua) of the writes it completes, and tell
-- the readers waiting for them.
-- KEYS[1]: the generation key. KEYS[2]: the table's writers key. KEYS[3]:
-- its held key. ARGV[1]: the channel readers waiting for the table's
-- writes listen on. ARGV[2..]: the tokens of the announcements to end,
-- possibly none.
--
-- The new value is the larger of the old value + 1 and the server clock in
-- microseconds, so it also stays above any value the key had before it was
-- lost (see gen_read.lua). Values are decimal strings below 2^53, which Lua
-- numbers hold exactly. Removing a token twice does nothing, so the script
-- can be retried safely; Redis deletes a set with its last member.
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
local nowms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Tokens past their deadline go; the sets then expire with the latest
-- deadline they still hold. This comes first: Redis over maxmemory (policy
-- noeviction) refuses a script's commands that add data only until the
-- script has run its first write command, after which the script runs to
-- its end, so a full Redis still applies the whole bump, as it applies
-- write_begin.lua. A bump it refused anyway is handled by the caller.
for k = 2, 3 do
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', nowms)
  if k == 2 and #ARGV > 1 then
    redis.call('ZREM', KEYS[2], unpack(ARGV, 2))
  end
  local last = redis.call('ZRANGE', KEYS[k], -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', KEYS[k], last[2])
  end
end
local v = redis.call('GET', KEYS[1])
local new = now
if v and tonumber(v) and tonumber(v) >= tonumber(now) then
  new = redis.call('INCR', KEYS[1])
else
  redis.call('SET', KEYS[1], now)
end
redis.call('PUBLISH', ARGV[1], new)
return new
