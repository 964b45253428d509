// One miner's channel: a grpc-js client plus an explicit, guarded connection state machine.
import * as grpc from '@grpc/grpc-js';

export type ChannelState = 'idle' | 'connecting' | 'ready' | 'backoff' | 'closed';

/** The slice of grpc.Client the pool uses (a fake in unit tests). */
export interface ClientLike {
  getChannel(): {
    getConnectivityState(tryToConnect: boolean): grpc.connectivityState;
    watchConnectivityState?(current: grpc.connectivityState, deadline: number, cb: (err?: Error) => void): void;
  };
  close(): void;
}

const FROM_GRPC: Record<number, ChannelState> = {
  [grpc.connectivityState.IDLE]: 'idle',
  [grpc.connectivityState.CONNECTING]: 'connecting',
  [grpc.connectivityState.READY]: 'ready',
  [grpc.connectivityState.TRANSIENT_FAILURE]: 'backoff',
  [grpc.connectivityState.SHUTDOWN]: 'closed',
};

const ALLOWED: Record<ChannelState, readonly ChannelState[]> = {
  idle: ['connecting', 'ready', 'backoff', 'closed'],
  connecting: ['ready', 'backoff', 'idle', 'closed'],
  ready: ['idle', 'connecting', 'backoff', 'closed'],
  backoff: ['connecting', 'idle', 'ready', 'closed'],
  closed: [],
};

export type ReadyResult = 'ready' | 'failed' | 'timeout';

export class MinerChannel {
  private current: ChannelState = 'idle';
  lastUsedAtMs: number;
  consecutiveFailures = 0;
  /** Calls and streams using the channel now: the pool never closes it under them. */
  leases = 0;
  /** Out of the pool (evicted while in use, expired or unhealthy): closed when its last lease ends. */
  retired = false;

  constructor(
    readonly key: string,
    readonly client: ClientLike,
    readonly transport: 'plaintext' | 'tls',
    readonly createdAtMs: number,
  ) {
    this.lastUsedAtMs = createdAtMs;
  }

  /** The only way the state changes; a closed channel stays closed. */
  private transition(to: ChannelState): ChannelState {
    if (to !== this.current && ALLOWED[this.current].includes(to)) this.current = to;
    return this.current;
  }

  /** State as grpc-js sees it now (closed once we closed it). */
  get state(): ChannelState {
    if (this.current === 'closed') return 'closed';
    return this.transition(FROM_GRPC[this.client.getChannel().getConnectivityState(false)] ?? 'idle');
  }

  /**
   * Connects if needed, waiting at most timeoutMs. 'failed' means the connection attempt failed
   * (refused, unreachable, TLS): a call now fails fast and provably never reaches the miner.
   */
  waitReady(timeoutMs: number, nowMs: () => number = Date.now): Promise<ReadyResult> {
    const deadline = nowMs() + timeoutMs;
    return new Promise((resolve) => {
      const step = () => {
        if (this.current === 'closed') return resolve('failed');
        const channel = this.client.getChannel();
        const s = channel.getConnectivityState(true);
        const mapped = this.transition(FROM_GRPC[s] ?? 'idle');
        if (mapped === 'ready') return resolve('ready');
        if (mapped === 'backoff' || mapped === 'closed') return resolve('failed');
        if (!channel.watchConnectivityState || nowMs() >= deadline) return resolve('timeout');
        channel.watchConnectivityState(s, deadline, (err) => (err ? resolve('timeout') : step()));
      };
      step();
    });
  }

  close(): void {
    if (this.current === 'closed') return;
    this.transition('closed');
    this.client.close();
  }
}
