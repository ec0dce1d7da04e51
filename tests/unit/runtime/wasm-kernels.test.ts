/**
 * Every kernel we add to or replace on wasm, forward and gradient, against the
 * `cpu` backend on random inputs: batched and broadcast shapes, transposes on
 * and off. Tolerance: relative error <= 1e-4.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { onBackend, randArray, relError, useWasm } from '../../helpers';
import { registerTrainingGradients } from '../../../lib/runtime/gradients';

registerTrainingGradients();

const TOL = 1e-4;

async function compare(label: string, f: () => tf.Tensor | tf.Tensor[]) {
  const ref = await onBackend('cpu', f);
  const got = await onBackend('wasm', f);
  assert.equal(got.length, ref.length, `${label}: output count`);
  for (let i = 0; i < ref.length; i++) {
    const e = relError(got[i], ref[i]);
    assert.ok(e <= TOL, `${label} output ${i}: relative error ${e.toExponential(2)} > ${TOL}`);
  }
}

type MM = { a: number[]; b: number[]; ta: boolean; tb: boolean };
const cases: MM[] = [];
for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as [boolean, boolean][]) {
  const sh = (outer: number[], r: number, c: number, t: boolean) => [...outer, ...(t ? [c, r] : [r, c])];
  cases.push({ a: sh([], 7, 5, ta), b: sh([], 5, 3, tb), ta, tb });              // plain 2-D
  cases.push({ a: sh([4], 6, 5, ta), b: sh([4], 5, 3, tb), ta, tb });            // batched
  cases.push({ a: sh([4], 6, 5, ta), b: sh([1], 5, 3, tb), ta, tb });            // b broadcast
  cases.push({ a: sh([1], 6, 5, ta), b: sh([3], 5, 3, tb), ta, tb });            // a broadcast
  cases.push({ a: sh([2, 3], 4, 8, ta), b: sh([2, 3], 8, 2, tb), ta, tb });      // rank 4
  cases.push({ a: sh([1], 64, 32, ta), b: sh([1], 32, 48, tb), ta, tb });        // batch 1, XNNPACK path
}

for (const c of cases) {
  const name = `matMul a[${c.a}] b[${c.b}] transposeA=${c.ta} transposeB=${c.tb}`;
  test(`${name}: forward and gradients match cpu`, async () => {
    const av = randArray(c.a.reduce((x, y) => x * y, 1), name + 'a');
    const bv = randArray(c.b.reduce((x, y) => x * y, 1), name + 'b');
    await compare(name, () => {
      const a = tf.tensor(av, c.a), b = tf.tensor(bv, c.b);
      const f = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.square(tf.matMul(x, y, c.ta, c.tb)));
      const [ga, gb] = tf.grads(f)([a, b]);
      return [tf.matMul(a, b, c.ta, c.tb), ga, gb];
    });
  });
}

test('matMul with a rank-3 a and a 2-D b (dense layer on [B, T, d]) matches cpu', async () => {
  const av = randArray(3 * 5 * 8, 'dense a'), bv = randArray(8 * 6, 'dense b');
  await compare('dense', () => {
    const a = tf.tensor(av, [3, 5, 8]), b = tf.tensor(bv, [8, 6]);
    const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.sin(tf.matMul(x, y))))([a, b]);
    return [tf.matMul(a, b), ga, gb];
  });
});

test('unsortedSegmentSum forward matches cpu, including repeated and dropped ids', async () => {
  const xv = randArray(6 * 4, 'uss');
  await compare('unsortedSegmentSum', () =>
    tf.unsortedSegmentSum(tf.tensor(xv, [6, 4]), tf.tensor1d([2, 0, 2, 4, 0, 1], 'int32'), 5));
});

test('gather gradient (embedding table) trains on wasm and matches cpu', async () => {
  const tv = randArray(10 * 8, 'emb');
  await compare('gather grad', () => {
    const table = tf.tensor(tv, [10, 8]);
    const ids = tf.tensor2d([[1, 3, 3], [9, 0, 1]], [2, 3], 'int32');
    const g = tf.grad((t: tf.Tensor) => tf.sum(tf.square(tf.gather(t, ids))))(table);
    return [tf.gather(table, ids), g];
  });
});

test('gather along axis 0 (row copies): float32 and int32 tables, 1-D tables, rank-2 ids; other axes; out-of-range ids', async () => {
  const tv = randArray(10 * 8, 'gather');
  await compare('gather rows', () => {
    const table = tf.tensor(tv, [10, 8]);
    const ids = tf.tensor2d([[1, 3, 3], [9, 0, 1]], [2, 3], 'int32');
    return [
      tf.gather(table, ids),
      tf.gather(tf.tensor1d(tv.slice(0, 10)), ids),
      tf.cast(tf.gather(tf.tensor2d(Int32Array.from({ length: 20 }, (_, i) => i * 3 - 7), [10, 2], 'int32'), ids), 'float32'),
      tf.gather(tf.reshape(table, [10, 2, 4]), tf.tensor1d([3, 0, 3], 'int32'), 0),
      tf.gather(table, tf.tensor1d([7, 2], 'int32'), 1), // axis 1: tfjs's own kernel
    ];
  });
  await useWasm();
  const before = tf.memory().numTensors;
  assert.throws(() => tf.tidy(() => tf.gather(tf.zeros([4, 2]), tf.tensor1d([1, 4], 'int32'))), /index value 4 is not in \[0, 3\]/);
  assert.equal(tf.memory().numTensors, before);
});

for (const [stride, pad, k] of [[1, 'same', 3], [2, 'same', 3], [1, 'valid', 3], [2, 'valid', 4], [4, 'valid', 4]] as [number, 'same' | 'valid', number][]) {
  test(`conv2d filter gradient (stride ${stride}, pad ${pad}, kernel ${k}) matches cpu`, async () => {
    const xv = randArray(2 * 9 * 10 * 3, `conv x${stride}${pad}${k}`), wv = randArray(k * k * 3 * 5, `conv w${stride}${pad}${k}`);
    await compare('conv2d', () => {
      const x = tf.tensor4d(xv, [2, 9, 10, 3]), w = tf.tensor4d(wv, [k, k, 3, 5]);
      const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad)));
      const [gx, gw] = tf.grads(f)([x, w]);
      return [tf.conv2d(x, w, stride, pad), gx, gw];
    });
  });
}

test('patched kernels leak no tensors', async () => {
  await onBackend('wasm', () => tf.zeros([1]));
  const a = tf.randomNormal([4, 6, 5]), b = tf.randomNormal([4, 3, 5]);
  const run = () => tf.tidy(() => tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.matMul(x, y, false, true)))([a, b]));
  tf.dispose(run());
  const before = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) tf.dispose(run());
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([a, b]);
});
