/** Evaluation suite: FID/sFID/IS/precision-recall/bootstrap, partial images and recognizability, the feature network. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { throwsOH, useWasm, randArray, relError } from '../../helpers';
import { rng } from '../../../lib/runtime/seed';
import { loadDataset } from '../../../lib/data/dataset';
import { blockGeometry, cellBlock, randomBlockOrder, rasterBlockOrder } from '../../../lib/order';
import { FEATURE_NET_CAVEAT } from '../../../lib/eval/metrics';
import { sqrtPsd, symmetricEigen } from '../../../lib/eval/eigen';
import { featureCovariance, featureMean, fid, frechetDistance, sfid } from '../../../lib/eval/frechet';
import { inceptionScore } from '../../../lib/eval/inception-score';
import { precisionRecall } from '../../../lib/eval/precision-recall';
import { bootstrapInterval, resampleRows } from '../../../lib/eval/bootstrap';
import { BACKGROUND_FILL, curveAuc, meanImage, recognizabilityCurve, renderPartialImages } from '../../../lib/eval/recognizability';
import {
  FeatureNetConfig, convSame, featureNetConfig, featureNetOutputs, featureNetClassifier, inputConvSame, loadFeatureNet, maxPool2, trainFeatureNet,
} from '../../../lib/eval';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'oh-eval-'));

/**
 * Run `f` on `backend` and return its outputs as arrays, then switch back to
 * wasm explicitly (helpers.onBackend relies on initBackend, which returns
 * early once wasm was initialised and so leaves the cpu backend active).
 */
async function runOn(backend: 'cpu' | 'wasm', f: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  await useWasm();
  await tf.setBackend(backend);
  assert.equal(tf.getBackend(), backend);
  const out = tf.tidy(f);
  const list = Array.isArray(out) ? out : [out];
  const arrays = list.map((t) => Float32Array.from(t.dataSync() as Float32Array));
  tf.dispose(list);
  await tf.setBackend('wasm');
  return arrays;
}

/** Gaussian rows with mean mu and diagonal variances (not std) var. */
function gaussianRows(n: number, mu: number[], variances: number[], seed: number): Float32Array {
  const r = rng(seed), d = mu.length, out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) out[i * d + j] = mu[j] + Math.sqrt(variances[j]) * r.normal();
  return out;
}

/** A random symmetric positive-definite matrix B Bᵀ + eps I. */
function randomSpd(n: number, seed: number | string, eps = 0.1): Float64Array {
  const b = randArray(n * n, seed), out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = i === j ? eps : 0;
    for (let k = 0; k < n; k++) s += b[i * n + k] * b[j * n + k];
    out[i * n + j] = s;
  }
  return out;
}

function mm(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) for (let j = 0; j < n; j++) c[i * n + j] += a[i * n + k] * b[k * n + j];
  return c;
}

/** Gauss-Jordan inverse with partial pivoting. */
function inverse(a: Float64Array, n: number): Float64Array {
  const m = Float64Array.from(a), inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) inv[i * n + i] = 1;
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r * n + c]) > Math.abs(m[p * n + c])) p = r;
    for (let k = 0; k < n; k++) {
      [m[c * n + k], m[p * n + k]] = [m[p * n + k], m[c * n + k]];
      [inv[c * n + k], inv[p * n + k]] = [inv[p * n + k], inv[c * n + k]];
    }
    const d = m[c * n + c];
    for (let k = 0; k < n; k++) { m[c * n + k] /= d; inv[c * n + k] /= d; }
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r * n + c];
      for (let k = 0; k < n; k++) { m[r * n + k] -= f * m[c * n + k]; inv[r * n + k] -= f * inv[c * n + k]; }
    }
  }
  return inv;
}

/** tr(sqrt(A)) for A with positive real eigenvalues, by the Denman-Beavers iteration (independent of any eigensolver). */
function traceSqrtDenmanBeavers(a: Float64Array, n: number): number {
  let y = Float64Array.from(a), z = new Float64Array(n * n);
  for (let i = 0; i < n; i++) z[i * n + i] = 1;
  for (let it = 0; it < 60; it++) {
    const yi = inverse(y, n), zi = inverse(z, n);
    y = y.map((v, k) => 0.5 * (v + zi[k]));
    z = z.map((v, k) => 0.5 * (v + yi[k]));
  }
  let t = 0;
  for (let i = 0; i < n; i++) t += y[i * n + i];
  return t;
}

