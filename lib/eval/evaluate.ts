/**
 * The evaluation of one setting (METHOD.md section 7), as a sequence of steps
 * per seed: generate samples under the setting's backbone and order policy,
 * decode and measure them with the feature network (FID / sFID / IS /
 * precision-recall, class accuracy), follow their generation trajectories
 * (progressive recognizability), score held-out test images (exact NLL under
 * the setting's order), keep one example trajectory; then, once per setting,
 * the trajectory metrics (trajectory.ts: remaining-loss curves, oracle
 * comparison), and the summaries over seeds
 * (summary.ts). Every setting gets the same seeds, the same sampling settings
 * and the same test images, so the numbers compare.
 */
import { GPT } from '../backbone/gpt';
import { seqLen } from '../backbone/config';
import { sampleImages } from '../backbone/sampler';
import { nllUnderPolicy } from '../backbone/nll';
import { BlockGeometry, OrderPolicy, PolicyState } from '../order';
import { ensure } from '../runtime/errors';
import { rng, seedFrom } from '../runtime/seed';
import { Progress } from '../runtime/progress';
import { featureNetClassifier, featureNetOutputs } from './feature-net';
import { featureStats, frechetToReference } from './frechet';
import { inceptionScore } from './inception-score';
import { precisionRecall } from './precision-recall';
import { allBlockFractions, curveAuc, recognizabilityCurve, renderPartialImages } from './recognizability';
import { MetricSummary, resampleIndices, summarizeRecentred, summarizeSamples, summarizeSeedRange } from './summary';
import { trajectoryMetrics, TrajectoryResult, validateTrajectoryConfig } from './trajectory';
import { EvalConfig, validateEvalConfig } from './config';
import { EvalContext } from './context';
import { EvalMetric, EvalTimings, SeedResult, SettingOutcome, SettingResult, TrajectoryExample } from './results';
import { EvalSetting, isMissing, MissingSetting } from './settings';
import { predictedClass } from './class-accuracy';

/** n class ids balanced over `classes` (counts differ by at most one), shuffled by the seed. */
export function balancedClasses(n: number, classes: number, seed: number): Int32Array {
  const out = Array.from({ length: n }, (_, i) => i % classes);
  rng(seedFrom(seed, 'eval-classes')).shuffle(out);
  return Int32Array.from(out);
}

/**
 * The policy seen by samples offset .. offset + B - 1 of a seed (sampleImages
 * numbers each call's states from 0). It keeps what the policy reads
 * (`contextOf`: without it the sampler hands over no KV cache and a planner
 * recomputes every visible prefix, several times slower) and its fingerprint.
 */
