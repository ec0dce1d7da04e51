/**
 * The decoding fast paths (runtime/decode-kernels.ts, backbone/kv-decoder.ts
 * `extend`, backbone/sampler.ts): each against the plain tfjs ops or the full
 * forward pass, on wasm and on cpu.
 *
 * - fused kernels (one-query attention over the first n cache slots, shared
 *   batch-1 prefix, RMSNorm, rotary) equal the op-by-op versions;
 * - in-place slot writes land where a concat would put them;
 * - a preallocated cache decodes to the full forward pass's logits at every
 *   step, holds one k and one v per layer, and falls back to a growing cache
 *   past its capacity;
 * - sampling without the KV cache gives the same samples as with it;
 * - the sampler's sort equals the comparator sort it replaces.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { randArray, relError, useWasm } from '../../helpers';
import { rng } from '../../../lib/runtime/seed';
import { gptConfig, seqLen } from '../../../lib/backbone/config';
import { createGPT, disposeGPT, forward, GPT, rasterOrder, DecodeOrder, tokensInOrder } from '../../../lib/backbone/gpt';
import { decodeStep, disposeCache, emptyCache, extend } from '../../../lib/backbone/kv-decoder';
import { sampleImages, sortedDescending } from '../../../lib/backbone/sampler';
import { blockGeometry, randomPolicy, rasterPolicy } from '../../../lib/order';
import {
  decodeAttention, decodeKernelsAvailable, decodeSimdAvailable, fusedRmsNorm, fusedRope, setDecodeSimd, writeSlotsInPlace,
} from '../../../lib/runtime/decode-kernels';

const TOL = 1e-5;
const BACKENDS = ['wasm', 'cpu'] as const;

async function use(name: 'wasm' | 'cpu'): Promise<void> {
  await useWasm(); // registers our kernels and gradients once
  if (name === 'cpu') await tf.setBackend('cpu');
}

const ATTENTION_PATHS = [['wasm', true], ['wasm', false], ['cpu', false]] as const;

for (const [be, simd] of ATTENTION_PATHS) {
  test(`${be}${be === 'wasm' ? (simd ? ' (SIMD loops)' : ' (JS loops)') : ''}: one-query attention over the first n slots equals softmax(q·Kᵀ·s)·V, own and shared (batch-1) caches, head widths 4..32`, async () => {
    await use(be);
    assert.ok(decodeKernelsAvailable());
    if (be === 'wasm') assert.ok(!simd || decodeSimdAvailable(), 'this Node has wasm SIMD');
    setDecodeSimd(simd);
    const B = 3, H = 2, S = 7;
    for (const [Bk, n, hd] of [[B, 1, 8], [B, 4, 8], [B, S, 8], [1, 1, 8], [1, 4, 8], [1, S, 8], [B, 5, 4], [B, 6, 12], [1, 7, 16], [B, 3, 32]]) {
      {
        const q = tf.tensor(randArray(B * H * hd, `q${Bk}${n}${hd}`), [B, H, hd]);
        const K = tf.tensor4d(randArray(Bk * H * S * hd, `k${Bk}${hd}`), [Bk, H, S, hd]);
        const V = tf.tensor4d(randArray(Bk * H * S * hd, `v${Bk}${hd}`), [Bk, H, S, hd]);
        const got = decodeAttention(q, K, V, n, 0.3);
        const ref = tf.tidy(() => {
          const Kn = tf.slice(K, [0, 0, 0, 0], [Bk, H, n, hd]), Vn = tf.slice(V, [0, 0, 0, 0], [Bk, H, n, hd]);
          const att = tf.softmax(tf.mul(tf.matMul(tf.reshape(q, [B, H, 1, hd]), Bk === B ? Kn : tf.concat([Kn, Kn, Kn]), false, true), 0.3));
          return tf.reshape(tf.matMul(att, Bk === B ? Vn : tf.concat([Vn, Vn, Vn])), [B, H, hd]);
        });
        assert.deepEqual(got.shape, [B, H, hd]);
        const e = relError(got.dataSync(), ref.dataSync());
        assert.ok(e < TOL, `Bk ${Bk}, n ${n}, hd ${hd}: relative error ${e}`);
        tf.dispose([q, K, V, got, ref]);
      }
    }
    setDecodeSimd(true);
    await useWasm();
  });
}

for (const be of BACKENDS) {
  test(`${be}: fused RMSNorm and rotary equal the op versions in the model`, async () => {
    await use(be);
    const N = 5, H = 2, hd = 8, d = H * hd;
    const x = tf.tensor2d(randArray(N * d, 'x'), [N, d]), g = tf.tensor1d(randArray(d, 'g'));
    const ref = tf.tidy(() => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-5))), g));
    const got = fusedRmsNorm(x, g, 1e-5);
    assert.ok(relError(got.dataSync(), ref.dataSync()) < TOL);
    // Rotary: pairs (2i, 2i+1) -> (a·c − b·s, b·c + a·s), per row tables.
    const cos = tf.tensor2d(randArray(N * hd, 'c'), [N, hd]), sin = tf.tensor2d(randArray(N * hd, 's'), [N, hd]);
    const rot = new Float32Array(hd * hd);
    for (let p = 0; p < hd / 2; p++) { rot[(2 * p + 1) * hd + 2 * p] = -1; rot[2 * p * hd + 2 * p + 1] = 1; }
    const rref = tf.tidy(() => {
      const r = tf.reshape(tf.matMul(tf.reshape(x, [N * H, hd]), tf.tensor2d(rot, [hd, hd])), [N, H, hd]);
      return tf.add(tf.mul(tf.reshape(x, [N, H, hd]), tf.reshape(cos, [N, 1, hd])), tf.mul(r, tf.reshape(sin, [N, 1, hd])));
    });
    const rgot = fusedRope(x, cos, sin);
    assert.deepEqual(rgot.shape, [N, H, hd]);
    assert.ok(relError(rgot.dataSync(), rref.dataSync()) < TOL);
    tf.dispose([x, g, ref, got, cos, sin, rref, rgot]);
    await useWasm();
  });

  test(`${be}: writeSlotsInPlace puts rows [B, L, H, hd] at slots [at, at+L) of [B, H, cap, hd]`, async () => {
    await use(be);
    const B = 2, L = 2, H = 3, hd = 4, cap = 5, at = 2;
    const buf = tf.zeros([B, H, cap, hd]) as tf.Tensor4D;
    const rows = tf.tensor(randArray(B * L * H * hd, 'rows'), [B * L, H, hd]);
    assert.equal(writeSlotsInPlace(buf, rows, at), true);
    const ref = tf.tidy(() => tf.concat([tf.zeros([B, H, at, hd]), tf.transpose(tf.reshape(rows, [B, L, H, hd]), [0, 2, 1, 3]), tf.zeros([B, H, cap - at - L, hd])], 2));
    assert.deepEqual(Array.from(buf.dataSync()), Array.from(ref.dataSync()));
    assert.throws(() => writeSlotsInPlace(buf, rows, 4), /does not fit/);
    tf.dispose([buf, rows, ref]);
    await useWasm();
  });
}

/** Teacher-forced decoding step by step through `cache`; returns the max |decoded − full forward| logit difference. */
function decodeAgainstForward(m: GPT, order: DecodeOrder, grids: Int32Array, classes: Int32Array, cache: ReturnType<typeof emptyCache>,
  onStep?: (t: number, cacheTensors: number) => void): number {
  const { B, T } = order;
  const ordered = tokensInOrder(grids, order);
  const full = tf.tidy(() => forward(m, order, tf.slice(tf.tensor2d(ordered, [B, T], 'int32'), [0, 0], [B, T - 1]) as tf.Tensor2D,
    tf.tensor1d(classes, 'int32')).logits);
  const ref = full.dataSync();
  const base = tf.memory().numTensors - 2 * m.cfg.nLayer * (cache.length ? 1 : 0);
  const V = m.cfg.vocabSize;
  let worst = 0;
  for (let t = 0; t < T; t++) {
    const input = new Int32Array(B), inCell = new Int32Array(B), tgtCell = new Int32Array(B);
    for (let b = 0; b < B; b++) {
      input[b] = t === 0 ? classes[b] : ordered[b * T + t - 1];
      inCell[b] = t === 0 ? -1 : order.cells[b * T + t - 1];
      tgtCell[b] = order.cells[b * T + t];
    }
    const out = decodeStep(m, cache, input, inCell, tgtCell);
    const got = out.logits.dataSync();
    for (let b = 0; b < B; b++) for (let i = 0; i < V; i++) worst = Math.max(worst, Math.abs(got[b * V + i] - ref[(b * T + t) * V + i]));
    tf.dispose([out.logits, out.hidden]);
    onStep?.(t, tf.memory().numTensors - base);
  }
  full.dispose();
  return worst;
}

