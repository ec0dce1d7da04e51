/**
 * The far-gain weights (METHOD.md §3.2; issue 26 item 1): the mean weights
 * remove the count prior (a corner and a centre block with equal gain per far
 * block get equal u_extrap), one set of backbone passes serves every weight of
 * a reading (scorer and dataset build), the label-position table against the
 * count prior on a synthetic dataset with known answers, and the refusals: an
 * unknown weight name, and a planner whose weight differs from its dataset's.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { expectOH, untouched, useWasm } from '../../helpers';
import { oracleWorld, tinyOracleConfig } from '../../fixtures/oracle-world';
import { gptConfig } from '../../../lib/backbone/config';
import { createGPT, disposeGPT } from '../../../lib/backbone/gpt';
import { loadBackboneWithInfo } from '../../../lib/backbone/stage1';
import { blockDistance, blockGeometry, BlockGeometry } from '../../../lib/order';
import { rng } from '../../../lib/runtime/seed';
import {
  blockWeight, buildOracleDataset, countPriorFigure, labelPositionSummary, labelPositionTable, loadOracleDataset, mergeOracleDataset,
  OracleDataset, oracleDatasetConfig, oracleItem, OracleItem, OracleLabelSet, OracleScorer, primaryLabelSet, PRIMARY_WEIGHT, Reading,
  READINGS, readOracleBuildLog, scoreStates, scoreStatesPerWeight, WeightName, WEIGHTS,
} from '../../../lib/oracle';
import { finalize, geoTables, makePlan, newLosses } from '../../../lib/oracle/state-plan';
import { blockWeightTable, countTerm } from '../../../lib/oracle/weights';
import { ORACLE_DATASET_DEFAULTS, compareLabelings } from '../../../lib/oracle/dataset-config';
import { loadTokenCache } from '../../../lib/tokenizer/cache';
import { PlannerFeatures } from '../../../lib/planner/features';
import { plannerData, plannerTrainConfig } from '../../../lib/planner/train';

/** The default geometry: 8 x 8 tokens in 2 x 2 blocks, a 4 x 4 block grid. */
const GEO = blockGeometry({ gridH: 8, gridW: 8, blockH: 2, blockW: 2 });
const CORNER = 0, EDGE = 1, CENTRE = 5;
const MEAN_WEIGHTS: WeightName[] = ['no-neighbours-mean', 'distance-mean'];

/**
 * u_extrap of every candidate of state S (visible blocks) when revealing a
 * drops the loss of every other unseen block B by gain(B) nats (spread over
 * B's tokens): the shared last step of both oracle paths (finalize).
 */
function equalGainScores(geo: BlockGeometry, visible: number[], weight: WeightName, gain: (b: number) => number): Float32Array {
  const t = geoTables(geo), T = geo.numTokens;
  const plan = makePlan(geo, t, { tokens: new Int32Array(T), classId: 0, visible });
  const ls = newLosses(geo);
  for (const j of plan.rCells) ls.base[j] = 3;
  for (const a of plan.remaining) {
    for (const j of plan.rCells) {
      const b = t.blockOf[j];
      if (b !== a) ls.cand[a * T + j] = 3 - gain(b) / t.cellsOf[b].length;
    }
  }
  return finalize(geo, t, blockWeightTable(geo, weight), plan, ls).uExtrap;
}

