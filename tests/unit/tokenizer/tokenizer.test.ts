/** The VQ tokenizer on wasm: shapes, straight-through gradients, codebook care, training, checkpoints, token cache. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../../lib/runtime/backend';
import { OrderHeadError } from '../../../lib/runtime/errors';
import { AdamW, accumulateGrads } from '../../../lib/runtime/optim';
import { latestCheckpoint } from '../../../lib/runtime/checkpoint';
import { rng } from '../../../lib/runtime/seed';
import { loadDataset } from '../../../lib/data/dataset';
import {
  TokenizerConfig, VqTokenizer, decodeCodes, encodePatches, imagesToPatches, loadTokenCache, loadTokenizer, normalisedCodebook,
  patchesToImages, quantise, restartDeadCodes, tokenizeDataset, tokenizerConfig, trainTokenizer, vqLoss,
} from '../../../lib/tokenizer';

/** A small, fast config on the shipped subset (geometry as the default: 32x32 -> 8x8). */
function tinyConfig(over: Partial<TokenizerConfig> = {}): TokenizerConfig {
  return tokenizerConfig('smoke', {
    codebookSize: 32, codeDim: 8, width: 16, depth: 1, mlpRatio: 1, batch: 8, steps: 4, warmup: 1, lr: 3e-3,
    logEvery: 1, evalEvery: 0, evalImages: 8, checkpointEvery: 2, deadAfter: 5, restartEvery: 0, ...over,
  });
}

let data: { images: Float32Array; labels: Int32Array; n: number } | undefined;
function images(n: number): { images: Float32Array; labels: Int32Array; n: number } {
  data ??= loadDataset({ name: 'subset', split: 'train', limit: 64, pad: 32 });
  return { images: data.images.slice(0, n * 1024), labels: data.labels.slice(0, n), n };
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'orderhead-tok-'));
}

const wasm = () => initBackend({ force: 'wasm', quiet: true });

function norms(a: Float32Array, dim: number): number[] {
  const out: number[] = [];
  for (let o = 0; o < a.length; o += dim) out.push(Math.hypot(...a.subarray(o, o + dim)));
  return out;
}

test('patches are a permutation of the pixels and round-trip', () => {
  const x = Float32Array.from({ length: 2 * 1024 }, (_, i) => i);
  const p = imagesToPatches(x, 2, 32, 4);
  // Token 1 of image 0 is the patch at grid (0, 1): pixels (0..3, 4..7).
  assert.deepEqual(Array.from(p.subarray(16, 20)), [4, 5, 6, 7]);
  assert.deepEqual(Array.from(p.subarray(20, 24)), [36, 37, 38, 39]);
  assert.deepEqual(patchesToImages(p, 2, 32, 4), x);
});

test('encode gives N*64 tokens in range, decode gives N*32*32 pixels in [-1, 1]', async () => {
  await wasm();
  const cfg = tinyConfig();
  const tok = VqTokenizer.init(cfg);
  const before = tf.memory().numTensors;
  const { images: x } = images(5);
  const tokens = tok.encode(x, { batch: 2 });
  assert.equal(tokens.length, 5 * 64);
  assert.ok(tokens.every((t) => t >= 0 && t < cfg.codebookSize));
  const rec = tok.decode(tokens, { batch: 3 });
  assert.equal(rec.length, 5 * 32 * 32);
  assert.ok(rec.every((v) => v >= -1 && v <= 1));
  // Encoding in other batch sizes gives the same tokens.
  assert.deepEqual(tok.encode(x, { batch: 5 }), tokens);
  assert.equal(tf.memory().numTensors, before, 'encode/decode leaked tensors');
  assert.throws(() => tok.decode(Int32Array.from([cfg.codebookSize, ...new Array(63).fill(0)])), /outside 0 \.\. 31/);
  assert.throws(() => tok.encode(new Float32Array(1000)), /whole number of 32x32 images/);
  tok.dispose();
});

