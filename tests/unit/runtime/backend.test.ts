/** Backend choice: the order, the reasons for skipping, forcing, and bad names. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend, requestedBackend } from '../../../lib/runtime/backend';
import { OrderHeadError } from '../../../lib/runtime/errors';

test('auto picks the fastest available backend and says why faster ones were skipped', async () => {
  const r = await initBackend({ force: 'auto', quiet: true });
  assert.equal(tf.getBackend(), r.tfBackend);
  const order = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];
  // Every skipped backend comes before the chosen one, each with a reason.
  assert.deepEqual(r.skipped.map((s) => s.kind), order.slice(0, order.indexOf(r.kind)));
  for (const s of r.skipped) assert.match(s.reason, /see README: GPU|failed|not/);
  assert.match(r.summary, new RegExp(`backend ${r.kind}`));
});

test('ORDERHEAD_BACKEND forces a backend', async () => {
  assert.equal(requestedBackend({ ORDERHEAD_BACKEND: 'cpu' }), 'cpu');
  const r = await initBackend({ force: 'cpu', quiet: true });
  assert.equal(r.kind, 'cpu');
  assert.equal(tf.getBackend(), 'cpu');
  assert.ok(r.forced);
  const w = await initBackend({ force: 'wasm', quiet: true });
  assert.equal(tf.getBackend(), 'wasm');
  assert.equal(w.kind, 'wasm');
});

test('an unknown backend name lists the valid ones', () => {
  assert.throws(() => requestedBackend({ ORDERHEAD_BACKEND: 'webgpu' }),
    (e: unknown) => e instanceof OrderHeadError && /ORDERHEAD_BACKEND/.test(e.message) && /auto, tensorflow-gpu, tensorflow, wasm, cpu/.test(e.message));
});

test('forcing a backend that is not installed fails with the reason and the fix', async (t) => {
  let gpuInstalled = true;
  try { require.resolve('@tensorflow/tfjs-node-gpu'); } catch { gpuInstalled = false; }
  if (gpuInstalled) { t.skip('tfjs-node-gpu is installed here'); return; }
  await assert.rejects(initBackend({ force: 'tensorflow-gpu', quiet: true }),
    (e: unknown) => e instanceof OrderHeadError && /tfjs-node-gpu not installed; see README: GPU/.test(e.message));
});
