/**
 * Planner decoding on the KV cache (lib/backbone/decoding-context.ts,
 * contextFeatures in lib/planner/features.ts): at every planning step of a
 * planner-driven sample and of exact NLL under a planner, the features read
 * from the decoder's cache equal plannerFeatures on the full prefix.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useWasm } from '../../helpers';
import { gptConfig } from '../../../lib/backbone/config';
import { createGPT, disposeGPT, GPT } from '../../../lib/backbone/gpt';
import { nllUnderPolicy } from '../../../lib/backbone/nll';
import { sampleImages } from '../../../lib/backbone/sampler';
import { BlockGeometry, blockGeometry, OrderPolicy, PolicyState } from '../../../lib/order';
import { rng } from '../../../lib/runtime/seed';
import { createPlanner, disposePlanner, entropyPolicy, featureItems, plannerFeatures, plannerPolicy, policyFeatures, PLANNER_DEFAULTS, PlannerFeatures } from '../../../lib/planner';
import { fixedBudgetPolicy } from '../../../lib/planner/budget';
import { offsetPolicy } from '../../../lib/eval/evaluate';

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => { let m = 0; for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i])); return m; };

/** Wraps a context-reading policy: at every call, the cached features against the full pass; counts the calls that used the cache. */
function checking(inner: OrderPolicy, m: GPT, geo: BlockGeometry, log: { calls: number; cached: number; worst: number }): OrderPolicy {
  return {
    name: inner.name, contextOf: m,
    nextBlocks(states: readonly PolicyState[]) {
      log.calls++;
      if (states[0].sequence.length > 0) {
        assert.ok(states.every((s) => s.context !== undefined), 'the decoder filled no context');
        const cached: PlannerFeatures = policyFeatures(m, geo, states, inner.name);
        const full = plannerFeatures(m, geo, featureItems(states, inner.name));
        for (const k of ['hidden', 'entropy'] as const) {
          const d = maxAbs(cached[k], full[k]);
          log.worst = Math.max(log.worst, d);
          assert.ok(d <= 1e-4, `step ${states[0].sequence.length}: ${k} differs by ${d}`);
        }
        assert.deepEqual(cached.visible, full.visible);
        log.cached++;
      }
      return inner.nextBlocks(states);
    },
  };
}

for (const world of [
  { name: '4x4 tokens, 2x2 blocks (4 blocks)', model: gptConfig('tiny', { initStd: 0.5 }), block: 2 },
  { name: '8x8 tokens, 2x2 blocks (16 blocks)', model: gptConfig('tiny', { gridH: 8, gridW: 8, initStd: 0.5 }), block: 2 },
]) {
  test(`${world.name}: cached planner features equal the full pass at every step of sampling (with CFG) and of exact NLL; nothing leaks`, async () => {
    await useWasm();
    const m = createGPT(world.model, 5);
    const geo = blockGeometry({ gridH: world.model.gridH, gridW: world.model.gridW, blockH: world.block, blockW: world.block });
    const pl = createPlanner({ ...PLANNER_DEFAULTS, width: 16, heads: 2, ff: 32, latentSteps: 1 },
      { numBlocks: geo.numBlocks, blocksY: geo.blocksY, blocksX: geo.blocksX, backboneDim: world.model.dModel, numClasses: world.model.numClasses });
    const N = 6, r = rng(3), T = geo.numTokens;
    const classes = Int32Array.from({ length: N }, (_, i) => i % world.model.numClasses);
    const grids = Int32Array.from({ length: N * T }, () => r.int(world.model.vocabSize));
    for (const policy of [plannerPolicy(pl, m, geo), entropyPolicy(m, geo), fixedBudgetPolicy(pl, m, geo, 2)]) {
      const before = tf.memory().numTensors;
      const log = { calls: 0, cached: 0, worst: 0 };
      const wrapped = checking(policy, m, geo, log);
      const res = await sampleImages(m, { classes, policy: wrapped, geometry: geo, cfgScale: 2, seed: 1 });
      assert.equal(log.cached, geo.numBlocks - 1, `${policy.name}: sampling planned from the cache at ${log.cached} of ${geo.numBlocks - 1} steps`);
      const nll = await nllUnderPolicy(m, grids, classes, checking(policy, m, geo, log), geo);
      assert.equal(log.cached, 2 * (geo.numBlocks - 1));
      assert.ok(Number.isFinite(nll.bitsPerToken));
      assert.equal(tf.memory().numTensors, before, `${policy.name}: tensors leaked`);
      assert.equal(res.blockOrders.length, N);
    }
    disposePlanner(pl);
    disposeGPT(m);
  });
}

test('a policy reading another backbone than the decoder\'s gets a second cache of that backbone: the full pass\'s features and choices, with and without CFG; nothing leaks', async () => {
  await useWasm();
  const cfg = gptConfig('tiny', { gridH: 8, gridW: 8, initStd: 0.5 });
  const geo = blockGeometry({ gridH: 8, gridW: 8, blockH: 2, blockW: 2 });
  const a = createGPT(cfg, 5), b = createGPT(cfg, 6);
  const classes = Int32Array.from([0, 1, 2]);
  const inner = entropyPolicy(b, geo);
  for (const cfgScale of [1, 2]) {
    const before = tf.memory().numTensors;
    const log = { calls: 0, cached: 0, worst: 0 };
    const fed = await sampleImages(a, { classes, policy: checking(inner, b, geo, log), geometry: geo, seed: 2, cfgScale });
    assert.equal(log.cached, geo.numBlocks - 1, 'every planning step after the first read the fed cache');
    const reference = await sampleImages(a, { classes, policy: { name: 'plain', nextBlocks: (s) => inner.nextBlocks(s.map((x) => ({ ...x, context: undefined }))) }, geometry: geo, seed: 2, cfgScale });
    assert.deepEqual(fed.blockOrders, reference.blockOrders);
    assert.deepEqual(fed.tokens, reference.tokens);
    assert.equal(tf.memory().numTensors, before, 'tensors leaked');
  }
  disposeGPT(a); disposeGPT(b);
});

test('the evaluation\'s later sampling batches (offsetPolicy) keep what the policy reads: the decoder hands over its cache, indices are shifted, the fingerprint stays', async () => {
  await useWasm();
  const model = gptConfig('tiny', { gridH: 8, gridW: 8, initStd: 0.5 });
  const m = createGPT(model, 5);
  const geo = blockGeometry({ gridH: 8, gridW: 8, blockH: 2, blockW: 2 });
  const log = { calls: 0, cached: 0, worst: 0 };
  const seen: number[] = [];
  const inner = checking(entropyPolicy(m, geo), m, geo, log);
  const spy: OrderPolicy = { name: inner.name, contextOf: inner.contextOf, fingerprint: 'spy 1',
    nextBlocks: (states) => { if (states[0].sequence.length === 0) seen.push(...states.map((s) => s.index)); return inner.nextBlocks(states); } };
  const shifted = offsetPolicy(spy, 4);
  assert.equal(shifted.contextOf, m);
  assert.equal(shifted.fingerprint, 'spy 1');
  await sampleImages(m, { classes: Int32Array.from([0, 1, 2]), policy: shifted, geometry: geo, seed: 2 });
  assert.deepEqual(seen, [4, 5, 6]);
  assert.equal(log.cached, geo.numBlocks - 1, 'every planning step after the first read the decoder\'s cache');
  disposeGPT(m);
});
