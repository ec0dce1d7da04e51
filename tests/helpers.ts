/**
 * Shared test helpers: run the same computation on two backends and compare;
 * and, for the bad-input tests (`describe('bad input', ...)` at the end of
 * each unit file), temp folders that must come out of a refusal byte for byte
 * as they went in, and OrderHeadErrors that must name the file or field and
 * carry a fix.
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/runtime/backend';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
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

/** The error must be an OrderHeadError whose message holds every part. */
function assertOH(err: unknown, parts: Array<string | RegExp>): asserts err is OrderHeadError {
  assert.ok(err instanceof OrderHeadError, `expected an OrderHeadError, got ${err instanceof Error ? err.stack : String(err)}`);
  for (const p of parts) {
    if (typeof p === 'string') assert.ok(err.message.includes(p), `message lacks '${p}': ${err.message}`);
    else assert.match(err.message, p);
  }
}

/** Assert that `fn` throws an OrderHeadError whose message contains every `parts` entry. */
export function throwsOH(fn: () => unknown, ...parts: Array<string | RegExp>): OrderHeadError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assertOH(caught, parts);
  return caught;
}

/** The error must be an OrderHeadError naming `where` (file or field) and every part, with a fix. */
function checkOH(err: unknown, where: string | RegExp, parts: Array<string | RegExp>): OrderHeadError {
  assertOH(err, []);
  if (typeof where === 'string') assert.ok(err.where.includes(where), `'where' is '${err.where}', expected it to name '${where}'`);
  else assert.match(err.where, where);
  assert.ok(err.fix.trim().length >= 10, `no fix given: ${err.message}`);
  assert.ok(err.message.includes('Fix: '), err.message);
  assertOH(err, parts);
  return err;
}

/** `fn` must throw an OrderHeadError naming `where` (file or config field), holding every part, with a fix. */
export function expectOH(fn: () => unknown, where: string | RegExp, ...parts: Array<string | RegExp>): OrderHeadError {
  try {
    fn();
  } catch (err) {
    return checkOH(err, where, parts);
  }
  assert.fail(`expected an OrderHeadError naming ${where}, nothing was thrown`);
}

/** `expectOH` for a function that returns a promise. */
export async function rejectsOH(fn: () => Promise<unknown>, where: string | RegExp, ...parts: Array<string | RegExp>): Promise<OrderHeadError> {
  try {
    await fn();
  } catch (err) {
    return checkOH(err, where, parts);
  }
  assert.fail(`expected an OrderHeadError naming ${where}, nothing was thrown`);
}

const sandboxes: string[] = [];

/** A fresh temp folder, removed when the test process exits. */
export function sandbox(): string {
  if (sandboxes.length === 0) process.once('exit', () => { for (const d of sandboxes) fs.rmSync(d, { recursive: true, force: true }); });
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-bad-'));
  sandboxes.push(d);
  return d;
}

/** Every file and folder under `dir`: relative path -> sha256 of the bytes ('dir' for folders). */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name), rel = path.relative(dir, full);
      if (e.isDirectory()) { out[rel] = 'dir'; walk(full); }
      else out[rel] = createHash('sha256').update(fs.readFileSync(full)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

/** The temp files (an atomic write's `.tmp-` names) anywhere under `dir`. */
export const tmpFiles = (dir: string): string[] => Object.keys(snapshot(dir)).filter((f) => f.includes('.tmp-'));

/**
 * Run `fn` (sync or async) and assert that `dir` is byte-identical afterwards,
 * with no file added or removed. `manifests` (relative paths) are run
 * manifests, the log of every (re)start of a run: a refused resume may append
 * one start to them, but every earlier entry must be kept as it was.
 */
export async function untouched<T>(dir: string, fn: () => T | Promise<T>, manifests: string[] = []): Promise<T> {
  const before = snapshot(dir);
  const logs = manifests.map((m) => JSON.parse(fs.readFileSync(path.join(dir, m), 'utf8')) as { starts: unknown[] });
  const res = await fn();
  const after = snapshot(dir);
  manifests.forEach((m, i) => {
    const now = JSON.parse(fs.readFileSync(path.join(dir, m), 'utf8')) as { starts: unknown[] };
    assert.deepEqual({ ...now, starts: now.starts.slice(0, logs[i].starts.length) }, logs[i], `${m}: earlier entries changed`);
    assert.ok(now.starts.length <= logs[i].starts.length + 1, `${m}: more than one start added`);
    delete before[m];
    delete after[m];
  });
  assert.deepEqual(after, before, `files under ${dir} changed`);
  return res;
}

/** Run `fn` with environment variables set (undefined = unset), restoring them afterwards. */
export async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T | Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) { if (x === undefined) delete process.env[k]; else process.env[k] = x; }
  };
  set(vars);
  try {
    return await fn();
  } finally {
    set(saved);
  }
}

/** An Error like the one Node throws when the disk is full. */
export const enospc = (): Error => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
