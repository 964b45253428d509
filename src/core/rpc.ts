// One unary request on the wire, with a deadline, auth metadata, and the response header captured.
import * as grpc from '@grpc/grpc-js';
import type { MinerChannel } from './channel.js';
import { methodDefinition } from './methods.js';

export interface UnaryReply<T> {
  response: T;
  header?: grpc.Metadata;
}

/** A gRPC status as an Error shaped like grpc-js's ServiceError (code, details, metadata). */
function statusError(status: grpc.StatusObject): grpc.ServiceError {
  return Object.assign(new Error(`${status.code} ${grpc.status[status.code]}: ${status.details}`), status);
}

/**
 * Sends one request straight on the channel (`Channel.createCall`), as grpc-js's Client does inside
 * makeUnaryRequest but without its per-call event emitter, interceptor plumbing and caller-stack
 * capture: the core makes millions of these. Same semantics: deadline, one response message,
 * undecodable reply → INTERNAL "Response message parsing error", OK without a message →
 * UNIMPLEMENTED. The response header is captured only when asked (Login's token on API 1.0).
 */
export function invokeUnary<T>(
  channel: MinerChannel,
  method: string,
  request: object,
  deadlineMs: number,
  token: string | undefined,
  signal: AbortSignal | undefined,
  captureHeader = false,
): Promise<UnaryReply<T>> {
  const def = methodDefinition(method);
  const metadata = new grpc.Metadata();
  if (token) metadata.set('authorization', token);
  return new Promise((resolve, reject) => {
    const call = (channel.client as grpc.Client).getChannel().createCall(def.path, Date.now() + Math.max(1, deadlineMs), undefined, null, undefined);
    const onAbort = () => call.cancelWithStatus(grpc.status.CANCELLED, 'Cancelled on client');
    let header: grpc.Metadata | undefined;
    let response: T | undefined;
    let received = false;
    let failure: grpc.StatusObject | undefined;
    call.start(metadata, {
      onReceiveMetadata(h: grpc.Metadata) {
        if (captureHeader) header = h;
      },
      onReceiveMessage(message: Buffer) {
        if (received) return call.cancelWithStatus(grpc.status.UNIMPLEMENTED, 'Too many responses received');
        received = true;
        try {
          response = def.responseDeserialize(message) as T;
        } catch (e) {
          failure = { code: grpc.status.INTERNAL, details: `Response message parsing error: ${e instanceof Error ? e.message : String(e)}`, metadata: new grpc.Metadata() };
          call.cancelWithStatus(failure.code, failure.details);
        }
      },
      onReceiveStatus(status: grpc.StatusObject) {
        signal?.removeEventListener('abort', onAbort);
        if (failure) reject(statusError(failure));
        else if (status.code !== grpc.status.OK) reject(statusError(status));
        else if (!received) reject(statusError({ code: grpc.status.UNIMPLEMENTED, details: 'No message received', metadata: status.metadata }));
        else resolve(header ? { response: response as T, header } : { response: response as T });
      },
    });
    signal?.addEventListener('abort', onAbort, { once: true });
    call.startRead();
    let serialized: Buffer;
    try {
      serialized = def.requestSerialize(request);
    } catch (e) {
      call.cancelWithStatus(grpc.status.INTERNAL, `Request message serialization failure: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    call.sendMessageWithContext({}, serialized);
    call.halfClose();
  });
}
