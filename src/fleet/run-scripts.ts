// The Lua scripts of the run store (run-store.ts): each one step in Redis, and each safe to run twice
// (ioredis sends a command again on a new connection when the old one dropped before its reply).

// HSETNX each outcome (ARGV: minerId, json, code, change, minerId, json, code, change, …); only the
// first writer of a miner's outcome bumps the counters: its code's, '_done', and for a change
// ('applied', 'unchanged', 'would-apply'; '' for none) '_change:<change>'. Returns 1 (written) or 0
// (another outcome already there) per outcome; 1 also for an outcome there already byte for byte
// (its time to the millisecond too): this very write, run again after its reply was lost.
export const WRITE_OUTCOMES = `
local written = {}
for i = 1, #ARGV, 4 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('HINCRBY', KEYS[2], ARGV[i + 2], 1)
    redis.call('HINCRBY', KEYS[2], '_done', 1)
    if ARGV[i + 3] ~= '' then redis.call('HINCRBY', KEYS[2], '_change:' .. ARGV[i + 3], 1) end
    written[#written + 1] = 1
  elseif redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    written[#written + 1] = 1
  else
    written[#written + 1] = 0
  end
end
return written`;

// Creates run ARGV[3]: its record ARGV[1] in KEYS[1] unless there is one, and its place in the list of
// runs KEYS[2] (scored ARGV[2]) with it, in one step. Returns 1 when created — also when this very
// create (its token ARGV[4], kept as 'createdBy') made it already, its reply lost — else 0.
export const CREATE_RUN = `
if redis.call('HSETNX', KEYS[1], 'record', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'createdBy', ARGV[4])
  redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[3])
  return 1
end
if redis.call('HGET', KEYS[1], 'createdBy') == ARGV[4] then return 1 end
return 0`;
