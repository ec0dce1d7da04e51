/** Stage 1: exact-NLL normalisation, sampling, the r schedule, training with resume, paired per-step draws, validation selection (best-step files), bad input. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { expectOH, useWasm } from '../../helpers';
import { gptConfig, seqLen } from '../../../lib/backbone/config';
import { createGPT, disposeGPT, rasterOrder } from '../../../lib/backbone/gpt';
import { exactNll, nllUnderPolicy } from '../../../lib/backbone/nll';
import { sampleImages, sampleToken } from '../../../lib/backbone/sampler';
import {
  drawStage1Batch, loadBackbone, loadBackboneWithInfo, randomShare, selectedCheckpoint, selectionCells, selectionOrder, STAGE1_DEFAULTS, Stage1Batch, Stage1Config,
  stage1Draws, stage1Geometry, stage1Loss, stage1ModelConfig, stage1Optimizer, TargetOrderTable, targetOrderCells, TokenData, trainStage1, trainStage1Parallel,
} from '../../../lib/backbone/stage1';
import { regimeEpochs, regimeImages } from '../../../lib/backbone/regime';
import { budgetEpochs } from '../../../lib/backbone/training-budget';
import { randomPhaseCheckpoint } from '../../../lib/backbone/checkpoints';
import { scheduledLr } from '../../../lib/runtime/optim';
import { blockGeometry, BlockGeometry, cellBlock, cellsOfBlockOrder, randomPolicy, rasterPolicy, validateBlockOrder } from '../../../lib/order';
import { OrderHeadError } from '../../../lib/runtime/errors';
import { checkpointName, loadCheckpoint } from '../../../lib/runtime/checkpoint';
import { MetricRow } from '../../../lib/runtime/run';
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

/**
 * A tiny block-rar job: 4x4 tokens of 16 codes in 2x2 blocks, batch 4 in
 * micro-batches of 2, validation every step. Its 24 seeded images split by
 * the regime into 2 planner, 4 validation and 18 pool images, all of them the
 * training images unless `uniqueImages` says fewer.
 */
function tinyJob(steps: number, over: Partial<Stage1Config> = {}): { cfg: Stage1Config; data: TokenData; model: ReturnType<typeof stage1ModelConfig>; geo: BlockGeometry } {
  const cfg: Stage1Config = {
    ...STAGE1_DEFAULTS, orderMode: 'block-rar', size: 'tiny', steps, batch: 4, microBatch: 2, warmup: 1, checkpointEvery: 2, evalEvery: 1, annealStart: 0.5, annealEnd: 1,
    uniqueImages: 'all', validationImages: 4, plannerImages: 2, ...over,
  };
  const model = stage1ModelConfig(cfg, { h: 4, w: 4 }, 16, 3);
  const n = 24, r = rng(12);
  const tokens = Int32Array.from({ length: n * 16 }, () => r.int(16));
  const labels = new Int32Array(n).map((_, i) => i % 3);
  return { cfg, data: { tokens, labels, n }, model, geo: stage1Geometry(cfg, model) };
}

const tmpDirs: string[] = [];
const tmpRoot = (): string => { const d = tmp(); tmpDirs.push(d); return d; };
process.once('exit', () => { for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true }); });

/** The images of a batch, sample by sample, and their classes (the null class where dropped). */
const batchImages = (b: Stage1Batch): number[] => b.micro.flatMap((mb) => Array.from(mb.image));
const batchClasses = (b: Stage1Batch): number[] => b.micro.flatMap((mb) => Array.from(mb.classes));

/** Every `best-step*` file of a run folder. */
const bestFiles = (runDir: string): string[] => fs.readdirSync(path.join(runDir, 'checkpoints')).filter((f) => f.startsWith('best-')).sort();

/** The weights of a checkpoint file as plain arrays. */
function fileWeights(file: string): Record<string, Float32Array> {
  const ck = loadCheckpoint(file);
  const out = Object.fromEntries(Object.entries(ck.weights).map(([k, v]) => [k, Float32Array.from(v.dataSync())]));
  tf.dispose(Object.values(ck.weights));
  return out;
}

/** The `extra` of a checkpoint file (its tensors disposed). */
function extraOf(file: string): Record<string, unknown> {
  const ck = loadCheckpoint(file);
  tf.dispose(Object.values(ck.weights));
  return ck.extra;
}

