/** The GPT backbone on wasm: shapes, initial loss, leak-free training, the reference decode step, KV-cache equivalence. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useWasm } from '../../helpers';
import { gptConfig, seqLen } from '../../../lib/backbone/config';
import {
  createGPT, disposeGPT, forward, lmLoss, rasterOrder, referenceDecodeStep, DecodeOrder, tokensInOrder,
} from '../../../lib/backbone/gpt';
import { decodeStep, disposeCache, emptyCache, extend } from '../../../lib/backbone/kv-decoder';
import { AdamW, accumulateGrads } from '../../../lib/runtime/optim';
import { OrderHeadError } from '../../../lib/runtime/errors';
import { rng } from '../../../lib/runtime/seed';

function randomOrder(T: number, B: number, seed: number): DecodeOrder {
  const r = rng(seed);
  const cells = new Int32Array(B * T);
  for (let b = 0; b < B; b++) cells.set(r.shuffle(Array.from({ length: T }, (_, i) => i)), b * T);
  return { B, T, cells };
}

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
};

test('forward gives logits [B*T, V], hidden [B*T, d], and loss ~ ln V at init', async () => {
  await useWasm();
  const cfg = gptConfig('tiny');
  const T = seqLen(cfg);
  const m = createGPT(cfg, 1);
  const order = rasterOrder(cfg, 3);
  const toks = tf.randomUniform([3, T], 0, cfg.vocabSize, 'int32') as tf.Tensor2D;
  const cls = tf.tensor1d([0, 1, 2], 'int32');
  const out = forward(m, order, tf.slice(toks, [0, 0], [3, T - 1]) as tf.Tensor2D, cls);
  assert.deepEqual(out.logits.shape, [3 * T, cfg.vocabSize]);
  assert.deepEqual(out.hidden.shape, [3 * T, cfg.dModel]);
  const loss = lmLoss(m, order, toks, cls).dataSync()[0];
  assert.ok(Math.abs(loss - Math.log(cfg.vocabSize)) < 0.2, `initial loss ${loss} vs ln V ${Math.log(cfg.vocabSize)}`);
  tf.dispose([out.logits, out.hidden, toks, cls]);
  disposeGPT(m);
});

test('a training step on per-sample random orders keeps tf.memory().numTensors flat and the loss falls', async () => {
  await useWasm();
  const cfg = gptConfig('tiny');
  const T = seqLen(cfg);
  const m = createGPT(cfg, 2);
  const opt = new AdamW(m.params, { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, clipNorm: 1 });
  const grids = new Int32Array(4 * T).map((_, i) => (i * 7 + (i >> 3)) % cfg.vocabSize);
  const orders = [randomOrder(T, 2, 1), randomOrder(T, 2, 2)];
  const cls = [tf.tensor1d([0, 1], 'int32'), tf.tensor1d([2, 0], 'int32')];
  const toks = orders.map((o, i) => tf.tensor2d(tokensInOrder(grids.subarray(i * 2 * T, (i + 1) * 2 * T), o), [2, T], 'int32'));
  const step = () => {
    const { grads, loss } = accumulateGrads(m.params, 2, (i) => lmLoss(m, orders[i], toks[i], cls[i]));
    opt.apply(grads);
    tf.dispose(Object.values(grads));
    return loss;
  };
  const first = step();
  const before = tf.memory().numTensors;
  let last = first;
  for (let i = 0; i < 40; i++) last = step();
  assert.equal(tf.memory().numTensors, before, 'tensors leaked by the training step');
  assert.ok(last < first * 0.7, `loss did not fall: ${first} -> ${last}`);
  tf.dispose([...cls, ...toks]); opt.dispose(); disposeGPT(m);
});

for (const kind of ['raster', 'random'] as const) {
  test(`KV-cache decoding gives the same logits as the full forward pass at every step (${kind} order)`, async () => {
    await useWasm();
    const cfg = gptConfig('tiny');
    const T = seqLen(cfg), B = 3;
    const m = createGPT(cfg, 3);
    const order = kind === 'raster' ? rasterOrder(cfg, B) : randomOrder(T, B, 9);
    const grids = new Int32Array(B * T).map((_, i) => (i * 5 + 3) % cfg.vocabSize);
    const ordered = tokensInOrder(grids, order);
    const classes = new Int32Array([2, 0, 1]);
    const toks = tf.tensor2d(ordered, [B, T], 'int32');
    const full = tf.tidy(() => forward(m, order, tf.slice(toks, [0, 0], [B, T - 1]) as tf.Tensor2D, tf.tensor1d(classes, 'int32')).logits);
    const fullArr = full.arraySync();
    const cache = emptyCache(m);
    const before = tf.memory().numTensors;
    for (let t = 0; t < T; t++) {
      const input = new Int32Array(B), inCell = new Int32Array(B), tgtCell = new Int32Array(B);
      for (let b = 0; b < B; b++) {
        input[b] = t === 0 ? classes[b] : ordered[b * T + t - 1];
        inCell[b] = t === 0 ? -1 : order.cells[b * T + t - 1];
        tgtCell[b] = order.cells[b * T + t];
      }
      const { logits, hidden } = decodeStep(m, cache, input, inCell, tgtCell);
      const got = logits.arraySync();
      for (let b = 0; b < B; b++) {
        const ref = fullArr[b * T + t];
        const err = Math.max(...got[b].map((v, i) => Math.abs(v - ref[i])));
        assert.ok(err < 1e-4, `step ${t} sample ${b}: max |cached - full| = ${err}`);
      }
      tf.dispose([logits, hidden]);
      if (t > 0) assert.equal(tf.memory().numTensors, before + 2 * cfg.nLayer, 'the cache holds one k and one v per layer and nothing else');
    }
    assert.equal(cache.length, T);
    disposeCache(cache);
    tf.dispose([full, toks]); disposeGPT(m);
  });
}

for (const kind of ['raster', 'random'] as const) {
  test(`the reference decode step is forward's last position, and the KV decoder equals it at every step (${kind} order)`, async () => {
    await useWasm();
    const cfg = gptConfig('tiny');
    const T = seqLen(cfg), B = 3, V = cfg.vocabSize;
    const m = createGPT(cfg, 5);
    const order = kind === 'raster' ? rasterOrder(cfg, B) : randomOrder(T, B, 11);
    const ordered = tokensInOrder(new Int32Array(B * T).map((_, i) => (i * 3 + 1) % V), order);
    const classes = new Int32Array([1, 2, 0]);
    const full = tf.tidy(() => {
      const { logits, hidden } = forward(m, order, tf.slice(tf.tensor2d(ordered, [B, T], 'int32'), [0, 0], [B, T - 1]) as tf.Tensor2D,
        tf.tensor1d(classes, 'int32'));
      return { logits, hidden };
    });
    const fullLogits = full.logits.dataSync(), fullHidden = full.hidden.dataSync();
    const caches = [emptyCache(m), emptyCache(m, { capacity: T })]; // growing; preallocated, written in place
    const before = tf.memory().numTensors;
    for (let S = 1; S <= T; S++) {
      // The first S steps of each sample: S cells, the S-1 tokens decoded at all but the last.
      const prefix: DecodeOrder = { B, T: S, cells: new Int32Array(B * S) };
      const tokens = new Int32Array(B * (S - 1));
      for (let b = 0; b < B; b++) {
        prefix.cells.set(order.cells.subarray(b * T, b * T + S), b * S);
        tokens.set(ordered.subarray(b * T, b * T + S - 1), b * (S - 1));
      }
      const ref = referenceDecodeStep(m, prefix, tokens, classes);
      const refLogits = ref.logits.dataSync(), refHidden = ref.hidden.dataSync();
      assert.deepEqual(ref.logits.shape, [B, V]);
      assert.deepEqual(ref.hidden.shape, [B, cfg.dModel]);
      for (let b = 0; b < B; b++) {
        const row = b * T + S - 1;
        const fl = fullLogits.subarray(row * V, (row + 1) * V), fh = fullHidden.subarray(row * cfg.dModel, (row + 1) * cfg.dModel);
        const rl = refLogits.subarray(b * V, (b + 1) * V), rh = refHidden.subarray(b * cfg.dModel, (b + 1) * cfg.dModel);
        // Over the whole image the reference is forward itself; over a shorter prefix the later slots it drops are masked anyway.
        if (S === T) { assert.deepEqual(rl, fl); assert.deepEqual(rh, fh); }
        else assert.ok(maxDiff(rl, fl) < 1e-5 && maxDiff(rh, fh) < 1e-5, `prefix ${S} sample ${b}: reference vs forward`);
      }
      const input = new Int32Array(B), inCell = new Int32Array(B), tgtCell = new Int32Array(B);
      for (let b = 0; b < B; b++) {
        input[b] = S === 1 ? classes[b] : ordered[b * T + S - 2];
        inCell[b] = S === 1 ? -1 : order.cells[b * T + S - 2];
        tgtCell[b] = order.cells[b * T + S - 1];
      }
      for (const cache of caches) {
        const got = decodeStep(m, cache, input, inCell, tgtCell);
        const err = Math.max(maxDiff(got.logits.dataSync(), refLogits), maxDiff(got.hidden.dataSync(), refHidden));
        assert.ok(err < 1e-4, `step ${S - 1}, ${cache.capacity ? 'preallocated' : 'growing'} cache: max |KV decoder - reference| = ${err}`);
        tf.dispose([got.logits, got.hidden]);
      }
      tf.dispose([ref.logits, ref.hidden]);
      assert.equal(tf.memory().numTensors, before + 2 * 2 * cfg.nLayer, 'the reference step leaks nothing; each cache holds one k and one v per layer');
    }
    caches.forEach(disposeCache);
    tf.dispose([full.logits, full.hidden]); disposeGPT(m);
  });
}

test('unknown model size lists the valid ones', () => {
  assert.throws(() => gptConfig('huge'), (e: unknown) => e instanceof OrderHeadError && /tiny, small, bench/.test(e.message));
});

test('a head width that cannot split into 2D rotary pairs is refused', () => {
  assert.throws(() => gptConfig('tiny', { dModel: 18, nHead: 3 }), /backbone.dModel/);
});

test('extend: a batch-1 prefix shared by several continuations equals separate full passes', async () => {
  await useWasm();
  const cfg = gptConfig('tiny');
  const T = seqLen(cfg), P = 6, L = T - P, K = 3;
  const m = createGPT(cfg, 8);
  // K orders that share their first P cells and continue differently.
  const r = rng(4);
  const shared = r.shuffle(Array.from({ length: T }, (_, i) => i));
  const orders = Array.from({ length: K }, (_, i) => [...shared.slice(0, P), ...(i === 0 ? shared.slice(P) : r.shuffle(shared.slice(P)))]);
  const grid = new Int32Array(T).map((_, i) => (i * 7 + 2) % cfg.vocabSize);
  const cls = 1;
  const order: DecodeOrder = { B: K, T, cells: new Int32Array(orders.flat()) };
  const grids = new Int32Array(K * T);
  for (let k = 0; k < K; k++) grids.set(grid, k * T);
  const ordered = tokensInOrder(grids, order);
  const full = tf.tidy(() => forward(m, order, tf.slice(tf.tensor2d(ordered, [K, T], 'int32'), [0, 0], [K, T - 1]) as tf.Tensor2D,
    tf.tensor1d(new Int32Array(K).fill(cls), 'int32')).logits);
  const fullArr = full.arraySync();
  // Prefix: class slot + the first P-1 shared tokens (slots 0..P-1), batch 1.
  const cache = emptyCache(m);
  const pre = extend(m, cache, {
    B: 1, L: P,
    inputs: new Int32Array([cls, ...orders[0].slice(0, P - 1).map((c) => grid[c])]),
    inCells: new Int32Array([-1, ...orders[0].slice(0, P - 1)]),
    tgtCells: new Int32Array(orders[0].slice(0, P)),
  });
  tf.dispose([pre.logits, pre.hidden]);
  const inputs = new Int32Array(K * L), inCells = new Int32Array(K * L), tgtCells = new Int32Array(K * L);
  for (let k = 0; k < K; k++) for (let j = 0; j < L; j++) {
    const t = P + j;
    inputs[k * L + j] = grid[orders[k][t - 1]]; inCells[k * L + j] = orders[k][t - 1]; tgtCells[k * L + j] = orders[k][t];
  }
  const before = tf.memory().numTensors;
  const cont = extend(m, cache, { B: K, L, inputs, inCells, tgtCells }, false);
  const got = cont.logits.arraySync();
  for (let k = 0; k < K; k++) for (let j = 0; j < L; j++) {
    const ref = fullArr[k * T + P + j];
    const err = Math.max(...got[k * L + j].map((v, i) => Math.abs(v - ref[i])));
    assert.ok(err < 1e-4, `continuation ${k} slot ${j}: max diff ${err}`);
  }
  tf.dispose([cont.logits, cont.hidden]);
  assert.equal(tf.memory().numTensors, before, 'extend without keep must leave the cache as it was');
  full.dispose();
  assert.equal(cache.length, P);
  disposeCache(cache); disposeGPT(m);
});
