/** Stage 6 (adaptive budget): budget sets, the router target rule, masking, the budget policies, router training. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { throwsOH, useWasm } from '../../helpers';
import { GPT } from '../../../lib/backbone/gpt';
import { nllUnderPolicy } from '../../../lib/backbone/nll';
import { sampleImages } from '../../../lib/backbone/sampler';
import { blockCells, PolicyState, rollOutOrder, stateFromSequence, validateBlockOrder } from '../../../lib/order';
import { rng } from '../../../lib/runtime/seed';
import {
  BUDGETS, budgetPolicy, checkBudgetSet, chooseBudgets, createPlanner, createRouter, disposePlanner, disposeRouter, fixedBudgetPolicy, loadRouter,
  Planner, plannerFeatures, plannerProbs, Router, routerForward, routerTarget,
  routerTrainConfig, trainRouter,
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

/** A router whose output biases (before masking) prefer budgets in the order of `bias` (one value per budget of [1, 2, 4]). */
function biasedRouter(bias: number[]): Router {
  const rt = createRouter({ budgets: [1, 2, 4], hidden: 8, seed: 0 }, { plannerWidth: SMALL.width, numBlocks: 4 });
  rt.params.w2.assign(tf.zerosLike(rt.params.w2));
  rt.params.b2.assign(tf.tensor1d(bias));
  return rt;
}

test('budget sets: powers of two, sorted, containing 1, at most the block count', () => {
  assert.deepEqual(checkBudgetSet(BUDGETS, 16), [1, 2, 4]);
  assert.deepEqual(checkBudgetSet([1], 1), [1]);
  assert.deepEqual(checkBudgetSet([1, 2, 4, 8, 16], 16), [1, 2, 4, 8, 16]);
  throwsOH(() => checkBudgetSet([3], 16), 'router.budgets', 'budget 3 is not a power of two');
  throwsOH(() => checkBudgetSet([1, 3], 16), 'not a power of two');
  throwsOH(() => checkBudgetSet([2, 4], 16), 'lacks 1');
  throwsOH(() => checkBudgetSet([1, 2, 32], 16), 'budget 32 exceeds the 16 blocks');
  throwsOH(() => checkBudgetSet([], 16), 'empty');
  throwsOH(() => checkBudgetSet([1, 2, 2, 4], 16), 'not strictly increasing', '2 repeats');
  throwsOH(() => checkBudgetSet([1, 4, 2], 16), 'not strictly increasing', '2 after 4');
  throwsOH(() => checkBudgetSet([0, 1], 16), 'budget 0');
  throwsOH(() => checkBudgetSet([1, 2.5], 16), 'budget 2.5');
  throwsOH(() => createRouter({ budgets: [1, 2, 8], hidden: 8, seed: 0 }, { plannerWidth: 16, numBlocks: 4 }), 'budget 8 exceeds the 4 blocks');
});

