/**
 * Backend choice: one call picks the fastest TensorFlow.js backend this
 * machine can run, and says why the faster ones were skipped.
 *
 * Order: `tensorflow` via tfjs-node-gpu (CUDA), `tensorflow` via tfjs-node
 * (libtensorflow on the CPU), `wasm` (XNNPACK, with our training kernels),
 * `cpu` (plain JS, the reference). `ORDERHEAD_BACKEND` forces one.
 *
 * The wasm engine runs XNNPACK's thread pool on every core (wasm-threads.ts);
 * `ORDERHEAD_THREADS=1` selects the single-threaded engine. Engines on worker
 * threads (Stage 1 arms, oracle shards) pass `threads: 1`: several pools on
 * two cores would only oversubscribe them.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { OrderHeadError, oneOf } from './errors';
import { registerWasmTrainingKernels } from './wasm-kernels';
import { registerTrainingGradients } from './gradients';
import { defaultThreads, requestedThreads, setThreadedWasmBackend } from './wasm-threads';

export const BACKEND_CHOICES = ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];
export type BackendKind = Exclude<BackendChoice, 'auto'>;

/** What `initBackend` did, for printing at the top of every notebook and run. */
export interface BackendReport {
  /** Our name for it (`tensorflow-gpu` and `tensorflow` are both tfjs's `tensorflow`). */
  kind: BackendKind;
  /** tfjs's own backend name, as `tf.getBackend()` reports it. */
  tfBackend: string;
  /** Why each faster backend was not used. */
  skipped: { kind: BackendKind; reason: string }[];
  /** Whether the choice was forced by ORDERHEAD_BACKEND. */
  forced: boolean;
  /** Threads of the engine's matrix kernels (wasm: XNNPACK's pool; 1 elsewhere, where the backend schedules its own). */
  threads: number;
  /** Why that many: given (ORDERHEAD_THREADS or the caller), or what `defaultThreads` measured. */
  threadsWhy: string;
  tfjsVersion: string;
  /** One line for humans. */
  summary: string;
}

const ORDER: BackendKind[] = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];
const NODE_PACKAGE: Partial<Record<BackendKind, string>> = {
  'tensorflow-gpu': '@tensorflow/tfjs-node-gpu',
  tensorflow: '@tensorflow/tfjs-node',
};

let current: BackendReport | null = null;
/** Threads of the wasm engine once it exists (it cannot change within a process). */
let wasmThreads = 1;

/**
 * Try to load a native tfjs-node binding; return the reason it cannot be used,
 * or null when it registered the `tensorflow` backend.
 */
function loadNative(kind: 'tensorflow-gpu' | 'tensorflow'): string | null {
  const pkg = NODE_PACKAGE[kind]!;
  let pkgJson: string;
  try {
    pkgJson = require.resolve(`${pkg}/package.json`);
  } catch {
    return `${pkg} not installed; see README: GPU`;
  }
  // danfojs-node's npm override installs plain @tensorflow/tfjs under the
  // tfjs-node name: present on disk, but no native binding.
  const name = JSON.parse(fs.readFileSync(pkgJson, 'utf8')).name;
  if (name !== pkg) return `${pkg} is an alias of ${name} (no native binding); see README: GPU`;
  if (!fs.existsSync(path.join(path.dirname(pkgJson), 'lib'))) return `${pkg} installed without its native library; see README: GPU`;
  try {
    require(pkg);
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    return `${pkg} failed to load (${msg}); ${kind === 'tensorflow-gpu' ? 'it needs CUDA 11.2 and cuDNN 8.1' : 'reinstall it'}; see README: GPU`;
  }
  return tf.findBackendFactory('tensorflow') ? null : `${pkg} loaded but did not register the tensorflow backend`;
}

async function activate(kind: BackendKind, threads: number): Promise<string | null> {
  try {
    if (kind === 'tensorflow-gpu' || kind === 'tensorflow') {
      const why = loadNative(kind);
      if (why) return why;
      return (await tf.setBackend('tensorflow')) ? null : 'tf.setBackend("tensorflow") failed';
    }
    if (kind === 'wasm') {
      require('@tensorflow/tfjs-backend-wasm');
      registerWasmTrainingKernels();
      if (threads > 1) {
        wasmThreads = await setThreadedWasmBackend(threads);
        return null;
      }
      return (await tf.setBackend('wasm')) ? null : 'the wasm module failed to initialise';
    }
    return (await tf.setBackend('cpu')) ? null : 'the cpu backend failed to initialise';
  } catch (e) {
    return `${kind} failed: ${(e as Error).message.split('\n')[0]}`;
  }
}

/** Read and validate ORDERHEAD_BACKEND (default `auto`). */
export function requestedBackend(env: NodeJS.ProcessEnv = process.env): BackendChoice {
  return oneOf(env.ORDERHEAD_BACKEND ?? 'auto', BACKEND_CHOICES, 'ORDERHEAD_BACKEND');
}

/**
 * Pick and activate the fastest available backend (or the forced one).
 * Idempotent: a second call returns the first call's report unless `force` differs.
 */
export async function initBackend(opts: { force?: BackendChoice; quiet?: boolean; threads?: number } = {}): Promise<BackendReport> {
  const choice = opts.force ?? requestedBackend();
  const given = opts.threads ?? requestedThreads();
  registerTrainingGradients();
  if (current && (choice === 'auto' || choice === current.kind)) return current;
  const { threads, why: threadsWhy } = given !== undefined
    ? { threads: given, why: opts.threads !== undefined ? 'set by the caller' : 'set by ORDERHEAD_THREADS' }
    : await defaultThreads();
  // PROD silences tfjs's advert for tfjs-node on first use in Node; our report says it better.
  tf.env().set('PROD', true);
  const skipped: BackendReport['skipped'] = [];
  const candidates = choice === 'auto' ? ORDER : [choice];
  let chosen: BackendKind | null = null;
  for (const kind of candidates) {
    const why = await activate(kind, threads);
    if (why === null) { chosen = kind; break; }
    skipped.push({ kind, reason: why });
  }
  if (!chosen) {
    throw new OrderHeadError(
      `backend '${choice}' is not available (${skipped.map((s) => s.reason).join('; ')})`,
      'ORDERHEAD_BACKEND',
      `unset it to choose automatically, or use one of: ${BACKEND_CHOICES.join(', ')}`,
    );
  }
  const forced = choice !== 'auto';
  const why = skipped.length ? ` (skipped: ${skipped.map((s) => `${s.kind}: ${s.reason}`).join('; ')})` : '';
  const engineThreads = chosen === 'wasm' ? wasmThreads : 1;
  current = {
    kind: chosen,
    tfBackend: tf.getBackend(),
    skipped,
    forced,
    threads: engineThreads,
    threadsWhy,
    tfjsVersion: tf.version.tfjs,
    summary: `backend ${chosen}${chosen === 'wasm' ? ` (${engineThreads} thread${engineThreads === 1 ? '' : 's'}${threadsWhy.startsWith('other') ? `: ${threadsWhy}` : ''})` : ''}${forced ? ' (forced by ORDERHEAD_BACKEND)' : ''}${why}`,
  };
  if (!opts.quiet) console.log(current.summary);
  return current;
}

/** The report of the active backend, or null before `initBackend`. */
export function backendReport(): BackendReport | null {
  return current;
}
