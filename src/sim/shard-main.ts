// Child-process entry of a SimCluster shard: runs a SimFleet and answers control calls over IPC.
import { SimFleet, type SimFleetOptions } from './fleet.js';

let fleet: SimFleet | undefined;

process.on('message', (msg: { id: number; op: string; args: unknown[] }) => {
  void (async () => {
    try {
      let result: unknown;
      if (msg.op === 'start') {
        fleet = await SimFleet.start(msg.args[0] as SimFleetOptions);
      } else if (!fleet) {
        throw new Error('shard not started');
      } else {
        const fn = (fleet as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[msg.op];
        if (typeof fn !== 'function') throw new Error(`unknown op ${msg.op}`);
        result = await fn.apply(fleet, msg.args);
      }
      process.send?.({ id: msg.id, ok: true, result });
      if (msg.op === 'close') process.disconnect();
    } catch (err) {
      process.send?.({ id: msg.id, ok: false, error: err instanceof Error ? err.message : String(err) });
    }
  })();
});
process.on('disconnect', () => {
  void fleet?.close().finally(() => process.exit(0));
});
