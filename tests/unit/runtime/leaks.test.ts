/**
 * Tensor leaks in every loop that runs for long: tf.memory().numTensors after
 * N iterations must equal its value after one. Each loop is observed from the
 * inside, through the hook it already has (onLog, onStep, onPart, onBlock,
 * onBatch), so the check covers the real loop code (checkpoint saves, dead-code
 * restarts, evaluations, KV-cache growth) and not a hand-written copy of a step.
 *
 * Related assertions elsewhere (not repeated here): hand-written training steps
 * (tests/unit/tokenizer/tokenizer.test.ts 'a training step keeps tf.memory().numTensors flat',
 * tests/unit/backbone/gpt.test.ts 'a training step on per-sample random orders ...'),
 * whole runs and failed runs (tests/unit/tokenizer/tokenizer.test.ts, tests/unit/backbone/stage1.test.ts),
 * the reference oracle scorer (tests/unit/oracle/oracle.test.ts 'scoring leaks no
 * tensors'), refused checkpoint loads (tests/unit/runtime/runtime.test.ts), and the
 * KV-cache size during decoding (tests/unit/backbone/gpt.test.ts).
 *
 * Planner and evaluation, step by step through the loops' own hooks (not
 * repeated here): a Stage 3 planner training step, validation and checkpoint
 * steps included (tests/unit/planner/planner.test.ts 'Stage 3 training: leak-free steps'),
 * a Stage 6 router step (tests/unit/planner/budget.test.ts 'router training: leak-free
 * steps'), a Stage 5 joint-tuning step with its drift-guard evaluations
 * (tests/unit/planner/joint.test.ts 'freezing: ... steps leak no tensors'), the budget
 * policies inside nllUnderPolicy and sampleImages (tests/unit/planner/budget.test.ts),
 * whole evaluateSetting calls and trajectory metrics (tests/unit/eval/settings.test.ts),
 * refused planner loads and resumes (the 'bad input' tests of tests/unit/planner/{planner,budget,joint}.test.ts
 * and tests/unit/eval/settings.test.ts) and
 * a crashed evaluation (tests/unit/eval/cache.test.ts). Below: the plain planner
 * policy block by block, whole Stage 3-6 runs, and an OrderHead evaluation
 * batch by batch.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useWasm } from '../../helpers';
import { rng } from '../../../lib/runtime/seed';
import { saveCheckpoint, checkpointName } from '../../../lib/runtime/checkpoint';
import { encodeSafetensors } from '../../../lib/runtime/safetensors';
import { blockGeometry, randomPolicy, rasterPolicy } from '../../../lib/order';
import { gptConfig, seqLen } from '../../../lib/backbone/config';
import { createGPT, disposeGPT, GPT } from '../../../lib/backbone/gpt';
import { exactNll } from '../../../lib/backbone/nll';
import { orderCells } from '../../../lib/backbone/order-nll';
import { sampleImages } from '../../../lib/backbone/sampler';
import { STAGE1_DEFAULTS, Stage1Config, stage1ModelConfig, trainStage1 } from '../../../lib/backbone/stage1';
import { tokenizerConfig, trainTokenizer } from '../../../lib/tokenizer';
import { TOKEN_CACHE_FORMAT } from '../../../lib/tokenizer/cache';
import { OracleItem, READINGS, scoreStates } from '../../../lib/oracle';
import { buildOracleDataset, oracleDatasetConfig } from '../../../lib/oracle';
import {
  createPlanner, createRouter, disposePlanner, disposeRouter, jointTuningConfig, loadPlanner, plannerPolicy, trainJointTuning, trainLatentCurriculum,
  trainPlanner, trainRouter,
} from '../../../lib/planner';
import { disposeSetting, evaluateSetting, orderHeadSetting } from '../../../lib/eval';
import { Progress } from '../../../lib/runtime/progress';
import { nllUnderPolicy } from '../../../lib/backbone/nll';
import { OrderPolicy } from '../../../lib/order';
import { evalWorld, PJ_GEO, PJ_PLANNER, PJ_SHAPE, plannerJob, routerJob, tinyBackbone, tinyJointData } from '../../fixtures/planner-jobs';

const made: string[] = [];
after(() => { for (const d of made) fs.rmSync(d, { recursive: true, force: true }); });
function sandbox(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-leaks-'));
  made.push(d);
  return d;
}

/** numTensors at each iteration (1-based), as reported by a loop's hook. */
function recorder(): { at: Map<number, number>; note: (i: number) => void } {
  const at = new Map<number, number>();
  return { at, note: (i) => at.set(i, tf.memory().numTensors) };
}

