/** OrderHead (Algorithm 3, Stages 3-4): features, masking, latent steps, training, checkpoints, the planner as a policy. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { throwsOH, useWasm } from '../../helpers';
import { forward, GPT, sharedOrder, tokensInOrder } from '../../../lib/backbone/gpt';
import { nllUnderPolicy } from '../../../lib/backbone/nll';
import { blockCells, blockGeometry, rollOutOrder, validateBlockOrder } from '../../../lib/order';
import { rng } from '../../../lib/runtime/seed';
import {
  checkLatentSteps, createPlanner, disposePlanner, FeatureItem, loadPlanner, Planner, plannerFeatures,
  plannerForward, plannerInputs, plannerLoss, plannerPolicy, plannerTrainConfig, trainPlanner, featureTensors,
} from '../../../lib/planner';
import { syntheticPlannerData, PJ_GEO, PJ_MODEL, PJ_PLANNER, PJ_SHAPE, tinyBackbone } from '../../fixtures/planner-jobs';

// The tiny world shared with the other planner tests (tests/fixtures/planner-jobs.ts): 4x4 tokens, vocab 16, 4 blocks.
const CFG = PJ_MODEL, GEO = PJ_GEO, SHAPE = PJ_SHAPE, SMALL = PJ_PLANNER;

let model: GPT | null = null;
async function backbone(): Promise<GPT> {
  await useWasm();
  if (!model) model = tinyBackbone(5);
  return model;
}

function item(size: number, seed: number): FeatureItem {
  const r = rng(seed);
  return {
    tokens: new Int32Array(GEO.numTokens).map(() => r.int(CFG.vocabSize)),
    classId: r.int(CFG.numClasses),
    visible: r.shuffle([0, 1, 2, 3]).slice(0, size),
  };
}

const entropyOfLogits = (row: Float32Array): number => {
  const mx = Math.max(...row);
  const e = Array.from(row, (v) => Math.exp(v - mx));
  const s = e.reduce((a, b) => a + b, 0);
  return -e.reduce((a, v) => a + (v / s) * Math.log(v / s), 0);
};

test('features: first-cell entropy equals a full causal pass whose next block is that block; |S| = 0..3', async () => {
  const m = await backbone();
  for (let size = 0; size < 4; size++) {
    const it = item(size, 10 + size);
    const f = plannerFeatures(m, GEO, [it]);
    for (let u = 0; u < 4; u++) {
      if (it.visible.includes(u)) {
        assert.equal(f.entropy[u], 0); assert.equal(f.visible[u], 1);
        continue;
      }
      // Order: S's cells, then u's cells, then the rest. Slot n predicts u's first cell.
      const rest = [0, 1, 2, 3].filter((b) => b !== u && !it.visible.includes(b));
      const cells = [...it.visible, u, ...rest].flatMap((b) => blockCells(GEO, b));
      const order = sharedOrder(cells, 1);
      const toks = tokensInOrder(Int32Array.from(it.tokens), order);
      const logits = tf.tidy(() => forward(m, order, tf.tensor2d(toks.slice(0, 15), [1, 15], 'int32'), tf.tensor1d([it.classId], 'int32')).logits);
      const row = (logits.dataSync() as Float32Array).slice(size * 4 * CFG.vocabSize, (size * 4 + 1) * CFG.vocabSize);
      logits.dispose();
      assert.ok(Math.abs(f.entropy[u] - entropyOfLogits(row)) < 1e-4, `|S|=${size} block ${u}: ${f.entropy[u]} vs ${entropyOfLogits(row)}`);
    }
  }
});

test('features: a state reads the same alone and in a batch of mixed |S|, and hidden tokens never matter', async () => {
  const m = await backbone();
  const items = [0, 1, 2, 3, 1, 2].map((s, i) => item(s, 40 + i));
  const all = plannerFeatures(m, GEO, items, 2);
  const nb = 4, d = CFG.dModel;
  items.forEach((it, i) => {
    const hidden = Int32Array.from(it.tokens);
    for (let b = 0; b < 4; b++) if (!it.visible.includes(b)) for (const c of blockCells(GEO, b)) hidden[c] = -1;
    const one = plannerFeatures(m, GEO, [{ ...it, tokens: hidden }]);
    for (let j = 0; j < nb * d; j++) assert.ok(Math.abs(one.hidden[j] - all.hidden[i * nb * d + j]) < 1e-4, `state ${i} hidden[${j}]`);
    for (let j = 0; j < nb; j++) assert.ok(Math.abs(one.entropy[j] - all.entropy[i * nb + j]) < 1e-4);
  });
});

test('features: leak-free, and a state with every block visible is refused', async () => {
  const m = await backbone();
  const items = [0, 1, 2].map((s) => item(s, 70 + s));
  plannerFeatures(m, GEO, items);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) plannerFeatures(m, GEO, items);
  assert.equal(tf.memory().numTensors, before);
  throwsOH(() => plannerFeatures(m, GEO, [item(4, 1)]), 'every block visible');
  throwsOH(() => featureTensors(m, GEO, [item(1, 1), item(2, 2)]), 'differ in |S|');
});

function inputsFor(m: GPT, n: number, seed: number) {
  const items = Array.from({ length: n }, (_, i) => item(i % 4, seed + i));
  return { items, f: plannerFeatures(m, GEO, items) };
}

test('masking: visible blocks get zero probability even when their features favour them', async () => {
  const m = await backbone();
  const pl = createPlanner(SMALL, SHAPE);
  const { items, f } = inputsFor(m, 8, 100);
  f.entropy.fill(50); // every block looks maximally uncertain, visible ones too
  const probs = tf.tidy(() => tf.softmax(plannerForward(pl, plannerInputs(f)).logits).arraySync() as number[][]);
  items.forEach((it, i) => {
    for (const b of it.visible) assert.equal(probs[i][b], 0, `state ${i} visible block ${b}`);
    assert.ok(Math.abs(probs[i].reduce((a, v) => a + v, 0) - 1) < 1e-5);
  });
  disposePlanner(pl);
});

test('latent steps: R = 0 and R > 0 differ; the loss reaches every latent step and no step past R', async () => {
  const m = await backbone();
  const pl = createPlanner(SMALL, SHAPE);
  const { items, f } = inputsFor(m, 6, 200);
  const target = tf.oneHot(tf.tensor1d(items.map((it) => [0, 1, 2, 3].find((b) => !it.visible.includes(b))!), 'int32'), 4).toFloat() as tf.Tensor2D;
  const out = (R: 0 | 1 | 2 | 4) => tf.tidy(() => plannerForward(pl, plannerInputs(f), R).logits.dataSync() as Float32Array);
  const l0 = out(0), l1 = out(1), l2 = out(2);
  let d01 = 0, d12 = 0;
  for (let i = 0; i < l0.length; i++) { d01 = Math.max(d01, Math.abs(l0[i] - l1[i])); d12 = Math.max(d12, Math.abs(l1[i] - l2[i])); }
  assert.ok(d01 > 1e-4 && d12 > 1e-4, `R changes the output: ${d01}, ${d12}`);
  const gradsAt = (R: 0 | 1 | 2 | 4) => {
    const vars = Object.values(pl.params);
    const { value, grads } = tf.variableGrads(() => tf.tidy(() => plannerLoss(plannerForward(pl, plannerInputs(f), R).logits, target)), vars);
    value.dispose();
    const stepRows = grads[pl.params['core.step'].name] ? grads[pl.params['core.step'].name].abs().sum(1).arraySync() as number[] : null;
    const coreGrad = !!grads[pl.params['core0.wq'].name];
    tf.dispose(Object.values(grads).filter((g) => g));
    return { stepRows, coreGrad };
  };
  const g0 = gradsAt(0);
  assert.equal(g0.stepRows, null, 'R = 0 never reaches the core');
  assert.equal(g0.coreGrad, false);
  const g2 = gradsAt(2);
  assert.ok(g2.coreGrad);
  assert.ok(g2.stepRows![0] > 0 && g2.stepRows![1] > 0, `gradient reaches steps 1 and 2: ${g2.stepRows}`);
  assert.equal(g2.stepRows![2], 0); assert.equal(g2.stepRows![3], 0);
  const g4 = gradsAt(4);
  assert.ok(g4.stepRows!.every((v) => v > 0), `all four steps: ${g4.stepRows}`);
  target.dispose();
  disposePlanner(pl);
  throwsOH(() => checkLatentSteps(3), 'R = 3', '0, 1, 2, 4');
});


test('Stage 3 training: leak-free steps, loss falls, resume equals an uninterrupted run, best checkpoint reloads', async () => {
  const m = await backbone();
  const data = syntheticPlannerData(m, 96);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-planner-'));
  try {
    const cfg = plannerTrainConfig('smoke', { steps: 16, batch: 16, evalEvery: 4, heldOutEvery: 4, planner: SMALL });
    const grid = { blocksY: 2, blocksX: 2, numClasses: CFG.numClasses };
    const counts: number[] = [], losses: number[] = [];
    const full = trainPlanner(root, 'full', cfg, data, grid, { onStep: (_s, mt) => { counts.push(tf.memory().numTensors); losses.push(mt.loss); } });
    assert.equal(new Set(counts.slice(1)).size, 1, `tensor count flat over steps: ${counts}`);
    assert.ok(losses.slice(-4).reduce((a, b) => a + b) < losses.slice(0, 4).reduce((a, b) => a + b), `loss falls: ${losses}`);
    disposePlanner(trainPlanner(root, "split", cfg, data, grid, { maxSteps: 7 }).planner);
    const resumed = trainPlanner(root, 'split', cfg, data, grid);
    for (const [k, v] of Object.entries(full.planner.params)) {
      assert.deepEqual(Array.from(resumed.planner.params[k].dataSync()), Array.from(v.dataSync()), `weight ${k}`);
    }
    const again = loadPlanner(full.bestPath, { shape: SHAPE, backboneFingerprint: 'test-backbone' });
    assert.equal(again.step, full.bestStep);
    throwsOH(() => loadPlanner(full.bestPath, { shape: { ...SHAPE, numBlocks: 16 } }), 'numBlocks', 'retrain Stage 3');
    throwsOH(() => loadPlanner(full.bestPath, { backboneFingerprint: 'another' }), 'backboneFingerprint');
    for (const p of [full.planner, resumed.planner, again.planner]) disposePlanner(p);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('the planner as an order policy: valid orders, never a visible block, exact NLL under its order, wrong grid refused', async () => {
  const m = await backbone();
  const pl: Planner = createPlanner({ ...SMALL, latentSteps: 1 }, SHAPE);
  const policy = plannerPolicy(pl, m, GEO);
  const r = rng(7);
  const N = 5, grids = new Int32Array(N * 16).map(() => r.int(CFG.vocabSize)), classes = Int32Array.from({ length: N }, () => r.int(CFG.numClasses));
  const orders = await rollOutOrder(policy, GEO, N, { tokens: Array.from({ length: N }, (_, i) => grids.subarray(i * 16, (i + 1) * 16)), classIds: Array.from(classes) });
  orders.forEach((o) => validateBlockOrder(GEO, o, 'planner order'));
  const before = tf.memory().numTensors;
  const res = await nllUnderPolicy(m, grids, classes, policy, GEO);
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(res.blockOrders, orders);
  assert.ok(Number.isFinite(res.bitsPerToken));
  const other = blockGeometry({ gridH: 4, gridW: 4, blockH: 1, blockW: 2 });
  throwsOH(() => plannerPolicy(pl, m, other), 'trained for 2x2 blocks');
  disposePlanner(pl);
});

// ---- bad input ----
// What a user (or a crash) can get wrong here. Each test asserts an
// OrderHeadError naming the file or config field with a fix (expectOH /
// rejectsOH), and that the temp folder is byte-identical afterwards, nothing
// added (untouched); both in tests/helpers.ts.
import { describe } from 'node:test';
import { expectOH, sandbox, untouched } from '../../helpers';
import { plannerRun, tinyJointData } from '../../fixtures/planner-jobs';
import { stage1Checkpoint } from '../../fixtures/stage1-job';
import { disposeGPT } from '../../../lib/backbone/gpt';
import { openRun } from '../../../lib/runtime/run';
import { encodeSafetensors, readSafetensors } from '../../../lib/runtime/safetensors';
import { orderHeadSetting } from '../../../lib/eval';
import {
  bestPlannerCheckpoint, fixedBudgetPolicy, jointTuningConfig, LatentSteps, loadJointPair, routerTrainConfig, trainJointTuning,
  trainLatentCurriculum,
} from '../../../lib/planner';

describe('bad input', () => {
  test('a planner checkpoint used with another backbone (fingerprint) or block grid names the field and says to retrain Stage 3', async () => {
    await useWasm();
    const root = sandbox();
    const p = plannerRun(root);
    const m = tinyBackbone();
    const pl = loadPlanner(p.best).planner;
    const otherGrid = blockGeometry({ gridH: 4, gridW: 4, blockH: 1, blockW: 2 }); // 4x2 = 8 blocks
    const before = tf.memory().numTensors;
    await untouched(root, () => {
      expectOH(() => loadPlanner(p.best, { backboneFingerprint: 'another-backbone' }), `${p.best} (backboneFingerprint)`,
        'trained on backbone test-backbone, not on another-backbone', 'retrain Stage 3');
      expectOH(() => loadPlanner(p.best, { shape: { numBlocks: 8, blocksY: 4 } }), `${p.best} (shape.numBlocks)`, 'numBlocks = 4, here it is 8', '04_stage3_orderhead');
      expectOH(() => plannerPolicy(pl, m, otherGrid), "policy 'orderhead R=0'", 'trained for 2x2 blocks of a 16-wide backbone', 'here: 4x2 blocks');
      expectOH(() => orderHeadSetting(m, pl, otherGrid, 0), "policy 'orderhead R=0'", 'here: 4x2 blocks');
      // Resuming the run on another backbone's features: refused before a step, naming the field with both values.
      expectOH(() => trainPlanner(root, 'stage3-u_extrap-hard', p.cfg, { ...p.data, backboneFingerprint: 'another-backbone' }, p.grid), p.runDir,
        'backboneFingerprint: run "test-backbone", current "another-backbone"', 'never mixed');
      // A block grid that does not hold the features' blocks: refused before a run folder is made.
      expectOH(() => trainPlanner(root, 'wrong-grid', p.cfg, p.data, { ...p.grid, blocksX: 4 }), 'trainPlanner(grid)', 'grid 2x4 does not hold 4 blocks', 'ds.geo');
      // Stage 5 given a planner of another grid.
      const pl8 = createPlanner(PJ_PLANNER, { ...PJ_SHAPE, numBlocks: 8, blocksY: 4 });
      expectOH(() => trainJointTuning(root, 'joint', jointTuningConfig('smoke', { heldOutEvery: 4, driftImages: 4 }), tinyJointData(), m, pl8),
        'trainJointTuning(planner)', 'built for 8 blocks', 'trained on this backbone and block grid');
      disposePlanner(pl8);
    });
    assert.equal(tf.memory().numTensors, before, 'a refused load or resume leaked tensors');
    disposePlanner(pl);
    disposeGPT(m);
  });

  test('R outside {0, 1, 2, 4} is refused with the valid values, before a run folder or a sampling step', async () => {
    await useWasm();
    const root = sandbox();
    const p = plannerRun(root);
    const m = tinyBackbone();
    const pl = loadPlanner(p.best).planner;
    const before = tf.memory().numTensors;
    await untouched(root, () => {
      const bad = { ...PJ_PLANNER, latentSteps: 3 as LatentSteps };
      expectOH(() => plannerTrainConfig('smoke', { planner: bad }), 'planner.latentSteps', 'R = 3 latent steps is not supported', 'use one of: 0, 1, 2, 4');
      expectOH(() => trainPlanner(root, 'r3', { ...p.cfg, planner: bad }, p.data, p.grid), 'planner.latentSteps', '0, 1, 2, 4');
      expectOH(() => loadPlanner(p.best, { latentSteps: 5 as LatentSteps }), `${p.best} (latentSteps)`, 'R = 5');
      expectOH(() => orderHeadSetting(m, pl, PJ_GEO, 3 as LatentSteps), "policy 'orderhead R=3' (R)", 'R = 3', '0, 1, 2, 4');
      expectOH(() => fixedBudgetPolicy(pl, m, PJ_GEO, 2, 8 as LatentSteps), "policy 'orderhead R=8 top-2' (R)", '0, 1, 2, 4');
      expectOH(() => routerTrainConfig('smoke', { latentSteps: 3 as LatentSteps }), 'router.latentSteps', '0, 1, 2, 4');
      // The R curriculum checks every R before its first stage trains: no R = 1 run folder appears for [1, 3].
      expectOH(() => trainLatentCurriculum(root, 'stage4', p.cfg, p.data, p.grid, pl, [1, 3 as LatentSteps]), 'trainLatentCurriculum(latentSteps)', 'R = 3', '0, 1, 2, 4');
    });
    assert.equal(tf.memory().numTensors, before);
    disposePlanner(pl);
    disposeGPT(m);
  });

  test('a planner run folder without a checkpoint, and a Stage 5 folder without its pair, name the folder and the notebook to run', async () => {
    await useWasm();
    const root = sandbox();
    const empty = path.join(root, 'planner-smoke', 'stage3-u_extrap-hard');
    fs.mkdirSync(path.join(empty, 'checkpoints'), { recursive: true });
    // A Stage 3 run stopped before its first validation: only config, manifest, metrics.
    const early = openRun({ root: path.join(root, 'planner-smoke'), stage: 'planner', name: 'stage4-u_extrap-hard-R1', config: { a: 1 } }).dir;
    // Stage 5 with the tuned backbone but no planner (its best-step file deleted by hand).
    const half = path.join(root, 'planner-smoke', 'stage5-joint');
    fs.mkdirSync(path.join(half, 'checkpoints'), { recursive: true });
    fs.writeFileSync(path.join(half, 'checkpoints', 'backbone-step000004-r1.00.safetensors'), 'not read');
    const never = path.join(root, 'planner-smoke', 'stage6-router');
    const before = tf.memory().numTensors;
    await untouched(root, () => {
      expectOH(() => bestPlannerCheckpoint(empty, 'notebooks/04_stage3_orderhead.ipynb'), empty, 'no trained planner here', 'run notebooks/04_stage3_orderhead.ipynb in this profile first');
      expectOH(() => bestPlannerCheckpoint(early, 'notebooks/05_stage4_latent_planner.ipynb'), early, 'no best-step', '05_stage4_latent_planner');
      expectOH(() => bestPlannerCheckpoint(never, 'notebooks/07_stage6_adaptive_budget.ipynb'), never, 'no trained planner here', '07_stage6_adaptive_budget');
      expectOH(() => loadJointPair(half), half, 'no tuned backbone and planner here (Stage 5 has not run)', 'run notebooks/06_stage5_joint_tuning.ipynb');
      expectOH(() => loadJointPair(never), never, 'Stage 5 has not run', '06_stage5_joint_tuning');
    });
    assert.equal(tf.memory().numTensors, before);
  });

  test('a corrupt planner checkpoint (truncated, garbled, NaN weight, lacking a weight, another kind) names the file; resuming from it trains nothing', async () => {
    await useWasm();
    const root = sandbox();
    const p = plannerRun(root);
    const bytes = fs.readFileSync(p.best);
    const cut = path.join(root, 'cut-best.safetensors');
    fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 50));
    const { tensors, metadata } = readSafetensors(p.best);
    const nan = path.join(root, 'nan-best.safetensors');
    const poisoned = { ...tensors, 'in.w': { ...tensors['in.w'], data: Float32Array.from(tensors['in.w'].data as Float32Array, (v, i) => (i === 5 ? NaN : v)) } };
    fs.writeFileSync(nan, encodeSafetensors(poisoned, metadata));
    const lacking = path.join(root, 'lacking-best.safetensors');
    const { 'head.w': _drop, ...rest } = tensors;
    fs.writeFileSync(lacking, encodeSafetensors(rest, metadata));
    const s1 = stage1Checkpoint(path.join(root, 'stage1'));
    // The newest planner-step checkpoint of the run garbled (a bad copy): the resume must stop on it.
    const g = Buffer.from(fs.readFileSync(p.last));
    g.fill(0x7b, 8, 40);
    fs.writeFileSync(p.last, g);
    const before = tf.memory().numTensors;
    await untouched(root, () => {
      expectOH(() => loadPlanner(cut), cut, 'truncated');
      expectOH(() => loadPlanner(nan), nan, "weight 'in.w'", 'non-finite', 'earlier checkpoint');
      expectOH(() => loadPlanner(lacking), lacking, 'weight head.w is missing', 'use another checkpoint');
      expectOH(() => loadPlanner(s1.file), s1.file, "is a 'stage1' checkpoint, not a planner", 'best-step*.safetensors');
      expectOH(() => trainPlanner(root, 'stage3-u_extrap-hard', p.cfg, p.data, p.grid), p.last, 'not valid JSON');
    }, ['stage3-u_extrap-hard/manifest.json']);
    assert.equal(tf.memory().numTensors, before, 'a refused load or resume leaked the planner or its optimizer state');
  });
});