test('equal gain per far block: a corner and a centre block get equal u_extrap under the mean weights, not under the summed ones', () => {
  const g = 0.3;
  const nothing = (w: WeightName) => equalGainScores(GEO, [], w, () => g);
  const close = (x: number, y: number, what: string) => assert.ok(Math.abs(x - y) < 1e-6, `${what}: ${x} vs ${y}`);
  for (const w of MEAN_WEIGHTS) {
    const u = nothing(w);
    for (const a of [CORNER, EDGE, CENTRE]) close(u[a], g, `${w}, block ${a}`);
  }
  // The summed weights count blocks: 12 / 10 / 7 far blocks, distance sums 34 / 29 / 22.
  const nn = nothing('no-neighbours'), d = nothing('distance');
  close(nn[CORNER], 12 * g, 'no-neighbours corner');
  close(nn[EDGE], 10 * g, 'no-neighbours edge');
  close(nn[CENTRE], 7 * g, 'no-neighbours centre');
  close(d[CORNER], 34 * g, 'distance corner');
  close(d[CENTRE], 22 * g, 'distance centre');
  assert.ok(nn[CORNER] > nn[CENTRE] && d[CORNER] > d[CENTRE]);
  // With blocks visible the normaliser follows the state: only *unseen* far blocks count.
  const S = [10, 15, 3];
  for (const w of MEAN_WEIGHTS) {
    const u = equalGainScores(GEO, S, w, () => g);
    for (let a = 0; a < GEO.numBlocks; a++) if (!S.includes(a)) close(u[a], g, `${w}, S = {${S}}, block ${a}`);
  }
  // Unequal gains: no-neighbours-mean is the plain mean over far unseen blocks, distance-mean the d-weighted mean.
  const gain = (b: number) => 0.1 * (b + 1);
  const a = CENTRE, R = Array.from({ length: 16 }, (_, b) => b).filter((b) => !S.includes(b) && b !== a);
  const far = R.filter((b) => blockDistance(GEO, a, b) >= 2);
  close(equalGainScores(GEO, S, 'no-neighbours-mean', gain)[a], far.reduce((s, b) => s + gain(b), 0) / far.length, 'mean over far blocks');
  const dw = R.map((b) => blockDistance(GEO, a, b));
  close(equalGainScores(GEO, S, 'distance-mean', gain)[a], R.reduce((s, b, k) => s + dw[k] * gain(b), 0) / dw.reduce((s, x) => s + x, 0), 'd-weighted mean');
});

test('countTerm: the count prior of each weight (12 / 10 / 7 far blocks; 1 under the mean weights; 0 without a far unseen block)', () => {
  const all = Array.from({ length: 16 }, (_, b) => b);
  const c = (w: WeightName, a: number, R = all) => countTerm(blockWeightTable(GEO, w), a, R);
  assert.deepEqual([CORNER, EDGE, CENTRE].map((a) => c('no-neighbours', a)), [12, 10, 7]);
  assert.deepEqual([CORNER, EDGE, CENTRE].map((a) => c('distance', a)), [34, 29, 22]);
  assert.deepEqual([CORNER, EDGE, CENTRE].map((a) => c('uniform', a)), [15, 15, 15]);
  for (const w of MEAN_WEIGHTS) for (const a of [CORNER, EDGE, CENTRE]) assert.ok(Math.abs(c(w, a) - 1) < 1e-12, `${w} ${a}`);
  // Block 0 with only its neighbours 1, 4, 5 unseen: nothing far, so w = 0 and u_extrap = 0.
  assert.equal(c('no-neighbours-mean', 0, [0, 1, 4, 5]), 0);
  assert.equal(c('distance-mean', 0, [0, 1, 4, 5]), 1);
  // The raw weight of a mean weight is its summed weight's.
  for (const d of [1, 2, 3]) {
    assert.equal(blockWeight('no-neighbours-mean', d), blockWeight('no-neighbours', d));
    assert.equal(blockWeight('distance-mean', d), blockWeight('distance', d));
  }
});

test('scoreStatesPerWeight: one set of passes gives every weight, equal to scoreStates per weight; no tensor leaks', async () => {
  await useWasm();
  const geo = blockGeometry({ gridH: 4, gridW: 4, blockH: 1, blockW: 2 }); // a 4 x 2 block grid: near and far blocks
  const cfg = gptConfig('tiny', { initStd: 0.5, gridH: 4, gridW: 4 });
  const m = createGPT(cfg, 5);
  try {
    const r = rng(11);
    const items: OracleItem[] = [0, 1, 2, 5].map((size) => ({
      tokens: Int32Array.from({ length: geo.numTokens }, () => r.int(cfg.vocabSize)), classId: r.int(cfg.numClasses),
      visible: r.shuffle(Array.from({ length: geo.numBlocks }, (_, b) => b)).slice(0, size),
    }));
    for (const reading of READINGS) {
      scoreStatesPerWeight(m, geo, items, { reading, weights: WEIGHTS, batch: 4 }); // warm-up: kernels and memo tables allocate once
      const before = tf.memory().numTensors;
      const per = scoreStatesPerWeight(m, geo, items, { reading, weights: WEIGHTS, batch: 4 });
      assert.equal(tf.memory().numTensors, before, `${reading}: scoreStatesPerWeight leaked tensors`);
      WEIGHTS.forEach((weight, k) => {
        const one = scoreStates(m, geo, items, { reading, weight, batch: 4 });
        one.forEach((s, i) => {
          assert.equal(per[k][i].aStarExtrap, s.aStarExtrap, `${reading}/${weight} item ${i}`);
          s.uExtrap.forEach((v, b) => assert.ok(Number.isNaN(v) ? Number.isNaN(per[k][i].uExtrap[b]) : Math.abs(v - per[k][i].uExtrap[b]) < 1e-6));
        });
      });
    }
  } finally {
    disposeGPT(m);
  }
});

