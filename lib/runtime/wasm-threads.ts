/**
 * XNNPACK's thread pool inside one wasm engine under Node: two cores for one
 * model's matrix products and convolutions.
 *
 * tfjs turns wasm threads off under Node (tensorflow/tfjs#3830). Three things
 * stand in the way, and each is worked around only while the backend
 * initialises; every global is put back afterwards:
 *
 *   1. the flag: WASM_HAS_MULTITHREAD_SUPPORT is forced true, with the thread
 *      count and the binaries' folder set, so the threaded-SIMD binary loads;
 *   2. the workers: Emscripten starts its pthread workers from `blob:` URLs,
 *      which worker_threads refuses. While initialising, `Blob` keeps its
 *      text and `URL.createObjectURL` writes it to a file and returns the
 *      path. The worker script gets one more branch: when the main script
 *      arrives as such a text, it defines the bundle's module aliases and
 *      evaluates it (instead of `importScripts` of a blob URL);
 *   3. the count: the engine caps its pool at `os.cpus().length / 2` ("two
 *      hardware threads per core"), which is 1 on our 2-core machine, so
 *      `os.cpus` reports each core twice during initialisation.
 *
 * The pool's workers would keep Node's event loop alive after the work is
 * done (a script would never exit), so they are unref'd.
 *
 * Only XNNPACK kernels (matmul, conv) use the pool; JS kernels run on the
 * main thread as before. The heap becomes a SharedArrayBuffer: code that
 * views it or builds its own wasm module on it reads the memory through
 * `wasmHeap` (backend-memory.ts), which knows both kinds.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { OrderHeadError } from './errors';

// The module object itself (not an import namespace, whose properties are read-only): the engine reads `cpus` from it.
const os = require('node:os') as typeof import('node:os');

/** The environment variable that sets the threads of the wasm engine. */
export const THREADS_ENV = 'ORDERHEAD_THREADS';

/** Cores of this machine (what the pool may use at most). */
export const machineCores = (): number => Math.max(1, os.cpus().length);

/**
 * Threads for the wasm engine from ORDERHEAD_THREADS: a whole number from 1
 * (the single-threaded engine) to the machine's cores, or `undefined` when
 * unset (then `defaultThreads` decides). Anything else is refused naming the
 * variable and the range.
 */
export function requestedThreads(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env[THREADS_ENV];
  const cores = machineCores();
  if (raw === undefined || raw.trim() === '') return undefined;
  const n = Number(raw.trim());
  if (!Number.isInteger(n) || n < 1 || n > cores) {
    throw new OrderHeadError(`'${raw}' is not a whole number of threads from 1 to ${cores} (this machine's cores)`, `environment variable ${THREADS_ENV}`,
      `set it to 1 (one core) .. ${cores}, or unset it to use every core the machine has free`);
  }
  return n;
}

/**
 * The pool's threads for cores that other processes keep `othersBusy` cores
 * busy: the cores left free, rounded, at least 1. Why not always every core:
 * the pool splits each product into equal shares and waits for the last, so
 * a worker thread that another process keeps off its core stalls every
 * product. Measured on our 2-core machine with other jobs running (load 5-6):
 * the tokenizer notebook took 1421 s with 2 threads against 198 s idle, and
 * a training step of `small` 3272 ms with 2 threads against 1450 ms with 1
 * (bench/README.md).
 */
export function threadsForLoad(cores: number, othersBusy: number): number {
  return Math.max(1, Math.min(cores, Math.round(cores - othersBusy)));
}

/** Busy and total jiffies of the whole machine (/proc/stat), and this process's own (/proc/self/stat). */
function cpuTimes(): { busy: number; total: number; own: number } | null {
  try {
    const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = cpu[3] + (cpu[4] ?? 0);
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const self = fs.readFileSync('/proc/self/stat', 'utf8');
    const f = self.slice(self.lastIndexOf(')') + 2).split(' ').map(Number);
    return { busy: total - idle, total, own: f[11] + f[12] };
  } catch {
    return null;
  }
}

