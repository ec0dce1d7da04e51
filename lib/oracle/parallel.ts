/**
 * The oracle dataset on several cores of one machine: `workers` worker
 * threads, each with its own tfjs engine and wasm backend (wasm is
 * single-threaded in Node, so one labelling loop uses one core), each
 * building shard i/N with `buildOracleDataset`, then one merge.
 *
 * Same files as N separate `cli.js build --shard i/N` processes: parts are
 * aligned to images, not shards, so the merged dataset is byte-identical to
 * a one-worker build (tests/integration/oracle-parallel.test.ts), and a killed build
 * resumes (in parallel or not) where it stopped.
 *
 * Measured on the `small` backbone, 2 workers against 1 on our 2-core
 * machine: see bench/README.md (`npm run bench`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { backendReport } from '../runtime/backend';
import { ensure, OrderHeadError } from '../runtime/errors';
import { Progress } from '../runtime/progress';
import { OracleDatasetConfig } from './dataset-config';
import { partCount, partFileName, partImages, shardParts } from './layout';
import { prepareOracleDataset } from './manifest';
import { OraclePartInfo } from './build';
import { mergeOracleDataset, MergeOracleResult } from './merge';
import type { OracleWorkerJob, OracleWorkerMessage, OracleShardSummary } from './parallel-worker';

export type { OracleShardSummary };

export interface ParallelOracleOptions {
  /** Worker threads (shards); capped at the number of parts. One core each. */
  workers: number;
  /**
   * Progress bar factory (as buildOracleDataset's): one bar over all workers,
   * counting primary states; every tick carries the combined states/s.
   */
  progress?: (opts: { total: number; label: string }) => Progress;
  /** Called (on the main thread) after any worker writes a part. */
  onPart?: (info: OraclePartInfo & { shard: string }) => void;
  /** Merge the parts into oracle.safetensors when every worker is done. Default true. */
  merge?: boolean;
  /** Sleep this long after each part in every worker (tests; leaves CPU to others). */
  pauseMs?: number;
}

export interface ParallelOracleResult {
  dir: string;
  /** Workers actually started (≤ requested: at most one per part). */
  workers: number;
  /** One summary per shard i/N, in shard order. */
  shards: OracleShardSummary[];
  /** Primary states labelled now, by all workers. */
  states: number;
  /** Wall time from the first worker's start to the last one's end (merge excluded). */
  seconds: number;
  /** Primary states per second of wall time, all workers together. */
  statesPerSecond: number;
  /** The merge, when `merge` was not false. */
  merged?: MergeOracleResult;
}

/**
 * Build (or continue) the oracle dataset in `dir` on `workers` threads, shard
 * i/N per worker, then merge. The manifest is written (or checked) here first,
 * so workers never race to create it. A worker's error terminates the others
 * and rejects with an OrderHeadError that names the shard; parts written
 * before it stay, and the next call continues from them.
 */
export async function buildOracleDatasetParallel(dir: string, cfg: OracleDatasetConfig, opts: ParallelOracleOptions): Promise<ParallelOracleResult> {
  ensure(Number.isInteger(opts?.workers) && opts.workers >= 1, `workers must be a whole number >= 1, got ${JSON.stringify(opts?.workers)}`,
    'buildOracleDatasetParallel(workers)', 'pass { workers: 2 } for two cores (one wasm backend per worker)');
  // Validates the config, the token cache and the backbone; writes the manifest (or refuses a different one).
  const prep = prepareOracleDataset(dir, cfg);
  const config = prep.config;
  const K = partCount(config);
  const N = Math.min(opts.workers, K);
  const S = config.statesPerImage;
  const statesLeft = (shard: number) => {
    const { first, end } = shardParts(config, { index: shard, count: N });
    let n = 0;
    for (let k = first; k < end; k++) {
      if (fs.existsSync(path.join(dir, partFileName(k, K)))) continue;
      const r = partImages(config, k);
      n += (r.end - r.start) * S;
    }
    return n;
  };
  const total = Array.from({ length: N }, (_, i) => statesLeft(i)).reduce((a, b) => a + b, 0);
  const bar = opts.progress?.({ total, label: `oracle x${N}` });
  const backend = backendReport()?.kind ?? 'auto';
  const t0 = Date.now();
  let done = 0;
  const workers: Worker[] = [];
  let failed = false;
  const runShard = (index: number) => new Promise<OracleShardSummary>((resolve, reject) => {
    const shard = `${index}/${N}`;
    const job: OracleWorkerJob = { dir, cfg: config, shard: { index, count: N }, backend, pauseMs: opts.pauseMs };
    const w = new Worker(path.join(__dirname, 'parallel-worker.js'), { workerData: job });
    workers.push(w);
    let settled = false;
    const fail = (err: OrderHeadError) => {
      if (settled) return;
      settled = true;
      reject(err);
    };
    w.on('message', (m: OracleWorkerMessage) => {
      if (m.type === 'tick') {
        done += m.n;
        const sec = (Date.now() - t0) / 1000;
        bar?.tick(m.n, { 'states/s': sec > 0 ? Number((done / sec).toPrecision(3)) : 0 });
      } else if (m.type === 'part') opts.onPart?.({ ...m.info, shard });
      else if (m.type === 'done') { settled = true; resolve(m.summary); }
      else if (m.type === 'error') {
        fail(new OrderHeadError(m.problem, `oracle shard ${shard} (worker thread)${m.where ? `: ${m.where}` : ''}`,
          m.fix ?? `see the message; the parts written so far stay, and buildOracleDatasetParallel or \`node dist/lib/oracle/cli.js build --run ${dir} --shard ${shard}\` continues`));
      }
    });
    w.on('error', (e) => fail(new OrderHeadError(`the worker thread failed: ${e.message}`, `oracle shard ${shard} (worker thread)`,
      'see the message; the parts written so far stay, and the next build continues from them')));
    w.on('exit', (code) => {
      if (!settled) fail(new OrderHeadError(`the worker thread exited (code ${code}) before finishing`, `oracle shard ${shard} (worker thread)`,
        'run the build again: it continues from the parts already written'));
    });
  });
  let shards: OracleShardSummary[];
  try {
    shards = await Promise.all(Array.from({ length: N }, (_, i) => runShard(i).catch((err) => {
      if (!failed) { failed = true; for (const w of workers) void w.terminate(); }
      throw err;
    })));
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  const seconds = (Date.now() - t0) / 1000;
  const states = shards.reduce((a, s) => a + s.states, 0);
  bar?.done({ 'states/s': seconds > 0 ? Number((states / seconds).toPrecision(3)) : 0 });
  const merged = opts.merge === false ? undefined : mergeOracleDataset(dir);
  return { dir, workers: N, shards, states, seconds, statesPerSecond: seconds > 0 ? states / seconds : NaN, merged };
}