test('codes and encoder outputs are L2-normalised', async () => {
  await wasm();
  const cfg = tinyConfig();
  const tok = VqTokenizer.init(cfg);
  for (const n of norms(tok.codebookVectors(), cfg.codeDim)) assert.ok(Math.abs(n - 1) < 1e-5, `code norm ${n}`);
  // Even a codebook variable drifting off the sphere is used normalised.
  tok.params['codebook'].assign(tf.mul(tok.params['codebook'], 3));
  for (const n of norms(tok.codebookVectors(), cfg.codeDim)) assert.ok(Math.abs(n - 1) < 1e-5, `code norm ${n}`);
  const x = imagesToPatches(images(2).images, 2, 32, 4);
  const z = tf.tidy(() => encodePatches(cfg, tok.params, tf.tensor2d(x, [128, 16]), 2));
  for (const n of norms(z.dataSync() as Float32Array, cfg.codeDim)) assert.ok(Math.abs(n - 1) < 1e-5, `z norm ${n}`);
  z.dispose();
  tok.dispose();
});

test('straight-through: the reconstruction gradient reaches the encoder and not the codebook', async () => {
  await wasm();
  const cfg = tinyConfig();
  const tok = VqTokenizer.init(cfg);
  const x = tf.tensor2d(imagesToPatches(images(2).images, 2, 32, 4), [128, 16]);
  const p = tok.params;
  const names = ['enc.in.w', 'enc.out.w', 'codebook', 'dec.out.w'];
  const { value, grads } = tf.variableGrads(() => {
    const z = encodePatches(cfg, p, x, 2);
    const { zq } = quantise(z, normalisedCodebook(p));
    return tf.mean(tf.square(tf.sub(decodeCodes(cfg, p, zq, 2), x))) as tf.Scalar;
  }, names.map((k) => p[k]));
  const g = (k: string) => grads[p[k].name];
  const absSum = (t: tf.Tensor) => tf.tidy(() => tf.sum(tf.abs(t)).dataSync()[0]);
  assert.ok(absSum(g('enc.in.w')) > 0, 'no gradient reached the encoder input layer');
  assert.ok(absSum(g('enc.out.w')) > 0, 'no gradient reached the encoder output layer');
  assert.ok(absSum(g('dec.out.w')) > 0, 'no gradient reached the decoder');
  assert.equal(g('codebook') ? absSum(g('codebook')) : 0, 0, 'the reconstruction loss moved the codebook');
  // The full loss does move the codebook (codebook term ||sg(z) - q||^2).
  const full = tf.variableGrads(() => vqLoss(cfg, p, x, 2).loss, [p['codebook']]);
  assert.ok(absSum(full.grads[p['codebook'].name]) > 0, 'the codebook term gives no codebook gradient');
  tf.dispose([value, x, ...Object.values(grads), full.value, ...Object.values(full.grads)]);
  tok.dispose();
});

