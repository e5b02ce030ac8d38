-- write_begin.lua: announce a write to a table that is about to commit.
-- KEYS[1]: the table's writers key (<gen>:w, writes that end with a bump)
-- or held key (<gen>:h, writes whose commit cannot be followed), a sorted
-- set of the tokens of the writes in progress scored by their deadline in
-- milliseconds of the server clock. ARGV[1]: this write's token. ARGV[2]:
-- its lifetime in milliseconds.
--
-- While the set exists no entry of the table is served and no fill stores
-- one, so a read that follows a read of the committed rows can never be
-- answered with older ones. gen_bump.lua removes the token; a token per
-- write makes that removal idempotent, so a retried bump cannot end another
-- write's announcement. Each token ends by its own deadline, whatever else
-- writes: every script that touches the set first drops the tokens past
-- theirs, and the key expires with the latest deadline it holds, so a token
-- nobody removes (a writer that died, a reply lost after Redis applied it)
-- ends within its lifetime.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
