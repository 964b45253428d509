// A change run's journal: each miner's state from before its change, recorded just before the write
// (see RunStore.journalBefore), unless the miner's rollout was stopped by then.

/** A rollout's state key and the states (stopped ones) in which a miner of it must not be changed any more. */
export interface StopGuard {
  stateKey: string;
  states: readonly string[];
}

// KEYS[1] the run's journal, KEYS[2] (optional) a rollout's state hash. When that state is one of
// ARGV[3..], returns {0, state}; otherwise records ARGV[2] for miner ARGV[1] unless an earlier
// record is there, and returns {1, the record kept}.
export const JOURNAL_UNLESS_STOPPED = `
if KEYS[2] then
  local st = redis.call('HGET', KEYS[2], 'state')
  for i = 3, #ARGV do
    if st == ARGV[i] then return {0, st} end
  end
end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then return {1, ARGV[2]} end
return {1, redis.call('HGET', KEYS[1], ARGV[1])}`;
