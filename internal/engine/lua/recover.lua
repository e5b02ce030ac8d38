-- recover.lua: drop the generations of a server that has not had the
-- prefix recovered since it started (restart.go), once per run of the
-- server: instances that find it so together drop them once, and the
-- entries the first of them stores after that stay current.
-- KEYS[1]: the key that records the run of the server that recovered the
-- prefix (its run_id). ARGV[1]: "drop" (a batch: drop, and return 0 if
-- the server is recovered already) or "done" (drop, and record the run).
-- ARGV[2..]: generations to drop. Those are not declared: on a node in
-- cluster mode they are in other slots, which a script without flags may
-- use when its node holds them.
--
-- A run_id is random per start of a server: a snapshot, an append-only
-- file or a replica brings back the key with another server's run, and so
-- the recovery again. A server without a run_id (a stand-in for tests) is
-- recovered each time.
local info = redis.pcall('INFO', 'server')
local run = type(info) == 'string' and string.match(info, 'run_id:(%w+)') or nil
if run and redis.call('GET', KEYS[1]) == run then
  return 0
end
-- A write first: Redis over maxmemory (noeviction) lets a script that has
-- written run to its end, as gen_bump.lua explains.
redis.call('DEL', KEYS[1])
for i = 2, #ARGV do
  redis.call('DEL', ARGV[i])
end
if run and ARGV[1] == 'done' then
  -- Kept a day: it is read only while instances find the mark missing,
  -- in the moments after a start.
  redis.call('SET', KEYS[1], run, 'EX', 86400)
end
return 1
