/**
 * The on-policy rounds (lib/planner/on-policy.ts, METHOD.md §6.3.1) on the tiny
 * oracle world (tests/fixtures/oracle-world.ts: 4x4 tokens, 4 blocks, 12
 * train and 2 test images): the labelled states are prefixes of the rolling
 * planner's own orders, their labels are the oracle's, a killed run resumes to
 * the same planners and numbers, a finished run writes nothing, the refusals
 * (no trained planner, another planner's / backbone's / weight's states) leave
 * every file as it was, and no tensor leaks.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { rejectsOH, sandbox, throwsOH, untouched, useWasm } from '../../helpers';
import { oracleWorld, OracleWorld, tinyOracleConfig } from '../../fixtures/oracle-world';
import { PJ_PLANNER } from '../../fixtures/planner-jobs';
import { disposeGPT, GPT } from '../../../lib/backbone/gpt';
import { loadBackbone } from '../../../lib/backbone/stage1';
import { rollOutOnGroundTruth } from '../../../lib/backbone/nll';
import { loadTokenCache, TokenCache } from '../../../lib/tokenizer/cache';
import { buildOracleDataset, loadOracleDataset, mergeOracleDataset, OracleDataset, oracleItem, ORACLE_DATASET_FILE, scoreStates } from '../../../lib/oracle';
import { readSafetensors } from '../../../lib/runtime/safetensors';
import { checkpointName, latestCheckpoint, weightsFingerprint } from '../../../lib/runtime/checkpoint';
import {
  aggregatePlannerData, disposePlanner, loadPlanner, onPolicyConfig, onPolicySequences, onPolicySize, onPolicyTable, onPolicyFindings,
  OnPolicyConfig, OnPolicyResult, oracleStateFeatures, Planner, plannerData, plannerPolicy, plannerTrainConfig, runOnPolicyRounds,
  trainPlanner,
} from '../../../lib/planner';
import { labelVisitedStates, onPolicyHeldOutDir, onPolicyRoundDir } from '../../../lib/planner/on-policy';
import { PlannerFeatures } from '../../../lib/planner/features';
import { PRIMARY_PLANNER, PRIMARY_STAGE3_RUN } from '../../../lib/planner/stages';
import { curriculumRuns, primaryPlannerRun } from '../../../lib/curriculum';

interface World {
  w: OracleWorld;
  ds: OracleDataset;
  cache: TokenCache;
  backbone: GPT;
  features: PlannerFeatures;
  /** A finished Stage 3 run (seed 0) and its planner root. */
  stage3: string;
  cfg: OnPolicyConfig;
}

let world: World | undefined;

/** The tiny world, built once: D_0 (6 images x 4 random states), its features, a finished 6-step Stage 3 run. */
async function tiny(): Promise<World> {
  if (world) return world;
  await useWasm();
  const w = oracleWorld(sandbox());
  const dsDir = path.join(w.root, 'oracle');
  await buildOracleDataset(dsDir, tinyOracleConfig(w, { compare: [], imagesPerPart: 2 }));
  mergeOracleDataset(dsDir);
  const ds = loadOracleDataset(dsDir);
  const cache = loadTokenCache(w.tokens);
  const backbone = loadBackbone(ds.manifest.backbone.path);
  const plannerDir = path.join(w.root, 'planner');
  const features = oracleStateFeatures(plannerDir, ds, cache, backbone).features;
  const train = plannerTrainConfig('smoke', { label: 'u_extrap', steps: 6, batch: 16, evalEvery: 3, warmup: 2, heldOutEvery: 3, lr: 3e-3, planner: PJ_PLANNER });
  const cfg = onPolicyConfig('smoke', { rounds: 2, statesPerImage: 2, heldOutImages: 2, workers: 1, bootstrapReps: 50, train });
  const stage3 = stage3Run(plannerDir, 'stage3-u_extrap-hard', cfg, ds, features, backbone);
  world = { w, ds, cache, backbone, features, stage3, cfg };
  return world;
}

/** Train a Stage 3 run (the rounds' π_0) in `<root>/<name>`; `over` changes its training config (another seed, fewer steps). */
function stage3Run(root: string, name: string, cfg: OnPolicyConfig, ds: OracleDataset, features: PlannerFeatures, backbone: GPT,
  over: { seed?: number; maxSteps?: number } = {}): string {
  const res = trainPlanner(root, name, { ...cfg.train, seed: over.seed ?? cfg.train.seed }, plannerData(ds, features, 'u_extrap'),
    { blocksY: 2, blocksX: 2, numClasses: backbone.cfg.numClasses }, { maxSteps: over.maxSteps });
  disposePlanner(res.planner);
  return res.run.dir;
}

