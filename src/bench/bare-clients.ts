// The two baselines: (b) a bare grpc-js client on kept-open channels, (c) the naive peer loop
// (a new channel per call, a login per poll), each doing the same RPCs as a bos-fleet poll.
import * as grpc from '@grpc/grpc-js';
import { methodDefinition } from '../core/methods.js';

export interface BareTarget {
  host: string;
  port: number;
}

const POLL_READS = ['GetMinerDetails', 'GetMinerStats', 'GetHashboards', 'GetCoolingState', 'GetPoolGroups', 'GetTunerState', 'GetErrors'] as const;
const OPTIONS: grpc.ChannelOptions = { 'grpc.enable_retries': 0, 'grpc.enable_channelz': 0 };

function unary(client: grpc.Client, method: string, request: object, token: string | undefined, timeoutMs: number): Promise<{ response: Record<string, unknown>; header?: grpc.Metadata }> {
  const def = methodDefinition(method);
  const md = new grpc.Metadata();
  if (token) md.set('authorization', token);
  return new Promise((resolve, reject) => {
    let header: grpc.Metadata | undefined;
    const call = client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, request, md, { deadline: Date.now() + timeoutMs }, (err, res) =>
      err ? reject(err) : resolve({ response: res as Record<string, unknown>, ...(header ? { header } : {}) }),
    );
    call.on('metadata', (h: grpc.Metadata) => (header = h));
  });
}

function tokenOf(r: { response: Record<string, unknown>; header?: grpc.Metadata }): string {
  return (r.response['token'] as string) || String(r.header?.get('authorization')[0] ?? '');
}

/** What (b) remembers about a miner between polls, as the core does: its token and API version. */
export interface BareSession {
  token: string;
  old: boolean;
}

/**
 * (b): one kept-open channel per miner; version and login on the first poll (remembered after, as
 * the core remembers them), then the reads in parallel.
 */
export async function barePoll(clients: Map<string, grpc.Client>, known: Map<string, BareSession>, t: BareTarget, creds: { username: string; password: string }, timeoutMs: number): Promise<void> {
  const key = `${t.host}:${t.port}`;
  let c = clients.get(key);
  if (!c) clients.set(key, (c = new grpc.Client(key, grpc.credentials.createInsecure(), OPTIONS)));
  let session = known.get(key);
  if (!session) {
    const v = await unary(c, 'GetApiVersion', {}, undefined, timeoutMs);
    const token = tokenOf(await unary(c, 'Login', creds, undefined, timeoutMs));
    known.set(key, (session = { token, old: Number(v.response['major']) === 1 && Number(v.response['minor']) < 2 }));
  }
  const { token, old } = session;
  await Promise.all(POLL_READS.filter((m) => !(old && m === 'GetErrors')).map((m) => unary(c, m, {}, token, timeoutMs)));
}

/**
 * (c): what peers do: a new channel for every call, a login for every poll. With grpc-js's defaults a
 * new channel quietly shares the connection of another open channel to the same address through the
 * process-wide subchannel pool (kept until its 10-20 s sweep). `ownConnection` gives every channel its
 * own connection instead, as a new channel gets in clients without such a pool (grpc-go's Dial per call).
 */
export async function naivePoll(t: BareTarget, creds: { username: string; password: string }, timeoutMs: number, ownConnection = false): Promise<void> {
  const options = ownConnection ? { ...OPTIONS, 'grpc.use_local_subchannel_pool': 1 } : OPTIONS;
  const once = async (method: string, request: object, token?: string) => {
    const c = new grpc.Client(`${t.host}:${t.port}`, grpc.credentials.createInsecure(), options);
    try {
      return await unary(c, method, request, token, timeoutMs);
    } finally {
      c.close();
    }
  };
  const v = await once('GetApiVersion', {});
  const token = tokenOf(await once('Login', creds));
  const old = Number(v.response['major']) === 1 && Number(v.response['minor']) < 2;
  await Promise.all(POLL_READS.filter((m) => !(old && m === 'GetErrors')).map((m) => once(m, {}, token)));
}
