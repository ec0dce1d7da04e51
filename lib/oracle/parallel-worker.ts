/**
 * Worker-thread entry of `buildOracleDatasetParallel` (parallel.ts): one
 * shard i/N of the oracle dataset on its own tfjs engine and wasm backend,
 * with progress ticks, part notices and errors posted to the main thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { initBackend, BackendChoice } from '../runtime/backend';
import { OrderHeadError } from '../runtime/errors';
import { Progress } from '../runtime/progress';
import { OracleDatasetConfig } from './dataset-config';
import { ShardSpec } from './layout';
import { buildOracleDataset, BuildOracleResult, OraclePartInfo } from './build';

export interface OracleWorkerJob { dir: string; cfg: OracleDatasetConfig; shard: ShardSpec; backend: BackendChoice; pauseMs?: number }

/** What a worker reports when its shard is done: its build result without the manifest, the shard as "i/N". */
export type OracleShardSummary = Omit<BuildOracleResult, 'dir' | 'shard' | 'manifest'> & { shard: string };

export type OracleWorkerMessage =
  | { type: 'tick'; n: number }
  | { type: 'part'; info: OraclePartInfo }
  | { type: 'done'; summary: OracleShardSummary }
  | { type: 'error'; problem: string; where?: string; fix?: string };

async function main(): Promise<void> {
  const job = workerData as OracleWorkerJob;
  const post = (m: OracleWorkerMessage) => parentPort!.postMessage(m);
  try {
    await initBackend({ force: job.backend, quiet: true, threads: 1 }); // one engine per core: the shards share the machine
    const bar = (): Progress => {
      let count = 0;
      return {
        tick(n = 1) { count += n; post({ type: 'tick', n }); },
        done() { /* the main thread's bar finishes */ },
        get count() { return count; },
      };
    };
    const res = await buildOracleDataset(job.dir, job.cfg, {
      shard: job.shard, progress: bar, onPart: (info) => post({ type: 'part', info }), pauseMs: job.pauseMs,
    });
    const { dir: _dir, shard, manifest: _manifest, ...counts } = res;
    post({ type: 'done', summary: { ...counts, shard: `${shard.index}/${shard.count}` } });
  } catch (e) {
    if (e instanceof OrderHeadError) post({ type: 'error', problem: e.problem, where: e.where, fix: e.fix });
    else post({ type: 'error', problem: e instanceof Error ? e.message : String(e) });
  }
}

if (parentPort) void main();
