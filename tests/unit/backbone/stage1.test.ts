/** Stage 1: exact-NLL normalisation, sampling, the r schedule, training with resume, bad input. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useWasm } from '../../helpers';
import { gptConfig, seqLen } from '../../../lib/backbone/config';
import { createGPT, disposeGPT, rasterOrder } from '../../../lib/backbone/gpt';
import { exactNll, nllUnderPolicy } from '../../../lib/backbone/nll';
import { sampleImages, sampleToken } from '../../../lib/backbone/sampler';
import {
  drawStage1Batch, loadBackbone, randomShare, STAGE1_DEFAULTS, Stage1Config, stage1DataRng, stage1Geometry, stage1Loss, stage1ModelConfig, stage1Optimizer, trainStage1, trainStage1Parallel,
} from '../../../lib/backbone/stage1';
import { scheduledLr } from '../../../lib/runtime/optim';
import { blockGeometry, cellsOfBlockOrder, randomPolicy, rasterPolicy, validateBlockOrder } from '../../../lib/order';
import { OrderHeadError } from '../../../lib/runtime/errors';
import { rng } from '../../../lib/runtime/seed';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'oh-stage1-'));

test('probabilities of every token sequence under a fixed non-raster block order sum to 1', async () => {
  await useWasm();
  const cfg = gptConfig('tiny', { gridH: 2, gridW: 4, vocabSize: 3 });
  const geo = blockGeometry({ gridH: 2, gridW: 4, blockH: 1, blockW: 2 });
  const m = createGPT(cfg, 11);
  const T = seqLen(cfg), N = 3 ** T;
  const grids = new Int32Array(N * T);
  for (let i = 0; i < N; i++) for (let t = 0, v = i; t < T; t++, v = Math.floor(v / 3)) grids[i * T + t] = v % 3;
  const order = cellsOfBlockOrder(geo, [3, 0, 2, 1]);
  const cells = new Int32Array(N * T);
  for (let i = 0; i < N; i++) cells.set(order, i * T);
  for (const cls of [0, 2]) {
    const res = exactNll(m, grids, new Int32Array(N).fill(cls), cells, 729);
    let total = 0;
    for (let i = 0; i < N; i++) total += Math.exp(-res.perImage[i]);
    assert.ok(Math.abs(total - 1) < 1e-3, `class ${cls}: probabilities sum to ${total}`);
    assert.ok(Math.abs(res.bitsPerToken - res.natsPerToken / Math.LN2) < 1e-9);
  }
  disposeGPT(m);
});

test('sampling under a policy fills every cell, follows the policy, is seeded, and leaks no tensors', async () => {
  await useWasm();
  const cfg = gptConfig('tiny');
  const geo = blockGeometry({ gridH: cfg.gridH, gridW: cfg.gridW, blockH: 2, blockW: 2 });
  const m = createGPT(cfg, 5);
  const classes = new Int32Array([0, 1, 2, 1]);
  const before = tf.memory().numTensors;
  const a = await sampleImages(m, { classes, policy: randomPolicy(geo, 3), geometry: geo, seed: 7, topK: 5, topP: 0.9 });
  assert.equal(tf.memory().numTensors, before, 'sampling leaked tensors');
  const b = await sampleImages(m, { classes, policy: randomPolicy(geo, 3), geometry: geo, seed: 7, topK: 5, topP: 0.9 });
  assert.deepEqual(a.tokens, b.tokens, 'same seed, different samples');
  const T = seqLen(cfg);
  assert.ok(a.tokens.every((v) => v >= 0 && v < cfg.vocabSize));
  for (let i = 0; i < classes.length; i++) {
    validateBlockOrder(geo, a.blockOrders[i], 'test');
    assert.deepEqual(Array.from(a.cells.subarray(i * T, (i + 1) * T)), Array.from(cellsOfBlockOrder(geo, a.blockOrders[i])));
  }
  const guided = await sampleImages(m, { classes, policy: rasterPolicy(geo), geometry: geo, seed: 7, cfgScale: 2 });
  assert.equal(tf.memory().numTensors, before, 'CFG sampling leaked tensors');
  assert.ok(guided.tokens.every((v) => v >= 0));
  disposeGPT(m);
});

test('sampleToken: temperature 0 and top-k 1 are greedy; top-p keeps the head of the distribution', () => {
  const logits = new Float32Array([0.1, 3, -1, 2.9]);
  const r = rng(1);
  assert.equal(sampleToken(logits, r, 0), 1);
  for (let i = 0; i < 20; i++) assert.equal(sampleToken(logits, r, 1, 1), 1);
  for (let i = 0; i < 50; i++) assert.ok([1, 3].includes(sampleToken(logits, r, 1, 0, 0.8)));
});

test('the random share r is 1 before annealStart, 0 after annealEnd, linear between; 0 for raster', () => {
  const cfg: Stage1Config = { ...STAGE1_DEFAULTS, orderMode: 'block-rar', steps: 100, annealStart: 0.5, annealEnd: 0.9 };
  assert.equal(randomShare(cfg, 0), 1);
  assert.equal(randomShare(cfg, 49), 1);
  assert.ok(Math.abs(randomShare(cfg, 70) - 0.5) < 1e-9);
  assert.equal(randomShare(cfg, 90), 0);
  assert.equal(randomShare({ ...cfg, orderMode: 'raster' }, 10), 0);
});

function tinyJob(steps: number): { cfg: Stage1Config; data: { tokens: Int32Array; labels: Int32Array; n: number }; model: ReturnType<typeof stage1ModelConfig> } {
  const cfg: Stage1Config = { ...STAGE1_DEFAULTS, orderMode: 'block-rar', size: 'tiny', steps, batch: 4, microBatch: 2, warmup: 1, checkpointEvery: 2, annealStart: 0.5, annealEnd: 1 };
  const model = stage1ModelConfig(cfg, { h: 4, w: 4 }, 16, 3);
  const n = 12;
  const tokens = new Int32Array(n * 16).map((_, i) => (i * 5 + (i >> 4)) % 16);
  const labels = new Int32Array(n).map((_, i) => i % 3);
  return { cfg, data: { tokens, labels, n }, model };
}

test('Stage 1 training saves checkpoints named with step and r, resumes to the same weights, and leaks no tensors', async () => {
  await useWasm();
  const { cfg, data, model } = tinyJob(4);
  const root = tmp();
  const before = tf.memory().numTensors;
  const full = trainStage1(root, 'full', cfg, data, model);
  assert.deepEqual(full.checkpoints.map((p) => path.basename(p)), ['stage1-step000002-r1.00.safetensors', 'stage1-step000004-r0.00.safetensors']);
  disposeGPT(full.model);
  assert.equal(tf.memory().numTensors, before, 'training leaked tensors');
  // Interrupted after 2 steps, then resumed: same final weights as the uninterrupted run.
  disposeGPT(trainStage1(root, 'split', cfg, data, model, { maxSteps: 2 }).model);
  const resumed = trainStage1(root, 'split', cfg, data, model);
  assert.equal(resumed.steps, 4);
  disposeGPT(resumed.model);
  // The result lists the run's checkpoints, not only this call's: notebook 02 reads them all (NLL per checkpoint, the last one's samples).
  const names = (r: { checkpoints: string[] }) => r.checkpoints.map((p) => path.basename(p));
  assert.deepEqual(names(resumed), names(full), 'a resumed run lists the checkpoints of its killed call too');
  // Killed after training ended (before the notebook did): the rerun trains nothing and still lists every checkpoint.
  const again = trainStage1(root, 'split', cfg, data, model);
  assert.equal(again.steps, 4);
  assert.deepEqual(names(again), names(full), 'a rerun after training ended lists every checkpoint');
  disposeGPT(again.model);
  const a = loadBackbone(full.checkpoints[1]), b = loadBackbone(resumed.checkpoints[resumed.checkpoints.length - 1]);
  for (const k of Object.keys(a.params)) assert.deepEqual(a.params[k].dataSync(), b.params[k].dataSync(), `weight ${k} differs after resume`);
  disposeGPT(a); disposeGPT(b);
  const lines = fs.readFileSync(path.join(root, 'split', 'metrics.jsonl'), 'utf8').trim().split('\n');
  assert.equal(lines.length, 4, 'one metrics row per step across the interruption');
});

test('one Stage 1 step written inline from the exported pieces is the first step of trainStage1', async () => {
  await useWasm();
  const { cfg, data, model } = tinyJob(4);
  const root = tmp();
  const trained = trainStage1(root, 'one', cfg, data, model, { maxSteps: 1 });
  const before = tf.memory().numTensors;
  const m = createGPT(model, cfg.seed);
  const batch = drawStage1Batch(stage1DataRng(cfg), data, stage1Geometry(cfg, model), cfg, 0, model.numClasses);
  const T = seqLen(model);
  assert.deepEqual(batch.micro.map((mb) => [mb.image.length, mb.classes.length, mb.order.cells.length]), [[2, 2, 2 * T], [2, 2, 2 * T]]);
  const { loss, grads } = stage1Loss(m, batch);
  const opt = stage1Optimizer(m, cfg);
  const gradNorm = opt.apply(grads, scheduledLr(cfg, 0));
  tf.dispose(Object.values(grads));
  opt.dispose();
  const row = trained.run.readMetrics()[0];
  assert.deepEqual([row.loss, row.gradNorm, row.r], [loss, gradNorm, batch.share]);
  for (const k of Object.keys(m.params)) assert.deepEqual(m.params[k].dataSync(), trained.model.params[k].dataSync(), `weight ${k}`);
  disposeGPT(m);
  assert.equal(tf.memory().numTensors, before, 'the inline step leaked tensors');
  disposeGPT(trained.model);
});

test('a backbone checkpoint loaded with another config names the mismatched field', async () => {
  await useWasm();
  const { cfg, data, model } = tinyJob(2);
  const res = trainStage1(tmp(), 'x', cfg, data, model);
  disposeGPT(res.model);
  assert.throws(() => loadBackbone(res.checkpoints[0], { gridH: 8 }),
    (e: unknown) => e instanceof OrderHeadError && /gridH/.test(e.message));
});

test('a non-finite loss stops training with the step named and writes no checkpoint', async () => {
  await useWasm();
  const { cfg, data, model } = tinyJob(4);
  const root = tmp();
  // A learning rate this large blows the weights up at the first update, so a later step's loss is not finite.
  assert.throws(() => trainStage1(root, 'nan', { ...cfg, lr: 1e30, warmup: 0 }, data, model),
    (e: unknown) => e instanceof OrderHeadError && /at step \d+|optimizer step/.test(e.message));
  assert.deepEqual(fs.readdirSync(path.join(root, 'nan', 'checkpoints')).filter((f) => f.endsWith('.safetensors')), []);
});

test('token data that does not fit the model grid is refused', async () => {
  await useWasm();
  const { cfg, data, model } = tinyJob(2);
  assert.throws(() => trainStage1(tmp(), 'bad', cfg, { ...data, n: data.n + 1 }, model), /stage1 token data/);
});

test('raster order helper matches the identity permutation', () => {
  const o = rasterOrder(gptConfig('tiny'), 2);
  assert.deepEqual(Array.from(o.cells.subarray(0, 16)), Array.from({ length: 16 }, (_, i) => i));
});

test('continuing a Stage 1 run on tokens from another tokenizer is refused, naming the field', async () => {
  await useWasm();
  const { cfg, data, model } = tinyJob(2);
  const root = tmp();
  disposeGPT(trainStage1(root, 'tok', cfg, { ...data, tokenizer: 'aaaa' }, model, { maxSteps: 1 }).model);
  assert.throws(() => trainStage1(root, 'tok', cfg, { ...data, tokenizer: 'bbbb' }, model),
    (e: unknown) => e instanceof OrderHeadError && /data\.tokenizer/.test(e.message));
});

test('NLL under a policy equals NLL under the fixed orders that policy produced', async () => {
  await useWasm();
  const cfg = gptConfig('tiny');
  const geo = blockGeometry({ gridH: cfg.gridH, gridW: cfg.gridW, blockH: 2, blockW: 2 });
  const m = createGPT(cfg, 4);
  const T = seqLen(cfg), N = 5;
  const grids = new Int32Array(N * T).map((_, i) => (i * 3 + 1) % cfg.vocabSize);
  const classes = new Int32Array([0, 1, 2, 0, 1]);
  const viaPolicy = await nllUnderPolicy(m, grids, classes, randomPolicy(geo, 5), geo);
  const cells = new Int32Array(N * T);
  viaPolicy.blockOrders.forEach((o, i) => cells.set(cellsOfBlockOrder(geo, o), i * T));
  const direct = exactNll(m, grids, classes, cells);
  assert.ok(Math.abs(viaPolicy.natsPerToken - direct.natsPerToken) < 1e-9);
  const raster = await nllUnderPolicy(m, grids, classes, rasterPolicy(geo), geo);
  assert.ok(Math.abs(raster.natsPerToken - viaPolicy.natsPerToken) > 1e-6, 'different orders should give different NLL');
  disposeGPT(m);
});

test('trainStage1Parallel: an arm that fails in its worker names the arm and the stage, stops the other, and a rerun resumes from the checkpoints', async () => {
  await useWasm();
  const { cfg, data, model } = tinyJob(6);
  const root = tmp();
  const good = { name: 'good', cfg, model };
  await assert.rejects(trainStage1Parallel(root, data, [good, { name: 'bad', cfg: { ...cfg, lr: Number.NaN }, model }]),
    (e: unknown) => e instanceof OrderHeadError && e.message.includes('stage1 run bad (worker thread)') && e.message.includes('stage1.lr'));
  const again = await trainStage1Parallel(root, data, [good]);
  assert.equal(again[0].steps, 6);
  const whole = trainStage1(tmp(), 'whole', cfg, data, model);
  const a = loadBackbone(again[0].checkpoints.at(-1)!), b = whole.model;
  for (const k of Object.keys(b.params)) assert.deepEqual(Array.from(a.params[k].dataSync()), Array.from(b.params[k].dataSync()), `${k} differs after the resumed rerun`);
  disposeGPT(a); disposeGPT(b);
});

// ---- bad input ----
// What a user (or a crash) can get wrong here. Each test asserts an
// OrderHeadError naming the file or config field with a fix (expectOH /
// rejectsOH), and that the temp folder is byte-identical afterwards, nothing
// added (untouched); both in tests/helpers.ts.
import { describe } from 'node:test';
import { expectOH, sandbox, untouched } from '../../helpers';
import { stage1Checkpoint, tinyStage1 } from '../../fixtures/stage1-job';
import { encodeSafetensors, readSafetensors } from '../../../lib/runtime/safetensors';

describe('bad input', () => {
  test('a corrupt weights file (garbage over the header, or a tensor with a wrong shape) is refused', async () => {
    await useWasm();
    const root = sandbox();
    const { file, model } = stage1Checkpoint(root);
    const bytes = fs.readFileSync(file);
    const garbled = path.join(root, 'garbled.safetensors');
    const g = Buffer.from(bytes);
    g.fill(0x7b, 8, 40); // '{{{{...' over the start of the JSON header
    fs.writeFileSync(garbled, g);
    // A well-formed file whose tok_emb has the wrong shape for its config.
    const { tensors, metadata } = readSafetensors(file);
    const wrong = path.join(root, 'wrong-shape.safetensors');
    fs.writeFileSync(wrong, encodeSafetensors({ ...tensors, tok_emb: { dtype: 'F32', shape: [3, 3], data: new Float32Array(9) } }, metadata));
    const lacking = path.join(root, 'lacking.safetensors');
    const { tok_emb: _drop, ...rest } = tensors;
    fs.writeFileSync(lacking, encodeSafetensors(rest, metadata));
    const before = tf.memory().numTensors;
    await untouched(root, () => {
      expectOH(() => loadBackbone(garbled), garbled, 'not valid JSON');
      expectOH(() => loadBackbone(lacking), lacking, 'lacks weight tok_emb');
      expectOH(() => loadBackbone(wrong), wrong, "weight 'tok_emb' has shape [3,3]", `needs [${model.vocabSize},${model.dModel}]`);
    });
    assert.equal(tf.memory().numTensors, before, 'a refused load leaked tensors');
  });

  test('Stage 1 on an empty token set, or labels that do not match the tokens, is refused before a run folder is made', async () => {
    await useWasm();
    const root = sandbox();
    const { cfg, model, data } = tinyStage1();
    await untouched(root, () => {
      expectOH(() => trainStage1(root, 'x', cfg, { tokens: new Int32Array(0), labels: new Int32Array(0), n: 0 }, model), 'stage1 token data', 'holds no images');
      expectOH(() => trainStage1(root, 'x', cfg, { ...data, labels: data.labels.slice(1) }, model), 'stage1 token data', `${data.n - 1} labels for ${data.n} images`);
    });
  });

  test('token ids outside the vocabulary (tokens of another tokenizer) name the image and cell, not "GatherV2"', async () => {
    await useWasm();
    const root = sandbox();
    const { cfg, model, data } = tinyStage1();
    const alien = Int32Array.from(data.tokens);
    alien[2 * 16 + 5] = 300;
    const badLabels = Int32Array.from(data.labels);
    badLabels[4] = 7;
    await untouched(root, () => {
      expectOH(() => trainStage1(root, 'x', cfg, { ...data, tokens: alien }, model), 'stage1 token data', 'token 300 of image 2 (cell 5)', 'vocabSize');
      expectOH(() => trainStage1(root, 'x', cfg, { ...data, labels: badLabels }, model), 'stage1 token data', 'class 7 of image 4', 'numClasses 3');
    });
  });

  test('exact NLL of out-of-vocabulary tokens, a broken order or no images is refused', async () => {
    await useWasm();
    const root = sandbox();
    const { model } = tinyStage1();
    const m = createGPT(model, 1);
    const N = 2, T = 16;
    const grids = new Int32Array(N * T).map((_, i) => i % 16), classes = new Int32Array([0, 1]);
    const raster = new Int32Array(N * T).map((_, i) => i % T);
    const twice = Int32Array.from(raster);
    twice[T + 3] = 2;
    const before = tf.memory().numTensors;
    await untouched(root, () => {
      expectOH(() => exactNll(m, grids.map((v) => v + 16), classes, raster), 'exactNll(grids, classes)', 'token 16 of image 0', 'vocabulary 0 .. 15');
      expectOH(() => exactNll(m, grids, classes, twice), 'exactNll(cells)', 'order of image 1 is not a permutation', 'cell 2, already decoded');
      expectOH(() => exactNll(m, new Int32Array(0), new Int32Array(0), new Int32Array(0)), 'exactNll', 'no images');
      expectOH(() => exactNll(m, grids, classes, raster.subarray(1)), 'exactNll', 'N*T cells');
    });
    assert.equal(tf.memory().numTensors, before);
    disposeGPT(m);
  });
});