test('mean and covariance match a hand computation (unbiased, as numpy.cov)', () => {
  const x = Float32Array.from([1, 2, 3, 6, 5, 10]); // rows (1,2), (3,6), (5,10)
  assert.deepEqual(Array.from(featureMean(x, 2)), [3, 6]);
  // var x = ((-2)^2 + 0 + 2^2)/2 = 4; var y = (16 + 0 + 16)/2 = 16; cov = (8 + 0 + 8)/2 = 8
  assert.deepEqual(Array.from(featureCovariance(x, 2)), [4, 8, 8, 16]);
  throwsOH(() => featureMean(new Float32Array(5), 2), 'featureMean(feats)', 'not a whole number of rows');
});

test('FID of a set against itself is 0; sFID likewise; a zero-variance feature does no harm', () => {
  const d = 12, feats = randArray(400 * d, 'fid-self');
  for (let i = 0; i < 400; i++) feats[i * d + 3] = 0.5; // a dead unit: singular covariance
  const v = fid(feats, feats, d);
  assert.ok(Number.isFinite(v) && Math.abs(v) < 1e-9, `FID(self) = ${v}`);
  assert.ok(Math.abs(sfid(feats, feats, d)) < 1e-9);
  assert.ok(FEATURE_NET_CAVEAT.includes('not comparable') && FEATURE_NET_CAVEAT.includes('ImageNet'));
});

test('diagonal Gaussians give the analytic Fréchet distance, exactly from the stats and closely from samples', () => {
  const mu1 = [0, 0, 0], mu2 = [1, -0.5, 2], v1 = [1, 4, 0.25], v2 = [2, 1, 1];
  let expected = 0;
  for (let j = 0; j < 3; j++) expected += (mu1[j] - mu2[j]) ** 2 + v1[j] + v2[j] - 2 * Math.sqrt(v1[j] * v2[j]);
  const diag = (v: number[]) => { const m = new Float64Array(9); v.forEach((x, j) => { m[j * 4] = x; }); return m; };
  assert.ok(Math.abs(frechetDistance(mu1, diag(v1), mu2, diag(v2)) - expected) < 1e-12);
  const a = gaussianRows(20000, mu1, v1, 1), b = gaussianRows(20000, mu2, v2, 2);
  const sampled = fid(a, b, 3);
  assert.ok(Math.abs(sampled - expected) < 0.08, `sampled FID ${sampled} vs analytic ${expected}`);
});

test('non-diagonal covariances: closed form in 2-D, Denman-Beavers in 6-D, symmetric in its arguments', () => {
  // 2-D: for M = S1 S2 with positive eigenvalues, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)).
  const s1 = Float64Array.from([2, 0.8, 0.8, 1]), s2 = Float64Array.from([1.5, -0.6, -0.6, 0.7]);
  const mu1 = [0.3, -1], mu2 = [1, 0.5];
  const m = mm(s1, s2, 2);
  const det = m[0] * m[3] - m[1] * m[2];
  const trSqrt = Math.sqrt(m[0] + m[3] + 2 * Math.sqrt(det));
  const expected2 = (0.7 ** 2 + 1.5 ** 2) + 3 + 2.2 - 2 * trSqrt;
  assert.ok(Math.abs(frechetDistance(mu1, s1, mu2, s2) - expected2) < 1e-12, `${frechetDistance(mu1, s1, mu2, s2)} vs ${expected2}`);

  const n = 6, a = randomSpd(n, 'spd-a'), b = randomSpd(n, 'spd-b');
  const ma = Array.from(randArray(n, 'mu-a')), mb = Array.from(randArray(n, 'mu-b'));
  let meanTerm = 0, tr = 0;
  for (let i = 0; i < n; i++) { meanTerm += (ma[i] - mb[i]) ** 2; tr += a[i * n + i] + b[i * n + i]; }
  const direct = meanTerm + tr - 2 * traceSqrtDenmanBeavers(mm(a, b, n), n);
  const fd = frechetDistance(ma, a, mb, b);
  assert.ok(Math.abs(fd - direct) < 1e-8 * Math.max(1, direct), `FD ${fd} vs direct ${direct}`);
  assert.ok(Math.abs(frechetDistance(mb, b, ma, a) - fd) < 1e-8 * Math.max(1, fd));
  assert.ok(Math.abs(frechetDistance(ma, a, mb, b, 'ml-matrix') - fd) < 1e-9 * Math.max(1, fd), 'the ml-matrix solver disagrees');
  assert.ok(Math.abs(frechetDistance(mu1, s1, mu2, s2, 'ml-matrix') - expected2) < 1e-12);
});

