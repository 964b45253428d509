// Runs tasks either in a Piscina pool configured for I/O (threads ≥ 1) or inline in this thread
// (threads = 0). Both take and return plain data.
import path from 'node:path';
import { Piscina } from 'piscina';
import { PACKAGE_ROOT } from '../core/proto.js';
import { createTaskRunner, type TaskInput, type TaskResult, type TaskRunnerConfig } from './task.js';

export interface Executor {
  readonly threads: number;
  run(input: TaskInput): Promise<TaskResult>;
  close(): Promise<void>;
}

export const THREAD_ENTRY = path.join(PACKAGE_ROOT, 'dist', 'workers', 'thread.js');

export function createExecutor(config: TaskRunnerConfig, threads: number, concurrency: number): Executor {
  if (threads === 0) {
    const runner = createTaskRunner(config);
    return { threads: 0, run: runner, close: async () => runner.close() };
  }
  const pool = new Piscina<TaskInput, TaskResult>({
    filename: THREAD_ENTRY,
    minThreads: threads,
    maxThreads: threads,
    // Threads hold open channels: never park them with Atomics.wait, never retire them when idle.
    atomics: 'disabled',
    idleTimeout: 2 ** 31 - 1,
    concurrentTasksPerWorker: Math.max(1, Math.ceil(concurrency / threads)),
    workerData: config,
  });
  return {
    threads,
    run: (input) => pool.run(input),
    close: () => pool.destroy(),
  };
}
