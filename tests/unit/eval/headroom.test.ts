/**
 * Headroom among orders (lib/eval/headroom.ts, METHOD.md §7.5) and the
 * oracle comparison's two targets (lib/eval/trajectory.ts) on a tiny random
 * backbone: the entropy-first policies read visible tokens only and make
 * permutations, lowest and highest are reverses where the entropies do not
 * move; the greedy oracle bound is greedy on L_rest at every step of its own
 * path, so its first step is never beaten; the trajectory reports both
 * targets, each labelled; the cache keys follow the policy; the headroom
 * table and findings; bad input; no tensor leaks.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { expectOH, rejectsOH, sandbox, useWasm } from '../../helpers';
import { gptConfig } from '../../../lib/backbone/config';
import { createGPT, disposeGPT, GPT } from '../../../lib/backbone/gpt';
import { nllInBlockOrders, rollOutOnGroundTruth } from '../../../lib/backbone/nll';
import { blockCells, blockGeometry, BlockGeometry, PolicyState, randomPolicy, rasterPolicy, rollOutOrder } from '../../../lib/order';
import { scoreRestLoss, scoreStates } from '../../../lib/oracle/utility';
import { PRIMARY_WEIGHT } from '../../../lib/oracle/weights';
import { baselineScores, entropyFirstPolicy, entropyFirstScores, entropyOrderPolicy } from '../../../lib/planner/baselines';
import { evalCacheIdentity } from '../../../lib/eval/cache';
import { evalConfig, EvalConfig } from '../../../lib/eval/config';
import { evaluateSettings } from '../../../lib/eval/evaluate-settings';
import { evaluationFindings } from '../../../lib/eval/findings';
import {
  GREEDY_ORACLE_BOUND, greedyOracleBound, greedyOracleBoundCached, HEADROOM_COLUMNS, headroomFindings, headroomTable,
} from '../../../lib/eval/headroom';
import { blockRarRandomSetting, blockRarRasterSetting, entropyFirstSetting, EvalSetting, missingSetting } from '../../../lib/eval/settings';
import { oracleComparisonTable, tableCsv, tableMarkdown } from '../../../lib/eval/tables';
import {
  oraclePolicy, plannerTrainedTarget, TrajectoryConfig, TrajectoryData, trajectoryMetrics,
} from '../../../lib/eval/trajectory';
import { rng } from '../../../lib/runtime/seed';
import { evalWorld, EvalWorld, PJ_GEO } from '../../fixtures/planner-jobs';

const CFG = gptConfig('tiny', { initStd: 0.5 }); // 4x4 tokens, vocab 16, 3 classes
const GEO4 = blockGeometry({ gridH: 4, gridW: 4, blockH: 2, blockW: 2 }); // 4 blocks of 2x2
const GEO16 = blockGeometry({ gridH: 4, gridW: 4, blockH: 1, blockW: 1 }); // 16 blocks of one token
const T = 16;

let model: GPT | undefined;
let world: EvalWorld | undefined;
after(() => {
  if (model) disposeGPT(model);
  world?.dispose();
});
async function setup(): Promise<{ m: GPT; data: TrajectoryData }> {
  await useWasm();
  model ??= createGPT(CFG, 17);
  const r = rng('headroom-test');
  const n = 6;
  return { m: model, data: { tokens: Int32Array.from({ length: n * T }, () => r.int(16)), labels: Int32Array.from({ length: n }, (_, i) => i % 3) } };
}

const isPermutation = (order: number[], nb: number) => [...order].sort((a, b) => a - b).every((b, i) => b === i) && order.length === nb;

for (const [label, geo] of [['4 blocks of 2x2', GEO4], ['16 blocks of one token', GEO16]] as [string, BlockGeometry][]) {
  test(`entropy first (${label}): permutations, from visible tokens only (changing an unseen block changes nothing before it is revealed); no leaks`, async () => {
    const { m, data } = await setup();
    const before = tf.memory().numTensors;
    for (const first of ['lowest', 'highest'] as const) {
      const policy = entropyFirstPolicy(m, geo, first);
      const orders = await rollOutOnGroundTruth(m, data.tokens, data.labels, policy, geo);
      for (const o of orders) assert.ok(isPermutation(o, geo.numBlocks), `${first}: ${o}`);
      // Change every token of one block of image 0 (the block revealed last, then one revealed mid-way): the order up to
      // and including that block's step is the same, since the policy only reads visible tokens.
      for (const pos of [geo.numBlocks - 1, Math.floor(geo.numBlocks / 2)]) {
        const k = orders[0][pos];
        const changed = data.tokens.slice(0, T);
        for (const c of blockCells(geo, k)) changed[c] = (changed[c] + 7) % 16;
        const [again] = await rollOutOnGroundTruth(m, changed, data.labels.subarray(0, 1), policy, geo);
        assert.deepEqual(again.slice(0, pos + 1), orders[0].slice(0, pos + 1), `${first}: block ${k} changed, revealed at step ${pos}`);
      }
      // The same choice with garbage in the unseen cells of the state (what a leak would read), without a decoder's cache.
      const order = orders[1], t = Math.floor(geo.numBlocks / 2), visible = new Uint8Array(geo.numBlocks);
      for (const b of order.slice(0, t)) visible[b] = 1;
      const truth = data.tokens.slice(T, 2 * T);
      const state = (tokens: Int32Array): PolicyState => ({ geo, visible, sequence: order.slice(0, t), index: 0, tokens, classId: data.labels[1] });
      const cells = order.slice(0, t).flatMap((b) => blockCells(geo, b));
      const masked = Int32Array.from(truth, (v, c) => (cells.includes(c) ? v : -1));
      const garbage = Int32Array.from(truth, (v, c) => (cells.includes(c) ? v : (v + 5) % 16));
      const a = policy.nextBlocks([state(masked)]) as number[], b = policy.nextBlocks([state(garbage)]) as number[];
      assert.deepEqual(a, b, `${first}: the next block must not depend on unseen tokens`);
      assert.equal(a[0], order[t], `${first}: the rollout's choice at step ${t}`);
    }
    assert.equal(tf.memory().numTensors, before, 'entropy-first rollouts leaked tensors');
  });
}

test('entropy first: the entropy baseline\'s scores, negated for lowest; lowest and highest are reverses where entropies do not move with the state', () => {
  const entropy = Float32Array.from([0.3, 2.5, 1.1, 0.7, 1.9, 0.2, 3.1, 1.4, 0.9, 2.2, 0.5, 1.7, 2.8, 0.1, 1.2, 2.0]);
  const visible = new Uint8Array(16);
  visible[3] = 1;
  const opts = { geo: GEO16, visible, n: 1, entropy };
  const high = entropyFirstScores('highest', opts), low = entropyFirstScores('lowest', opts);
  assert.deepEqual(Array.from(high), Array.from(baselineScores('entropy', opts)));
  for (let b = 0; b < 16; b++) assert.ok(b === 3 ? Number.isNaN(low[b]) : low[b] === -high[b]);
  // A constructed case: each block's entropy is fixed, whatever is visible.
  const fixed = (states: readonly PolicyState[]) => {
    const out = new Float32Array(states.length * 16);
    states.forEach((_, i) => out.set(entropy, i * 16));
    return out;
  };
  return Promise.all(['lowest', 'highest'].map((f) => rollOutOrder(entropyOrderPolicy(GEO16, f as 'lowest' | 'highest', fixed), GEO16, 2))).then(([lo, hi]) => {
    const ascending = Array.from(entropy.keys()).sort((a, b) => entropy[a] - entropy[b]);
    assert.deepEqual(lo[0], ascending, 'lowest entropy first: ascending entropy');
    assert.deepEqual(hi[0], [...lo[0]].reverse(), 'highest entropy first is the reverse');
    assert.deepEqual(lo[1], lo[0]);
    expectOH(() => entropyOrderPolicy(GEO16, 'middle' as 'lowest', fixed), 'entropyOrderPolicy(first)', 'lowest, highest');
  });
});

const trajectory = (over: Partial<TrajectoryConfig> = {}): Partial<TrajectoryConfig> => ({ images: 5, oracleImages: 3, bootstrapReps: 50, ...over });

function boundConfig(over: Partial<TrajectoryConfig> = {}): EvalConfig {
  return evalConfig('smoke', { nllImages: 6, trajectory: trajectory(over) });
}

test('the greedy oracle bound: greedy on L_rest at every step of its own path, so no order beats its first step; its NLL is the teacher-forced NLL in its orders; no leaks', async () => {
  const { m, data } = await setup();
  const before = tf.memory().numTensors;
  const cfg = boundConfig({ oracleImages: 0 });
  const bound = await greedyOracleBound(m, GEO4, data, cfg);
  assert.equal(bound.kind, 'oracle bound');
  assert.equal(bound.name, GREEDY_ORACLE_BOUND);
  assert.match(bound.name, /bound.*not a generator/);
  assert.equal(bound.target, 'argmax u');
  const n = bound.images, nb = GEO4.numBlocks;
  const grids = Array.from({ length: n }, (_, i) => data.tokens.subarray(i * T, (i + 1) * T));
  // At every step of its own path, the block it reveals leaves the least remaining loss of all unseen blocks.
  bound.trajectory.blockOrders.forEach((order, i) => {
    assert.ok(isPermutation(order, nb));
    for (let t = 0; t < nb - 1; t++) {
      const rest = order.slice(t);
      const after = scoreRestLoss(m, GEO4, rest.map((a) => ({ tokens: grids[i], classId: data.labels[i], visible: [...order.slice(0, t), a] })), { reading: 'block-marginal' });
      const mine = after[0];
      for (const l of after) assert.ok(mine <= l + 1e-4 * Math.max(1, Math.abs(l)), `image ${i} step ${t}: L_rest after its block ${mine} > ${l}`);
    }
  });
  // Every other policy on the same backbone and images: its L_rest(S_1) is never below the bound's; the area is compared, not asserted.
  const others = [rasterPolicy(GEO4), randomPolicy(GEO4, 3), entropyFirstPolicy(m, GEO4, 'lowest'), entropyFirstPolicy(m, GEO4, 'highest')];
  for (const p of others) {
    const r = await trajectoryMetrics(m, GEO4, p, data, cfg.trajectory);
    for (let i = 0; i < n; i++) {
      const mine = bound.trajectory.restLossPerImage[i * nb + 1], theirs = r.restLossPerImage[i * nb + 1];
      assert.ok(mine <= theirs + 1e-4 * Math.max(1, Math.abs(theirs)), `${p.name} image ${i}: L_rest(S_1) ${theirs} below the bound's ${mine}`);
      assert.equal(r.restLossPerImage[i * nb], bound.trajectory.restLossPerImage[i * nb], 'L_rest(∅) does not depend on the order');
      // The area's first two terms, L_rest(∅)/2 + L_rest(S_1), are the bound's or more.
      const head = (x: Float64Array) => x[i * nb] / 2 + x[i * nb + 1];
      assert.ok(head(bound.trajectory.restLossPerImage) <= head(r.restLossPerImage) + 1e-4 * Math.max(1, head(r.restLossPerImage)));
    }
  }
  // Its NLL: exactly the teacher-forced NLL of the same images in its orders.
  const direct = nllInBlockOrders(m, data.tokens.subarray(0, n * T), data.labels.subarray(0, n), bound.trajectory.blockOrders, GEO4);
  assert.equal(bound.nll.bitsPerToken, direct.bitsPerToken);
  assert.deepEqual(Array.from(bound.nll.perImageBits), Array.from(direct.perImage, (v) => v / T / Math.LN2));
  // The other target: argmax u_extrap under the trained weight, labelled so.
  const trained = await greedyOracleBound(m, GEO4, data, cfg, { target: 'trained' });
  assert.ok(trained.targetLabel.includes(`argmax u_extrap, ${PRIMARY_WEIGHT} weight (trained target)`), trained.targetLabel);
  const first = scoreStates(m, GEO4, [{ tokens: grids[0], classId: data.labels[0], visible: [] }], { reading: 'block-marginal', weight: PRIMARY_WEIGHT })[0];
  assert.equal(trained.trajectory.blockOrders[0][0], first.aStarExtrap);
  assert.equal(bound.trajectory.blockOrders[0][0], first.aStar);
  assert.equal(tf.memory().numTensors, before, 'the bound leaked tensors');
});

test('the bound is cached by its inputs: read back bit for bit; another target or backbone is computed anew', async () => {
  const { m, data } = await setup();
  const dir = sandbox();
  const cfg = boundConfig({ oracleImages: 0, images: 3 });
  const a = await greedyOracleBoundCached(m, GEO4, data, cfg, dir);
  const b = await greedyOracleBoundCached(m, GEO4, data, cfg, dir);
  assert.deepEqual([a.source, b.source], ['computed', 'cached']);
  assert.deepEqual({ ...b.bound, seconds: 0 }, { ...a.bound, seconds: 0 });
  const c = await greedyOracleBoundCached(m, GEO4, data, cfg, dir, { target: 'trained' });
  assert.equal(c.source, 'computed');
  const other = createGPT(CFG, 18);
  try {
    assert.equal((await greedyOracleBoundCached(other, GEO4, data, cfg, dir)).source, 'computed');
  } finally {
    disposeGPT(other);
  }
  assert.equal(fs.readdirSync(dir).filter((f) => f.startsWith('greedy-oracle-bound-')).length, 3);
});

test('the trajectory reports both targets, each labelled: the trained target (argmax u_extrap, its weight) and argmax u', async () => {
  const { m, data } = await setup();
  // The trained target's weight differs from the far-context weight: the two are scored separately.
  const cfg = trajectory({ weight: 'no-neighbours', trainedTarget: { label: 'u_extrap', weight: 'uniform' } });
  const res = await trajectoryMetrics(m, GEO4, rasterPolicy(GEO4), data, cfg);
  const c = res.oracle!;
  assert.deepEqual(c.trainedTarget, { label: 'u_extrap', weight: 'uniform' });
  assert.deepEqual(c.targetLabels, { trained: 'argmax u_extrap, uniform weight (trained target)', 'argmax u': 'argmax u' });
  // Per step: agreement and regret against each target equal direct scoreStates numbers.
  for (const s of c.perStep) {
    let agreeU = 0, agreeT = 0, regretT = 0;
    for (let i = 0; i < 3; i++) {
      const order = res.blockOrders[i], a = order[s.step];
      const item = { tokens: data.tokens.subarray(i * T, (i + 1) * T), classId: data.labels[i], visible: order.slice(0, s.step) };
      const far = scoreStates(m, GEO4, [item], { reading: 'block-marginal', weight: 'no-neighbours' })[0];
      const uni = scoreStates(m, GEO4, [item], { reading: 'block-marginal', weight: 'uniform' })[0];
      agreeU += a === far.aStar ? 1 / 3 : 0;
      agreeT += a === uni.aStarExtrap ? 1 / 3 : 0;
      regretT += (uni.uExtrap[uni.aStarExtrap] - uni.uExtrap[a]) / 3;
    }
    assert.ok(Math.abs(s.agreementU - agreeU) < 1e-9 && Math.abs(s.agreementTrained - agreeT) < 1e-9, `step ${s.step}`);
    assert.ok(Math.abs(s.oracleTrained - s.realizedTrained - regretT) < 1e-4, `step ${s.step}: trained regret`);
  }
  // The greedy oracle on the trained target: no regret and full agreement against it.
  const greedy = await trajectoryMetrics(m, GEO4, oraclePolicy(m, GEO4, data, { reading: 'block-marginal', weight: 'uniform', label: 'u_extrap' }), data, cfg);
  assert.deepEqual(Array.from(greedy.oracle!.perImage.regretTrained), [0, 0, 0]);
  assert.equal(greedy.oracle!.totals.agreementTrained.mean, 1);
  // The table: both targets' columns, labelled in header, CSV key and caption.
  const table = oracleComparisonTable([{ name: 'raster', trajectory: res } as never, { name: 'greedy', trajectory: greedy } as never]);
  const keys = table.columns.map((x) => x.key);
  for (const k of ['regretTrained', 'agreementTrained', 'regretU', 'agreementU']) assert.ok(keys.includes(k), k);
  const md = tableMarkdown(table);
  for (const h of ['Regret vs trained target', 'Top-1 vs trained target', 'Regret vs argmax u', 'Top-1 vs argmax u']) assert.ok(md.includes(h), h);
  assert.match(table.caption, /"vs trained target" = the planner's trained target, argmax u_extrap, uniform weight/);
  assert.match(table.caption, /"vs argmax u" = argmax u/);
  assert.match(tableCsv(table).split('\r\n')[0], /regretTrained_mean,.*agreementTrained_mean,.*regretU_mean,.*agreementU_mean/);
  // The findings name both targets.
  const text = evaluationFindings([{ name: 'raster', metrics: {}, trajectory: res } as never], 'smoke', 'test');
  assert.match(text, /against the planner's trained target \(argmax u_extrap, uniform weight \(trained target\)/);
  assert.match(text, /against argmax u \(the block that removes the most remaining loss/);
});

test('the trained target comes from the oracle dataset\'s primary labelling and the primary Stage 3 run', () => {
  assert.deepEqual(plannerTrainedTarget({ weight: 'distance' }), { label: 'u_extrap', weight: 'distance' });
  assert.deepEqual(evalConfig('smoke').trajectory.trainedTarget, plannerTrainedTarget());
  expectOH(() => plannerTrainedTarget({ weight: 'far' as 'uniform' }), 'labelings.primary.weight', "unknown value 'far'");
  expectOH(() => evalConfig('smoke', { trajectory: { trainedTarget: { label: 'u_extrap', weight: 'nearby' as 'uniform' } } }), 'eval.trajectory.trainedTarget.weight');
  expectOH(() => evalConfig('smoke', { trajectory: { trainedTarget: { label: 'u_far' as 'u', weight: 'uniform' } } }), 'eval.trajectory.trainedTarget.label', 'u, u_extrap');
});

test('bad input: a bound without a backbone or test images, an unknown target, no trajectory images, too few NLL images', async () => {
  const { m, data } = await setup();
  const cfg = boundConfig({ oracleImages: 0 });
  await rejectsOH(() => greedyOracleBound(undefined, GEO4, data, cfg), 'headroom.backbone', 'no backbone given');
  await rejectsOH(() => greedyOracleBound(m, GEO4, undefined, cfg), 'headroom.data', 'reads each true image');
  await rejectsOH(() => greedyOracleBound(m, GEO4, data, cfg, { target: 'argmax v' as 'argmax u' }), 'headroom.target', "unknown value 'argmax v'", 'trained, argmax u');
  await rejectsOH(() => greedyOracleBound(m, GEO4, data, { ...cfg, trajectory: { ...cfg.trajectory, images: 0 } }), 'eval.trajectory.images');
  await rejectsOH(() => greedyOracleBound(m, GEO4, data, { ...cfg, nllImages: 2 }), 'eval.nllImages', 'raise nllImages to at least 5');
  await rejectsOH(() => greedyOracleBoundCached(m, GEO4, data, cfg, sandbox(), { target: 'best' as 'argmax u' }), 'headroom.target');
});

test('evaluation: the entropy-first settings go through the normal evaluation; the headroom table and findings put the bound beside them; cache keys follow the policy', async () => {
  await useWasm();
  world ??= evalWorld();
  const w = world;
  const cfg: EvalConfig = { ...w.cfg, nllImages: 4, trajectory: { ...w.cfg.trajectory, images: 4, oracleImages: 1 } };
  const settings: EvalSetting[] = [
    blockRarRasterSetting(w.backbone, PJ_GEO), blockRarRandomSetting(w.backbone, PJ_GEO, 7),
    entropyFirstSetting(w.backbone, PJ_GEO, 'lowest'), entropyFirstSetting(w.backbone, PJ_GEO, 'highest'),
  ];
  // Cache keys: the same setting with another policy is another key.
  const key = (s: EvalSetting) => evalCacheIdentity(s, w.ctx, cfg, 'ctx').key;
  const low = settings[2];
  assert.notEqual(key(low), key({ ...low, policy: settings[3].policy }));
  assert.notEqual(key(low), key({ ...low, policy: rasterPolicy(PJ_GEO) }));
  assert.equal(key(low), key(entropyFirstSetting(w.backbone, PJ_GEO, 'lowest')));
  const before = tf.memory().numTensors;
  const outcomes = await evaluateSettings([...settings, missingSetting('OrderHead R=0', 'Stage 3 not run (test)')], w.ctx, cfg);
  const bound = await greedyOracleBound(w.backbone, PJ_GEO, { tokens: w.ctx.testTokens, labels: w.ctx.testLabels }, cfg);
  assert.equal(tf.memory().numTensors, before, 'evaluation and bound leaked tensors');
  for (const o of outcomes.slice(2, 4)) {
    assert.ok('metrics' in o && Number.isFinite(o.metrics.nllBits.mean) && Number.isFinite(o.metrics.fid.mean) && o.trajectory?.oracle, o.name);
  }
  const table = headroomTable(outcomes, bound);
  assert.deepEqual(table.columns.map((c) => c.key), HEADROOM_COLUMNS.map((c) => c.key));
  assert.deepEqual(table.rows.map((r) => r.name), [GREEDY_ORACLE_BOUND, 'block-RAR + raster order', 'block-RAR + random order',
    'block-RAR + lowest entropy first', 'block-RAR + highest entropy first', 'OrderHead R=0']);
  const [top, ref] = table.rows;
  assert.equal(top.values!.headroomShare!.mean, 1);
  assert.equal(ref.values!.headroomShare!.mean, 0);
  assert.equal(ref.values!.areaDiff, undefined);
  assert.equal(table.rows[5].missing, 'Stage 3 not run (test)');
  // The NLL column is on the bound's images: the settings' first 4 NLL images.
  const raster = outcomes[0] as { seeds: { perSample: { nllBits: Float64Array } }[] };
  const mean = (x: ArrayLike<number>) => Array.from(x).reduce((a, b) => a + b, 0) / x.length;
  assert.ok(Math.abs(ref.values!.nllBits!.mean - mean(raster.seeds[0].perSample.nllBits.subarray(0, 4))) < 1e-12);
  assert.ok(Math.abs(top.values!.nllBits!.mean - mean(bound.nll.perImageBits)) < 1e-12);
  assert.match(table.caption, /oracle bound, not a generator/);
  assert.match(table.caption, /never enters the headline/);
  // Without the bound, its row says why and the share column is empty.
  const none = headroomTable(outcomes, missingSetting(GREEDY_ORACLE_BOUND, 'kept-random run missing (test)'));
  assert.equal(none.rows[0].missing, 'kept-random run missing (test)');
  assert.equal(none.rows[1].values!.headroomShare, undefined);
  // Findings: the headroom lines with the bound; the headline never names it.
  const text = evaluationFindings(outcomes, 'smoke', 'test', bound);
  assert.match(text, /\*\*Headroom on the kept-random backbone\*\*/);
  assert.match(text, /block-RAR \+ lowest entropy first: Δ area .* share of the headroom/);
  assert.deepEqual(headroomFindings(outcomes, undefined), []);
  const headline = text.split('\n').filter((l) => /headline|raster baseline/i.test(l));
  assert.ok(headline.every((l) => !l.includes('greedy oracle')), headline.join('\n'));
});
