/** Stage 5 (limited joint tuning): freezing, k checks, leaks, resume, the drift guard and its best checkpoint, its data under the Stage 1 regime. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { throwsOH, useWasm } from '../../helpers';
import { PJ_GEO, PJ_MODEL, PJ_PLANNER, PJ_SHAPE, tinyBackbone } from '../../fixtures/planner-jobs';
import { GPT } from '../../../lib/backbone/gpt';
import { loadBackbone } from '../../../lib/backbone/stage1';
import { loadCheckpoint } from '../../../lib/runtime/checkpoint';
import { rng } from '../../../lib/runtime/seed';
import { regimeImages } from '../../../lib/backbone/regime';
import { drawOrderBatch, stage1Draws, TargetOrderTable, targetOrderCells } from '../../../lib/backbone/stage1';
import { PRIMARY_READING } from '../../../lib/oracle/utility';
import { OracleDataset } from '../../../lib/oracle/dataset';
import { TokenCache } from '../../../lib/tokenizer/cache';
import {
  createPlanner, disposePlanner, fileFingerprint, JointData, jointData, jointTuningConfig, loadPlanner, Planner, 
  plannerLossThroughBackbone, trainJointTuning, tunedParamNames, bestPlannerCheckpoint,
} from '../../../lib/planner';

// The tiny world shared with the other planner tests (tests/fixtures/planner-jobs.ts): 4x4 tokens, vocab 16, 4 blocks.
const CFG = PJ_MODEL, GEO = PJ_GEO, SHAPE = PJ_SHAPE, SMALL = PJ_PLANNER;

let model: GPT | null = null;
async function backbone(): Promise<GPT> {
  await useWasm();
  if (!model) model = tinyBackbone(5);
  return model;
}

/** 48 oracle states over 12 images (|S| = 0..3), a* = a seeded unseen block; 16 training and 8 held-out images. */
function data(): JointData {
  const r = rng(11), T = GEO.numTokens, n = 48;
  const imgs = Array.from({ length: 12 }, () => Int32Array.from({ length: T }, () => r.int(CFG.vocabSize)));
  const items = Array.from({ length: n }, (_, i) => ({ tokens: imgs[Math.floor(i / 4)], classId: Math.floor(i / 4) % CFG.numClasses, visible: r.shuffle([0, 1, 2, 3]).slice(0, i % 4) }));
  const aStar = Int32Array.from(items, (it) => { const un = [0, 1, 2, 3].filter((b) => !it.visible.includes(b)); return un[r.int(un.length)]; });
  const grid = (k: number) => Int32Array.from({ length: k * T }, () => r.int(CFG.vocabSize));
  const lab = (k: number) => Int32Array.from({ length: k }, () => r.int(CFG.numClasses));
  return {
    geo: GEO, items, aStar, image: Int32Array.from(items, (_, i) => Math.floor(i / 4)), label: 'u', reading: 'synthetic', weight: 'uniform',
    backboneFingerprint: 'test-backbone', heldOut: { tokens: grid(8), labels: lab(8), n: 8 }, trainImages: Int32Array.from({ length: 16 }, (_, i) => i),
    // L_AR on planner orders (the default arOrders): a seeded block order per training image stands in for the planner-order cache.
    train: { tokens: grid(16), labels: lab(16), n: 16, tokenizer: 'test-tok',
      targetOrders: { image: Int32Array.from({ length: 16 }, (_, i) => i), blockOrders: Int32Array.from(Array.from({ length: 16 }, () => r.shuffle([0, 1, 2, 3])).flat()), numBlocks: 4, fingerprint: 'test-orders', file: 'test-orders.json' } },
  };
}

const snapshot = (p: Record<string, tf.Tensor>) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, Float32Array.from(v.dataSync())]));
const same = (a: Float32Array, b: ArrayLike<number>) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'oh-joint-'));

