-- write_begin.lua: announce a write to a table that is about to commit.
-- KEYS[1]: the table's writers key, a set of the tokens of the writes in
-- progress. ARGV[1]: this write's token. ARGV[2]: the set's lifetime in
-- milliseconds.
--
-- While the set exists no entry of the table is served and no fill stores
-- one, so a read that follows a read of the committed rows can never be
-- answered with older ones. gen_bump.lua removes the token; a token per
-- write makes that removal idempotent, so a retried bump cannot end another
-- write's announcement. The lifetime bounds the effect of a writer that dies
-- before its bump.
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