function randomOrder(T: number, B: number, seed: number): DecodeOrder {
  const r = rng(seed);
  const cells = new Int32Array(B * T);
  for (let b = 0; b < B; b++) cells.set(r.shuffle(Array.from({ length: T }, (_, i) => i)), b * T);
  return { B, T, cells };
}

for (const be of BACKENDS) {
  test(`${be}: a preallocated KV cache decodes to the full forward pass at every step, written in place`, async () => {
    await use(be);
    const cfg = gptConfig('tiny');
    const T = seqLen(cfg), B = 3;
    const m = createGPT(cfg, 3);
    const grids = new Int32Array(B * T).map((_, i) => (i * 5 + 3) % cfg.vocabSize);
    const classes = new Int32Array([2, 0, 3]); // 3 = the null class
    for (const order of [rasterOrder(cfg, B), randomOrder(T, B, 9)]) {
      const cache = emptyCache(m, { capacity: T });
      const before = tf.memory().numTensors;
      let first: tf.Tensor | null = null;
      const err = decodeAgainstForward(m, order, grids, classes, cache, (t, held) => {
        assert.equal(held, 2 * cfg.nLayer, `step ${t}: the cache holds one k and one v per layer and nothing else`);
        first ??= cache.k[0];
        assert.equal(cache.k[0], first, 'the buffer is reused, not replaced');
        assert.deepEqual(cache.k[0].shape, [B, cfg.nHead, T, cfg.dModel / cfg.nHead]);
      });
      assert.ok(err < 1e-4, `max |cached - full| = ${err}`);
      assert.equal(cache.length, T);
      assert.equal(cache.capacity, T);
      disposeCache(cache);
      assert.equal(tf.memory().numTensors, before);
    }
    disposeGPT(m);
    await useWasm();
  });
}