test('an unknown weight name is refused with the valid names, wherever it is given', async () => {
  await useWasm();
  const names = WEIGHTS.join(', ');
  expectOH(() => blockWeight('far' as WeightName, 2), 'oracle.weight', names);
  expectOH(() => blockWeightTable(GEO, 'far' as WeightName), 'oracle.weight', 'no-neighbours-mean', 'distance-mean');
  const geo = blockGeometry({ gridH: 4, gridW: 4, blockH: 2, blockW: 2 });
  const m = createGPT(gptConfig('tiny', { gridH: 4, gridW: 4 }), 1);
  try {
    const items = [{ tokens: new Int32Array(16), classId: 0, visible: [] }];
    expectOH(() => scoreStates(m, geo, items, { reading: 'block-marginal', weight: 'far' as WeightName }), 'oracle.weight', names);
    expectOH(() => scoreStatesPerWeight(m, geo, items, { reading: 'block-marginal', weights: ['uniform', 'far' as WeightName] }), 'oracle.weights[1]', names);
    expectOH(() => scoreStatesPerWeight(m, geo, items, { reading: 'block-marginal', weights: [] }), 'oracle.weights', 'non-empty');
  } finally {
    disposeGPT(m);
  }
  const paths = { backbone: 'b.safetensors', tokens: 'tok' };
  expectOH(() => oracleDatasetConfig('smoke', paths, { weight: 'far' as WeightName }), 'oracle.weight', names);
  expectOH(() => oracleDatasetConfig('smoke', paths, { compare: [{ reading: 'one-step', weight: 'far' as WeightName }] }), 'oracle.compare[0].weight', names);
  expectOH(() => plannerTrainConfig('smoke', { weight: 'far' as WeightName }), 'planner.weight', names);
});

test('the default compare labelings hold every weight of the primary reading, and the primary weight is PRIMARY_WEIGHT', () => {
  const cfg = { ...ORACLE_DATASET_DEFAULTS };
  assert.equal(cfg.weight, PRIMARY_WEIGHT);
  assert.equal(plannerTrainConfig('smoke').weight, PRIMARY_WEIGHT);
  const labelings = [{ reading: cfg.reading, weight: cfg.weight }, ...compareLabelings(cfg)];
  for (const w of WEIGHTS) assert.ok(labelings.some((l) => l.reading === cfg.reading && l.weight === w), `${cfg.reading}/${w} missing`);
  // Two readings beside the primary's are scored on the compare images, whatever the number of weights.
  assert.equal(new Set(labelings.map((l) => l.reading)).size, 3);
});

// ---------------------------------------------------------------------------
// Label positions against the count prior

const GEO1 = blockGeometry({ gridH: 4, gridW: 4, blockH: 1, blockW: 1 }); // 16 one-token blocks: a 4 x 4 block grid
const CORNERS = [0, 3, 12, 15];

/**
 * A synthetic dataset of 8 images x 3 states: |S| = 0, 1 (S = {5}), 2
 * (S = {5, 6}). Labelings: block-marginal and teacher-forced with
 * no-neighbours, whose label is the corners in turn at |S| = 0 and block 0
 * later (the count prior), and block-marginal no-neighbours-mean, whose label
 * is block 10 always. Image 7 is missing from the teacher-forced labeling.
 */