export function offsetPolicy(p: OrderPolicy, offset: number): OrderPolicy {
  if (offset === 0) return p;
  return {
    name: p.name, contextOf: p.contextOf,
    get fingerprint() { return p.fingerprint; },
    nextBlocks: (states: readonly PolicyState[]) => p.nextBlocks(states.map((s) => ({ ...s, index: s.index + offset }))),
  };
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** The default recognizability fractions of a context (see EvalConfig.recognizabilityFractions). */
export function defaultRecognizabilityFractions(geo: BlockGeometry): number[] {
  return allBlockFractions(gcd(geo.numBlocks, geo.gridH));
}

/** Rows `idx` of a row-major array. */
function gatherRows(a: Float32Array, dim: number, idx: Int32Array): Float32Array {
  const out = new Float32Array(idx.length * dim);
  for (let i = 0; i < idx.length; i++) out.set(a.subarray(idx[i] * dim, (idx[i] + 1) * dim), i * dim);
  return out;
}

function checkContext(setting: EvalSetting, ctx: EvalContext, cfg: EvalConfig): { geo: BlockGeometry; height: number; width: number; fractions: number[] } {
  const where = `evaluateSetting('${setting.name}')`;
  ensure(setting.backbone && setting.policy && typeof setting.policy.nextBlocks === 'function', 'has no backbone or policy', where, 'build settings with rasterBaselineSetting, blockRarRandomSetting, orderHeadSetting, ... or settingOrMissing');
  const m = setting.backbone, geo = setting.geo ?? ctx.geo;
  ensure(geo.gridH === m.cfg.gridH && geo.gridW === m.cfg.gridW, `the geometry's grid is ${geo.gridH}x${geo.gridW}, the backbone's ${m.cfg.gridH}x${m.cfg.gridW}`,
    where, 'use a block geometry of the backbone\'s token grid');
  const net = ctx.featureNet, S = net.config.imageSize;
  ensure(net.config.classes === m.cfg.numClasses, `the feature net knows ${net.config.classes} classes, the backbone ${m.cfg.numClasses}`,
    `${where} (featureNet.classes)`, 'use the feature network trained on the backbone\'s dataset');
  ensure(ctx.realStats && ctx.realStats.poolDim === net.dims.poolDim && ctx.realStats.spatialDim === net.dims.spatialDim,
    'the real-image statistics were not computed with this feature network', `${where} (ctx.realStats)`, 'pass realFeatureStats(featureNetOutputs(featureNet, testImages))');
  const T = seqLen(m.cfg);
  ensure(ctx.testTokens.length % T === 0 && ctx.testLabels.length * T === ctx.testTokens.length,
    `the test split has ${ctx.testTokens.length} tokens and ${ctx.testLabels.length} labels, not ${T} tokens per label`, `${where} (ctx.testTokens)`,
    'pass the token cache test split of the backbone\'s tokenizer');
  ensure(ctx.testLabels.length >= cfg.nllImages, `NLL needs ${cfg.nllImages} test images (the same ones for every setting), the split has ${ctx.testLabels.length}`,
    'eval.nllImages', `lower nllImages to at most ${ctx.testLabels.length}`);
  ensure(cfg.trajectory.images <= ctx.testLabels.length, `trajectory metrics need ${cfg.trajectory.images} test images, the split has ${ctx.testLabels.length}`,
    'eval.trajectory.images', 'score fewer images');
  if (cfg.trajectory.images > 0) validateTrajectoryConfig(cfg.trajectory, geo);
  const fractions = cfg.recognizabilityFractions ?? defaultRecognizabilityFractions(ctx.geo);
  for (const f of fractions) {
    const k = f * geo.numBlocks;
    ensure(Math.abs(k - Math.round(k)) < 1e-9, `fraction ${f} is not a whole number of this setting's ${geo.numBlocks} blocks`, 'eval.recognizabilityFractions',
      `use multiples of 1/${gcd(geo.numBlocks, ctx.geo.numBlocks)} so every setting is measured at the same token counts`);
  }
  return { geo, height: S, width: S, fractions };
}

/**
 * Evaluate one setting (a MissingSetting passes through unchanged): for each
 * seed, generate `samplesPerSeed` samples (classes balanced and shuffled by
 * the seed, same sampling settings for every setting), decode them, and
 * measure FID / sFID against the real test statistics, IS, precision /
 * recall, class accuracy w.r.t. the conditioning class, the recognizability
 * curve along each sample's own block order (the full sample is decoded,
 * then undecoded blocks are blanked with renderPartialImages), and one
 * example trajectory. Exact NLL (bits per token, nllUnderPolicy) is scored
 * once, under the first seed's policy, on the first `nllImages` test
 * images: the same images for every setting, so settings compare image by
 * image (headline.ts); later seeds carry the same numbers. Then the
 * trajectory metrics (cfg.trajectory: remaining-loss curves and the oracle
 * comparison on the first test images, the same for every setting) once per
 * setting, with the first seed's policy. Aggregates over seeds as summary.ts describes.
 * `progress` is a bar factory (session.progress). Leaks no tensors.
 */
export async function evaluateSetting(setting: EvalSetting | MissingSetting, ctx: EvalContext, cfg: EvalConfig,
  progress?: (opts: { total: number; label: string }) => Progress): Promise<SettingOutcome> {
  if (isMissing(setting)) return setting;
  validateEvalConfig(cfg);
  const run = startSettingRun(setting, ctx, cfg, progress);
  const seeds: SeedResult[] = [];
  let policyName = setting.policy.name;
  try {
    for (const [k, seed] of cfg.seeds.entries()) {
      const policy = setting.policyFor?.(seed) ?? setting.policy;
      if (k === 0) policyName = policy.name;
      seeds.push(await evaluateSeed(run, k, seed, policy));
    }
    const trajectory = await measureTrajectory(run);
    return finishSettingRun(run, policyName, seeds, trajectory);
  } catch (err) {
    run.bar?.done({ stopped: 'error' });
    throw err;
  }
}

/** One setting's evaluation under way: what it measures with, its timers and its progress bar. */
interface SettingRun {
  setting: EvalSetting;
  ctx: EvalContext;
  cfg: EvalConfig;
  m: GPT;
  geo: BlockGeometry;
  height: number;
  width: number;
  layout: { geo: BlockGeometry; height: number; width: number };
  fractions: number[];
  /** Tokens per image, classes, pixels per image, samples per seed, sampling calls per seed. */
  T: number;
  C: number;
  px: number;
  N: number;
  batches: number;
  classify: (images: Float32Array) => Float32Array;
  bar?: Progress;
  sec: EvalTimings;
  t0: number;
  /** The shared-image NLL, once the first seed measured it. */
  nll?: { bitsPerToken: number; perImageBits: Float64Array };
}

/** Check the setting against the context and open its timers and progress bar. */
function startSettingRun(setting: EvalSetting, ctx: EvalContext, cfg: EvalConfig,
  progress?: (opts: { total: number; label: string }) => Progress): SettingRun {
  const { geo, height, width, fractions } = checkContext(setting, ctx, cfg);
  const m = setting.backbone, T = seqLen(m.cfg), C = m.cfg.numClasses, px = height * width, N = cfg.samplesPerSeed;
  const sec: EvalTimings = { sample: 0, decode: 0, features: 0, fid: 0, bootstrap: 0, precisionRecall: 0, recognizability: 0, nll: 0, trajectory: 0, total: 0 };
  const t0 = Date.now();
  const batches = Math.ceil(N / cfg.sampleBatch);
  const bar = progress?.({ total: cfg.seeds.length * (batches + 3) + (cfg.trajectory.images > 0 ? 1 : 0), label: `eval ${setting.name}` });
  const classify = featureNetClassifier(ctx.featureNet, cfg.featureBatch);
  return { setting, ctx, cfg, m, geo, height, width, layout: { geo, height, width }, fractions, T, C, px, N, batches, classify, bar, sec, t0 };
}

/** Run `f`, adding its seconds to phase `key`. */
function timed<R>(run: SettingRun, key: keyof EvalTimings, f: () => R): R {
  const s = Date.now();
  try { return f(); } finally { run.sec[key] += (Date.now() - s) / 1000; }
}

async function timedAsync<R>(run: SettingRun, key: keyof EvalTimings, f: () => Promise<R>): Promise<R> {
  const s = Date.now();
  try { return await f(); } finally { run.sec[key] += (Date.now() - s) / 1000; }
}

/** Everything measured for seed `seed` (the k-th), under that seed's policy. */
async function evaluateSeed(run: SettingRun, k: number, seed: number, policy: OrderPolicy): Promise<SeedResult> {
  const { classes, tokens, blockOrders } = await generateSamples(run, seed, policy);
  const images = decodeSamples(run, tokens);
  const q = measureFeatures(run, seed, images, classes);
  const r = measureRecognizability(run, seed, images, classes, blockOrders);
  const nll = k === 0 ? await measureNll(run, seed, policy) : run.nll!;
  if (k > 0) run.bar?.tick(1, { seed, stage: 'nll (shared images: scored once)' });
  run.nll = nll;
  const example = exampleTrajectory(run, images, classes, blockOrders);
  return {
    seed, n: run.N,
    metrics: { fid: q.fid, sfid: q.sfid, is: q.is, precision: q.precision, recall: q.recall, accuracy: mean(q.accuracy), recognizabilityAuc: r.curve.auc, nllBits: nll.bitsPerToken },
    replicates: q.replicates, perSample: { accuracy: q.accuracy, recognizabilityAuc: r.perSampleAuc, nllBits: k === 0 ? nll.perImageBits : new Float64Array(0) }, recognizedAt: r.recognizedAt, curve: r.curve.accuracy,
    tokens, classes, blockOrders, example,
  };
}

/** 1. Samples, in batches; the policy sees each sample's index within the seed. */
async function generateSamples(run: SettingRun, seed: number, policy: OrderPolicy): Promise<{ classes: Int32Array; tokens: Int32Array; blockOrders: number[][] }> {
  const { m, cfg, geo, N, T } = run;
  const classes = balancedClasses(N, run.C, seed);
  const tokens = new Int32Array(N * T);
  const blockOrders: number[][] = [];
  for (let b = 0; b < run.batches; b++) {
    const lo = b * cfg.sampleBatch, hi = Math.min(N, lo + cfg.sampleBatch);
    const res = await timedAsync(run, 'sample', () => sampleImages(m, {
      classes: classes.subarray(lo, hi), policy: offsetPolicy(policy, lo), geometry: geo,
      temperature: cfg.temperature, topK: cfg.topK, topP: cfg.topP, cfgScale: cfg.cfgScale, seed: seedFrom(seed, 'eval-sample', b),
    }));
    tokens.set(res.tokens, lo * T);
    blockOrders.push(...res.blockOrders);
    run.bar?.tick(1, { seed, stage: 'sample' });
  }
  return { classes, tokens, blockOrders };
}

/** 2a. Decode the samples to images. */
function decodeSamples(run: SettingRun, tokens: Int32Array): Float32Array {
  const { N, px, height, width } = run;
  const images = timed(run, 'decode', () => run.ctx.tokenizer.decode(tokens));
  ensure(images.length === N * px, `decode returned ${images.length} values for ${N} images of ${height}x${width}`, 'ctx.tokenizer.decode',
    `use the tokenizer whose images match the feature net (${height}x${width})`);
  return images;
}

/** 2b. Measure the images with the feature network: FID / sFID / IS with their replicates, precision / recall, class accuracy. */
function measureFeatures(run: SettingRun, seed: number, images: Float32Array, classes: Int32Array) {
  const { cfg, C, N } = run;
  const real = run.ctx.realStats;
  const out = timed(run, 'features', () => featureNetOutputs(run.ctx.featureNet, images, cfg.featureBatch));
  const genPool = featureStats(out.pool, out.poolDim), genSpatial = featureStats(out.spatial, out.spatialDim);
  const fid = timed(run, 'fid', () => frechetToReference(real.pool, genPool));
  const sfid = timed(run, 'fid', () => frechetToReference(real.spatial, genSpatial));
  const splits = cfg.isSplits;
  const is = inceptionScore(out.probs, C, splits).mean;
  const replicates = { fid: new Float64Array(cfg.setBootstrapReps), sfid: new Float64Array(cfg.setBootstrapReps), is: new Float64Array(cfg.setBootstrapReps) };
  timed(run, 'bootstrap', () => {
    for (let r = 0; r < cfg.setBootstrapReps; r++) {
      const idx = resampleIndices(N, `eval-set-bootstrap/${seed}`, r);
      replicates.fid[r] = frechetToReference(real.pool, featureStats(gatherRows(out.pool, out.poolDim, idx), out.poolDim));
      replicates.sfid[r] = frechetToReference(real.spatial, featureStats(gatherRows(out.spatial, out.spatialDim, idx), out.spatialDim));
      replicates.is[r] = inceptionScore(gatherRows(out.probs, C, idx), C, splits).mean;
    }
  });
  const pr = cfg.precisionRecall ? timed(run, 'precisionRecall', () => precisionRecall(real.prRows, out.pool, out.poolDim, cfg.prK)) : { precision: NaN, recall: NaN };
  const accuracy = new Float64Array(N);
  for (let i = 0; i < N; i++) accuracy[i] = predictedClass(out.probs, i, C) === classes[i] ? 1 : 0;
  run.bar?.tick(1, { seed, stage: 'features' });
  return { fid, sfid, is, replicates, precision: pr.precision, recall: pr.recall, accuracy };
}

/** 3. Progressive recognizability along each sample's own order (probabilities recorded per fraction). */
function measureRecognizability(run: SettingRun, seed: number, images: Float32Array, classes: Int32Array, blockOrders: number[][]) {
  const { N, C, fractions, cfg } = run;
  const recognizedAt = new Uint8Array(N * fractions.length);
  const curve = timed(run, 'recognizability', () => {
    let call = 0;
    const recording = (imgs: Float32Array) => {
      const p = run.classify(imgs);
      for (let i = 0; i < N; i++) recognizedAt[i * fractions.length + call] = predictedClass(p, i, C) === classes[i] ? 1 : 0;
      call++;
      return p;
    };
    return recognizabilityCurve({ classify: recording, images, labels: classes, layout: run.layout, orders: blockOrders, fractions, fill: cfg.fill });
  });
  const perSampleAuc = new Float64Array(N);
  const row = new Array<number>(fractions.length);
  for (let i = 0; i < N; i++) {
    for (let f = 0; f < fractions.length; f++) row[f] = recognizedAt[i * fractions.length + f];
    perSampleAuc[i] = curveAuc(fractions, row);
  }
  run.bar?.tick(1, { seed, stage: 'recognizability' });
  return { curve, recognizedAt, perSampleAuc };
}

/** 4. Exact NLL on the shared test images (the first nllImages), under the first seed's policy. */
async function measureNll(run: SettingRun, seed: number, policy: OrderPolicy): Promise<{ bitsPerToken: number; perImageBits: Float64Array }> {
  const { m, ctx, cfg, geo, T } = run;
  const n0 = 0, n1 = cfg.nllImages;
  const nll = await timedAsync(run, 'nll', () => nllUnderPolicy(m, ctx.testTokens.subarray(n0 * T, n1 * T), ctx.testLabels.subarray(n0, n1), policy, geo, cfg.nllBatch));
  const perImageBits = Float64Array.from(nll.perImage, (v) => v / T / Math.LN2);
  run.bar?.tick(1, { seed, stage: 'nll' });
  return { bitsPerToken: nll.bitsPerToken, perImageBits };
}

/** 5. One example trajectory: sample 0, frame t showing its first t + 1 blocks. */
function exampleTrajectory(run: SettingRun, images: Float32Array, classes: Int32Array, blockOrders: number[][]): TrajectoryExample {
  const { geo, px, height, width } = run;
  const visible = new Uint8Array(geo.numBlocks * geo.numBlocks);
  blockOrders[0].forEach((blk, t) => { for (let f = t; f < geo.numBlocks; f++) visible[f * geo.numBlocks + blk] = 1; });
  const frameSource = new Float32Array(geo.numBlocks * px);
  for (let f = 0; f < geo.numBlocks; f++) frameSource.set(images.subarray(0, px), f * px);
  return { classId: classes[0], blockOrder: blockOrders[0].slice(), frames: renderPartialImages(frameSource, run.layout, visible, run.cfg.fill), height, width };
}

/** 6. Trajectory metrics, once per setting (first seed's policy); undefined when cfg.trajectory.images is 0. */
async function measureTrajectory(run: SettingRun): Promise<TrajectoryResult | undefined> {
  const { setting, ctx, cfg } = run;
  if (!(cfg.trajectory.images > 0)) return undefined;
  const policy = setting.policyFor?.(cfg.seeds[0]) ?? setting.policy;
  const trajectory = await timedAsync(run, 'trajectory', () => trajectoryMetrics(run.m, run.geo, policy, { tokens: ctx.testTokens, labels: ctx.testLabels }, cfg.trajectory));
  run.bar?.tick(1, { stage: 'trajectory' });
  return trajectory;
}

/** 7. Close the bar and aggregate over seeds. */
function finishSettingRun(run: SettingRun, policyName: string, seeds: SeedResult[], trajectory: TrajectoryResult | undefined): SettingResult {
  const { setting, cfg, geo, fractions, sec } = run;
  sec.total = (Date.now() - run.t0) / 1000;
  run.bar?.done({ seconds: Math.round(sec.total) });
  return {
    name: setting.name, notes: setting.notes, policy: policyName,
    geometry: { gridH: geo.gridH, gridW: geo.gridW, blockH: geo.blockH, blockW: geo.blockW, numBlocks: geo.numBlocks },
    metrics: aggregate(seeds, cfg, setting.name),
    curve: aggregateCurve(seeds, fractions, cfg, setting.name),
    seeds, trajectory, samplesPerSeed: run.N,
    sampling: { temperature: cfg.temperature, topK: cfg.topK, topP: cfg.topP, cfgScale: cfg.cfgScale },
    seconds: sec,
  };
}

function mean(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i];
  return s / v.length;
}

