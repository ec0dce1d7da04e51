/**
 * XNNPACK's thread pool (lib/runtime/wasm-threads.ts): one engine per
 * process, so each thread count runs in a child process
 * (tests/fixtures/threads-child.ts) and the results are compared here.
 */
import test from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { machineCores, THREADS_ENV } from '../../lib/runtime/wasm-threads';

interface ChildResult { threads: number; loss: number; gradNorm: number; weights: number[]; logits: number[]; decoded: number[]; nll: number }

function runChild(threads: number): ChildResult {
  const out = execFileSync(process.execPath, [path.join(__dirname, '..', 'fixtures', 'threads-child.js')], {
    env: { ...process.env, [THREADS_ENV]: String(threads) }, encoding: 'utf8', timeout: 120_000,
  });
  return JSON.parse(out.trim().split('\n').pop()!) as ChildResult;
}

const maxRel = (a: number[], b: number[]) => {
  let num = 0, den = 1e-12;
  a.forEach((v, i) => { num = Math.max(num, Math.abs(v - b[i])); den = Math.max(den, Math.abs(b[i])); });
  return num / den;
};

test('two threads give the one-thread training step, logits, decoding and NLL (within 1e-5), and the process exits by itself', { skip: machineCores() < 2 }, () => {
  const one = runChild(1), two = runChild(2);
  assert.equal(one.threads, 1);
  assert.equal(two.threads, 2, 'the engine did not start its pool of 2 threads');
  for (const k of ['logits', 'decoded', 'weights'] as const) assert.ok(maxRel(two[k], one[k]) <= 1e-5, `${k}: max relative difference ${maxRel(two[k], one[k])}`);
  for (const k of ['loss', 'gradNorm', 'nll'] as const) assert.ok(Math.abs(two[k] - one[k]) <= 1e-5 * Math.abs(one[k]), `${k}: ${two[k]} vs ${one[k]}`);
});