/** Every iteration's count equals the first one's (at least `n` iterations seen). */
function assertFlat(at: Map<number, number>, n: number, what: string): void {
  const keys = [...at.keys()].sort((a, b) => a - b);
  assert.ok(keys.length >= n, `${what}: only ${keys.length} iterations observed`);
  const first = at.get(keys[0])!;
  for (const k of keys) assert.equal(at.get(k), first, `${what}: ${at.get(k)! - first} tensor(s) more after iteration ${k} than after iteration ${keys[0]}`);
}

const CFG = gptConfig('tiny');
const GEO = blockGeometry({ gridH: CFG.gridH, gridW: CFG.gridW, blockH: 2, blockW: 2 });
const T = seqLen(CFG);

function tokens(n: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n * T }, () => r.int(CFG.vocabSize));
}

test('tokenizer training: numTensors after 8 steps equals that after 1 (logging, dead-code restarts, evaluation and checkpoints included)', async () => {
  await useWasm();
  const cfg = tokenizerConfig('smoke', {
    codebookSize: 16, codeDim: 4, width: 8, depth: 1, batch: 4, steps: 8, warmup: 1, logEvery: 1, evalEvery: 3, evalImages: 2,
    checkpointEvery: 2, restartEvery: 2, deadAfter: 1,
  });
  const img = (n: number, k: number) => ({ images: Float32Array.from({ length: n * 1024 }, (_, i) => Math.sin(i * k) * 0.9), n });
  const rec = recorder();
  const res = await trainTokenizer({ config: cfg, runDir: path.join(sandbox(), 'tok'), train: img(8, 0.37), test: img(2, 0.11), onLog: (row) => rec.note(row.step) });
  res.tokenizer.dispose();
  assert.ok(res.restarts > 0, 'no dead code was restarted: the restart path went untested');
  assertFlat(rec.at, 8, 'tokenizer training');
});

test('Stage 1 training: numTensors after 8 steps equals that after 1 (checkpoints every 2 steps and validation every 2 included)', async () => {
  await useWasm();
  const cfg: Stage1Config = {
    ...STAGE1_DEFAULTS, orderMode: 'block-rar', size: 'tiny', steps: 8, batch: 4, microBatch: 2, warmup: 1, checkpointEvery: 2, evalEvery: 2, annealStart: 0.25, annealEnd: 0.75,
    uniqueImages: 'all', validationImages: 2, plannerImages: 1,
  };
  const model = stage1ModelConfig(cfg, { h: 4, w: 4 }, 16, 3);
  const n = 8;
  const rec = recorder();
  const res = trainStage1(sandbox(), 'leak', cfg, { tokens: tokens(n, 1), labels: Int32Array.from({ length: n }, (_, i) => i % 3), n }, model, { onStep: (s) => rec.note(s) });
  disposeGPT(res.model);
  assertFlat(rec.at, 8, 'Stage 1 training');
});

let model: GPT | null = null;
const tinyModel = (): GPT => (model ??= createGPT(CFG, 3));

function items(count: number, seed: number): OracleItem[] {
  const r = rng(seed);
  return Array.from({ length: count }, (_, i) => ({
    tokens: tokens(1, seed * 100 + i),
    classId: r.int(CFG.numClasses),
    visible: r.shuffle(Array.from({ length: GEO.numBlocks }, (_, b) => b)).slice(0, i % GEO.numBlocks),
  }));
}

for (const reading of READINGS) {
  test(`oracle scoring (${reading}): numTensors after 5 scoreStates calls equals that after 1`, async () => {
    await useWasm();
    const m = tinyModel();
    const rec = recorder();
    for (let k = 1; k <= 5; k++) {
      scoreStates(m, GEO, items(6, k), { reading, weight: k % 2 ? 'no-neighbours' : 'distance', batch: 3 + k });
      rec.note(k);
    }
    assertFlat(rec.at, 5, `scoreStates ${reading}`);
  });
}