function syntheticDataset(weights: Record<string, WeightName> = {}): OracleDataset {
  const nb = 16, images = 8, n = images * 3;
  const S = [[], [5], [5, 6]];
  const image = Int32Array.from({ length: n }, (_, i) => Math.floor(i / 3));
  const state = Int32Array.from({ length: n }, (_, i) => i % 3);
  const size = Int32Array.from(state, (s) => S[s].length);
  const visible = new Uint8Array(n * nb), sequence = new Int32Array(n * nb).fill(-1);
  for (let i = 0; i < n; i++) S[state[i]].forEach((b, k) => { visible[i * nb + b] = 1; sequence[i * nb + k] = b; });
  const labeling = (reading: Reading, weight: WeightName, label: (i: number) => number, primary: boolean, has = (_i: number) => true): OracleLabelSet => {
    const aStarExtrap = Int32Array.from({ length: n }, (_, i) => (has(i) ? label(i) : -1));
    return {
      reading, weight, primary, has: Uint8Array.from({ length: n }, (_, i) => (has(i) ? 1 : 0)),
      u: new Float32Array(n * nb), uExtrap: new Float32Array(n * nb), aStar: aStarExtrap.slice(), aStarExtrap, lRest: new Float32Array(n),
    };
  };
  const prior = (i: number) => (size[i] === 0 ? CORNERS[image[i] % 4] : 0);
  return {
    dir: '/data/oracle-synthetic', manifest: {} as OracleDataset['manifest'], geo: GEO1, n, image, state, size, classId: new Int32Array(n),
    sequence, visible, tokenLoss: new Float32Array(n * nb), labelings: [
      labeling('block-marginal', weights.primary ?? 'no-neighbours', prior, true),
      labeling('teacher-forced', 'no-neighbours', prior, false, (i) => image[i] !== 7),
      labeling('block-marginal', 'no-neighbours-mean', () => 10, false),
    ],
  };
}