test('dead-code restart replaces exactly the unused codes with encoder outputs', async () => {
  await wasm();
  const cfg = tinyConfig({ deadAfter: 5 });
  const tok = VqTokenizer.init(cfg);
  const K = cfg.codebookSize, D = cfg.codeDim;
  const lastUsed = new Int32Array(K).fill(10);
  const dead = [0, 3, 7, 31];
  for (const k of dead) lastUsed[k] = 2; // unused for 8 steps at step 10
  const opt = new AdamW(tok.params);
  opt.m['codebook'].assign(tf.onesLike(opt.m['codebook']));
  const before = tok.codebookVectors();
  const x = imagesToPatches(images(4).images, 4, 32, 4);
  const restarted = restartDeadCodes(tok, x, 4, lastUsed, 10, rng(1), opt);
  assert.deepEqual(restarted, dead);
  const after = tok.codebookVectors();
  const z = tf.tidy(() => encodePatches(cfg, tok.params, tf.tensor2d(x, [256, 16]), 4).dataSync() as Float32Array);
  const m = opt.m['codebook'].dataSync() as Float32Array;
  for (let k = 0; k < K; k++) {
    const row = after.subarray(k * D, (k + 1) * D);
    if (!dead.includes(k)) {
      assert.deepEqual(row, before.subarray(k * D, (k + 1) * D), `live code ${k} changed`);
      assert.equal(m[k * D], 1, `optimizer state of live code ${k} was reset`);
      continue;
    }
    assert.equal(lastUsed[k], 10, `restarted code ${k} not marked as fresh`);
    assert.ok(Math.abs(Math.hypot(...row) - 1) < 1e-5, `restarted code ${k} is not unit length`);
    assert.equal(m[k * D], 0, `optimizer state of restarted code ${k} kept`);
    let best = -1;
    for (let i = 0; i < 256; i++) {
      let c = 0;
      for (let j = 0; j < D; j++) c += row[j] * z[i * D + j];
      best = Math.max(best, c);
    }
    assert.ok(best > 0.99, `restarted code ${k} is not an encoder output (best cosine ${best})`);
  }
  opt.dispose();
  tok.dispose();
});

test('a training step keeps tf.memory().numTensors flat and the loss falls over 30 steps', async () => {
  await wasm();
  const cfg = tinyConfig({ width: 32 });
  const tok = VqTokenizer.init(cfg);
  const opt = new AdamW(tok.params, { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, clipNorm: 1 });
  const x = imagesToPatches(images(8).images, 8, 32, 4);
  const step = () => {
    let rec = 0;
    const { grads, loss } = accumulateGrads(tok.params, 2, (i) => {
      const parts = vqLoss(cfg, tok.params, tf.tensor2d(x.subarray(i * 4 * 64 * 16, (i + 1) * 4 * 64 * 16), [4 * 64, 16]), 4);
      rec += parts.recMse / 2;
      return parts.loss;
    });
    opt.apply(grads);
    tf.dispose(Object.values(grads));
    return { loss, rec };
  };
  const first = step();
  const before = tf.memory().numTensors;
  let last = first;
  for (let i = 0; i < 30; i++) last = step();
  assert.equal(tf.memory().numTensors, before, 'tensors leaked by the training step');
  assert.ok(last.rec < first.rec * 0.6, `reconstruction loss did not fall: ${first.rec} -> ${last.rec}`);
  opt.dispose();
  tok.dispose();
});

test('trainTokenizer logs, checkpoints, resumes exactly and leaks nothing', async () => {
  await wasm();
  const dir = path.join(tmpDir(), 'tokenizer-test');
  const cfg = tinyConfig({ steps: 6, restartEvery: 2, deadAfter: 1 });
  const train = images(16), test = images(8);
  const before = tf.memory().numTensors;
  const a = await trainTokenizer({ config: cfg, runDir: dir, train, test, untilStep: 3 });
  assert.equal(a.step, 3);
  assert.equal(path.basename(a.checkpoint), 'tokenizer-step000003.safetensors');
  a.tokenizer.dispose();
  const b = await trainTokenizer({ config: cfg, runDir: dir, train, test });
  assert.equal(b.startStep, 3);
  assert.equal(b.step, 6);
  assert.ok(b.lastEval && b.lastEval.psnr > 0, 'no evaluation at the last step');
  const resumed = b.tokenizer.fingerprint();
  b.tokenizer.dispose();
  assert.equal(tf.memory().numTensors, before, 'training leaked tensors');
  // The same 6 steps in one go give the same weights.
  const c = await trainTokenizer({ config: cfg, runDir: path.join(path.dirname(dir), 'tokenizer-straight'), train, test });
  assert.equal(c.tokenizer.fingerprint(), resumed, 'a resumed run differs from an uninterrupted one');
  c.tokenizer.dispose();
  const rows = b.run.readMetrics();
  assert.ok(rows.some((r) => typeof r.loss === 'number' && typeof r.usage === 'number' && typeof r.perplexity === 'number'));
  assert.ok(rows.some((r) => typeof r.test_psnr === 'number'));
  // A finished run reopens without training.
  const d = await trainTokenizer({ config: cfg, runDir: dir, train, test });
  assert.equal(d.startStep, 6);
  assert.equal(d.step, 6);
  d.tokenizer.dispose();
});