test('oracle dataset build: numTensors after 4 parts equals that after 1 (both readings)', async () => {
  await useWasm();
  const root = sandbox();
  const m = tinyModel();
  const n = 4;
  const tok = tokens(n, 9), labels = Int32Array.from({ length: n }, (_, i) => i % 3);
  const tokDir = path.join(root, 'tokenizer-smoke');
  fs.mkdirSync(tokDir);
  fs.writeFileSync(path.join(tokDir, 'tokens.safetensors'), encodeSafetensors({
    'train.tokens': { dtype: 'I32', shape: [n, T], data: tok }, 'train.labels': { dtype: 'I32', shape: [n], data: labels },
    'test.tokens': { dtype: 'I32', shape: [n, T], data: tok }, 'test.labels': { dtype: 'I32', shape: [n], data: labels },
  }, { format: TOKEN_CACHE_FORMAT, grid: '{"h":4,"w":4}', codebook_size: '16', tokenizer_fingerprint: 't', tokenizer_step: '1', tokenizer_config: '{}', train_source: 's', test_source: 's' }));
  const backbone = saveCheckpoint(path.join(root, 'stage1', 'checkpoints'), checkpointName('stage1', 1, ['r1.00']), { weights: m.params, config: CFG, step: 1, kind: 'stage1', extra: { r: 1 } });
  const cfg = oracleDatasetConfig('smoke', { backbone, tokens: tokDir }, {
    images: 4, statesPerImage: 4, imagesPerPart: 1, statesPerCall: 3, compareEvery: 1, compare: [{ reading: 'one-step', weight: 'uniform' }],
  });
  const rec = recorder();
  await buildOracleDataset(path.join(root, 'ds'), cfg, { model: m, onPart: (p) => rec.note(p.part + 1) });
  assertFlat(rec.at, 4, 'oracle dataset build');
});

test('KV-cache sampling: numTensors is the same after every block and after 4 sampleImages calls as after 1', async () => {
  await useWasm();
  const m = tinyModel();
  const classes = new Int32Array([0, 1, 2]);
  const perCall = recorder();
  for (let k = 1; k <= 4; k++) {
    const inCall = recorder();
    await sampleImages(m, {
      classes, policy: k % 2 ? randomPolicy(GEO, k) : rasterPolicy(GEO), geometry: GEO, seed: k, topK: 4, topP: 0.9,
      cfgScale: k > 2 ? 1.5 : 1, onBlock: (done) => inCall.note(done),
    });
    assertFlat(inCall.at, GEO.numBlocks, `sampleImages call ${k}, block by block`);
    perCall.note(k);
  }
  assertFlat(perCall.at, 4, 'sampleImages calls');
});

test('exact NLL: numTensors after 4 batches equals that after 1, and after 3 calls as after 1', async () => {
  await useWasm();
  const m = tinyModel();
  const N = 8;
  const grids = tokens(N, 4), classes = Int32Array.from({ length: N }, (_, i) => i % (CFG.numClasses + 1));
  const perCall = recorder();
  for (let k = 1; k <= 3; k++) {
    const inCall = recorder();
    exactNll(m, grids, classes, orderCells(k === 2 ? 'raster' : 'random-blocks', GEO, N, k), 2, (done) => inCall.note(done));
    assertFlat(inCall.at, 4, `exactNll call ${k}, batch by batch`);
    perCall.note(k);
  }
  assertFlat(perCall.at, 3, 'exactNll calls');
});

test('planner policy (R = 1): numTensors flat at every block of sampleImages and every planner call of nllUnderPolicy, and across calls', async () => {
  await useWasm();
  const m = tinyBackbone();
  const pl = createPlanner({ ...PJ_PLANNER, latentSteps: 1 }, PJ_SHAPE);
  const N = 5, r = rng(21);
  const grids = Int32Array.from({ length: N * 16 }, () => r.int(16)), classes = Int32Array.from({ length: N }, (_, i) => i % 3);
  const perCall = recorder();
  for (let k = 1; k <= 3; k++) {
    const inSample = recorder();
    await sampleImages(m, { classes, policy: plannerPolicy(pl, m, PJ_GEO), geometry: PJ_GEO, seed: k, cfgScale: k === 3 ? 1.5 : 1, onBlock: (done) => inSample.note(done) });
    assertFlat(inSample.at, PJ_GEO.numBlocks, `sampleImages with the planner, call ${k}, block by block`);
    const inner = plannerPolicy(pl, m, PJ_GEO);
    const inNll = recorder();
    let calls = 0;
    const watched: OrderPolicy = { name: inner.name, nextBlocks: (states) => { const out = inner.nextBlocks(states); inNll.note(++calls); return out; } };
    await nllUnderPolicy(m, grids, classes, watched, PJ_GEO, 2);
    assertFlat(inNll.at, PJ_GEO.numBlocks, `nllUnderPolicy with the planner, call ${k}, planner call by planner call`);
    perCall.note(k);
  }
  assertFlat(perCall.at, 3, 'planner policy calls');
  disposePlanner(pl);
  disposeGPT(m);
});

