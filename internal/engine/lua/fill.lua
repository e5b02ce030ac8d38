-- fill.lua: store an entry unless the stored one was computed under newer
-- generations.
-- KEYS[1]: the entry key. ARGV[1]: the new entry's stamp. ARGV[2]: the
-- stored value ("<stamp>|<entry>"). ARGV[3]: its TTL in milliseconds.
--
-- A stamp lists the generations of the tables an entry read, in one order
-- for one key. Generations only grow, so two stamps of one key are ordered
-- component by component, and the first differing component decides.
-- Returns 1 if stored, 0 if a newer entry was kept.
local cur = redis.call('GET', KEYS[1])
if cur then
  local stamp = string.match(cur, '^([0-9,]*)|')
  if stamp then
    local old, new = {}, {}
    for g in string.gmatch(stamp, '[0-9]+') do old[#old + 1] = tonumber(g) end
    for g in string.gmatch(ARGV[1], '[0-9]+') do new[#new + 1] = tonumber(g) end
    if #old == #new then
      for i = 1, #old do
        if old[i] > new[i] then
          return 0
        end
        if old[i] < new[i] then
          break
        end
      end
    end
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