test('a checkpoint from another config is refused, naming the field', async () => {
  await wasm();
  const root = tmpDir();
  const cfg = tinyConfig({ steps: 2 });
  const a = await trainTokenizer({ config: cfg, runDir: path.join(root, 'a'), train: images(8), test: images(4) });
  a.tokenizer.dispose();
  // Loading for encoding with another model config.
  assert.throws(
    () => loadTokenizer(path.join(root, 'a'), { expectConfig: { ...cfg, codebookSize: 64 } }),
    (e: unknown) => e instanceof OrderHeadError && /codebookSize: checkpoint 32, current 64/.test(e.message),
  );
  // Training config changes are not model changes.
  loadTokenizer(path.join(root, 'a'), { expectConfig: { ...cfg, lr: 1 } }).dispose();
  // The same run folder with another config.
  await assert.rejects(
    () => trainTokenizer({ config: { ...cfg, codeDim: 4 }, runDir: path.join(root, 'a'), train: images(8), test: images(4) }),
    (e: unknown) => e instanceof OrderHeadError && /codeDim: run 8, current 4/.test(e.message),
  );
  // A checkpoint copied into a run of another config.
  const other = { ...cfg, width: 24 };
  const bDir = path.join(root, 'b');
  fs.mkdirSync(path.join(bDir, 'checkpoints'), { recursive: true });
  fs.writeFileSync(path.join(bDir, 'config.json'), JSON.stringify(other));
  fs.copyFileSync(a.checkpoint, path.join(bDir, 'checkpoints', path.basename(a.checkpoint)));
  await assert.rejects(
    () => trainTokenizer({ config: other, runDir: bDir, train: images(8), test: images(4) }),
    (e: unknown) => e instanceof OrderHeadError && /width: checkpoint 16, current 24/.test(e.message),
  );
});

test('a NaN loss stops training naming the step, and the last checkpoint stays intact', async () => {
  await wasm();
  const dir = path.join(tmpDir(), 'tok');
  const cfg = tinyConfig({ steps: 6 });
  const good = images(8);
  const a = await trainTokenizer({ config: cfg, runDir: dir, train: good, test: good, untilStep: 2 });
  a.tokenizer.dispose();
  const bytes = fs.readFileSync(a.checkpoint);
  const poisoned = { ...good, images: good.images.map((v, i) => (i % 97 === 0 ? NaN : v)) };
  const before = tf.memory().numTensors;
  await assert.rejects(
    () => trainTokenizer({ config: cfg, runDir: dir, train: poisoned, test: good }),
    (e: unknown) => e instanceof OrderHeadError && /loss is NaN .*at step 3/.test(e.message) && e.message.includes('tokenizer-step000002'),
  );
  assert.equal(tf.memory().numTensors, before, 'the failed run leaked tensors');
  assert.deepEqual(fs.readFileSync(a.checkpoint), bytes, 'the last good checkpoint changed');
  assert.equal(latestCheckpoint(path.join(dir, 'checkpoints'), 'tokenizer')?.step, 2);
});