/** The metrics rows of the steps the validation images were scored at. */
const evalRows = (rows: MetricRow[]): { step: number; bits: number }[] =>
  rows.filter((r) => typeof r.validationBits === 'number').map((r) => ({ step: r.step, bits: r.validationBits as number }));

/** The first row with the lowest validation NLL (ties: the earliest step). */
function argmin(rows: { step: number; bits: number }[]): { step: number; bits: number } {
  let best = rows[0];
  for (const r of rows) if (r.bits < best.bits) best = r;
  return best;
}

test('Stage 1 training saves checkpoints named with step and r, resumes to the same weights and the same best file, and leaks no tensors', async () => {
  await useWasm();
  const { cfg, data, model } = tinyJob(4);
  const root = tmpRoot();
  const before = tf.memory().numTensors;
  const full = trainStage1(root, 'full', cfg, data, model);
  assert.deepEqual(full.checkpoints.map((p) => path.basename(p)), ['stage1-step000002-r1.00.safetensors', 'stage1-step000004-r0.00.safetensors']);
  disposeGPT(full.model);
  assert.equal(tf.memory().numTensors, before, 'training leaked tensors');
  // Interrupted after 3 steps (killed past its last checkpoint, step 2, and past a best file), then resumed:
  // same final weights, same metrics rows and the same validation-selected file as the uninterrupted run. No RNG state is restored:
  // the draws of step s are stage1Draws(seed, s).
  disposeGPT(trainStage1(root, 'split', cfg, data, model, { maxSteps: 3 }).model);
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
  const splitRows = resumed.run.readMetrics(), fullRows = full.run.readMetrics();
  assert.deepEqual(splitRows.map((r) => r.step), [1, 2, 3, 3, 4], 'step 3 logged by the killed call and again after the resume');
  const byStep = (rs: MetricRow[]) => new Map(rs.map((r) => [r.step, [r.loss, r.gradNorm, r.validationBits]]));
  assert.deepEqual(byStep(splitRows), byStep(fullRows), 'the resumed run logs the rows of the uninterrupted one');
  const fullBest = bestFiles(full.run.dir), splitBest = bestFiles(resumed.run.dir);
  assert.equal(fullBest.length, 1);
  assert.deepEqual(splitBest, fullBest, 'the resumed run keeps the same best-step file');
  const wa = fileWeights(path.join(full.run.checkpointDir, fullBest[0])), wb = fileWeights(path.join(resumed.run.checkpointDir, splitBest[0]));
  for (const k of Object.keys(wa)) assert.deepEqual(wb[k], wa[k], `best weight ${k} differs after resume`);
  assert.deepEqual(extraOf(path.join(resumed.run.checkpointDir, splitBest[0])).selected, extraOf(path.join(full.run.checkpointDir, fullBest[0])).selected);
});

test('one Stage 1 step written inline from the exported pieces is the first step of trainStage1', async () => {
  await useWasm();
  const { cfg, data, model } = tinyJob(4);
  const root = tmpRoot();
  const trained = trainStage1(root, 'one', cfg, data, model, { maxSteps: 1 });
  const before = tf.memory().numTensors;
  const m = createGPT(model, cfg.seed);
  const images = regimeImages(data.n, cfg, cfg.batch).train;
  const batch = drawStage1Batch(stage1Draws(cfg.seed, 0), data, images, stage1Geometry(cfg, model), cfg, 0, model.numClasses);
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
  const res = trainStage1(tmpRoot(), 'x', cfg, data, model);
  disposeGPT(res.model);
  assert.throws(() => loadBackbone(res.checkpoints[0], { gridH: 8 }),
    (e: unknown) => e instanceof OrderHeadError && /gridH/.test(e.message));
});

test('a non-finite loss stops training with the step named and writes no checkpoint', async () => {
  await useWasm();
  const { cfg, data, model } = tinyJob(4);
  const root = tmpRoot();
  // A learning rate this large blows the weights up at the first update, so a later step's loss is not finite.
  let failedAt = Infinity;
  assert.throws(() => trainStage1(root, 'nan', { ...cfg, lr: 1e30, warmup: 0 }, data, model),
    (e: unknown) => {
      const m = e instanceof OrderHeadError ? /at step (\d+)|optimizer step/.exec(e.message) : null;
      if (m?.[1]) failedAt = Number(m[1]);
      return m !== null;
    });
  const files = fs.readdirSync(path.join(root, 'nan', 'checkpoints')).filter((f) => f.endsWith('.safetensors'));
  assert.deepEqual(files.filter((f) => !f.startsWith('best-')), [], 'a resume checkpoint was written');
  // Validation runs every step here: a best file may hold the (finite) weights of a step before the failure, never a later one.
  for (const f of files) {
    const sel = extraOf(path.join(root, 'nan', 'checkpoints', f)).selected as { step: number; validationBits: number };
    assert.ok(Number.isFinite(sel.validationBits) && sel.step < failedAt, `${f}: ${JSON.stringify(sel)}, failed at step ${failedAt}`);
  }
});

