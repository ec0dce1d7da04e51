/**
 * The matched-budget contest (METHOD.md §6): continuations from checkpoint C
 * (budget bookkeeping, resume, leaks, pairing of the annealed arms), the
 * planner-order cache and its refusals, the evaluation's budget check, and
 * the headline's paired differences.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { throwsOH, useWasm } from '../../helpers';
import { disposeGPT } from '../../../lib/backbone/gpt';
import {
  loadBackbone, loadBackboneWithInfo, plannerOrderImages, STAGE1_DEFAULTS, Stage1Config, stage1Geometry, stage1ModelConfig,
  TargetOrderTable, trainStage1,
} from '../../../lib/backbone/stage1';
import { budgetEpochs, sameBudget } from '../../../lib/backbone/training-budget';
import { regimeImages } from '../../../lib/backbone/regime';
import { randomPhaseCheckpoint } from '../../../lib/backbone/checkpoints';
import { rng } from '../../../lib/runtime/seed';
import { averageOrder, loadPlannerOrders, restrictToOrders } from '../../../lib/planner/planner-orders';
import { checkMatchedBudgets } from '../../../lib/eval/budgets';
import { headline, pairedNllDifference } from '../../../lib/eval/headline';
import { verdictOf } from '../../../lib/stats/verdict';
import { rasterBaselineSetting } from '../../../lib/eval/settings';
import { SettingResult } from '../../../lib/eval/results';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'oh-contest-'));

/** A tiny block-rar job: 4x4 tokens, 4 blocks of 2x2, N = 4 steps (C at step 2), batch 4; of its 12 images 1 is the planner's, 2 validation, 9 training. */
function job(over: Partial<Stage1Config> = {}) {
  const cfg: Stage1Config = {
    ...STAGE1_DEFAULTS, orderMode: 'block-rar', size: 'tiny', steps: 4, batch: 4, microBatch: 2, warmup: 1, checkpointEvery: 2, evalEvery: 2, annealStart: 0.5, annealEnd: 1,
    uniqueImages: 'all', validationImages: 2, plannerImages: 1, ...over,
  };
  const model = stage1ModelConfig(cfg, { h: 4, w: 4 }, 16, 3);
  const n = 12;
  const data = { tokens: new Int32Array(n * 16).map((_, i) => (i * 5 + (i >> 4)) % 16), labels: new Int32Array(n).map((_, i) => i % 3), n };
  return { cfg, model, data, geo: stage1Geometry(cfg, model) };
}

const weights = (file: string) => {
  const m = loadBackbone(file);
  const out = Object.fromEntries(Object.entries(m.params).map(([k, v]) => [k, Float32Array.from(v.dataSync())]));
  disposeGPT(m);
  return out;
};