test('router target: the largest k whose planner top-k utility is within δ of the oracle top-k', () => {
  const B = [1, 2, 4];
  const N = NaN;
  // 8 blocks, 1 visible (index 7). Oracle ranking 0 > 1 > 2 > 3 > ...
  const u = [8, 7, 6, 5, 1, 1, 1, N], vis = [0, 0, 0, 0, 0, 0, 0, 1];
  // Planner agrees with the oracle on the top 4: every budget qualifies.
  assert.equal(routerTarget(u, [0.3, 0.25, 0.2, 0.15, 0.04, 0.03, 0.03, 0], vis, B, 0.1), 4);
  // Planner's top-2 is {0, 1} but its 3rd/4th are blocks 4, 5 (u = 1): top-4 sum 17 vs 26 -> fails; top-2 agrees -> 2.
  assert.equal(routerTarget(u, [0.3, 0.25, 0.02, 0.02, 0.2, 0.15, 0.06, 0], vis, B, 0.1), 2);
  // Planner's top-1 is block 1 (7 vs 8: loses 12.5% > δ = 10%), top-2 = {1, 0} = the oracle's: 2 qualifies.
  assert.equal(routerTarget(u, [0.25, 0.3, 0.02, 0.02, 0.2, 0.15, 0.06, 0], vis, B, 0.1), 2);
  // ... and with δ = 0.2 top-1 qualifies too, but the largest qualifying k still wins.
  assert.equal(routerTarget(u, [0.25, 0.3, 0.02, 0.02, 0.2, 0.15, 0.06, 0], vis, B, 0.2), 2);
  // Planner's top-1 is a poor block and top-2 {4, 0} = 9 vs 15: nothing qualifies -> 1.
  assert.equal(routerTarget(u, [0.3, 0.02, 0.02, 0.02, 0.4, 0.12, 0.12, 0], vis, B, 0.1), 1);
  // Within δ on top-1 (7.5 vs 8 = -6%) counts as agreement.
  assert.equal(routerTarget([8, 7.5, 0, 0, N, N, N, N], [0.2, 0.7, 0.05, 0.05, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1], [1, 2], 0.1), 2);
  assert.equal(routerTarget([8, 7.5, 0, 0, N, N, N, N], [0.2, 0.7, 0.05, 0.05, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1], [1], 0.1), 1);
  assert.equal(routerTarget([8, 7, 0.5, 0, N, N, N, N], [0.05, 0.7, 0.2, 0.05, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1], [1, 2], 0.1), 1);
  // Budgets above |R| are never targets: |R| = 3 -> at most 2; |R| = 1 -> 1.
  assert.equal(routerTarget([3, 2, 1, N], [0.5, 0.3, 0.2, 0], [0, 0, 0, 1], B, 0.1), 2);
  assert.equal(routerTarget([N, N, 1, N], [0, 0, 1, 0], [1, 1, 0, 1], B, 0.1), 1);
  // Negative utilities: the gap is measured against |oracle sum|; at k = |R| the sets coincide.
  assert.equal(routerTarget([-1, -2, N, N], [0.1, 0.9, 0, 0], [0, 0, 1, 1], B, 0.1), 2);
  throwsOH(() => routerTarget([1, N, 2, N], [0.5, 0, 0.5, 0], [0, 0, 0, 1], B, 0.1), 'utility of unseen block 1');
});

test('router masking: never more blocks than remain (|R| = 1, 3 with [1, 2, 4]); leak-free', async () => {
  await useWasm();
  const rt = biasedRouter([0, 50, 100]); // prefers 4, then 2
  const x = tf.zeros([5, rt.shape.inputDim]) as tf.Tensor2D;
  const before = tf.memory().numTensors;
  const logits = routerForward(rt, x, [1, 2, 3, 4, 16]);
  assert.deepEqual(chooseBudgets(rt, logits), [1, 2, 2, 4, 4]);
  const p = tf.tidy(() => tf.softmax(logits).arraySync() as number[][]);
  assert.equal(p[0][1], 0); assert.equal(p[0][2], 0); assert.equal(p[2][2], 0);
  logits.dispose();
  assert.equal(tf.memory().numTensors, before);
  throwsOH(() => routerForward(rt, x, [0, 1, 1, 1, 1]), '0 blocks left');
  x.dispose();
  disposeRouter(rt);
});

/** A policy state with `visible` blocks revealed (tokens of those blocks from `grid`). */
function policyState(index: number, visible: number[], grid: Int32Array, classId = 0): PolicyState {
  const tokens = new Int32Array(16).fill(-1);
  for (const b of visible) for (const c of blockCells(GEO, b)) tokens[c] = grid[c];
  return { ...stateFromSequence(GEO, visible), index, tokens, classId };
}

