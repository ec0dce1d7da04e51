/**
 * XNNPACK's thread pool (lib/runtime/wasm-threads.ts): one engine per
 * process, so each thread count runs in a child process
 * (tests/fixtures/threads-child.ts) and the results are compared here.
 */
import test from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { defaultThreads, machineCores, requestedThreads, threadsForLoad, THREADS_ENV } from '../../../lib/runtime/wasm-threads';
import { throwsOH } from '../../helpers';

interface ChildResult { threads: number; loss: number; gradNorm: number; weights: number[]; logits: number[]; decoded: number[]; nll: number }

function runChild(threads: number): ChildResult {
  const out = execFileSync(process.execPath, [path.join(__dirname, '..', '..', 'fixtures', 'threads-child.js')], {
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

test('unset ORDERHEAD_THREADS: every core other processes leave free, at least 1', async () => {
  assert.equal(threadsForLoad(2, 0), 2);
  assert.equal(threadsForLoad(2, 0.4), 2);
  assert.equal(threadsForLoad(2, 0.6), 1);
  assert.equal(threadsForLoad(2, 5), 1);
  assert.equal(threadsForLoad(16, 3.2), 13);
  const d = await defaultThreads(50);
  assert.ok(Number.isInteger(d.threads) && d.threads >= 1 && d.threads <= machineCores(), `${d.threads} threads`);
  assert.ok(d.why.length > 0);
});

test('ORDERHEAD_THREADS: unset leaves the choice to defaultThreads; not a whole number from 1 to the cores is refused, naming the variable and the range', () => {
  const cores = machineCores();
  assert.equal(requestedThreads({}), undefined);
  assert.equal(requestedThreads({ [THREADS_ENV]: ' 1 ' }), 1);
  for (const bad of ['0', '-1', '1.5', 'two', String(cores + 1)]) throwsOH(() => requestedThreads({ [THREADS_ENV]: bad }), THREADS_ENV, `from 1 to ${cores}`);
});