test('Stage 3-6 runs and planner objects: numTensors after each whole run (results disposed) equals that before', async () => {
  await useWasm();
  const root = sandbox();
  const count = () => tf.memory().numTensors;
  let before = count();
  disposePlanner(createPlanner(PJ_PLANNER, PJ_SHAPE));
  disposeRouter(createRouter({ budgets: [1, 2, 4], hidden: 8, seed: 0 }, { plannerWidth: PJ_PLANNER.width, numBlocks: 4 }));
  assert.equal(count(), before, 'creating and disposing a planner and a router left tensors');
  const { cfg, data, grid } = plannerJob(6);
  before = count();
  const s3 = trainPlanner(root, 'stage3', cfg, data, grid);
  const again = loadPlanner(s3.bestPath);
  disposePlanner(again.planner);
  const s4 = trainLatentCurriculum(root, 'stage4', { ...cfg, steps: 3 }, data, grid, s3.planner, [1, 2]);
  s4.forEach((x) => disposePlanner(x.result.planner));
  disposePlanner(s3.planner);
  assert.equal(count(), before, 'Stage 3 / Stage 4 runs left tensors');
  const rj = routerJob(6);
  before = count();
  disposeRouter(trainRouter(root, 'stage6', rj.cfg, rj.data, rj.planner).router);
  assert.equal(count(), before, 'a Stage 6 run left tensors');
  disposePlanner(rj.planner);
  const m = tinyBackbone(), pl = createPlanner(PJ_PLANNER, PJ_SHAPE);
  before = count();
  const s5 = trainJointTuning(root, 'stage5', jointTuningConfig('smoke', { topBlocks: 1, steps: 2, evalEvery: 1, heldOutEvery: 4, driftImages: 4, valStates: 8, maxNllIncrease: 10, arOrders: 'random' }),
    tinyJointData(), m, pl);
  disposePlanner(s5.planner);
  disposeGPT(s5.backbone);
  assert.equal(count(), before, 'a Stage 5 run left tensors');
  disposePlanner(pl);
  disposeGPT(m);
});

test('evaluation of an OrderHead setting: numTensors flat at every progress tick (sampling batches, features, recognizability, NLL, trajectory) and across calls', async () => {
  await useWasm();
  const w = evalWorld();
  const perCall = recorder();
  for (let k = 1; k <= 2; k++) {
    const inCall = recorder();
    let ticks = 0;
    const bar = (): Progress => ({ tick: () => inCall.note(++ticks), done: () => {}, count: 0 });
    await evaluateSetting(orderHeadSetting(w.backbone, w.planner, PJ_GEO, k === 1 ? 0 : 1), w.ctx, w.cfg, bar);
    assertFlat(inCall.at, 2 * (2 + 3) + 1, `evaluateSetting call ${k}, tick by tick`);
    perCall.note(k);
  }
  assertFlat(perCall.at, 2, 'evaluateSetting calls');
  w.dispose();
});

test('disposeSetting frees all an OrderHead setting holds: its backbone, its planner and the other backbone the planner reads (a worker evaluates settings one after another)', async () => {
  await useWasm();
  const before = tf.memory().numTensors;
  const s = orderHeadSetting(tinyBackbone(1), createPlanner(PJ_PLANNER, PJ_SHAPE), PJ_GEO, 0, undefined, tinyBackbone(2));
  assert.ok(tf.memory().numTensors > before);
  disposeSetting(s);
  assert.equal(tf.memory().numTensors, before, `${tf.memory().numTensors - before} tensor(s) of the setting left`);
  // Reading its own backbone: that one is freed once.
  const own = orderHeadSetting(tinyBackbone(1), createPlanner(PJ_PLANNER, PJ_SHAPE), PJ_GEO, 0);
  disposeSetting(own);
  assert.equal(tf.memory().numTensors, before);
});

test('teardown', () => { if (model) disposeGPT(model); model = null; });
