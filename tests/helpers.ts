/** Shared test helpers: run the same computation on two backends and compare. */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/runtime/backend';
import * as assert from 'node:assert/strict';
import { seedFrom, rng } from '../lib/runtime/seed';
import { OrderHeadError } from '../lib/runtime/errors';

/** Load wasm with our training kernels (once). */
export async function useWasm(): Promise<void> {
  await initBackend({ force: 'wasm', quiet: true });
  // initBackend returns early once wasm is registered; a test that ran on cpu must still come back.
  if (tf.getBackend() !== 'wasm') await tf.setBackend('wasm');
}

/** Deterministic random float array. */
export function randArray(n: number, seed: string | number): Float32Array {
  const r = rng(seedFrom(seed));
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r.normal();
  return a;
}

/** Run `f` on the given backend and return its outputs as flat arrays. */
export async function onBackend(name: 'cpu' | 'wasm', f: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  if (name === 'wasm') await useWasm(); else await tf.setBackend('cpu');
  const out = tf.tidy(f);
  const list = Array.isArray(out) ? out : [out];
  const arrays = list.map((t) => t.dataSync() as Float32Array);
  tf.dispose(list);
  if (name === 'cpu') await useWasm();
  return arrays;
}

/** max |a - b| / max |b|: the relative error of `a` against reference `b`. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let num = 0, den = 1e-12;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}

/** Assert that `fn` throws an OrderHeadError whose message contains every `parts` entry. */
export function throwsOH(fn: () => unknown, ...parts: Array<string | RegExp>): OrderHeadError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof OrderHeadError, `expected OrderHeadError, got ${caught instanceof Error ? caught.stack : String(caught)}`);
  for (const p of parts) {
    if (typeof p === 'string') assert.ok(caught.message.includes(p), `message lacks '${p}': ${caught.message}`);
    else assert.match(caught.message, p);
  }
  return caught;
}
