// Piscina thread entry: one task runner (and so one FleetCore) per thread, built from workerData.
import { workerData } from 'node:worker_threads';
import { createTaskRunner, type TaskInput, type TaskResult, type TaskRunnerConfig } from './task.js';

const runner = createTaskRunner(workerData as TaskRunnerConfig);

export default function runTask(input: TaskInput): Promise<TaskResult> {
  return runner(input);
}