test('eigensolvers: QL and ml-matrix agree, reconstruct the matrix, and sqrtPsd squares back', () => {
  const n = 20, a = randomSpd(n, 'eig', 0);
  const ql = symmetricEigen(a, n), ref = symmetricEigen(a, n, { method: 'ml-matrix' });
  const sq = (v: Float64Array) => Array.from(v).sort((x, y) => x - y);
  const [eq, er] = [sq(ql.values), sq(ref.values)];
  for (let i = 0; i < n; i++) assert.ok(Math.abs(eq[i] - er[i]) < 1e-9 * Math.max(1, Math.abs(er[i])), `eigenvalue ${i}: ${eq[i]} vs ${er[i]}`);
  for (const e of [ql, ref]) {
    const v = e.vectors!;
    let err = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += v[i * n + k] * e.values[k] * v[j * n + k];
      err = Math.max(err, Math.abs(s - a[i * n + j]));
    }
    assert.ok(err < 1e-9, `reconstruction error ${err}`);
  }
  const valuesOnly = symmetricEigen(a, n, { vectors: false });
  assert.equal(valuesOnly.vectors, undefined);
  assert.deepEqual(sq(valuesOnly.values), eq);
  const r = sqrtPsd(a, n);
  assert.ok(relError(mm(r, r, n), a) < 1e-10);
  throwsOH(() => symmetricEigen([1, 2, 3], 2), 'symmetricEigen(a)');
});

test('Inception Score: uniform predictions give 1, confident class-balanced ones give the class count', () => {
  const C = 10, N = 300;
  const uniform = new Float32Array(N * C).fill(1 / C);
  const u = inceptionScore(uniform, C);
  assert.ok(Math.abs(u.mean - 1) < 1e-6 && u.std < 1e-6, JSON.stringify(u));
  const confident = new Float32Array(N * C);
  for (let i = 0; i < N; i++) confident[i * C + (i % C)] = 1; // each split of 30 rows holds every class 3 times
  const c = inceptionScore(confident, C, 10);
  assert.ok(Math.abs(c.mean - C) < 1e-9 && c.std < 1e-9, JSON.stringify(c));
  assert.equal(c.scores.length, 10);
  const mixed = confident.map((v) => 0.5 * v + 0.05);
  const m = inceptionScore(mixed, C);
  assert.ok(m.mean > 1 && m.mean < C);
  throwsOH(() => inceptionScore(new Float32Array(5 * C), C, 10), 'fewer than the 10 splits');
});

test('bootstrap interval contains the mean, shrinks with n, and is reproducible', () => {
  const r = rng('boot');
  const draw = (n: number) => Float64Array.from({ length: n }, () => 5 + r.normal());
  const small = bootstrapInterval(draw(20), 1000, 1), large = bootstrapInterval(draw(2000), 1000, 1);
  for (const iv of [small, large]) assert.ok(iv.lo <= iv.mean && iv.mean <= iv.hi, JSON.stringify(iv));
  assert.ok(large.hi - large.lo < 0.3 * (small.hi - small.lo), `widths ${small.hi - small.lo} -> ${large.hi - large.lo}`);
  assert.ok(large.lo < 5.1 && large.hi > 4.9);
  // A resampling function: FID of a resampled set against the reference.
  const d = 4, feats = randArray(300 * d, 'boot-feats');
  const stat = (g: ReturnType<typeof rng>) => fid(resampleRows(feats, d, g), feats, d);
  const a = bootstrapInterval(stat, 20, 'fid'), b = bootstrapInterval(stat, 20, 'fid');
  assert.deepEqual(a, b);
  assert.ok(a.lo <= a.mean && a.mean <= a.hi && a.lo >= 0);
});

test('precision and recall: identical sets are fully covered, distant sets not at all', () => {
  const d = 5, a = randArray(200 * d, 'pr-a');
  const same = precisionRecall(a, a, d);
  assert.equal(same.precision, 1);
  assert.equal(same.recall, 1);
  const far = a.map((v) => v + 100);
  const apart = precisionRecall(a, far, d);
  assert.equal(apart.precision, 0);
  assert.equal(apart.recall, 0);
});