/**
 * The default thread count (ORDERHEAD_THREADS unset): every core that other
 * processes leave free, measured over `sampleMs` when the engine starts
 * (Linux /proc; every core where it cannot be read). The results do not
 * depend on it (tests/integration/threads.test.ts: two threads equal one); only the speed
 * does. A load that arrives later is not seen: set ORDERHEAD_THREADS=1 on a
 * machine shared with other jobs.
 */
export async function defaultThreads(sampleMs = 200): Promise<{ threads: number; why: string }> {
  const cores = machineCores();
  const a = cpuTimes();
  if (!a) return { threads: cores, why: 'every core' };
  await new Promise((r) => setTimeout(r, sampleMs));
  const b = cpuTimes()!;
  const span = b.total - a.total;
  // /proc/stat's total counts every core: span jiffies cover span / cores of wall time.
  const othersBusy = span > 0 ? Math.max(0, ((b.busy - a.busy) - (b.own - a.own)) / span) * cores : 0;
  const threads = threadsForLoad(cores, othersBusy);
  return {
    threads,
    why: threads === cores ? 'every core' : `other processes kept ${othersBusy.toFixed(1)} of ${cores} cores busy at start; ${THREADS_ENV}=${cores} forces ${cores}`,
  };
}

/** Where the wasm binaries live (the threaded one is loaded by path). */
function wasmDistFolder(): string {
  return path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.node.js'));
}

/** The text a Blob was made from, kept readable on both sides of postMessage. */
class ScriptText {
  readonly orderheadScript: string;
  constructor(parts: unknown[]) { this.orderheadScript = parts.map(String).join(''); }
}

/** The worker's loading branch for a main script sent as text (see the module comment, 2). */
const WORKER_LOAD = 'if(typeof e.data.urlOrBlob=="string"){importScripts(e.data.urlOrBlob)}';
const WORKER_LOAD_TEXT = WORKER_LOAD +
  'else if(e.data.urlOrBlob&&typeof e.data.urlOrBlob.orderheadScript=="string"){' +
  'Object.assign(global,{require$$0:require("fs"),require$$1:require("path"),require$$3:require("perf_hooks"),require$$4:require("os"),commonjsGlobal:global});' +
  '(0,eval)(e.data.urlOrBlob.orderheadScript)}';

interface PThreadPool { unusedWorkers: { unref(): void }[]; runningWorkers: { unref(): void }[] }

/**
 * `tf.setBackend('wasm')` with XNNPACK's pool of `threads` threads. Returns
 * the engine's own thread count. Call once, before the wasm backend exists.
 */
export async function setThreadedWasmBackend(threads: number): Promise<number> {
  const wasmPkg = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
  const saved = { Blob: globalThis.Blob, createObjectURL: URL.createObjectURL, cpus: os.cpus };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orderhead-wasm-'));
  let files = 0;
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  wasmPkg.setThreadsCount(threads);
  wasmPkg.setWasmPaths(`${wasmDistFolder()}/`);
  (globalThis as { Blob: unknown }).Blob = ScriptText;
  URL.createObjectURL = (obj: unknown) => {
    if (!(obj instanceof ScriptText)) return saved.createObjectURL(obj as Blob);
    const file = path.join(dir, `script-${files++}.js`);
    fs.writeFileSync(file, obj.orderheadScript.replace(WORKER_LOAD, () => WORKER_LOAD_TEXT));
    return file;
  };
  const cpus = saved.cpus;
  os.cpus = () => { const c = cpus(); return [...c, ...c]; };
  let ok: boolean;
  try {
    ok = await tf.setBackend('wasm');
  } finally {
    (globalThis as { Blob: unknown }).Blob = saved.Blob;
    URL.createObjectURL = saved.createObjectURL;
    os.cpus = cpus;
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    // The workers have read their scripts by now (or the start failed): the files can go.
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (!ok) throw new Error('the threaded wasm module failed to initialise');
  const mod = (tf.backend() as unknown as { wasm: { tfjs: { getThreadsCount(): number }; PThread?: PThreadPool } }).wasm;
  // The pool's workers must not hold the process open.
  for (const w of [...(mod.PThread?.unusedWorkers ?? []), ...(mod.PThread?.runningWorkers ?? [])]) w.unref();
  return mod.tfjs.getThreadsCount();
}