test('token data that does not fit the model grid is refused', async () => {
  await useWasm();
  const { cfg, data, model } = tinyJob(2);
  assert.throws(() => trainStage1(tmpRoot(), 'bad', cfg, { ...data, n: data.n + 1 }, model), /stage1 token data/);
});

test('raster order helper matches the identity permutation', () => {
  const o = rasterOrder(gptConfig('tiny'), 2);
  assert.deepEqual(Array.from(o.cells.subarray(0, 16)), Array.from({ length: 16 }, (_, i) => i));
});

test('continuing a Stage 1 run on tokens from another tokenizer is refused, naming the field', async () => {
  await useWasm();
  const { cfg, data, model } = tinyJob(2);
  const root = tmpRoot();
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
  const root = tmpRoot();
  const good = { name: 'good', cfg, model };
  await assert.rejects(trainStage1Parallel(root, data, [good, { name: 'bad', cfg: { ...cfg, lr: Number.NaN }, model }]),
    (e: unknown) => e instanceof OrderHeadError && e.message.includes('stage1 run bad (worker thread)') && e.message.includes('stage1.lr'));
  const again = await trainStage1Parallel(root, data, [good]);
  assert.equal(again[0].steps, 6);
  const whole = trainStage1(tmpRoot(), 'whole', cfg, data, model);
  const a = loadBackbone(again[0].checkpoints.at(-1)!), b = whole.model;
  for (const k of Object.keys(b.params)) assert.deepEqual(Array.from(a.params[k].dataSync()), Array.from(b.params[k].dataSync()), `${k} differs after the resumed rerun`);
  disposeGPT(a); disposeGPT(b);
});

// ---- the regime: paired draws, validation selection ----

test('paired draws: a raster-only and a block-rar config of one seed draw the same images and class dropouts at every step; another seed draws others', () => {
  const { cfg, data, model, geo } = tinyJob(8, { classDropout: 0.3 });
  const reg = regimeImages(data.n, cfg, cfg.batch);
  const raster: Stage1Config = { ...cfg, orderMode: 'raster' };
  const draw = (c: Stage1Config, seed: number, step: number) => drawStage1Batch(stage1Draws(seed, step), data, reg.train, geo, c, step, model.numClasses);
  const seen: number[][] = [], other: number[][] = [];
  let dropped = 0, differentOrders = 0;
  for (let step = 0; step < cfg.steps; step++) {
    const a = draw(cfg, 0, step), b = draw(raster, 0, step);
    assert.deepEqual(batchImages(b), batchImages(a), `step ${step}: the arms drew different images`);
    assert.deepEqual(batchClasses(b), batchClasses(a), `step ${step}: the arms drew different class dropouts`);
    assert.equal(b.randomCount, 0, 'the raster-only arm decodes every sample in token raster');
    if (randomShare(cfg, step) === 1) assert.equal(a.randomCount, cfg.batch, `step ${step}: r = 1 but not every sample got a random order`);
    differentOrders += a.micro.reduce((k, mb, i) => k + (tf.util.arraysEqual(mb.order.cells, b.micro[i].order.cells) ? 0 : 1), 0);
    dropped += batchClasses(a).filter((c) => c === model.numClasses).length;
    // Drawing the same step again gives the same batch: the draws are a function of (seed, step) alone.
    assert.deepEqual(batchImages(draw(cfg, 0, step)), batchImages(a));
    seen.push(batchImages(a));
    other.push(batchImages(draw(cfg, 1, step)));
  }
  assert.ok(differentOrders > 0, 'the arms differ in order: the test would not see a stream that depends on it');
  assert.ok(dropped > 0 && dropped < cfg.steps * cfg.batch, `class dropout 0.3 dropped ${dropped} of ${cfg.steps * cfg.batch} classes`);
  assert.notDeepEqual(other, seen, 'seeds 0 and 1 drew the same images');
  assert.notDeepEqual(seen[1], seen[0], 'two steps drew the same images');
});