test('renderPartialImages keeps visible blocks exactly and fills the rest', () => {
  const geo = blockGeometry(); // 8x8 tokens, 2x2 blocks, 16 blocks
  const layout = { geo, height: 32, width: 32 };
  const n = 3, images = randArray(n * 1024, 'partial');
  const masks = [Uint8Array.from({ length: 16 }, (_, b) => (b % 3 === 0 ? 1 : 0)), new Uint8Array(16), new Uint8Array(16).fill(1)];
  const out = renderPartialImages(images, layout, masks);
  for (let i = 0; i < n; i++) {
    for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) {
      const block = cellBlock(geo, Math.floor(y / 4) * 8 + Math.floor(x / 4));
      const k = i * 1024 + y * 32 + x;
      assert.equal(out[k], masks[i][block] ? images[k] : BACKGROUND_FILL, `image ${i} pixel (${y}, ${x}) block ${block}`);
    }
  }
  // A per-pixel fill image, and the flat mask form.
  const mean = meanImage(images, 1024);
  const flat = new Uint8Array(n * 16);
  masks.forEach((m, i) => flat.set(m, i * 16));
  const out2 = renderPartialImages(images, layout, flat, mean);
  assert.equal(out2[1024 + 5], mean[5]);
  assert.equal(out2[2 * 1024 + 77], images[2 * 1024 + 77]);
  throwsOH(() => renderPartialImages(images, layout, [new Uint8Array(15)]), 'renderPartialImages(visible)');
  throwsOH(() => renderPartialImages(images, { geo, height: 30, width: 30 }, masks), 'token grid');
});

test('curveAuc: a constant curve has that area, a linear one half; the fractions must span [0, 1]', () => {
  const f = [0, 0.25, 0.5, 0.75, 1];
  assert.ok(Math.abs(curveAuc(f, [0.7, 0.7, 0.7, 0.7, 0.7]) - 0.7) < 1e-12);
  assert.ok(Math.abs(curveAuc(f, f) - 0.5) < 1e-12);
  throwsOH(() => curveAuc([0.1, 1], [1, 1]), 'curveAuc(fractions)', 'not from 0 to 1');
});

test('recognizabilityCurve decodes each order and scores the classifier per fraction', () => {
  const geo = blockGeometry();
  const layout = { geo, height: 32, width: 32 };
  const n = 8, labels = Int32Array.from({ length: n }, (_, i) => 1 + (i % 9));
  const images = new Float32Array(n * 1024);
  for (let i = 0; i < n; i++) images.fill(labels[i] / 20, i * 1024, (i + 1) * 1024);
  // Mock classifier: knows the class once at least half of the pixels are drawn, else says class 0.
  const classify = (imgs: Float32Array) => {
    const m = imgs.length / 1024, probs = new Float32Array(m * 10);
    for (let i = 0; i < m; i++) {
      let drawn = 0, value = 0;
      for (let p = 0; p < 1024; p++) if (imgs[i * 1024 + p] !== BACKGROUND_FILL) { drawn++; value = imgs[i * 1024 + p]; }
      probs[i * 10 + (drawn >= 512 ? Math.round(value * 20) : 0)] = 1;
    }
    return probs;
  };
  const orders = Array.from({ length: n }, (_, i) => randomBlockOrder(geo, i));
  const curve = recognizabilityCurve({ classify, images, labels, layout, orders, fractions: [0, 0.25, 0.5, 0.75, 1] });
  assert.deepEqual(curve.blocks, [0, 4, 8, 12, 16]);
  assert.deepEqual(curve.accuracy, [0, 0, 1, 1, 1]);
  assert.ok(Math.abs(curve.auc - 0.625) < 1e-12);
  assert.equal(curve.fill, 'constant -1');
  const shared = recognizabilityCurve({ classify, images, labels, layout, orders: rasterBlockOrder(geo) });
  assert.equal(shared.fractions.length, 17);
  throwsOH(() => recognizabilityCurve({ classify, images, labels, layout, orders: [[0, 1, 2]] }), 'recognizabilityCurve(orders)');
});

