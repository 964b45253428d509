// Measurement helpers for the benchmark: peak RSS sampling, CPU time and latency percentiles.
import { readFileSync } from 'node:fs';

/** CPU time (ms) a process has used so far, from /proc (Linux); 0 elsewhere or once it is gone. */
export function processCpuMs(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime
    return Math.round((ticks * 1000) / 100);
  } catch {
    return 0;
  }
}

/** Processes that share the cores with the executor (Redis, the simulator's shards). */
export interface WatchedPids {
  redis?: number;
  sim: number[];
}

/** CPU the watched processes use from now on: `stop()` returns their use since the start (ms). */
export function watchedCpu(pids: WatchedPids | undefined): () => { redisCpuMs?: number; simCpuMs?: number } {
  if (!pids) return () => ({});
  const sim = () => pids.sim.reduce((sum, pid) => sum + processCpuMs(pid), 0);
  const redis0 = processCpuMs(pids.redis);
  const sim0 = sim();
  return () => ({ redisCpuMs: processCpuMs(pids.redis) - redis0, simCpuMs: sim() - sim0 });
}

/** Peak RSS while running, and the CPU time this process used (all threads). */
export function rssSampler(intervalMs = 100): { stop(): number; cpuMs(): number } {
  const cpu0 = process.cpuUsage();
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, process.memoryUsage.rss());
    },
    cpuMs() {
      const d = process.cpuUsage(cpu0);
      return Math.round((d.user + d.system) / 1000);
    },
  };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

export interface ModeResult {
  mode: string;
  label: string;
  n: number;
  durationMs: number;
  minersPerS: number;
  p50Ms: number;
  p99Ms: number;
  peakRssMb: number;
  /** CPU time of the executor process (user + system, all threads). */
  cpuMs: number;
  /** CPU time Redis used during this run (ms). */
  redisCpuMs?: number;
  /** CPU time the simulator's shard processes used during this run (ms). */
  simCpuMs?: number;
  counts: Record<string, number>;
  /** Which round of the benchmark this run belongs to (1-based). */
  round?: number;
  /** A steady figure: the wall times of the polls it is the median of (ms, in the order run). */
  steadyPollsMs?: number[];
}

export function result(mode: string, label: string, n: number, durationMs: number, latencies: number[], peakRss: number, cpuMs: number, counts: Record<string, number>): ModeResult {
  return {
    mode,
    label,
    n,
    durationMs,
    minersPerS: Math.round((n / (durationMs / 1000)) * 10) / 10,
    p50Ms: Math.round(percentile(latencies, 50)),
    p99Ms: Math.round(percentile(latencies, 99)),
    peakRssMb: Math.round(peakRss / 1024 / 1024),
    cpuMs,
    counts,
  };
}

/** Runs `work` over items with at most `concurrency` in flight. */
export async function forEachLimited<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const item = items[next++] as T;
        await work(item);
      }
    }),
  );
}
