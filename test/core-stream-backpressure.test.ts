// A slow consumer of the status stream pauses the stream instead of pulling it into memory.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { minerStatusStream } from '../src/core/index.js';
import { startSimFleet, type FleetControl } from '../src/sim/index.js';
import { simTarget, testCore } from './helpers/core.js';

let fleet: FleetControl;
beforeAll(async () => {
  // In its own process, so this process's memory holds only what the client pulls in.
  fleet = await startSimFleet({ miners: 1, base: '127.19.0.1', sharded: true });
});
afterAll(() => fleet.close());

describe('status stream backpressure', () => {
  it('a consumer that is not reading stops the reads: 320 MB sent, client memory flat, messages still delivered', async () => {
    const core = testCore();
    const m = fleet.miners[0]!;
    const it = minerStatusStream(core, core.miner(simTarget(m.id, m.host)))[Symbol.asyncIterator]();
    expect((await it.next()).value).toMatchObject({ status: 'MINER_STATUS_NORMAL' });
    const rssBefore = process.memoryUsage().rss;
    // 20,000 messages of 16 KiB each. A client that kept reading them (the usual 'data' listener)
    // grows by ~45 MB here; one that honours backpressure reads only its buffer and the HTTP/2 window.
    await fleet.floodStatus(m.id, 20_000, 16_384);
    await new Promise((r) => setTimeout(r, 2_000));
    const grownMb = (process.memoryUsage().rss - rssBefore) / 1024 / 1024;
    expect(grownMb).toBeLessThan(15);
    let read = 0;
    for (let i = 0; i < 2_000; i++) if (!(await it.next()).done) read++;
    expect(read).toBe(2_000); // delivered, in order, once the consumer reads
    await it.return(undefined);
    core.close();
  });
});