test('the conv and max-pool layers have the same gradients as tfjs autograd on the cpu backend', async () => {
  // The reference runs on cpu: tfjs-wasm's own MaxPoolGrad drops some entries (3 of 54 in this very case).
  const [xa, wa, ba, ra, pa] = [randArray(2 * 6 * 6 * 3, 'cx'), randArray(3 * 3 * 3 * 4, 'cw'), randArray(4, 'cb'), randArray(2 * 6 * 6 * 4, 'cr'), randArray(2 * 3 * 3 * 3, 'pr')];
  const inputs = () => [tf.tensor4d(xa, [2, 6, 6, 3]), tf.tensor4d(wa, [3, 3, 3, 4]), tf.tensor1d(ba), tf.tensor4d(ra, [2, 6, 6, 4]), tf.tensor4d(pa, [2, 3, 3, 3])] as const;
  const conv = (f: (x: tf.Tensor4D, w: tf.Tensor4D, b: tf.Tensor1D) => tf.Tensor) => () => {
    const [x, w, b, r] = inputs();
    return tf.grads((xi: tf.Tensor, wi: tf.Tensor, bi: tf.Tensor) => tf.sum(tf.mul(f(xi as tf.Tensor4D, wi as tf.Tensor4D, bi as tf.Tensor1D), r)))([x, w, b]);
  };
  const pool = (f: (x: tf.Tensor4D) => tf.Tensor) => () => {
    const [x, , , , r2] = inputs();
    return tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(f(xi as tf.Tensor4D), r2)))(x);
  };
  const ref = await runOn('cpu', conv((x, w, b) => tf.add(tf.conv2d(x, w, 1, 'same'), b)));
  const refPool = await runOn('cpu', pool((x) => tf.maxPool(x, 2, 2, 'valid')));
  const ours = await runOn('wasm', conv(convSame));
  ours.forEach((g, i) => assert.ok(relError(g, ref[i]) < 1e-5, `conv gradient ${['x', 'w', 'b'][i]}: ${relError(g, ref[i])}`));
  const first = await runOn('wasm', conv(inputConvSame));
  assert.ok(relError(first[1], ref[1]) < 1e-5 && relError(first[2], ref[2]) < 1e-5);
  assert.ok(first[0].every((v) => v === 0), 'the input layer passes no gradient to the images');
  const ourPool = await runOn('wasm', pool(maxPool2));
  assert.ok(relError(ourPool[0], refPool[0]) < 1e-6, 'max-pool gradient');
});

/** A tiny net for training tests: seconds on wasm. */
function tinyConfig(over: Partial<FeatureNetConfig> = {}): FeatureNetConfig {
  return featureNetConfig('smoke', { channels: [8, 16], hidden: 64, spatialChannels: 4, steps: 16, batch: 32, warmup: 4, lr: 3e-3, logEvery: 1, checkpointEvery: 8, evalBatch: 32, ...over });
}

let data: { train: ReturnType<typeof loadDataset>; test: ReturnType<typeof loadDataset> } | undefined;
function smallData() {
  data ??= {
    train: loadDataset({ name: 'subset', split: 'train', limit: 256, pad: 32 }),
    test: loadDataset({ name: 'subset', split: 'test', limit: 64, pad: 32 }),
  };
  return data;
}

