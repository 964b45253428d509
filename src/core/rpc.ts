// One unary request on the wire, with a deadline, auth metadata, and the response header captured.
import * as grpc from '@grpc/grpc-js';
import type { MinerChannel } from './channel.js';
import { methodDefinition } from './methods.js';

export interface UnaryReply<T> {
  response: T;
  header?: grpc.Metadata;
}

export function invokeUnary<T>(
  channel: MinerChannel,
  method: string,
  request: object,
  opts: { token?: string; deadlineMs: number; signal?: AbortSignal },
): Promise<UnaryReply<T>> {
  const def = methodDefinition(method);
  const metadata = new grpc.Metadata();
  if (opts.token) metadata.set('authorization', opts.token);
  return new Promise((resolve, reject) => {
    let header: grpc.Metadata | undefined;
    const call = (channel.client as grpc.Client).makeUnaryRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      request,
      metadata,
      { deadline: Date.now() + Math.max(1, opts.deadlineMs) },
      (err, response) => {
        opts.signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve({ response: response as T, ...(header ? { header } : {}) });
      },
    );
    const onAbort = () => call.cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    call.on('metadata', (h: grpc.Metadata) => (header = h));
  });
}