const run = (t: World, dir: string, opts: Parameters<typeof runOnPolicyRounds>[2] = {}, stage3 = t.stage3): Promise<OnPolicyResult> =>
  runOnPolicyRounds({ dir, stage3Run: stage3, ds: t.ds, features: t.features, cache: t.cache, backbone: t.backbone }, t.cfg, opts);

const bestOf = (runDir: string) => latestCheckpoint(path.join(runDir, 'checkpoints'), 'best')!.path;
const fingerprintOf = (file: string) => { const l = loadPlanner(file); try { return weightsFingerprint(l.planner.params); } finally { disposePlanner(l.planner); } };

/** The tensors of a merged oracle file as bytes (the metadata holds the manifest's creation time, which differs between runs). */
function mergedTensors(dir: string): Record<string, Buffer> {
  const { tensors } = readSafetensors(path.join(dir, ORACLE_DATASET_FILE));
  return Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength)]));
}

/** The numbers of a result, without per-state arrays and timings. */
const numbers = (r: OnPolicyResult) => ({
  rounds: r.rounds.map(({ seconds: _s, planner: _p, ...x }) => x),
  comparison: r.comparison.map((c) => ({ states: c.states, n: c.n, before: c.before.summary, after: c.after.summary, top1: c.top1, regret: c.regret })),
});

// One uninterrupted run, shared by the tests below.
let full: { dir: string; summary: string; result: OnPolicyResult } | undefined;
async function fullRun(): Promise<NonNullable<typeof full>> {
  if (full) return full;
  const t = await tiny();
  const dir = path.join(sandbox(), 'on-policy');
  const summary = path.join(dir, 'summary.json');
  const before = tf.memory().numTensors;
  const result = await run(t, dir, { summaryFile: summary });
  assert.equal(tf.memory().numTensors, before, 'a run of the rounds leaks tensors');
  full = { dir, summary, result };
  return full;
}

test('onPolicySize: sizes cycle evenly over 1 .. numBlocks − 2; sequences are prefixes of each order', () => {
  const counts = new Array(16).fill(0);
  for (let i = 0; i < 7; i++) for (let s = 0; s < 8; s++) counts[onPolicySize(8, 16, i, s)]++;
  assert.deepEqual(counts, [0, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 0]);
  const orders = [3, 1, 0, 2, /**/ 0, 1, 2, 3];
  assert.deepEqual(onPolicySequences(orders, 4, 2), [[3], [3, 1], [0], [0, 1]]);
});

test('rounds: every labelled state is a prefix of the rolling planner\'s own order, and its labels are the oracle\'s', async () => {
  const t = await tiny();
  const { dir, result } = await fullRun();
  assert.equal(result.finished, true);
  assert.equal(result.rounds.length, 2);
  const nb = t.ds.geo.numBlocks, T = t.ds.geo.numTokens;
  // π_0 rolls out in round 1 and held-out-0; π_1 in round 2; π_2 in held-out-2.
  const cases: { planner: string; states: string; split: 'train' | 'test' }[] = [
    { planner: bestOf(t.stage3), states: path.join(onPolicyRoundDir(dir, 1), 'states'), split: 'train' },
    { planner: result.rounds[0].planner, states: path.join(onPolicyRoundDir(dir, 2), 'states'), split: 'train' },
    { planner: bestOf(t.stage3), states: path.join(onPolicyHeldOutDir(dir, 0), 'states'), split: 'test' },
    { planner: result.rounds[1].planner, states: path.join(onPolicyHeldOutDir(dir, 2), 'states'), split: 'test' },
  ];
  for (const c of cases) {
    const states = loadOracleDataset(c.states);
    const pl: Planner = loadPlanner(c.planner).planner;
    try {
      assert.equal(states.manifest.identity.explicitStates?.source, plannerPolicy(pl, t.backbone, t.ds.geo).fingerprint, c.states);
      assert.equal(states.manifest.backbone.fingerprint, t.ds.manifest.backbone.fingerprint);
      assert.deepEqual(states.manifest.labelings.primary, t.ds.manifest.labelings.primary, 'same reading and weight as D_0');
      const split = c.split === 'train' ? t.cache.train : t.cache.test;
      const images = c.split === 'train' ? t.ds.manifest.config.images : t.cfg.heldOutImages;
      const orders = await rollOutOnGroundTruth(t.backbone, split.tokens.subarray(0, images * T), split.labels.subarray(0, images),
        plannerPolicy(pl, t.backbone, t.ds.geo), t.ds.geo);
      assert.equal(states.n, images * t.cfg.statesPerImage);
      for (let i = 0; i < states.n; i++) {
        const img = states.image[i], seq = Array.from(states.sequence.subarray(i * nb, i * nb + states.size[i]));
        assert.deepEqual(seq, orders[img].slice(0, seq.length), `${c.states}: state ${i} is not a prefix of the planner's order on image ${img}`);
        assert.equal(seq.length, onPolicySize(t.cfg.statesPerImage, nb, img, states.state[i]));
      }
      // The oracle's labels of exactly these states, scored afresh.
      const items = Array.from({ length: states.n }, (_, i) => oracleItem(states, i, t.cache));
      const fresh = scoreStates(t.backbone, t.ds.geo, items, { reading: t.ds.labelings[0].reading, weight: t.ds.labelings[0].weight, batch: 64 });
      const l = states.labelings[0];
      fresh.forEach((sc, i) => {
        assert.equal(l.aStar[i], sc.aStar, `a* of state ${i}`);
        assert.equal(l.aStarExtrap[i], sc.aStarExtrap, `a*_extrap of state ${i}`);
        for (let b = 0; b < nb; b++) {
          const x = l.uExtrap[i * nb + b], y = sc.uExtrap[b];
          assert.ok(Number.isNaN(x) ? Number.isNaN(y) : Math.abs(x - y) < 1e-4, `u_extrap of state ${i}, block ${b}: ${x} vs ${y}`);
        }
      });
    } finally {
      disposePlanner(pl);
    }
  }
  // The table and the findings speak of all three state sets.
  assert.equal(onPolicyTable(result).length, 3);
  assert.match(onPolicyFindings(result, 'smoke', 'STAMP'), /2 on-policy rounds labelled 24 states/);
});