test('the feature net learns, leaks no tensors per step, round-trips through save and load, resumes, and refuses other configs', async () => {
  await useWasm();
  const cfg = tinyConfig();
  const { train, test: testSet } = smallData();
  const dir = path.join(tmp(), 'featurenet');
  const losses: number[] = [], tensors: number[] = [];
  const res = await trainFeatureNet({ config: cfg, train, test: testSet,
    runDir: dir,
    onLog: (row) => { if (row.loss !== undefined) { losses.push(row.loss); tensors.push(tf.memory().numTensors); } },
  });
  assert.equal(res.step, 16);
  assert.ok(res.complete);
  assert.equal(losses.length, 16);
  const head = losses.slice(0, 4).reduce((a, b) => a + b) / 4, tail = losses.slice(-4).reduce((a, b) => a + b) / 4;
  assert.ok(tail < head - 0.5, `loss did not fall: ${losses.map((l) => l.toFixed(2)).join(' ')}`);
  assert.ok(tensors.every((t) => t === tensors[0]), `tensor count changed over steps: ${tensors.join(' ')}`);
  assert.ok(res.testAccuracy > 0.3 && res.testAccuracy <= 1 && res.testImages === 64, `test accuracy ${res.testAccuracy}`);
  assert.equal(res.net.source.testAccuracy, res.testAccuracy);

  // Outputs: shapes, probabilities, no tensors left over whatever the batch.
  const images = testSet.images.subarray(0, 13 * 1024);
  const before = tf.memory().numTensors;
  const out = featureNetOutputs(res.net, images, 5);
  assert.equal(tf.memory().numTensors, before, 'featureNetOutputs leaked tensors');
  featureNetOutputs(res.net, images, 13);
  assert.equal(tf.memory().numTensors, before);
  assert.equal(out.pool.length, 13 * 64);
  assert.equal(out.spatial.length, 13 * 8 * 8 * 4);
  assert.equal(out.spatialDim, 256);
  for (let i = 0; i < 13; i++) {
    const s = out.probs.subarray(i * 10, i * 10 + 10).reduce((a, b) => a + b);
    assert.ok(Math.abs(s - 1) < 1e-5);
  }
  assert.deepEqual(featureNetOutputs(res.net, images, 4).pool, out.pool, 'batch size changed the features');
  assert.equal(featureNetClassifier(res.net)(images).length, 13 * 10);

  // Save -> load gives the same outputs exactly.
  const loaded = loadFeatureNet(dir);
  const again = featureNetOutputs(loaded, images, 5);
  assert.deepEqual(again.pool, out.pool);
  assert.deepEqual(again.spatial, out.spatial);
  assert.deepEqual(again.probs, out.probs);
  assert.equal(loaded.source.step, 16);
  assert.equal(loaded.source.testAccuracy, res.testAccuracy);
  loaded.dispose();

  // Reopening the finished run trains nothing and reports the same accuracy.
  const resumed = await trainFeatureNet({ config: cfg, train, test: testSet, runDir: dir });
  assert.equal(resumed.startStep, 16);
  assert.equal(resumed.testAccuracy, res.testAccuracy);
  assert.deepEqual(featureNetOutputs(resumed.net, images).probs, out.probs);
  resumed.net.dispose();

  // A different config in the same folder is refused, naming the field.
  await assert.rejects(trainFeatureNet({ config: tinyConfig({ hidden: 24 }), train, test: testSet, runDir: dir }), (err: Error) => {
    assert.equal(err.name, 'OrderHeadError');
    assert.match(err.message, /hidden: run 64, current 24/);
    return true;
  });

  // Training in two slices ends exactly where the uninterrupted run did.
  const dir2 = path.join(tmp(), 'featurenet-sliced');
  const half = await trainFeatureNet({ config: cfg, train, test: testSet, runDir: dir2, untilStep: 8 });
  assert.equal(half.step, 8);
  assert.ok(!half.complete);
  half.net.dispose();
  throwsOH(() => loadFeatureNet(dir2), 'stopped at step 8 of 16', 'allowIncomplete');
  loadFeatureNet(dir2, { allowIncomplete: true }).dispose();
  const rest = await trainFeatureNet({ config: cfg, train, test: testSet, runDir: dir2 });
  assert.equal(rest.startStep, 8);
  assert.deepEqual(featureNetOutputs(rest.net, images).probs, out.probs, 'resumed training diverged from the uninterrupted run');
  rest.net.dispose();
  res.net.dispose();
});

test('loading a missing, truncated or corrupt feature net is an OrderHeadError naming the path', async () => {
  await useWasm();
  const cfg = tinyConfig({ steps: 2, checkpointEvery: 2 });
  const { train, test: testSet } = smallData();
  const dir = path.join(tmp(), 'featurenet');
  const res = await trainFeatureNet({ config: cfg, train, test: testSet, runDir: dir });
  res.net.dispose();
  const file = res.checkpoint;
  assert.ok(fs.existsSync(file) && file.endsWith('featurenet-step000002.safetensors'));
  const before = tf.memory().numTensors;
  const bytes = fs.readFileSync(file);
  fs.writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
  throwsOH(() => loadFeatureNet(dir), file, 'truncated');
  throwsOH(() => loadFeatureNet(file), file);
  fs.writeFileSync(file, Buffer.from('not a safetensors file at all'));
  throwsOH(() => loadFeatureNet(file), file);
  assert.equal(tf.memory().numTensors, before, 'failed loads leaked tensors');
  const empty = path.join(tmp(), 'nothing-here');
  throwsOH(() => loadFeatureNet(empty), path.join(empty, 'checkpoints'), 'no feature-network checkpoint');
});