test('paired draws: a continuation from C (kept random, fixed or planner order) draws at step s the images and dropouts of the block-rar run at step s', () => {
  const { cfg, data, model, geo } = tinyJob(8, { classDropout: 0.3 });
  const reg = regimeImages(data.n, cfg, cfg.batch);
  const arms: Stage1Config[] = [{ ...cfg, annealStart: 1, annealEnd: 1 }, { ...cfg, annealTo: 'fixed', fixedOrder: [3, 2, 1, 0] }];
  const fixedCells = cellsOfBlockOrder(geo, [3, 2, 1, 0]);
  for (let step = cfg.steps / 2; step < cfg.steps; step++) {
    const own = drawStage1Batch(stage1Draws(cfg.seed, step), data, reg.train, geo, cfg, step, model.numClasses);
    for (const arm of arms) {
      const target = arm.annealTo === 'fixed' ? () => fixedCells : () => null;
      const b = drawStage1Batch(stage1Draws(arm.seed, step), data, reg.train, geo, arm, step, model.numClasses, target);
      assert.deepEqual(batchImages(b), batchImages(own), `step ${step}: ${arm.annealTo}/${arm.annealStart} drew other images`);
      assert.deepEqual(batchClasses(b), batchClasses(own), `step ${step}: other class dropouts`);
    }
  }
});

test('the draws take only the K training images: never a validation or planner image; a smaller K draws from a prefix of a larger K', () => {
  for (const K of [4, 9, 'all'] as const) {
    const { cfg, data, model, geo } = tinyJob(40, { uniqueImages: K });
    const reg = regimeImages(data.n, cfg, cfg.batch);
    const train = new Set(reg.train), held = new Set([...reg.validation, ...reg.planner]);
    const drawn = new Set<number>();
    for (let step = 0; step < cfg.steps; step++) {
      for (const img of batchImages(drawStage1Batch(stage1Draws(cfg.seed, step), data, reg.train, geo, cfg, step, model.numClasses))) {
        assert.ok(train.has(img), `K = ${K}, step ${step}: image ${img} is not a training image`);
        assert.ok(!held.has(img), `K = ${K}, step ${step}: drew held-out image ${img}`);
        drawn.add(img);
      }
    }
    assert.equal(reg.k, K === 'all' ? 18 : K);
    assert.equal(drawn.size, reg.k, `K = ${K}: 160 draws should reach every one of the ${reg.k} images`);
  }
  const { cfg, data } = tinyJob(1);
  assert.deepEqual(regimeImages(data.n, { ...cfg, uniqueImages: 9 }, 4).train, regimeImages(data.n, cfg, 4).train.slice(0, 9));
});

