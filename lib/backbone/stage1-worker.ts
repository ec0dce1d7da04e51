/**
 * Worker-thread entry for Stage 1 training. The wasm backend is single-threaded
 * in Node, so the block-RAR backbone and its raster baseline train side by side
 * in two workers — one per core — each with its own tfjs engine.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { initBackend, BackendChoice } from '../runtime/backend';
import { trainStage1, Stage1Config, TokenData } from './stage1';
import { GPTConfig } from './config';
import { disposeGPT } from './gpt';

export interface Stage1Job { root: string; name: string; cfg: Stage1Config; data: TokenData; model: GPTConfig; maxSteps?: number; from?: string }
export type Stage1WorkerMessage =
  | { type: 'step'; step: number; metrics: Record<string, number> }
  | { type: 'done'; steps: number; checkpoints: string[]; runDir: string }
  | { type: 'error'; message: string };

async function main() {
  const { job, backend } = workerData as { job: Stage1Job; backend: BackendChoice };
  const post = (m: Stage1WorkerMessage) => parentPort!.postMessage(m);
  try {
    await initBackend({ force: backend, quiet: true, threads: 1 }); // one engine per core: the arms share the machine
    const res = trainStage1(job.root, job.name, job.cfg, job.data, job.model, {
      maxSteps: job.maxSteps,
      onStep: (step, metrics) => post({ type: 'step', step, metrics }),
    }, job.from);
    disposeGPT(res.model);
    post({ type: 'done', steps: res.steps, checkpoints: res.checkpoints, runDir: res.run.dir });
  } catch (e) {
    post({ type: 'error', message: e instanceof Error ? e.message : String(e) });
  }
}

if (parentPort) void main();