test('the token cache round-trips, is reused when current and rebuilt when the tokenizer changes', async () => {
  await wasm();
  const dir = tmpDir();
  const cfg = tinyConfig();
  const tok = VqTokenizer.init(cfg);
  const train = { ...images(12), source: 'test-train' };
  const test = { ...images(5), source: 'test-test' };
  assert.throws(() => loadTokenCache(dir), (e: unknown) => e instanceof OrderHeadError && /01_tokenizer/.test(e.message));
  const made = await tokenizeDataset(tok, dir, { train, test, batch: 4 });
  assert.equal(made.reused, false);
  const cache = loadTokenCache(dir);
  assert.deepEqual(cache.grid, { h: 8, w: 8 });
  assert.equal(cache.codebookSize, 32);
  assert.equal(cache.train.n, 12);
  assert.deepEqual(cache.train.tokens, tok.encode(train.images));
  assert.deepEqual(cache.test.tokens, tok.encode(test.images));
  assert.deepEqual(cache.train.labels, train.labels);
  assert.equal(cache.tokenizer.fingerprint, tok.fingerprint());
  const again = await tokenizeDataset(tok, dir, { train, test });
  assert.equal(again.reused, true);
  const other = VqTokenizer.init(cfg, 99);
  const rebuilt = await tokenizeDataset(other, dir, { train, test });
  assert.equal(rebuilt.reused, false);
  assert.match(rebuilt.reason, /tokenizer changed/);
  assert.equal(loadTokenCache(dir).tokenizer.fingerprint, other.fingerprint());
  tok.dispose();
  other.dispose();
});

test('config errors name the field', () => {
  assert.throws(() => tokenizerConfig('smoke', { patchSize: 5 }), /tokenizer\.patchSize/);
  assert.throws(() => tokenizerConfig('smoke', { batch: 10, microBatch: 3 }), /tokenizer\.microBatch/);
  assert.deepEqual(tokenizerConfig('default').data.train, { name: 'fashion-mnist', split: 'train', pad: 32 });
});

// ---- bad input ----
// What a user (or a crash) can get wrong here. Each test asserts an
// OrderHeadError naming the file or config field with a fix (expectOH /
// rejectsOH), and that the temp folder is byte-identical afterwards, nothing
// added (untouched); both in tests/helpers.ts.
import { describe } from 'node:test';
import { expectOH, rejectsOH, sandbox, untouched, useWasm } from '../../helpers';
import { stage1Checkpoint } from '../../fixtures/stage1-job';
import { saveCheckpoint } from '../../../lib/runtime/checkpoint';

/** A small tokenizer config on 32x32 images (8x8 tokens). */
function tinyTokenizer(over: Partial<TokenizerConfig> = {}): TokenizerConfig {
  return tokenizerConfig('smoke', {
    codebookSize: 16, codeDim: 4, width: 8, depth: 1, batch: 4, steps: 1, warmup: 1, logEvery: 1, evalEvery: 0, evalImages: 2,
    checkpointEvery: 1, restartEvery: 0, ...over,
  });
}

const blankImages = (n: number) => ({ images: Float32Array.from({ length: n * 1024 }, (_, i) => ((i * 7) % 13) / 6.5 - 1), n });