test('validation selection: one best-step file at the argmin of the logged validationBits; selectedCheckpoint and loadBackboneWithInfo report its step, NLL and budget allowance; no leak', async () => {
  await useWasm();
  const { cfg, data, model, geo } = tinyJob(6, { checkpointEvery: 1, lr: 3e-3, uniqueImages: 8 });
  const root = tmpRoot();
  const before = tf.memory().numTensors;
  const counts: number[] = [];
  const res = trainStage1(root, 'sel', cfg, data, model, { onStep: () => counts.push(tf.memory().numTensors) });
  disposeGPT(res.model);
  assert.equal(tf.memory().numTensors, before, 'training with validation leaked tensors');
  assert.equal(new Set(counts).size, 1, `numTensors moved across the steps (validation every step): ${counts}`);
  const evals = evalRows(res.run.readMetrics());
  assert.deepEqual(evals.map((r) => r.step), [1, 2, 3, 4, 5, 6], 'a validationBits row at every evalEvery step');
  assert.ok(evals.every((r) => Number.isFinite(r.bits) && r.bits > 0));
  assert.ok(new Set(evals.map((r) => r.bits)).size > 1, 'the validation NLL never moved: the argmin would be trivial');
  const best = argmin(evals);
  const name = `${checkpointName('best', best.step, [`r${randomShare(cfg, best.step).toFixed(2)}`])}.safetensors`;
  assert.deepEqual(bestFiles(res.run.dir), [name], 'exactly one best file, at the argmin');
  const file = selectedCheckpoint(res.run.dir);
  assert.equal(file, path.join(res.run.checkpointDir, name));
  const info = loadBackboneWithInfo(file, model);
  assert.equal(info.step, best.step);
  assert.deepEqual(info.selected, { step: best.step, validationBits: best.bits, validationImages: 4, order: 'token raster' });
  assert.deepEqual(info.model.selected, info.selected);
  // The budget is the allowance of the arm (N steps of K images), not the steps it was selected at.
  assert.equal(info.budget!.steps, cfg.steps);
  assert.equal(info.budget!.trainImages, 8);
  assert.equal(budgetEpochs(info.budget!), regimeEpochs(cfg.steps, cfg.batch, 8));
  assert.equal(budgetEpochs(info.budget!), 3);
  // The best file holds the weights of its step (the resume checkpoint of that step), and its NLL is the validation images' exact NLL in raster.
  const resume = fileWeights(res.checkpoints[best.step - 1]);
  assert.match(path.basename(res.checkpoints[best.step - 1]), new RegExp(`step${String(best.step).padStart(6, '0')}`));
  for (const [k, v] of Object.entries(info.model.params)) assert.deepEqual(Float32Array.from(v.dataSync()), resume[k], `best weight ${k}`);
  const reg = regimeImages(data.n, cfg, cfg.batch);
  const val = selectionCells(cfg, data, geo, () => null, reg.validation);
  assert.equal(exactNll(info.model, val.grids, val.classes, val.cells).bitsPerToken, best.bits);
  disposeGPT(info.model);
  // A run folder without a best file (training never reached an evaluation) is named, with the notebook to run.
  fs.rmSync(file);
  expectOH(() => selectedCheckpoint(res.run.dir), res.run.dir, 'no validation-selected checkpoint', '02_stage1_backbone');
});

test('validation selection: on ties the first step is kept (a learning rate too small to change a weight)', async () => {
  await useWasm();
  const { cfg, data, model } = tinyJob(4, { lr: 1e-30, warmup: 0, weightDecay: 0 });
  const res = trainStage1(tmpRoot(), 'ties', cfg, data, model);
  disposeGPT(res.model);
  const evals = evalRows(res.run.readMetrics());
  assert.equal(evals.length, 4);
  assert.equal(new Set(evals.map((r) => r.bits)).size, 1, `the weights moved: ${evals.map((r) => r.bits)}`);
  assert.deepEqual(bestFiles(res.run.dir), ['best-step000001-r1.00.safetensors']);
});