test('budget policy: the router\'s k is capped by |R|, queued blocks are served without replanning, calls are counted', async () => {
  const m = await backbone();
  const pl = createPlanner(SMALL, SHAPE);
  const rt = biasedRouter([0, 50, 100]);
  const policy = budgetPolicy(pl, rt, m, GEO);
  const r = rng(3), grid = Int32Array.from({ length: 16 }, () => r.int(CFG.vocabSize));
  // Sample 0 starts with 1 block visible (|R| = 3 -> k = 2), sample 1 with 3 visible (|R| = 1 -> k = 1).
  let s0 = policyState(0, [2], grid), s1 = policyState(1, [0, 1, 3], grid);
  const first = await policy.nextBlocks([s0, s1]);
  assert.deepEqual(policy.budgetsChosen(), [[2], [1]]);
  assert.deepEqual(policy.plannerCalls(), [1, 1]);
  assert.equal(first[1], 2);
  // The planner's 2nd choice was queued: served with no new call.
  s0 = policyState(0, [2, first[0]], grid);
  const second = await policy.nextBlocks([s0]);
  assert.deepEqual(policy.plannerCalls(), [1, 1]);
  assert.notEqual(second[0], first[0]);
  // Then |R| = 1: a new call with k = 1.
  s0 = policyState(0, [2, first[0], second[0]], grid);
  await policy.nextBlocks([s0]);
  assert.deepEqual(policy.plannerCalls(), [2, 1]);
  assert.deepEqual(policy.budgetsChosen()[0], [2, 1]);
  // The queued order is the planner's ranking: with k = 4 on the empty state, the rollout is its probability order.
  const f = plannerFeatures(m, GEO, [{ tokens: grid, classId: 0, visible: [] }]);
  const probs = Array.from(plannerProbs(pl, f));
  const ranking = [0, 1, 2, 3].sort((a, b) => probs[b] - probs[a] || a - b);
  const k4 = fixedBudgetPolicy(pl, m, GEO, 4);
  const orders = await rollOutOrder(k4, GEO, 1, { tokens: [grid], classIds: [0] });
  assert.deepEqual(orders[0], ranking);
  throwsOH(() => fixedBudgetPolicy(pl, m, GEO, 5), 'k = 5');
  void s1;
  disposeRouter(rt);
  disposePlanner(pl);
});

test('budget policies with the rollout, the exact NLL and the sampler: valid permutations, exact call counts, no leaks', async () => {
  const m = await backbone();
  const pl: Planner = createPlanner({ ...SMALL, latentSteps: 1 }, SHAPE);
  const r = rng(7);
  const N = 5, grids = Int32Array.from({ length: N * 16 }, () => r.int(CFG.vocabSize)), classes = Int32Array.from({ length: N }, () => r.int(CFG.numClasses));
  const opts = { tokens: Array.from({ length: N }, (_, i) => grids.subarray(i * 16, (i + 1) * 16)), classIds: Array.from(classes) };
  for (const [k, calls] of [[4, 1], [2, 2], [1, 4], [3, 2]] as const) {
    const policy = fixedBudgetPolicy(pl, m, GEO, k);
    const orders = await rollOutOrder(policy, GEO, N, opts);
    orders.forEach((o) => validateBlockOrder(GEO, o, `k=${k} order`));
    assert.deepEqual(policy.plannerCalls(), new Array(N).fill(calls), `k = ${k}`);
    // A second rollout with the same policy starts its counts afresh.
    const before = tf.memory().numTensors;
    const res = await nllUnderPolicy(m, grids, classes, policy, GEO);
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(res.blockOrders, orders);
    assert.deepEqual(policy.plannerCalls(), new Array(N).fill(calls));
  }
  const rt = biasedRouter([100, 50, 0]); // prefers 1: replans at every block
  const routed = budgetPolicy(pl, rt, m, GEO);
  const before = tf.memory().numTensors;
  const sample = await sampleImages(m, { classes, policy: routed, geometry: GEO, seed: 1 });
  assert.equal(tf.memory().numTensors, before);
  sample.blockOrders.forEach((o) => validateBlockOrder(GEO, o, 'sampled order'));
  assert.deepEqual(routed.plannerCalls(), new Array(N).fill(4));
  const rt4 = biasedRouter([0, 50, 100]);
  const routed4 = budgetPolicy(pl, rt4, m, GEO);
  const s4 = await sampleImages(m, { classes, policy: routed4, geometry: GEO, seed: 1 });
  s4.blockOrders.forEach((o) => validateBlockOrder(GEO, o, 'sampled order'));
  assert.deepEqual(routed4.plannerCalls(), new Array(N).fill(1));
  throwsOH(() => budgetPolicy(pl, createRouter({ budgets: [1, 2], hidden: 8, seed: 0 }, { plannerWidth: 32, numBlocks: 4 }), m, GEO), 'width-32 planner');
  disposeRouter(rt); disposeRouter(rt4);
  disposePlanner(pl);
});