describe('bad input', () => {
  test('tokenizer training on an empty or misaligned image set is refused before a run folder is made', async () => {
    await useWasm();
    const root = sandbox();
    const cfg = tinyTokenizer();
    await untouched(root, async () => {
      await rejectsOH(() => trainTokenizer({ config: cfg, runDir: path.join(root, 'tok'), train: { images: new Float32Array(0), n: 0 }, test: blankImages(2) }),
        'trainTokenizer(train)', 'holds no images');
      await rejectsOH(() => trainTokenizer({ config: cfg, runDir: path.join(root, 'tok'), train: blankImages(4), test: { images: new Float32Array(0), n: 0 } }),
        'trainTokenizer(test)', 'holds no images');
      // 28x28 images given to a 32x32 tokenizer (forgot the padding).
      await rejectsOH(() => trainTokenizer({ config: cfg, runDir: path.join(root, 'tok'), train: { images: new Float32Array(4 * 784), n: 4 }, test: blankImages(2) }),
        'trainTokenizer(train)', '3136 pixels for 4 images', 'need 4096', 'pad: 32');
    });
  });

  test('a tokenizer patch size that does not tile the image names tokenizer.patchSize', async () => {
    const root = sandbox();
    await untouched(root, () => {
      expectOH(() => tinyTokenizer({ patchSize: 5 }), 'tokenizer.patchSize', 'not a multiple of patchSize 5', 'divides the image size');
      expectOH(() => tinyTokenizer({ batch: 10, microBatch: 3 }), 'tokenizer.microBatch');
    });
  });

  test('a tokenizer checkpoint from another config names each differing field with both values', async () => {
    await useWasm();
    const root = sandbox();
    const cfg = tinyTokenizer();
    const a = await trainTokenizer({ config: cfg, runDir: path.join(root, 'a'), train: blankImages(4), test: blankImages(2) });
    a.tokenizer.dispose();
    const before = tf.memory().numTensors;
    await untouched(root, async () => {
      expectOH(() => loadTokenizer(path.join(root, 'a'), { expectConfig: { ...cfg, codebookSize: 32, width: 12 } }), a.checkpoint,
        'codebookSize: checkpoint 16, current 32', 'width: checkpoint 8, current 12', 'retrain');
      // The same run folder reopened with another config.
      await rejectsOH(() => trainTokenizer({ config: { ...cfg, codeDim: 8 }, runDir: path.join(root, 'a'), train: blankImages(4), test: blankImages(2) }),
        path.join(root, 'a'), 'codeDim: run 4, current 8', 'never mixed');
    });
    assert.equal(tf.memory().numTensors, before, 'a refused load leaked tensors');
  });

  test('a Stage 1 checkpoint, or a run folder without checkpoints, given as the tokenizer', async () => {
    await useWasm();
    const root = sandbox();
    const s1 = stage1Checkpoint(root);
    fs.mkdirSync(path.join(root, 'tokenizer-smoke'));
    await untouched(root, () => {
      expectOH(() => loadTokenizer(s1.file), s1.file, "is a 'stage1' checkpoint, not a tokenizer checkpoint");
      expectOH(() => loadTokenizer(path.join(root, 'tokenizer-smoke')), path.join(root, 'tokenizer-smoke', 'checkpoints'), 'no tokenizer checkpoint', '01_tokenizer');
    });
  });

  test('loading a token cache from a folder without tokens (tokenizer not run yet) names notebook 01', async () => {
    const root = sandbox();
    const dir = path.join(root, 'tokenizer-smoke');
    fs.mkdirSync(dir);
    await untouched(root, () => {
      expectOH(() => loadTokenCache(dir), path.join(dir, 'tokens.safetensors'), 'no token cache here', '01_tokenizer');
    });
  });

  test('a truncated or corrupt token cache says to rebuild it (not to "use an earlier checkpoint")', async () => {
    await useWasm();
    const root = sandbox();
    const tok = VqTokenizer.init(tinyTokenizer());
    const dir = path.join(root, 'tokenizer-smoke');
    await tokenizeDataset(tok, dir, { train: { ...blankImages(3), labels: new Int32Array(3) }, test: { ...blankImages(2), labels: new Int32Array(2) } });
    tok.dispose();
    const file = path.join(dir, 'tokens.safetensors');
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(file, bytes.subarray(0, bytes.length - 9));
    await untouched(root, () => {
      const e = expectOH(() => loadTokenCache(dir), file, 'truncated', 'rebuild it with tokenizeDataset');
      assert.ok(!e.fix.includes('checkpoint'), e.fix);
    });
    fs.writeFileSync(file, 'this is not a safetensors file at all');
    await untouched(root, () => expectOH(() => loadTokenCache(dir), file, 'not a safetensors file', 'rebuild'));
    // A checkpoint put where the cache belongs.
    saveCheckpoint(dir, 'x', { weights: { w: new Float32Array(2) }, config: {}, step: 0 });
    fs.renameSync(path.join(dir, 'x.safetensors'), file);
    await untouched(root, () => expectOH(() => loadTokenCache(dir), file, 'not a token cache', 'rebuild'));
  });
});