test('labelPositionTable: label shares per |S| next to the count prior and chance, with TV and border shares', () => {
  const ds = syntheticDataset();
  const rows = labelPositionTable(ds);
  assert.deepEqual(rows.map((r) => `${r.reading}/${r.weight}/${r.size}`), [
    'block-marginal/no-neighbours/0', 'block-marginal/no-neighbours/1', 'block-marginal/no-neighbours/2',
    'teacher-forced/no-neighbours/0', 'teacher-forced/no-neighbours/1', 'teacher-forced/no-neighbours/2',
    'block-marginal/no-neighbours-mean/0', 'block-marginal/no-neighbours-mean/1', 'block-marginal/no-neighbours-mean/2',
  ]);
  // Image 7 lacks the teacher-forced labeling: every row counts the 7 common images only.
  for (const r of rows) assert.equal(r.states, 7);
  const close = (x: number, y: number, what: string) => assert.ok(Math.abs(x - y) < 1e-9, `${what}: ${x} vs ${y}`);
  const [nn0, nn1, nn2] = rows;
  // |S| = 0, no-neighbours: the prior is the four corners, 1/4 each; chance 1/16 per block.
  for (const b of CORNERS) close(nn0.prior[b], 0.25, `prior corner ${b}`);
  close(nn0.chance[CENTRE], 1 / 16, 'chance');
  close(nn0.borderPrior, 1, 'border prior');
  close(nn0.borderChance, 12 / 16, 'border chance');
  // Labels: images 0-6 cycle through the corners (2, 2, 2, 1 of 7), so the TV to the prior is small, to chance large.
  close(nn0.labels[0], 2 / 7, 'labels corner 0');
  close(nn0.tvPrior, 0.5 * (3 * Math.abs(2 / 7 - 0.25) + Math.abs(1 / 7 - 0.25)), 'TV to prior');
  close(nn0.tvChance, 0.5 * (3 * (2 / 7 - 1 / 16) + (1 / 7 - 1 / 16) + 12 / 16), 'TV to chance');
  close(nn0.borderLabels, 1, 'border labels');
  // |S| = 1, S = {5}: block 0 keeps 12 far unseen blocks, the other corners lose block 5 (11): the prior is block 0 alone.
  close(nn1.prior[0], 1, 'prior at S = {5}');
  close(nn1.tvPrior, 0, 'labels = prior');
  close(nn1.chance[0], 1 / 15, 'chance at |S| = 1');
  assert.equal(nn1.chance[5], 0);
  close(nn2.labels[0], 1, 'labels at |S| = 2');
  // Sampling floors: labels drawn from a one-block prior land on it exactly; from four corners over 7 states, not.
  close(nn1.tvPriorFloor, 0, 'floor of a one-block prior');
  assert.ok(nn0.tvPriorFloor > 0.1 && nn0.tvPriorFloor < 0.75, `floor ${nn0.tvPriorFloor}`);
  assert.ok(nn0.tvChanceFloor > nn0.tvPriorFloor, 'more blocks, higher floor');
  assert.equal(labelPositionTable(ds)[0].tvPriorFloor, nn0.tvPriorFloor, 'seeded');
  // The mean weight: the prior is chance (every candidate ties), and label 10 sits 1 - 1/|R| from both.
  const [m0, m1, m2] = rows.slice(6);
  for (const r of [m0, m1, m2]) {
    for (let b = 0; b < 16; b++) close(r.prior[b], r.chance[b], `mean prior = chance, |S| = ${r.size}, block ${b}`);
    close(r.tvPrior, r.tvChance, 'TV prior = TV chance');
    close(r.borderLabels, 0, 'block 10 is inside');
  }
  close(m0.tvPrior, 15 / 16, 'TV |S| = 0');
  close(m2.tvPrior, 13 / 14, 'TV |S| = 2');
  // Summary: state-weighted means over the sizes, one per labeling.
  const sum = labelPositionSummary(rows);
  assert.deepEqual(sum.map((s) => `${s.reading}/${s.weight}`), ['block-marginal/no-neighbours', 'teacher-forced/no-neighbours', 'block-marginal/no-neighbours-mean']);
  assert.equal(sum[0].states, 21);
  assert.equal(sum[0].sizes, '0, 1, 2');
  close(sum[0].tvPrior, (nn0.tvPrior + nn1.tvPrior + nn2.tvPrior) / 3, 'summary TV');
  close(sum[2].tvPrior, (15 / 16 + 14 / 15 + 13 / 14) / 3, 'summary TV, mean weight');
  close(sum[0].tvPriorFloor, (nn0.tvPriorFloor + nn1.tvPriorFloor + nn2.tvPriorFloor) / 3, 'summary floor');
  // (At |S| = 2, S = {5, 6}, blocks 0 and 3 tie with 11 far unseen blocks: the prior splits, the labels do not: TV 0.5.)
  close(rows[2].tvPrior, 0.5, 'TV at a split prior');
  assert.ok(sum[0].tvPrior < 0.25 && sum[2].tvPrior > 0.9, 'no-neighbours follows its count prior, the mean weight does not');
  // Other sizes on request; a size with no state gives NaN shares.
  const r3 = labelPositionTable(ds, [3]);
  assert.equal(r3[0].states, 0);
  assert.ok(Number.isNaN(r3[0].tvPrior));
  expectOH(() => labelPositionTable(ds, [16]), 'labelPositionTable(sizes)', '0..15');
  // A dataset whose manifest names an unknown weight: the manifest is named, with the valid names.
  expectOH(() => labelPositionTable(syntheticDataset({ primary: 'far' as WeightName })), '/data/oracle-synthetic/manifest.json', WEIGHTS.join(', '));
});

test('countPriorFigure: per weight the prior row then one row per reading, one column per |S|, one colour scale', () => {
  const rows = labelPositionTable(syntheticDataset());
  const nn = countPriorFigure(rows, GEO1, 'no-neighbours', 'STAMP');
  assert.equal(nn.traces.length, 3 * 3); // prior + block-marginal + teacher-forced, |S| = 0, 1, 2
  assert.ok(nn.traces.every((t) => t.zmax === nn.traces[0].zmax));
  const titles = (nn.layout.annotations as { text: string }[]).map((a) => a.text);
  assert.ok(titles[0].startsWith('count prior, w = no-neighbours'), titles[0]);
  assert.ok(titles.some((t) => t.includes('a*_extrap (teacher-forced)')));
  assert.match(JSON.stringify(nn.layout.title), /w = no-neighbours.*STAMP/);
  assert.equal(countPriorFigure(rows, GEO1, 'no-neighbours-mean', 'S').traces.length, 2 * 3);
  expectOH(() => countPriorFigure(rows, GEO1, 'distance', 'S'), 'countPriorFigure(weight)', 'no-neighbours, no-neighbours-mean');
});

