-- write_begin.lua: announce a write to a table that is about to commit.
-- KEYS[1]: the table's writers key. ARGV[1]: its lifetime in milliseconds.
--
-- While the key exists no entry of the table is served and no fill stores
-- one, so a read that follows a read of the committed rows can never be
-- answered with older ones. The lifetime bounds the effect of a writer that
-- dies before write_end.
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