/** Per-metric summaries over seeds (summary.ts). */
function aggregate(seeds: SeedResult[], cfg: EvalConfig, name: string): Record<EvalMetric, MetricSummary> {
  const nSamples = seeds.reduce((a, s) => a + s.n, 0);
  // FID and sFID are >= 0, IS >= 1: recentred intervals are clamped there.
  const set = (key: 'fid' | 'sfid' | 'is') => summarizeRecentred(seeds.map((s) => s.metrics[key]), seeds.map((s) => s.replicates[key]), nSamples, cfg.level,
    { min: key === 'is' ? 1 : 0 });
  const samples = (key: 'accuracy' | 'recognizabilityAuc' | 'nllBits') =>
    // NLL: the shared images, scored once (the first seed's array; the others are empty).
    summarizeSamples((key === 'nllBits' ? seeds.slice(0, 1) : seeds).map((s) => s.perSample[key]), cfg.bootstrapReps, `eval-bootstrap/${name}/${key}`, cfg.level);
  return {
    fid: set('fid'), sfid: set('sfid'), is: set('is'),
    precision: summarizeSeedRange(seeds.map((s) => s.metrics.precision), nSamples),
    recall: summarizeSeedRange(seeds.map((s) => s.metrics.recall), nSamples),
    accuracy: samples('accuracy'), recognizabilityAuc: samples('recognizabilityAuc'), nllBits: samples('nllBits'),
  };
}

/** The pooled curve with a per-fraction bootstrap band over samples. */
function aggregateCurve(seeds: SeedResult[], fractions: number[], cfg: EvalConfig, name: string): SettingResult['curve'] {
  const F = fractions.length;
  const accuracy: number[] = [], lo: number[] = [], hi: number[] = [];
  for (let f = 0; f < F; f++) {
    const perSeed = seeds.map((s) => Float64Array.from({ length: s.n }, (_, i) => s.recognizedAt[i * F + f]));
    const sm = summarizeSamples(perSeed, cfg.bootstrapReps, `eval-bootstrap/${name}/curve/${f}`, cfg.level);
    accuracy.push(sm.mean);
    lo.push(sm.lo);
    hi.push(sm.hi);
  }
  return { fractions: [...fractions], accuracy, lo, hi, fill: `constant ${cfg.fill}` };
}