test('a preallocated cache too small for the image falls back to a growing cache with the same numbers', async () => {
  await useWasm();
  const cfg = gptConfig('tiny');
  const T = seqLen(cfg), B = 2;
  const m = createGPT(cfg, 4);
  const grids = new Int32Array(B * T).map((_, i) => (i * 7 + 1) % cfg.vocabSize);
  const cache = emptyCache(m, { capacity: 5 });
  const err = decodeAgainstForward(m, randomOrder(T, B, 2), grids, new Int32Array([1, 2]), cache, (t) => {
    assert.equal(cache.capacity, t < 5 ? 5 : 0, `step ${t}`);
    assert.equal(cache.k[0].shape[2], t < 5 ? 5 : t + 1);
  });
  assert.ok(err < 1e-4, `max |cached - full| = ${err}`);
  disposeCache(cache);
  disposeGPT(m);
});

test('extend on a preallocated batch-1 prefix, shared by several continuations (keep = false), equals the growing cache', async () => {
  await useWasm();
  const cfg = gptConfig('tiny');
  const T = seqLen(cfg), P = 5, K = 3, L = T - P;
  const m = createGPT(cfg, 8);
  const r = rng(6);
  const prefixCells = r.shuffle(Array.from({ length: T }, (_, i) => i));
  const tok = (c: number) => (c * 3 + 1) % cfg.vocabSize;
  const prefix = {
    B: 1, L: P, inputs: new Int32Array([1, ...prefixCells.slice(0, P - 1).map(tok)]),
    inCells: new Int32Array([-1, ...prefixCells.slice(0, P - 1)]), tgtCells: new Int32Array(prefixCells.slice(0, P)),
  };
  const cont = { B: K, L, inputs: new Int32Array(K * L), inCells: new Int32Array(K * L), tgtCells: new Int32Array(K * L) };
  for (let k = 0; k < K; k++) {
    const rest = r.shuffle(prefixCells.slice(P));
    const ins = [prefixCells[P - 1], ...rest.slice(0, L - 1)];
    for (let i = 0; i < L; i++) { cont.inputs[k * L + i] = tok(ins[i]); cont.inCells[k * L + i] = ins[i]; cont.tgtCells[k * L + i] = rest[i]; }
  }
  const results = [0, T].map((capacity) => {
    const cache = emptyCache(m, { capacity });
    const pre = extend(m, cache, prefix, true);
    const out = extend(m, cache, cont, false);
    assert.equal(cache.length, P, 'keep = false leaves the cache as it was');
    const v = out.logits.dataSync().slice();
    tf.dispose([pre.logits, pre.hidden, out.logits, out.hidden]);
    disposeCache(cache);
    return v;
  });
  assert.ok(relError(results[1], results[0]) < 1e-5);
  disposeGPT(m);
});

test('sampling without the KV cache gives the same samples as with it (plain, top-k/top-p, CFG) and leaks nothing', async () => {
  await useWasm();
  const cfg = gptConfig('tiny');
  const geo = blockGeometry({ gridH: cfg.gridH, gridW: cfg.gridW, blockH: 2, blockW: 2 });
  const m = createGPT(cfg, 5);
  const classes = new Int32Array([0, 1, 2, 1]);
  const before = tf.memory().numTensors;
  for (const extra of [{}, { topK: 5, topP: 0.9, temperature: 0.8 }, { cfgScale: 2 }]) {
    const policy = () => ('cfgScale' in extra ? rasterPolicy(geo) : randomPolicy(geo, 3));
    const a = await sampleImages(m, { classes, policy: policy(), geometry: geo, seed: 7, ...extra });
    const b = await sampleImages(m, { classes, policy: policy(), geometry: geo, seed: 7, kvCache: false, ...extra });
    assert.deepEqual(b.tokens, a.tokens, `samples differ (${JSON.stringify(extra)})`);
    assert.deepEqual(b.blockOrders, a.blockOrders);
  }
  assert.equal(tf.memory().numTensors, before, 'sampling leaked tensors');
  disposeGPT(m);
});