test('the selection order: raster arms in token raster, kept random in random block orders seeded by the image, fixed and planner arms in their order', () => {
  const { cfg, data, geo } = tinyJob(8);
  const reg = regimeImages(data.n, cfg, cfg.batch);
  const T = geo.numTokens, V = reg.validation.length;
  const kept: Stage1Config = { ...cfg, annealStart: 1, annealEnd: 1 };
  const fixed: Stage1Config = { ...cfg, annealTo: 'fixed', fixedOrder: [2, 0, 3, 1] };
  const planner: Stage1Config = { ...cfg, annealTo: 'planner' };
  assert.equal(selectionOrder({ ...cfg, orderMode: 'raster' }), 'token raster');
  assert.equal(selectionOrder(cfg), 'token raster', 'the block-rar run is annealed to raster');
  assert.equal(selectionOrder(kept), 'random blocks');
  assert.equal(selectionOrder({ ...kept, annealTo: 'fixed', fixedOrder: [2, 0, 3, 1] }), 'random blocks', 'r stays 1: the target order is never used');
  assert.equal(selectionOrder(fixed), 'fixed');
  assert.equal(selectionOrder(planner), 'planner');
  const rows = (c: Int32Array) => Array.from({ length: V }, (_, i) => Array.from(c.subarray(i * T, (i + 1) * T)));
  const identity = Array.from({ length: T }, (_, t) => t);
  // Tokens and classes are those of the validation images (classes never dropped), whatever the arm.
  const r = selectionCells({ ...cfg, orderMode: 'raster', classDropout: 1 }, data, geo, () => null, reg.validation);
  assert.equal(r.order, 'token raster');
  reg.validation.forEach((img, i) => {
    assert.deepEqual(Array.from(r.grids.subarray(i * T, (i + 1) * T)), Array.from(data.tokens.subarray(img * T, (img + 1) * T)), `grid of validation image ${img}`);
    assert.equal(r.classes[i], data.labels[img]);
  });
  assert.ok(rows(r.cells).every((c) => tf.util.arraysEqual(c, identity)));
  // Kept random: a block order per image (raster inside blocks), not all the same, and the same for every seed.
  const k = selectionCells(kept, data, geo, () => null, reg.validation);
  assert.equal(k.order, 'random blocks');
  const blockOrderOf = (c: number[]) => Array.from({ length: geo.numBlocks }, (_, j) => cellBlock(geo, c[j * geo.tokensPerBlock]));
  for (const c of rows(k.cells)) assert.deepEqual(c, Array.from(cellsOfBlockOrder(geo, blockOrderOf(c))), 'not a block order');
  assert.ok(new Set(rows(k.cells).map((c) => c.join())).size > 1, 'every validation image got the same order');
  assert.ok(rows(k.cells).some((c) => !tf.util.arraysEqual(c, identity)));
  assert.deepEqual(selectionCells({ ...kept, seed: 7 }, data, geo, () => null, reg.validation).cells, k.cells, 'the orders depend on the seed');
  // Fixed: every image in the fixed order. Planner: each image in its own order from the table.
  const f = selectionCells(fixed, data, geo, () => cellsOfBlockOrder(geo, [2, 0, 3, 1]), reg.validation);
  assert.ok(rows(f.cells).every((c) => tf.util.arraysEqual(c, Array.from(cellsOfBlockOrder(geo, [2, 0, 3, 1])))));
  const orders = Array.from(reg.validation, (_, i) => [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 1, 3]][i % 4]);
  const sorted = Array.from(reg.validation).map((img, i) => ({ img, order: orders[i] })).sort((a, b) => a.img - b.img);
  const table: TargetOrderTable = { image: Int32Array.from(sorted, (x) => x.img), blockOrders: Int32Array.from(sorted.flatMap((x) => x.order)), numBlocks: 4, fingerprint: 't', file: 'orders.json' };
  const p = selectionCells(planner, data, geo, targetOrderCells(table, geo), reg.validation);
  rows(p.cells).forEach((c, i) => assert.deepEqual(c, Array.from(cellsOfBlockOrder(geo, orders[i])), `planner order of validation image ${reg.validation[i]}`));
});

test('Stage 1 reads only its K training and V validation images: changing the others changes nothing, changing a validation image changes only validationBits', async () => {
  await useWasm();
  const { cfg, data, model } = tinyJob(3, { uniqueImages: 8 });
  const reg = regimeImages(data.n, cfg, cfg.batch);
  const train = new Set(reg.train), validation = new Set(reg.validation);
  const unread = Array.from({ length: data.n }, (_, i) => i).filter((i) => !train.has(i) && !validation.has(i));
  assert.equal(unread.length, data.n - 8 - 4, 'the planner images and the pool beyond K');
  const changed = (images: Iterable<number>): TokenData => {
    const tokens = Int32Array.from(data.tokens);
    for (const img of images) for (let t = 0; t < 16; t++) tokens[img * 16 + t] = (tokens[img * 16 + t] + 7) % 16;
    return { ...data, tokens };
  };
  const root = tmpRoot();
  const rows = (name: string, d: TokenData) => {
    const res = trainStage1(root, name, cfg, d, model);
    disposeGPT(res.model);
    return res.run.readMetrics().map((r) => ({ step: r.step, loss: r.loss, gradNorm: r.gradNorm, validationBits: r.validationBits }));
  };
  const base = rows('base', data);
  assert.deepEqual(rows('others-changed', changed(unread)), base, 'an image outside the regime\'s training and validation images was read');
  const v = rows('validation-changed', changed(reg.validation));
  assert.deepEqual(v.map((r) => [r.loss, r.gradNorm]), base.map((r) => [r.loss, r.gradNorm]), 'training read a validation image');
  v.forEach((r, i) => assert.notEqual(r.validationBits, base[i].validationBits, `step ${r.step}: the selection did not read the validation images`));
});