// ---------------------------------------------------------------------------
// The dataset build shares passes across weights; a planner refuses a dataset of another weight

test('the build scores each reading once for all its weights; compare labels equal scoreStates per weight; the planner checks the weight', async () => {
  await useWasm();
  const w = oracleWorld(fs.mkdtempSync(path.join(os.tmpdir(), 'oh-weights-')), { grid: 6 }); // 3 x 3 blocks: corners have far blocks
  const cfg = tinyOracleConfig(w, {
    images: 2, statesPerImage: 3, compareEvery: 2, weight: 'no-neighbours', // a summed primary, whatever PRIMARY_WEIGHT is
    compare: [
      { reading: 'teacher-forced', weight: 'no-neighbours' }, { reading: 'block-marginal', weight: 'distance' },
      { reading: 'block-marginal', weight: 'no-neighbours-mean' }, { reading: 'teacher-forced', weight: 'uniform' },
    ],
  });
  const calls: string[] = [];
  const counting: OracleScorer = (m, geo, items, c) => {
    calls.push(`${c.reading}:${c.weights.join('+')}:${items.length}`);
    return scoreStatesPerWeight(m, geo, items, c);
  };
  const dir = path.join(w.root, 'ds');
  const res = await buildOracleDataset(dir, cfg, { scorer: counting });
  mergeOracleDataset(dir);
  // Image 0 is a compare image (3 states), image 1 is not: one block-marginal call per part for all three
  // block-marginal weights, one teacher-forced call for both of its weights on the compare image only.
  assert.deepEqual(calls, [
    'block-marginal:no-neighbours+distance+no-neighbours-mean:3', 'teacher-forced:no-neighbours+uniform:3',
    'block-marginal:no-neighbours+distance+no-neighbours-mean:3',
  ]);
  assert.equal(res.compareStates, 3 * 4);
  assert.equal(res.compareScoredStates, 3);
  assert.deepEqual(readOracleBuildLog(dir).map((l) => l.compareScoredStates), [3, 0]);
  const ds = loadOracleDataset(dir);
  const cache = loadTokenCache(w.tokens);
  const { model } = loadBackboneWithInfo(w.backbone, { gridH: 6, gridW: 6 });
  try {
    for (const l of ds.labelings) {
      for (let i = 0; i < ds.n; i++) {
        if (!l.has[i]) continue;
        const [s] = scoreStates(model, ds.geo, [oracleItem(ds, i, cache)], { reading: l.reading as Reading, weight: l.weight });
        assert.equal(l.aStarExtrap[i], s.aStarExtrap, `${l.reading}/${l.weight} state ${i}`);
        const nb = ds.geo.numBlocks;
        s.uExtrap.forEach((v, b) => {
          const got = l.uExtrap[i * nb + b];
          assert.ok(Number.isNaN(v) ? Number.isNaN(got) : Math.abs(v - got) < 1e-4, `${l.reading}/${l.weight} state ${i} block ${b}: ${got} vs ${v}`);
        });
      }
    }
  } finally {
    disposeGPT(model);
  }
  // The planner: a config naming another weight than the dataset's is refused, naming the manifest, the field
  // and the fix; the dataset folder is left as it was.
  const features = { n: ds.n, numBlocks: ds.geo.numBlocks } as PlannerFeatures;
  const err = await untouched(w.root, () => expectOH(() => plannerData(ds, features, 'u_extrap', 'block-marginal', 'no-neighbours-mean'),
    path.join(dir, 'manifest.json'), 'w = no-neighbours (labelings.primary.weight)', 'w = no-neighbours-mean (planner.weight)',
    "oracle.weight = 'no-neighbours-mean'", "planner.weight = 'no-neighbours'"));
  assert.ok(err.fix.includes('PRIMARY_WEIGHT'), err.fix);
  expectOH(() => primaryLabelSet(ds, 'block-marginal', 'joint reading', { weight: 'distance', field: 'x.weight' }), 'manifest.json', 'x.weight');
  assert.equal(plannerData(ds, features, 'u_extrap', 'block-marginal', 'no-neighbours').weight, 'no-neighbours');
});