test('sortedDescending: the order of the stable comparator sort, ties by id, ±0, ±Infinity, NaN', () => {
  const g = rng(5);
  for (let t = 0; t < 500; t++) {
    const V = 1 + g.int(700);
    const x = new Float32Array(V).map(() => {
      const r = g.next();
      return r < 0.1 ? 0 : r < 0.15 ? -0 : r < 0.2 ? Infinity : r < 0.25 ? -Infinity : r < 0.45 ? g.int(5) - 2 : g.normal() * 10 ** g.int(6);
    });
    if (t % 50 === 0) x[g.int(V)] = NaN;
    const ref = Array.from({ length: V }, (_, i) => i).sort((a, b) => x[b] - x[a]);
    assert.deepEqual(Array.from(sortedDescending(x)), ref, `case ${t}`);
  }
  // A subarray view (the sampler passes rows of one logits buffer).
  const all = new Float32Array([5, 1, 3, 3, 9, 0]);
  assert.deepEqual(Array.from(sortedDescending(all.subarray(2, 6))), [2, 0, 1, 3]);
});

for (const [be, simd] of ATTENTION_PATHS) {
  test(`${be}${be === 'wasm' ? (simd ? ' (SIMD loops)' : ' (JS loops)') : ''}: one-step queries (each sees the cached prefix and itself) equal the op path with an identity mask, own and shared prefixes, preallocated and growing caches`, async () => {
    await use(be);
    setDecodeSimd(simd);
    const cfg = gptConfig('tiny');
    const T = seqLen(cfg), P = 6, Q = 4, B = 3;
    const m = createGPT(cfg, 11);
    const tok = (c: number) => (c * 5 + 2) % cfg.vocabSize;
    const identity = new Float32Array(Q * Q).fill(-1e9);
    for (let i = 0; i < Q; i++) identity[i * Q + i] = 0;
    const before = tf.memory().numTensors;
    for (const prefixB of [B, 1]) {
      for (const capacity of [0, T]) {
        const r = rng(prefixB * 100 + capacity);
        const cells = Array.from({ length: prefixB }, () => r.shuffle(Array.from({ length: T }, (_, i) => i)));
        const prefix = { B: prefixB, L: P, inputs: new Int32Array(prefixB * P), inCells: new Int32Array(prefixB * P), tgtCells: new Int32Array(prefixB * P) };
        cells.forEach((c, b) => { for (let i = 0; i < P; i++) { prefix.inputs[b * P + i] = i === 0 ? 1 : tok(c[i - 1]); prefix.inCells[b * P + i] = i === 0 ? -1 : c[i - 1]; prefix.tgtCells[b * P + i] = c[i]; } });
        const queries = { B, L: Q, inputs: new Int32Array(B * Q), inCells: new Int32Array(B * Q), tgtCells: new Int32Array(B * Q) };
        for (let b = 0; b < B; b++) {
          const c = cells[prefixB === 1 ? 0 : b];
          for (let j = 0; j < Q; j++) { queries.inputs[b * Q + j] = tok(c[P - 1]); queries.inCells[b * Q + j] = c[P - 1]; queries.tgtCells[b * Q + j] = c[P + j]; }
        }
        const cache = emptyCache(m, { capacity });
        const pre = extend(m, cache, prefix, true);
        const got = extend(m, cache, { ...queries, queries: true }, false);
        const ref = extend(m, cache, { ...queries, mask: identity }, false);
        assert.equal(cache.length, P, 'the queries leave the cache as it was');
        for (const k of ['logits', 'hidden'] as const) {
          const e = relError(got[k].dataSync(), ref[k].dataSync());
          assert.ok(e < TOL, `prefix batch ${prefixB}, capacity ${capacity}, ${k}: relative error ${e}`);
        }
        assert.throws(() => extend(m, cache, { ...queries, queries: true }, true), /one-step queries cannot join the cache/);
        assert.throws(() => extend(m, cache, { ...queries, queries: true, mask: identity }, false), /either queries or mask/);
        tf.dispose([pre.logits, pre.hidden, got.logits, got.hidden, ref.logits, ref.hidden]);
        disposeCache(cache);
      }
    }
    assert.equal(tf.memory().numTensors, before, 'no tensor leaked');
    disposeGPT(m);
    setDecodeSimd(true);
    await useWasm();
  });
}