test('resume: a run killed mid-labelling and mid-training ends with the same states, planners and numbers; a finished run writes nothing', async () => {
  const t = await tiny();
  const a = await fullRun();
  const dir = path.join(sandbox(), 'on-policy');
  const stops: string[] = [];
  for (const opts of [{ maxParts: 1 }, { maxSteps: 3 }, { maxSteps: 3 }, { maxParts: 0, maxSteps: 3 }]) {
    const r = await run(t, dir, opts);
    assert.equal(r.finished, false);
    stops.push(r.stoppedIn!);
  }
  assert.deepEqual(stops, ['round 1: labelling', 'round 1: training (step 3 of 6)', 'round 2: training (step 3 of 6)', 'held-out states of π_0: labelling']);
  const b = await run(t, dir);
  assert.equal(b.finished, true);
  for (const sub of [onPolicyRoundDir, onPolicyHeldOutDir].flatMap((f, j) => (j === 0 ? [1, 2] : [0, 2]).map((k) => f('', k)))) {
    assert.deepEqual(mergedTensors(path.join(dir, sub, 'states')), mergedTensors(path.join(a.dir, sub, 'states')), `${sub}: states or labels differ`);
  }
  for (const k of [0, 1]) assert.equal(fingerprintOf(b.rounds[k].planner), fingerprintOf(a.result.rounds[k].planner), `π_${k + 1} differs`);
  assert.deepEqual(numbers(b), numbers(a.result));
  // Finished: reading it back changes no file (the planner runs log one more start in their manifests), and leaks nothing.
  const before = tf.memory().numTensors;
  const again = await untouched(a.dir, () => run(t, a.dir, { summaryFile: a.summary }), ['round-1/planner/manifest.json', 'round-2/planner/manifest.json']);
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(numbers(again), numbers(a.result));
  assert.deepEqual(JSON.parse(fs.readFileSync(a.summary, 'utf8')).rounds.length, 2);
});

test('bad input: no trained (or an unfinished) Stage 3 planner names the run folder and the cell that trains it; nothing is written', async () => {
  const t = await tiny();
  const root = sandbox();
  const dir = path.join(root, 'on-policy');
  const empty = path.join(root, 'stage3-u_extrap-hard');
  await rejectsOH(() => run(t, dir, {}, empty), empty, 'needs the trained Stage 3 planner', '04_stage3_orderhead', 'Train');
  const half = stage3Run(path.join(root, 'planner'), 'stage3-half', t.cfg, t.ds, t.features, t.backbone, { maxSteps: 3 });
  await rejectsOH(() => run(t, dir, {}, half), half, 'not finished (step 3 of 6)', '04_stage3_orderhead');
  assert.equal(fs.existsSync(dir), false, 'a refused round wrote its folder');
  throwsOH(() => aggregatePlannerData([plannerData(t.ds, t.features, 'u'), plannerData(t.ds, t.features, 'u_extrap')]), 'parts[1].label');
});

