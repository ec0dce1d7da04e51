/**
 * How many XNNPACK threads a process asks for (lib/runtime/wasm-threads.ts):
 * the load rule and ORDERHEAD_THREADS. That two threads compute what one does
 * runs child processes: tests/integration/threads.test.ts.
 */
import test from 'node:test';
import * as assert from 'node:assert/strict';
import { defaultThreads, machineCores, requestedThreads, threadsForLoad, THREADS_ENV } from '../../../lib/runtime/wasm-threads';
import { throwsOH } from '../../helpers';

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