test('a continuation from C selects among its own steps, in its own order: its best step is past C and C\'s best is not inherited', async () => {
  await useWasm();
  const { cfg, data, model, geo } = tinyJob(6, { checkpointEvery: 3, lr: 3e-3 });
  const root = tmpRoot();
  const rar = trainStage1(root, 'block-rar', cfg, data, model);
  disposeGPT(rar.model);
  const C = randomPhaseCheckpoint(rar.run.dir);
  assert.match(path.basename(C), /step000003-r1\.00/);
  const keptCfg: Stage1Config = { ...cfg, annealStart: 1, annealEnd: 1 };
  const kept = trainStage1(root, 'kept', keptCfg, data, model, {}, C);
  disposeGPT(kept.model);
  const evals = evalRows(kept.run.readMetrics());
  assert.deepEqual(evals.map((r) => r.step), [4, 5, 6], 'the continuation scores only its own steps');
  const best = argmin(evals);
  const files = bestFiles(kept.run.dir);
  assert.equal(files.length, 1, `${files}`);
  const info = loadBackboneWithInfo(selectedCheckpoint(kept.run.dir));
  assert.ok(info.step > 3, `selected step ${info.step} is not past C`);
  assert.equal(info.step, best.step);
  assert.equal(info.selected!.order, 'random blocks');
  assert.equal(info.budget!.steps, cfg.steps, 'the allowance of a continuation is C plus its own steps: N');
  assert.equal(info.budget!.runs.length, 2);
  const val = selectionCells(keptCfg, data, geo, () => null, regimeImages(data.n, cfg, cfg.batch).validation);
  assert.equal(exactNll(info.model, val.grids, val.classes, val.cells).bitsPerToken, best.bits, 'scored in random block orders');
  disposeGPT(info.model);
  // C carries the block-rar run's best so far (raster order); the continuation's NLL is another order and must not compete with it:
  // from a C whose recorded best no model can beat, the continuation selects the same step.
  const cBest = extraOf(C).best as { step: number; value: number };
  assert.ok(cBest && cBest.step <= 3, 'C records the block-rar run\'s best so far');
  const { tensors, metadata } = readSafetensors(C);
  const unbeatable = path.join(root, 'c-unbeatable', path.basename(C));
  fs.mkdirSync(path.dirname(unbeatable));
  fs.writeFileSync(unbeatable, encodeSafetensors(tensors, { ...metadata, extra: JSON.stringify({ ...JSON.parse(metadata.extra), best: { step: 3, value: -1 } }) }));
  disposeGPT(trainStage1(root, 'kept-unbeatable', keptCfg, data, model, {}, unbeatable).model);
  assert.deepEqual(bestFiles(path.join(root, 'kept-unbeatable')), files, 'the continuation inherited C\'s best');
  // Resumed after a kill (one step in, before any checkpoint of its own): the same best file.
  disposeGPT(trainStage1(root, 'kept-split', keptCfg, data, model, { maxSteps: 1 }, C).model);
  disposeGPT(trainStage1(root, 'kept-split', keptCfg, data, model, {}, C).model);
  assert.deepEqual(bestFiles(path.join(root, 'kept-split')), files);
  const a = fileWeights(path.join(kept.run.checkpointDir, files[0])), b = fileWeights(path.join(root, 'kept-split', 'checkpoints', files[0]));
  for (const k of Object.keys(a)) assert.deepEqual(b[k], a[k], `best weight ${k}`);
});

test('a continuation from C with the block-rar config itself retraces the block-rar run (the same draws at every step)', async () => {
  await useWasm();
  const { cfg, data, model } = tinyJob(4);
  const root = tmpRoot();
  const rar = trainStage1(root, 'block-rar', cfg, data, model);
  disposeGPT(rar.model);
  const again = trainStage1(root, 'again', cfg, data, model, {}, randomPhaseCheckpoint(rar.run.dir));
  disposeGPT(again.model);
  const a = fileWeights(rar.checkpoints.at(-1)!), b = fileWeights(again.checkpoints.at(-1)!);
  for (const k of Object.keys(a)) assert.deepEqual(b[k], a[k], `weight ${k}`);
  const tail = (rs: MetricRow[]) => rs.filter((r) => r.step > 2).map((r) => [r.step, r.loss, r.validationBits]);
  assert.deepEqual(tail(again.run.readMetrics()), tail(rar.run.readMetrics()));
});

// ---- bad input ----
// What a user (or a crash) can get wrong here. Each test asserts an
// OrderHeadError naming the file or config field with a fix (expectOH /
// rejectsOH), and that the temp folder is byte-identical afterwards, nothing
// added (untouched); both in tests/helpers.ts.
import { describe } from 'node:test';
import { sandbox, untouched } from '../../helpers';
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