test('bad input: a states folder of another planner, backbone or weight is refused, naming the folder and the field; nothing is overwritten', async () => {
  const t = await tiny();
  const a = await fullRun();
  const manifests = ['round-1/planner/manifest.json', 'round-2/planner/manifest.json'];
  // Another planner: Stage 3 retrained with another seed.
  const other = stage3Run(path.join(sandbox(), 'planner'), 'stage3-u_extrap-hard', t.cfg, t.ds, t.features, t.backbone, { seed: 1 });
  const statesDir = path.join(onPolicyRoundDir(a.dir, 1), 'states');
  await untouched(a.dir, () => rejectsOH(() => run(t, a.dir, { summaryFile: a.summary }, other), `${statesDir} (explicitStates.source)`,
    'holds the states visited by planner', 'delete'), manifests);
  // Another backbone (same weights, another checkpoint file) or another weight w: the manifest's identity names the field.
  const pl = loadPlanner(bestOf(t.stage3)).planner;
  try {
    const ctx = (base: Partial<OracleDataset['manifest']['config']>) => ({
      base: { ...t.ds.manifest.config, ...base }, backbone: t.backbone, backboneFingerprint: t.ds.manifest.backbone.fingerprint, geo: t.ds.geo,
      cache: t.cache, cfg: t.cfg, opts: {},
    });
    const spec = { split: 'train' as const, images: t.ds.manifest.config.images, label: 'test' };
    const step2 = path.join(path.dirname(t.w.backbone), `${checkpointName('stage1', 2, ['r1.00'])}.safetensors`);
    assert.ok(fs.existsSync(step2), step2);
    await untouched(a.dir, () => rejectsOH(() => labelVisitedStates(onPolicyRoundDir(a.dir, 1), pl, spec, ctx({ backbone: step2 })), statesDir, 'backboneFingerprint'));
    await untouched(a.dir, () => rejectsOH(() => labelVisitedStates(onPolicyRoundDir(a.dir, 1), pl, spec, ctx({ weight: 'uniform' })), statesDir, 'weight'));
    await untouched(a.dir, () => rejectsOH(() => labelVisitedStates(onPolicyRoundDir(a.dir, 1), pl, spec, { ...ctx({}), cfg: { ...t.cfg, statesPerImage: 1 } }),
      `${statesDir} (statesPerImage)`, 'statesPerImage = 2'));
    await rejectsOH(() => labelVisitedStates(path.join(sandbox(), 'x'), pl, spec, { ...ctx({}), cfg: { ...t.cfg, statesPerImage: 3 } }), 'onPolicy.statesPerImage');
  } finally {
    disposePlanner(pl);
  }
});

test('primaryPlannerRun: the last on-policy round once every round finished, else the Stage 3 run (which stays)', () => {
  const runs = curriculumRuns(sandbox(), 'smoke');
  assert.equal(PRIMARY_PLANNER, 'on-policy');
  assert.equal(primaryPlannerRun(runs), runs.stage3[PRIMARY_STAGE3_RUN], 'no rounds yet');
  fs.mkdirSync(path.dirname(runs.files.onPolicySummary), { recursive: true });
  fs.writeFileSync(runs.files.onPolicySummary, JSON.stringify({ finished: false, rounds: [] }));
  assert.equal(primaryPlannerRun(runs), runs.stage3[PRIMARY_STAGE3_RUN], 'unfinished rounds');
  fs.writeFileSync(runs.files.onPolicySummary, JSON.stringify({ finished: true, rounds: runs.onPolicyRounds.map((_, k) => ({ round: k + 1 })) }));
  assert.equal(primaryPlannerRun(runs), runs.onPolicyRounds.at(-1));
  assert.equal(primaryPlannerRun(runs).dir, path.join(onPolicyRoundDir(runs.onPolicy.dir, runs.onPolicyRounds.length), 'planner'));
  // A summary of fewer rounds than the profile asks for (the config changed since) does not count.
  fs.writeFileSync(runs.files.onPolicySummary, JSON.stringify({ finished: true, rounds: [] }));
  assert.equal(primaryPlannerRun(runs), runs.stage3[PRIMARY_STAGE3_RUN]);
});

test.after(() => {
  if (world) disposeGPT(world.backbone);
});