test('continuations from C: budgets add up to the matched N, a resumed continuation equals an uninterrupted one, nothing leaks', async () => {
  await useWasm();
  const root = tmp();
  try {
    const { cfg, model, data } = job();
    const before = tf.memory().numTensors;
    const raster = trainStage1(root, 'raster', { ...cfg, orderMode: 'raster' }, data, model);
    const rar = trainStage1(root, 'block-rar', cfg, data, model);
    disposeGPT(raster.model); disposeGPT(rar.model);
    const C = randomPhaseCheckpoint(rar.run.dir);
    assert.match(path.basename(C), /step000002-r1\.00/);
    const kept = trainStage1(root, 'kept', { ...cfg, annealStart: 1, annealEnd: 1 }, data, model, {}, C);
    disposeGPT(kept.model);
    assert.equal(tf.memory().numTensors, before, 'training the arms leaked tensors');
    const info = (f: string) => { const i = loadBackboneWithInfo(f); disposeGPT(i.model); return i; };
    const bRaster = info(raster.checkpoints.at(-1)!).budget!, bRar = info(rar.checkpoints.at(-1)!).budget!, bKept = info(kept.checkpoints.at(-1)!).budget!;
    assert.equal(bRaster.steps, 4);
    assert.equal(bRaster.tokensSeen, 4 * 4 * 16);
    assert.ok(sameBudget(bRaster, bRar) && sameBudget(bRaster, bKept), `${JSON.stringify([bRaster, bRar, bKept])}`);
    assert.equal(bKept.runs.length, 2, 'a continuation names the random phase and itself');
    assert.equal(bKept.trainImages, 9, 'epochs count the K training images, not the split');
    assert.ok(Math.abs(budgetEpochs(bKept) - 16 / 9) < 1e-12);
    assert.equal(info(C).budget!.steps, 2);
    // Interrupted after one step of the continuation, then resumed: the same weights as the uninterrupted continuation.
    disposeGPT(trainStage1(root, 'kept-split', { ...cfg, annealStart: 1, annealEnd: 1 }, data, model, { maxSteps: 1 }, C).model);
    const resumed = trainStage1(root, 'kept-split', { ...cfg, annealStart: 1, annealEnd: 1 }, data, model, {}, C);
    disposeGPT(resumed.model);
    const a = weights(kept.checkpoints.at(-1)!), b = weights(resumed.checkpoints.at(-1)!);
    for (const k of Object.keys(a)) assert.deepEqual(a[k], b[k], `weight ${k} differs after resume`);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('the annealed arms are paired: fixed = raster block order trains exactly like a planner table of raster orders; the planner arm needs every replayed image', async () => {
  await useWasm();
  const root = tmp();
  try {
    const { cfg, model, data, geo } = job();
    const rar = trainStage1(root, 'block-rar', cfg, data, model);
    disposeGPT(rar.model);
    const C = randomPhaseCheckpoint(rar.run.dir);
    const images = plannerOrderImages({ ...cfg, annealTo: 'planner' }, data.n, geo, C);
    assert.ok(images.length > 0 && images.every((v, i) => i === 0 || v > images[i - 1]), `${images}`);
    // The cache covers the replayed training draws and every validation image (the planner arm is selected in the planner's orders), nothing else.
    const reg = regimeImages(data.n, cfg, cfg.batch);
    const validation = new Set(reg.validation), train = new Set(reg.train);
    for (const img of reg.validation) assert.ok(images.includes(img), `validation image ${img} missing from ${images}`);
    assert.ok(images.every((img) => validation.has(img) || train.has(img)), `${images}: an image outside the regime's training and validation images`);
    assert.ok(images.some((img) => train.has(img)), 'no training image replayed');
    const order = [0, 1, 2, 3];
    const table: TargetOrderTable = { image: images, blockOrders: Int32Array.from(Array.from(images, () => order).flat()), numBlocks: 4, fingerprint: 'test', file: 'orders.json' };
    const fixed = trainStage1(root, 'fixed', { ...cfg, annealTo: 'fixed', fixedOrder: order }, data, model, {}, C);
    const planner = trainStage1(root, 'planner', { ...cfg, annealTo: 'planner' }, { ...data, targetOrders: table }, model, {}, C);
    disposeGPT(fixed.model); disposeGPT(planner.model);
    const a = weights(fixed.checkpoints.at(-1)!), b = weights(planner.checkpoints.at(-1)!);
    for (const k of Object.keys(a)) assert.deepEqual(a[k], b[k], `weight ${k}: same draws and same orders must give the same model`);
    const without = (img: number): TargetOrderTable => {
      const k = images.indexOf(img);
      return { ...table, image: Int32Array.from([...images.subarray(0, k), ...images.subarray(k + 1)]), blockOrders: Int32Array.from([...table.blockOrders.subarray(0, k * 4), ...table.blockOrders.subarray(k * 4 + 4)]) };
    };
    // A cache that lacks one replayed training image stops the run when it is drawn, naming the cache file; nothing past C is written.
    const trainImage = images.find((img) => !validation.has(img))!;
    throwsOH(() => trainStage1(root, 'planner-short', { ...cfg, annealTo: 'planner' }, { ...data, targetOrders: without(trainImage) }, model, {}, C), 'orders.json', `image ${trainImage}`);
    const left = fs.readdirSync(path.join(root, 'planner-short', 'checkpoints')).filter((f) => f.endsWith('.safetensors'));
    assert.deepEqual(left, [path.basename(C)], 'only the copy of C');
    // A cache that lacks a validation image is refused before any run folder: the selection reads every validation image in its planner order.
    throwsOH(() => trainStage1(root, 'planner-no-validation', { ...cfg, annealTo: 'planner' }, { ...data, targetOrders: without(reg.validation[0]) }, model, {}, C),
      'orders.json', `image ${reg.validation[0]}`);
    assert.ok(!fs.existsSync(path.join(root, 'planner-no-validation')));
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('bad arms are refused before any run folder: a fixed order that is not a permutation, a planner arm without orders, a start that is not a random-phase checkpoint', async () => {
  await useWasm();
  const root = tmp();
  try {
    const { cfg, model, data } = job();
    throwsOH(() => trainStage1(root, 'bad-fixed', { ...cfg, annealTo: 'fixed', fixedOrder: [0, 1, 1, 3] }, data, model), 'stage1.fixedOrder', 'permutation');
    assert.ok(!fs.existsSync(path.join(root, 'bad-fixed')));
    throwsOH(() => trainStage1(root, 'no-orders', { ...cfg, annealTo: 'planner' }, data, model), 'targetOrders', '06_stage5');
    assert.ok(!fs.existsSync(path.join(root, 'no-orders')));
    const rar = trainStage1(root, 'block-rar', cfg, data, model);
    disposeGPT(rar.model);
    throwsOH(() => trainStage1(root, 'late', { ...cfg, annealStart: 1, annealEnd: 1 }, data, model, {}, rar.checkpoints.at(-1)!), 'r = 0');
    assert.ok(!fs.existsSync(path.join(root, 'late')));
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('the planner-order cache: another planner, R or backbone is refused naming the field and notebook 06; the average order; Stage 5 images', () => {
  const dir = tmp();
  try {
    const file = path.join(dir, 'planner-orders.json');
    const id = { planner: 'p1', latentSteps: 0, backbone: 'b1', tokenizer: 't1' };
    fs.writeFileSync(file, JSON.stringify({ format: 'orderhead-planner-orders/1', ...id, numBlocks: 4, image: [1, 3], blockOrders: [3, 2, 1, 0, 3, 1, 2, 0], seconds: 0 }));
    const t = loadPlannerOrders(file, id);
    assert.deepEqual(averageOrder(t).order, [3, 1, 2, 0]);
    throwsOH(() => loadPlannerOrders(file, { ...id, planner: 'p2' }), 'planner-orders.json (planner)', '06_stage5');
    throwsOH(() => loadPlannerOrders(file, { ...id, backbone: 'b2' }), '(backbone)', 'backbone C');
    throwsOH(() => loadPlannerOrders(file, { ...id, latentSteps: 1 }), '(latentSteps)');
    throwsOH(() => loadPlannerOrders(path.join(dir, 'none.json'), id), 'no planner-order cache', '06_stage5');
    const data = { tokens: Int32Array.from({ length: 4 * 16 }, (_, i) => i % 16), labels: Int32Array.from([0, 1, 2, 0]), n: 4 };
    const sub = restrictToOrders(data, t);
    assert.equal(sub.n, 2);
    assert.deepEqual(Array.from(sub.labels), [1, 0]);
    assert.deepEqual(Array.from(sub.targetOrders!.image), [0, 1]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the evaluation refuses backbones with different budgets, naming them, unless a setting is allowed with its reason', async () => {
  await useWasm();
  const root = tmp();
  try {
    const { cfg, model, data } = job();
    const full = trainStage1(root, 'raster', { ...cfg, orderMode: 'raster' }, data, model);
    disposeGPT(full.model);
    const a = loadBackbone(full.checkpoints.at(-1)!), b = loadBackbone(full.checkpoints[0]);
    const sa = rasterBaselineSetting(a), sb = { ...rasterBaselineSetting(b), name: 'annealed to raster' };
    throwsOH(() => checkMatchedBudgets([sa, sb]), "'annealed to raster'", '2 steps', '4 steps', 'allowUnmatched');
    const ok = checkMatchedBudgets([sa, sb], { 'annealed to raster': 'half the steps, on purpose' });
    assert.equal(ok.bySetting['annealed to raster'].unmatched, 'half the steps, on purpose');
    assert.equal(ok.budget!.steps, 4);
    disposeGPT(a); disposeGPT(b);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

/** A synthetic evaluated setting: its per-image NLL and per-seed FID with replicates. */
function outcome(name: string, nll: number[], fids: number[]): SettingResult {
  const r = rng(name.length);
  const seeds = fids.map((fid, k) => ({
    seed: k, n: 10, metrics: { fid, sfid: 0, is: 1, precision: 0, recall: 0, accuracy: 0, recognizabilityAuc: 0, nllBits: 0 },
    replicates: { fid: Float64Array.from({ length: 5 }, () => fid + (r.next() - 0.5) * 0.2), sfid: new Float64Array(0), is: new Float64Array(0) },
    perSample: { accuracy: new Float64Array(0), recognizabilityAuc: new Float64Array(0), nllBits: k === 0 ? Float64Array.from(nll) : new Float64Array(0) },
  }));
  const mean = (v: number[]) => v.reduce((x, y) => x + y, 0) / v.length;
  const m = (v: number) => ({ mean: v, lo: v, hi: v, level: 0.95, interval: 'seed-range' as const, perSeed: [v], n: 1 });
  return { name, seeds, samplesPerSeed: 10, metrics: { nllBits: m(mean(nll)), fid: m(mean(fids)) } } as unknown as SettingResult;
}

test('the headline: the best raster setting is the reference; paired Δ and verdicts; an interval crossing 0 is no difference', () => {
  const base = Array.from({ length: 200 }, (_, i) => 3 + Math.sin(i)); // image-to-image spread far larger than the differences
  const outs = [
    outcome('raster baseline', base.map((v) => v + 0.2), [10, 11, 12]),
    outcome('annealed to raster', base, [10, 11, 12]),
    outcome('OrderHead R=0', base.map((v, i) => v - 0.05 + (i % 2 ? 0.001 : -0.001)), [8, 9, 10]),
    outcome('block-RAR + random order', base.map((v, i) => v + (i % 2 ? 0.3 : -0.3)), [10, 11.05, 12]),
  ];
  const h = headline(outs);
  assert.equal(h.reference, 'annealed to raster');
  const row = (n: string) => h.rows.find((r) => r.setting === n)!;
  assert.ok(Math.abs(row('OrderHead R=0').dNll!.mean + 0.05) < 1e-9);
  assert.equal(row('OrderHead R=0').nllVerdict, 'lower', 'a paired -0.05 is resolved although the unpaired spread is ±1');
  assert.equal(row('OrderHead R=0').fidVerdict, 'lower');
  assert.equal(row('block-RAR + random order').nllVerdict, 'no difference');
  assert.equal(row('raster baseline').nllVerdict, 'higher');
  assert.equal(row('annealed to raster').dNll, undefined);
  assert.equal(verdictOf({ lo: -2, hi: 0.1 }), 'no difference');
  throwsOH(() => pairedNllDifference(outs[2], outcome('short', [1, 2], [1, 1, 1]), 100, 0.95), 'nllImages');
});
