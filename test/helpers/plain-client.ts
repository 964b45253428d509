// A bare grpc-js client, as any tool would write it, to show what status each simulated fault produces.
import * as grpc from '@grpc/grpc-js';
import { packageDefinition, SERVICE_NAMES, type ServiceKey } from '../../src/core/proto.js';

export interface PlainResult {
  code: grpc.status;
  details: string;
  response?: Record<string, unknown>;
  header?: grpc.Metadata;
  elapsedMs: number;
}

export function plainClient(host: string, port: number, options: grpc.ChannelOptions = {}): grpc.Client {
  return new grpc.Client(`${host}:${port}`, grpc.credentials.createInsecure(), { 'grpc.enable_retries': 0, ...options });
}

export function plainCall(
  client: grpc.Client,
  service: ServiceKey,
  method: string,
  request: Record<string, unknown> = {},
  opts: { token?: string; deadlineMs?: number } = {},
): Promise<PlainResult> {
  const def = packageDefinition()[SERVICE_NAMES[service]] as unknown as Record<string, grpc.MethodDefinition<unknown, unknown>>;
  const m = def[method];
  if (!m) throw new Error(`no method ${service}.${method}`);
  const md = new grpc.Metadata();
  if (opts.token) md.set('authorization', opts.token);
  const started = Date.now();
  return new Promise((resolve) => {
    let header: grpc.Metadata | undefined;
    const call = client.makeUnaryRequest(
      m.path,
      m.requestSerialize,
      m.responseDeserialize,
      request,
      md,
      { deadline: Date.now() + (opts.deadlineMs ?? 2_000) },
      (err, response) => {
        const elapsedMs = Date.now() - started;
        if (err) resolve({ code: err.code, details: err.details, header, elapsedMs });
        else resolve({ code: grpc.status.OK, details: '', response: response as Record<string, unknown>, header, elapsedMs });
      },
    );
    call.on('metadata', (h) => (header = h));
  });
}

export async function plainLogin(client: grpc.Client, username: string, password: string, deadlineMs?: number): Promise<string | undefined> {
  const r = await plainCall(client, 'auth', 'Login', { username, password }, deadlineMs === undefined ? {} : { deadlineMs });
  const body = r.response?.['token'];
  if (typeof body === 'string' && body !== '') return body;
  const h = r.header?.get('authorization')[0];
  return typeof h === 'string' ? h : undefined;
}