test('router training: leak-free steps, targets counted, resume equals an uninterrupted run, best reloads', async () => {
  const m = await backbone();
  const pl = createPlanner(SMALL, SHAPE);
  const data = syntheticPlannerData(m, 96);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-router-'));
  try {
    const cfg = routerTrainConfig('smoke', { steps: 12, batch: 16, evalEvery: 4, heldOutEvery: 4, router: { budgets: [1, 2, 4], hidden: 16, seed: 0 } });
    const counts: number[] = [], losses: number[] = [];
    const full = trainRouter(root, 'full', cfg, data, pl, { onStep: (_s, mt) => { counts.push(tf.memory().numTensors); losses.push(mt.loss); } });
    assert.equal(new Set(counts).size, 1, `tensor count flat over steps: ${counts}`);
    assert.ok(losses.every(Number.isFinite));
    const nTrain = Object.values(full.targetCounts.train).reduce((a, b) => a + b, 0);
    assert.equal(nTrain, 48); // 24 images, image % 4 in {0, 1} -> 12 training images x 4 states
    // |R| = 1 states (size 3) can only have target 1; states with |R| = 2 or 3 never target 4.
    assert.ok(full.targetCounts.train[4] <= 12, `only the 12 |R| = 4 training states can target 4: ${JSON.stringify(full.targetCounts)}`);
    disposeRouter(trainRouter(root, 'split', cfg, data, pl, { maxSteps: 4 }).router);
    const resumed = trainRouter(root, 'split', cfg, data, pl);
    for (const [k, v] of Object.entries(full.router.params)) assert.deepEqual(Array.from(resumed.router.params[k].dataSync()), Array.from(v.dataSync()), `weight ${k}`);
    const again = loadRouter(full.bestPath, { shape: { plannerWidth: SMALL.width, numBlocks: 4 } });
    assert.deepEqual(Array.from(again.stats.std.dataSync()), Array.from(full.router.stats.std.dataSync()));
    throwsOH(() => loadRouter(full.bestPath, { shape: { plannerWidth: 64 } }), 'plannerWidth');
    throwsOH(() => trainRouter(root, 'bad', { ...cfg, router: { ...cfg.router, budgets: [2, 4] } }, data, pl), 'lacks 1');
    assert.equal(fs.existsSync(path.join(root, 'bad')), false);
    for (const x of [full.router, resumed.router, again]) disposeRouter(x);
  } finally {
    disposePlanner(pl);
    fs.rmSync(root, { recursive: true, force: true });
  }
});

// ---- bad input ----
// What a user (or a crash) can get wrong here. Each test asserts an
// OrderHeadError naming the file or config field with a fix (expectOH /
// rejectsOH), and that the temp folder is byte-identical afterwards, nothing
// added (untouched); both in tests/helpers.ts.
import { describe } from 'node:test';
import { expectOH, sandbox, untouched } from '../../helpers';
import { routerJob } from '../../fixtures/planner-jobs';

describe('bad input', () => {
  test('an invalid budget set (no 1, not powers of two, above the block count, unsorted, empty) names router.budgets, before a run folder', async () => {
    await useWasm();
    const root = sandbox();
    const { cfg, data, planner } = routerJob(6);
    const before = tf.memory().numTensors;
    await untouched(root, () => {
      for (const [budgets, msg] of [
        [[2, 4], 'lacks 1'], [[1, 3], 'budget 3 is not a power of two'], [[1, 2, 8], 'budget 8 exceeds the 4 blocks'],
        [[1, 4, 2], 'not strictly increasing'], [[], 'the budget set is empty'],
      ] as const) {
        expectOH(() => trainRouter(root, 'router', { ...cfg, router: { ...cfg.router, budgets: [...budgets] } }, data, planner), 'router.budgets', msg,
          'powers of two starting at 1, at most 4', '[1, 2, 4]');
      }
      expectOH(() => createRouter({ budgets: [1, 2, 3], hidden: 8, seed: 0 }, { plannerWidth: 16, numBlocks: 4 }), 'router.budgets', 'budget 3');
    });
    assert.equal(tf.memory().numTensors, before, 'a refused router run leaked tensors');
    disposePlanner(planner);
  });
});
