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

// ---- bad input ----
// What a user (or a crash) can get wrong here. Each test asserts an
// OrderHeadError naming the file or config field with a fix (expectOH /
// rejectsOH), and that the temp folder is byte-identical afterwards, nothing
// added (untouched); both in tests/helpers.ts.
import { describe } from 'node:test';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { rejectsOH, sandbox, untouched, useWasm, withEnv } from '../../helpers';

describe('bad input', () => {
  test('an invalid ORDERHEAD_BACKEND lists the valid names (the active backend is kept)', async () => {
    await useWasm();
    const root = sandbox();
    await withEnv({ ORDERHEAD_BACKEND: 'gpu' }, async () => {
      await untouched(root, async () => {
        await rejectsOH(() => initBackend(), 'ORDERHEAD_BACKEND', "unknown value 'gpu'", 'auto, tensorflow-gpu, tensorflow, wasm, cpu');
      });
    });
    assert.equal(tf.getBackend(), 'wasm');
    // The oracle CLI reports it as one line and exit code 2, not a stack trace, before making the dataset folder.
    await untouched(root, () => {
      const cli = spawnSync(process.execPath, [path.join(__dirname, '..', '..', '..', 'lib', 'oracle', 'cli.js'), 'build', '--run', path.join(root, 'ds'),
        '--backbone', path.join(root, 'b.safetensors'), '--tokens', root], { encoding: 'utf8', env: { ...process.env, ORDERHEAD_BACKEND: 'gpu', ORDERHEAD_PROFILE: 'smoke' }, timeout: 60_000 });
      assert.equal(cli.status, 2, cli.stderr);
      assert.match(cli.stderr, /^error: ORDERHEAD_BACKEND: unknown value 'gpu'\. Fix: use one of: auto, /m);
      assert.ok(!/\n\s+at /.test(cli.stderr), `a stack trace was printed: ${cli.stderr}`);
    });
  });
});