test("arOrders 'planner' without planner orders is refused before any run folder, naming the field and notebook 06", async () => {
  const m = await backbone();
  const pl = createPlanner(SMALL, SHAPE);
  const root = tmp();
  try {
    const d = data();
    const { targetOrders: _dropped, ...bare } = d.train;
    throwsOH(() => trainJointTuning(root, 'no-orders', jointTuningConfig('smoke', { topBlocks: 1 }), { ...d, train: bare }, m, pl), 'targetOrders', '06_stage5');
    assert.ok(!fs.existsSync(path.join(root, 'no-orders')));
    throwsOH(() => jointTuningConfig('smoke', { arOrders: 'sideways' as never }), 'joint.arOrders');
  } finally {
    disposePlanner(pl);
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('tuned parameters: the top k blocks only; k > nLayer refused naming joint.topBlocks and the layer count, before any run folder', async () => {
  const m = await backbone();
  const k1 = tunedParamNames(CFG, 1);
  assert.ok(k1.length === 9 && k1.every((n) => n.startsWith('h1.')), `${k1}`);
  assert.deepEqual(tunedParamNames(CFG, 2).filter((n) => n.startsWith('h0.')).length, 9);
  assert.ok(tunedParamNames(CFG, 1, true).includes('head') && tunedParamNames(CFG, 1, true).includes('norm_f'));
  assert.ok(!tunedParamNames(CFG, 2).some((n) => ['tok_emb', 'cls_emb', 'tgt_pos', 'norm_f', 'head'].includes(n)));
  throwsOH(() => tunedParamNames(CFG, 3), 'joint.topBlocks', 'topBlocks = 3', '2 layers');
  throwsOH(() => jointTuningConfig('smoke', { topBlocks: 0 }), 'joint.topBlocks');
  const root = tmp();
  const pl = createPlanner(SMALL, SHAPE);
  try {
    throwsOH(() => trainJointTuning(root, 'k3', jointTuningConfig('smoke', { topBlocks: 3 }), data(), m, pl), 'joint.topBlocks', '2 layers');
    assert.equal(fs.existsSync(path.join(root, 'k3')), false);
  } finally {
    disposePlanner(pl);
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('L_OH through the backbone: the top block gets a finite, non-zero gradient from the planner loss alone', async () => {
  const m = await backbone();
  const pl = createPlanner(SMALL, SHAPE);
  const d = data();
  const vars = [m.params['h1.wq'], m.params['h1.w2'], pl.params['in.w']];
  const { value, grads } = tf.variableGrads(() => plannerLossThroughBackbone(m, pl, GEO, d.items, d.aStar, [0, 1, 2, 3, 5, 6, 7]), vars);
  for (const v of vars) {
    const g = grads[v.name];
    const norm = tf.tidy(() => tf.norm(g).dataSync()[0]);
    assert.ok(Number.isFinite(norm) && norm > 0, `gradient of a tuned variable: ${norm}`);
  }
  tf.dispose([value, ...Object.values(grads)]);
  disposePlanner(pl);
});

test('freezing: only the top-k blocks and the planner change, bit for bit; the inputs are untouched; steps leak no tensors', async () => {
  const m = await backbone();
  const pl = createPlanner(SMALL, SHAPE);
  const origGpt = snapshot(m.params), origPl = snapshot(pl.params);
  const root = tmp();
  try {
    const cfg = jointTuningConfig('smoke', { topBlocks: 1, steps: 4, evalEvery: 2, heldOutEvery: 4, lr: 1e-2, driftImages: 4, maxNllIncrease: 10 });
    const counts: number[] = [];
    let checked = false;
    const res = trainJointTuning(root, 'freeze', cfg, data(), m, pl, {
      onStep: (step, met, models) => {
        counts.push(tf.memory().numTensors);
        assert.ok(Number.isFinite(met.lAR) && Number.isFinite(met.lOH));
        if (step !== 1) return;
        checked = true;
        for (const [k, v] of Object.entries(models.backbone.params)) {
          const now = v.dataSync();
          if (k.startsWith('h1.')) assert.ok(!same(origGpt[k], now), `tuned ${k} changed`);
          else assert.ok(same(origGpt[k], now), `frozen ${k} is bit-identical`);
        }
        assert.ok(!same(origPl['in.w'], models.planner.params['in.w'].dataSync()), 'the planner trains');
      },
    });
    assert.ok(checked);
    assert.equal(new Set(counts).size, 1, `tensor count flat over steps (evaluation steps included): ${counts}`);
    for (const [k, v] of Object.entries(m.params)) assert.ok(same(origGpt[k], v.dataSync()), `input backbone ${k} untouched`);
    for (const [k, v] of Object.entries(pl.params)) assert.ok(same(origPl[k], v.dataSync()), `input planner ${k} untouched`);
    // The returned (best) backbone: frozen weights still identical; its file loads as a Stage 1 backbone, the planner with its fingerprint.
    for (const [k, v] of Object.entries(res.backbone.params)) if (!k.startsWith('h1.')) assert.ok(same(origGpt[k], v.dataSync()), `best ${k}`);
    const again = loadBackbone(res.backbonePath, CFG);
    for (const [k, v] of Object.entries(again.params)) assert.ok(same(Float32Array.from(v.dataSync()), res.backbone.params[k].dataSync()));
    const lp = loadPlanner(bestPlannerCheckpoint(res.run.dir, 'Stage 5'), { shape: SHAPE, backboneFingerprint: fileFingerprint(res.backbonePath) });
    assert.equal(lp.step, res.bestStep);
    assert.equal(res.log.steps, 4);
    assert.equal(res.log.lAR.length, 4);
    assert.deepEqual(res.log.evals.map((e) => e.step), [0, 2, 4]);
    assert.equal(res.log.stoppedEarly, false);
    const rc = JSON.parse(fs.readFileSync(path.join(res.run.dir, 'config.json'), 'utf8'));
    assert.equal(rc.backbone.fingerprint, 'test-backbone');
    assert.deepEqual(rc.stage1, { blockH: 2, blockW: 2, orderMode: 'block-rar' });
    for (const x of [again]) for (const v of Object.values(x.params)) v.dispose();
    disposePlanner(lp.planner); disposePlanner(res.planner);
    for (const v of Object.values(res.backbone.params)) v.dispose();
  } finally {
    disposePlanner(pl);
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('resume: an interrupted run continues to the same weights as an uninterrupted one', async () => {
  const m = await backbone();
  const pl = createPlanner(SMALL, SHAPE);
  const root = tmp();
  try {
    const cfg = jointTuningConfig('smoke', { topBlocks: 2, steps: 4, evalEvery: 2, heldOutEvery: 4, driftImages: 4, maxNllIncrease: 10 });
    const d = data();
    const free = (r: ReturnType<typeof trainJointTuning>) => { disposePlanner(r.planner); for (const v of Object.values(r.backbone.params)) v.dispose(); };
    const full = trainJointTuning(root, 'full', cfg, d, m, pl);
    const part = trainJointTuning(root, 'split', cfg, d, m, pl, { maxSteps: 2 });
    assert.equal(part.steps, 2);
    const resumed = trainJointTuning(root, 'split', cfg, d, m, pl);
    assert.equal(resumed.steps, 4);
    const a = loadCheckpoint(path.join(full.run.checkpointDir, 'joint-step000004.safetensors'));
    const b = loadCheckpoint(path.join(resumed.run.checkpointDir, 'joint-step000004.safetensors'));
    for (const [k, v] of Object.entries(a.weights)) assert.ok(same(Float32Array.from(v.dataSync()), b.weights[k].dataSync()), `weight ${k}`);
    assert.deepEqual(resumed.log.lAR, full.log.lAR);
    tf.dispose([...Object.values(a.weights), ...Object.values(b.weights)]);
    throwsOH(() => trainJointTuning(root, 'full', { ...cfg, lambda: 2 }, d, m, pl), 'different config', 'joint.lambda');
    [full, part, resumed].forEach(free);
  } finally {
    disposePlanner(pl);
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('drift guard: a huge learning rate degrades the held-out NLL, the run stops early, stays stopped, and the best checkpoint is kept', async () => {
  const m = await backbone();
  const pl: Planner = createPlanner(SMALL, SHAPE);
  const orig = snapshot(m.params);
  const root = tmp();
  try {
    const cfg = jointTuningConfig('smoke', { topBlocks: 2, tuneOutput: true, steps: 8, evalEvery: 1, heldOutEvery: 4, lr: 1, warmup: 0, driftImages: 8, maxNllIncrease: 0.05 });
    const res = trainJointTuning(root, 'drift', cfg, data(), m, pl);
    assert.equal(res.log.stoppedEarly, true);
    assert.ok(res.steps < 8, `stopped at step ${res.steps}`);
    assert.match(res.log.stopReason!, /joint\.maxNllIncrease/);
    const lastEval = res.log.evals[res.log.evals.length - 1];
    assert.equal(lastEval.step, res.steps);
    assert.equal(lastEval.withinDrift, false);
    assert.ok(Math.max(lastEval.rasterBits - res.log.before.raster, lastEval.randomBits - res.log.before.random) > 0.05);
    // The best is a checkpoint within the guard, never the degraded last one.
    assert.ok(res.bestStep < res.steps);
    const bestEval = res.log.evals.find((e) => e.step === res.bestStep)!;
    assert.ok(bestEval.withinDrift);
    assert.ok(Math.abs(res.log.after.raster - bestEval.rasterBits) < 1e-9);
    if (res.bestStep === 0) for (const [k, v] of Object.entries(res.backbone.params)) assert.ok(same(orig[k], v.dataSync()), `best = untuned ${k}`);
    // Resuming a stopped run trains no further.
    const again = trainJointTuning(root, 'drift', cfg, data(), m, pl);
    assert.equal(again.steps, res.steps);
    assert.equal(again.log.stoppedEarly, true);
    assert.equal(again.bestStep, res.bestStep);
    for (const r of [res, again]) { disposePlanner(r.planner); for (const v of Object.values(r.backbone.params)) v.dispose(); }
  } finally {
    disposePlanner(pl);
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('jointData with a regime: L_AR draws only the K training images, never a validation image the planner-order cache holds; the drift guard reads the validation images', () => {
  const n = 20, T = GEO.numTokens, r = rng(21);
  const split = (k: number, source: string) => ({ tokens: Int32Array.from({ length: k * T }, () => r.int(CFG.vocabSize)), labels: Int32Array.from({ length: k }, (_, i) => i % 3), n: k, source });
  const cache = { train: split(n, 'train'), test: split(6, 'test'), grid: { h: 4, w: 4 }, codebookSize: 16, tokenizer: { fingerprint: 'tok', step: 1, config: {} }, path: 'tokens.safetensors' } as unknown as TokenCache;
  const reg = regimeImages(n, { uniqueImages: 6, validationImages: 4, plannerImages: 4 }, 2, 'joint');
  // The oracle's states lie on the planner's images: two per image, with |S| = 0 and 1.
  const states = reg.planner.length * 2;
  const ds = {
    dir: 'oracle', geo: GEO, n: states, image: Int32Array.from({ length: states }, (_, i) => reg.planner[i >> 1]), state: new Int32Array(states),
    size: Int32Array.from({ length: states }, (_, i) => i % 2), classId: Int32Array.from({ length: states }, (_, i) => (i >> 1) % 3),
    sequence: Int32Array.from({ length: states * 4 }, (_, j) => (j % 4 === 0 ? 2 : -1)), visible: new Uint8Array(states * 4), tokenLoss: new Float32Array(states * T),
    manifest: { config: { split: 'train' }, backbone: { fingerprint: 'C' } },
    labelings: [{ reading: PRIMARY_READING, weight: 'uniform', primary: true, aStar: new Int32Array(states).fill(1), aStarExtrap: new Int32Array(states).fill(3) }],
  } as unknown as OracleDataset;
  // The planner-order cache: the training images a continuation draws, the validation images its selection reads, and a stray planner image.
  const cached = [...reg.train, ...reg.validation, reg.planner[0]].sort((a, b) => a - b);
  const table: TargetOrderTable = { image: Int32Array.from(cached), blockOrders: Int32Array.from(cached.flatMap((_, k) => [[0, 1, 2, 3], [3, 2, 1, 0]][k % 2])), numBlocks: 4, fingerprint: 'orders', file: 'orders.json' };
  const jd = jointData(ds, cache, 'u', PRIMARY_READING, table, reg);
  assert.equal(jd.train.n, cached.length, 'L_AR\'s token data is the cache\'s images');
  const raw = Array.from(jd.trainImages, (k) => table.image[k]);
  assert.deepEqual([...raw].sort((a, b) => a - b), [...reg.train].sort((a, b) => a - b), 'trainImages are exactly the K training images');
  const validation = new Set(reg.validation);
  assert.ok(raw.every((img) => !validation.has(img)), 'a validation image is among the L_AR images');
  jd.trainImages.forEach((k, i) => assert.deepEqual(Array.from(jd.train.tokens.subarray(k * T, (k + 1) * T)), Array.from(cache.train.tokens.subarray(raw[i] * T, (raw[i] + 1) * T))));
  // The drift guard: the validation images' tokens and labels, in the regime's order; not the test split.
  assert.equal(jd.heldOut.n, 4);
  reg.validation.forEach((img, i) => {
    assert.deepEqual(Array.from(jd.heldOut.tokens.subarray(i * T, (i + 1) * T)), Array.from(cache.train.tokens.subarray(img * T, (img + 1) * T)), `held-out image ${i}`);
    assert.equal(jd.heldOut.labels[i], cache.train.labels[img]);
  });
  // What Stage 5's L_AR draws (drawOrderBatch from trainImages, in the planner's orders) never reaches a validation image.
  const target = targetOrderCells(jd.train.targetOrders!, GEO);
  for (let step = 0; step < 20; step++) {
    const b = drawOrderBatch(stage1Draws(0, step), jd.train, jd.trainImages, GEO, 8, 0.5, 0.1, CFG.numClasses, target);
    for (const k of b.image) assert.ok(reg.train.includes(table.image[k]), `step ${step}: L_AR drew raw image ${table.image[k]}`);
  }
  // The states and labels are the oracle's, whatever the regime.
  assert.deepEqual(Array.from(jd.image), Array.from(ds.image));
  assert.deepEqual(Array.from(jd.aStar), Array.from(ds.labelings[0].aStar));
  assert.equal(jd.items[3].tokens.length, T);
  // Without planner orders: L_AR draws the K training images of the whole split (raw indices).
  const bare = jointData(ds, cache, 'u', PRIMARY_READING, undefined, reg);
  assert.equal(bare.train.n, n);
  assert.deepEqual(Array.from(bare.trainImages), [...reg.train].sort((a, b) => a - b));
  assert.deepEqual(bare.heldOut, jd.heldOut);
  // Without a regime (an older run): every cached image, and the test split as the drift guard's images.
  const old = jointData(ds, cache, 'u', PRIMARY_READING, table);
  assert.deepEqual(Array.from(old.trainImages), cached.map((_, k) => k));
  assert.deepEqual(old.heldOut, { tokens: cache.test.tokens, labels: cache.test.labels, n: 6 });
});

// ---- bad input ----
// What a user (or a crash) can get wrong here. Each test asserts an
// OrderHeadError naming the file or config field with a fix (expectOH /
// rejectsOH), and that the temp folder is byte-identical afterwards, nothing
// added (untouched); both in tests/helpers.ts.
import { describe } from 'node:test';
import { expectOH, sandbox, untouched } from '../../helpers';
import { tinyJointData } from '../../fixtures/planner-jobs';
import { disposeGPT } from '../../../lib/backbone/gpt';

describe('bad input', () => {
  test('joint.topBlocks k larger than the backbone\'s GPT blocks names the layer count, before a run folder; a changed k does not resume a run', async () => {
    await useWasm();
    const root = sandbox();
    const m = tinyBackbone();
    const pl = createPlanner(PJ_PLANNER, PJ_SHAPE);
    const data = tinyJointData();
    const cfg = jointTuningConfig('smoke', { topBlocks: 1, steps: 1, evalEvery: 1, heldOutEvery: 4, driftImages: 4, valStates: 8, maxNllIncrease: 10, arOrders: 'random' });
    const done = trainJointTuning(root, 'stage5-joint', cfg, data, m, pl);
    disposePlanner(done.planner);
    disposeGPT(done.backbone);
    const before = tf.memory().numTensors;
    await untouched(root, () => {
      expectOH(() => trainJointTuning(root, 'k3', { ...cfg, topBlocks: 3 }, data, m, pl), 'joint.topBlocks', 'topBlocks = 3, but the backbone has 2 layers (h0 .. h1)',
        'choose k between 1 and 2');
      expectOH(() => jointTuningConfig('smoke', { topBlocks: 1.5 }), 'joint.topBlocks', 'not a positive integer');
      expectOH(() => jointTuningConfig('smoke', { topBlocks: 0 }), 'joint.topBlocks', 'k = 0 is Stage 3');
      // The existing run folder reopened with another k: refused, naming the field.
      expectOH(() => trainJointTuning(root, 'stage5-joint', { ...cfg, topBlocks: 2 }, data, m, pl), path.join(root, 'stage5-joint'), 'joint.topBlocks: run 1, current 2');
    });
    assert.equal(tf.memory().numTensors, before, 'a refused joint run leaked tensors');
    disposePlanner(pl);
    disposeGPT(m);
  });
});
