/**
 * The evaluation settings of METHOD.md section 7 and their evaluation:
 * generate samples under each setting's backbone and order policy, measure
 * them with the feature network (FID / sFID / IS / precision-recall, class
 * accuracy), follow their generation trajectories (progressive
 * recognizability), score held-out test images (exact NLL under the
 * setting's order) and, optionally, the oracle trajectory metrics
 * (trajectory.ts). Every setting gets the same seeds, the same sampling
 * settings and the same test images, so the numbers compare.
 *
 * Settings whose inputs do not exist yet (no planner checkpoint, Stage 6 not
 * implemented) are carried as `{ name, missing }` markers (settingOrMissing),
 * so a report shows "missing" in their row instead of failing.
 *
 * Intervals: see summary.ts (bootstrap over pooled samples for per-sample
 * metrics, recentred within-seed bootstrap for FID / sFID / IS, seed range
 * for precision / recall). Numbers from the feature network carry
 * FEATURE_NET_CAVEAT.
 *
 * Resumable: evaluateSettings(settings, ctx, cfg, progress, { cacheDir })
 * stores each finished setting's outcome and loads it on a rerun (cache.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GPT } from '../backbone/gpt';
import { seqLen } from '../backbone/config';
import { sampleImages } from '../backbone/sampler';
import { nllUnderPolicy } from '../backbone/nll';
import { BlockGeometry, OrderPolicy, PolicyState, randomPolicy, rasterPolicy, tokenRasterGeometry } from '../order';
import { plannerPolicy } from '../planner/policy';
import { LatentSteps, Planner } from '../planner/orderhead';
import { ensure, OrderHeadError } from '../runtime/errors';
import { activeProfile, pick, ProfileName } from '../runtime/profile';
import { rng, seedFrom } from '../runtime/seed';
import { Progress } from '../runtime/progress';
import { removeStaleTempFiles } from '../runtime/atomic';
import { evalCacheFile, evalCacheIdentity, evalContextFingerprint, readEvalCache, writeEvalCache } from './cache';
import { FeatureNet, featureNetClassifier, featureNetOutputs, FeatureNetOutputs } from './feature-net';
import { featureStats, frechetToReference, inceptionScore, precisionRecall, ReferenceStats, referenceStats } from './metrics';
import { allBlockFractions, BACKGROUND_FILL, curveAuc, recognizabilityCurve, renderPartialImages } from './recognizability';
import { MetricSummary, resampleIndices, summarizeRecentred, summarizeSamples, summarizeSeedRange } from './summary';
import { DEFAULT_TRAJECTORY_CONFIG, TrajectoryConfig, trajectoryMetrics, TrajectoryResult, validateTrajectoryConfig } from './trajectory';

// ---------------------------------------------------------------- settings

/** The setting names of METHOD.md section 7, in the order tables show them. */
export const EVAL_SETTING_NAMES = [
  'raster baseline', 'block-RAR + random order', 'block-RAR + raster order',
  'OrderHead R=0', 'OrderHead R=1', 'OrderHead R=2', 'OrderHead R=4', 'adaptive budget',
] as const;
export type EvalSettingName = (typeof EVAL_SETTING_NAMES)[number];

/**
 * Which stage, notebook or command produces the inputs of each standard
 * setting: the text a missing marker points the reader to.
 */
export const SETTING_PRODUCERS: Readonly<Record<EvalSettingName, string>> = Object.freeze({
  'raster baseline': 'Stage 1 raster-only backbone (notebooks/02_stage1_backbone.ipynb, orderMode raster)',
  'block-RAR + random order': 'Stage 1 block-RAR backbone (notebooks/02_stage1_backbone.ipynb)',
  'block-RAR + raster order': 'Stage 1 block-RAR backbone (notebooks/02_stage1_backbone.ipynb)',
  'OrderHead R=0': 'Stage 3 OrderHead planner (notebooks/04_stage3_orderhead.ipynb)',
  'OrderHead R=1': 'Stage 4 latent-reasoning curriculum, R = 1 (notebooks/05_stage4_latent_planner.ipynb)',
  'OrderHead R=2': 'Stage 4 latent-reasoning curriculum, R = 2 (notebooks/05_stage4_latent_planner.ipynb)',
  'OrderHead R=4': 'Stage 4 latent-reasoning curriculum, R = 4 (notebooks/05_stage4_latent_planner.ipynb)',
  'adaptive budget': 'Stage 6 adaptive-budget router on the Stage 5 pair (notebooks/06_stage5_joint_tuning.ipynb, notebooks/07_stage6_adaptive_budget.ipynb)',
});

/** One evaluated configuration: a backbone and the order policy that drives it. */
export interface EvalSetting {
  /** Row name in tables (EVAL_SETTING_NAMES for the standard ones). */
  name: string;
  backbone: GPT;
  /** The order policy used for sampling, NLL and trajectories. */
  policy: OrderPolicy;
  /**
   * A fresh policy per evaluation seed, for randomised policies: each seed
   * then draws new orders (a policy's random orders are keyed by sample index
   * only). Default: `policy` for every seed.
   */
  policyFor?: (seed: number) => OrderPolicy;
  /**
   * The block geometry the policy works in; default the context's. The raster
   * baseline decodes in token raster order: one block per token row
   * (tokenRasterGeometry).
   */
  geo?: BlockGeometry;
  notes?: string;
}

/** A setting that cannot be evaluated yet, and why (names the stage and what produces it). */
export interface MissingSetting {
  name: string;
  missing: string;
}

export function isMissing(x: unknown): x is MissingSetting {
  return typeof x === 'object' && x !== null && typeof (x as MissingSetting).missing === 'string';
}

/** A missing marker with an explicit message. */
export function missingSetting(name: string, message: string): MissingSetting {
  return { name, missing: message };
}

function missingFrom(name: string, err: OrderHeadError, producedBy: string | undefined): MissingSetting {
  const what = `${err.where}: ${err.problem}`;
  return { name, missing: producedBy ? `${what}. Produced by ${producedBy}; run it in this profile first.` : `${what}. Fix: ${err.fix}` };
}

/**
 * Build a setting with `fn` (which typically loads checkpoints); an
 * OrderHeadError from it (missing or foreign checkpoint) becomes a missing
 * marker naming what failed and `producedBy` (default: SETTING_PRODUCERS for
 * the standard names, else the error's own fix). Other errors propagate.
 * `fn` may be async; the result then is a Promise. Tensors `fn` created
 * before failing (a backbone loaded before its planner failed) are its to
 * dispose.
 */
export function settingOrMissing(name: string, fn: () => EvalSetting, producedBy?: string): EvalSetting | MissingSetting;
export function settingOrMissing(name: string, fn: () => Promise<EvalSetting>, producedBy?: string): Promise<EvalSetting | MissingSetting>;
export function settingOrMissing(name: string, fn: () => EvalSetting | Promise<EvalSetting>, producedBy?: string): EvalSetting | MissingSetting | Promise<EvalSetting | MissingSetting> {
  const producer = producedBy ?? (SETTING_PRODUCERS as Record<string, string>)[name];
  const onError = (err: unknown): MissingSetting => {
    if (err instanceof OrderHeadError) return missingFrom(name, err, producer);
    throw err;
  };
  try {
    const out = fn();
    if (out && typeof (out as Promise<EvalSetting>).then === 'function') return (out as Promise<EvalSetting>).then((s) => ({ ...s, name }), onError);
    return { ...(out as EvalSetting), name };
  } catch (err) {
    return onError(err);
  }
}

/** 'raster baseline': the raster-trained backbone decoding in token raster order (LlamaGen's native order). */
export function rasterBaselineSetting(backbone: GPT, notes = 'raster-trained backbone, token raster order'): EvalSetting {
  const geo = tokenRasterGeometry({ gridH: backbone.cfg.gridH, gridW: backbone.cfg.gridW });
  return { name: 'raster baseline', backbone, policy: rasterPolicy(geo), geo, notes };
}

/** 'block-RAR + random order': a fresh uniformly random block order per sample, new orders for every seed. */
export function blockRarRandomSetting(backbone: GPT, geo: BlockGeometry, seed = 0, notes = 'block-RAR backbone, random block order'): EvalSetting {
  return {
    name: 'block-RAR + random order', backbone, geo, notes,
    policy: randomPolicy(geo, seedFrom(seed, 'eval-random-order')),
    policyFor: (s) => randomPolicy(geo, seedFrom(seed, 'eval-random-order', s)),
  };
}

/** 'block-RAR + raster order': the same backbone in raster block order. */
export function blockRarRasterSetting(backbone: GPT, geo: BlockGeometry, notes = 'block-RAR backbone, raster block order'): EvalSetting {
  return { name: 'block-RAR + raster order', backbone, policy: rasterPolicy(geo), geo, notes };
}

/** 'OrderHead R=<R>': the planner's argmax block at every step (plannerPolicy). */
export function orderHeadSetting(backbone: GPT, planner: Planner, geo: BlockGeometry, R: LatentSteps = planner.cfg.latentSteps, notes?: string): EvalSetting {
  return { name: `OrderHead R=${R}`, backbone, geo, policy: plannerPolicy(planner, backbone, geo, R), notes: notes ?? `planner with ${R} latent step(s)` };
}

// ---------------------------------------------------------------- config

export interface EvalConfig {
  /** Samples generated per seed and setting (FID is biased by the count: compare at equal counts only). */
  samplesPerSeed: number;
  /** Evaluation seeds (>= 2, for intervals); the same for every setting. */
  seeds: number[];
  /** Images per sampleImages call (memory; the numbers do not depend on it except through the sampling stream). */
  sampleBatch: number;
  /** Sampling: softmax temperature (same for every setting). */
  temperature: number;
  /** Sampling: top-k (0 = off). */
  topK: number;
  /** Sampling: top-p (1 = off). */
  topP: number;
  /** Sampling: classifier-free guidance scale (1 = off). */
  cfgScale: number;
  /** Held-out test images scored for NLL per seed: seed k uses test images k*n .. (k+1)*n-1 (disjoint). */
  nllImages: number;
  /** Images per NLL pass. */
  nllBatch: number;
  /**
   * Fractions of blocks decoded at which the recognizability curve is measured,
   * ascending from 0 to 1. Default (undefined): every fraction that is a whole
   * number of blocks both in the context geometry and in token rows (the raster
   * baseline's blocks), e.g. k/8 for 16 blocks and 8 rows, so all settings are
   * compared at the same token counts.
   */
  recognizabilityFractions?: number[];
  /** Fill of undecoded pixels in partial images; default BACKGROUND_FILL (-1, the background). */
  fill: number;
  /**
   * Inception Score splits. improved-GAN and the ADM evaluator use 10 splits
   * of 5,000 (of 50,000 samples); 10 splits of 50 here score lower than
   * large splits would, so IS compares settings at equal counts only.
   */
  isSplits: number;
  /** Compute k-NN precision and recall (O(N^2) per seed). */
  precisionRecall: boolean;
  /** k of precision / recall. */
  prK: number;
  /** Bootstrap replicates for per-sample metrics (accuracy, recognizability, NLL). */
  bootstrapReps: number;
  /** Bootstrap replicates per seed for FID / sFID / IS (each costs one Fréchet distance per feature set); 0 = seed range. */
  setBootstrapReps: number;
  /** Interval level. */
  level: number;
  /** Images per feature-network pass. */
  featureBatch: number;
  /** Oracle trajectory metrics on test images (images 0 = skip). */
  trajectory: TrajectoryConfig;
}

/** One line per field, for a notebook's config table. */
export const EVAL_CONFIG_DOCS: Readonly<Record<keyof EvalConfig, string>> = Object.freeze({
  samplesPerSeed: 'generated samples per seed and setting',
  seeds: 'evaluation seeds (same for every setting)',
  sampleBatch: 'images per sampling call',
  temperature: 'sampling temperature',
  topK: 'top-k (0 = off)',
  topP: 'top-p (1 = off)',
  cfgScale: 'classifier-free guidance scale (1 = off)',
  nllImages: 'test images per seed for exact NLL (disjoint slices)',
  nllBatch: 'images per NLL pass',
  recognizabilityFractions: 'fractions of blocks decoded for the recognizability curve',
  fill: 'pixel value of undecoded regions',
  isSplits: 'Inception Score splits',
  precisionRecall: 'compute k-NN precision / recall',
  prK: 'k of precision / recall',
  bootstrapReps: 'bootstrap replicates, per-sample metrics',
  setBootstrapReps: 'bootstrap replicates per seed, FID / sFID / IS',
  level: 'interval level',
  featureBatch: 'images per feature-network pass',
  trajectory: 'oracle trajectory metrics (images, steps, reading, weight)',
});

/**
 * The evaluation config of a profile, with `overrides` on top
 * (`trajectory` overrides merge into the profile's).
 *
 * - smoke: 16 samples x 2 seeds, 16 NLL images per seed, 2 trajectory
 *   images: seconds, for CI; the numbers mean nothing.
 * - default: 160 samples x 2 seeds (320 per setting), 96 NLL images per
 *   seed, 6 trajectory images (all 16 steps), 5 bootstrap replicates per seed
 *   for FID / sFID / IS. Sized so the eight settings fit the main job's
 *   60-minute budget on our 2-core machine: at 500 x 2 samples and 500 NLL
 *   images, one block-order setting took 100 s and a planner setting 6-7 min
 *   (a planner policy adds one backbone feature pass per planning step).
 *   FID at 320 samples is biased upwards; it compares settings of the same
 *   report (same n), not other reports.
 * - full: 2,500 samples x 3 seeds, 2,000 NLL images per seed, 128 trajectory
 *   images, 20 replicates per seed.
 */
export function evalConfig(profile: ProfileName = activeProfile(), overrides: Partial<Omit<EvalConfig, 'trajectory'>> & { trajectory?: Partial<TrajectoryConfig> } = {}): EvalConfig {
  const sizes = pick(
    {
      smoke: { samplesPerSeed: 16, seeds: [0, 1], sampleBatch: 16, nllImages: 16, isSplits: 2, bootstrapReps: 200, setBootstrapReps: 2, trajectoryImages: 2 },
      default: { samplesPerSeed: 160, seeds: [0, 1], sampleBatch: 160, nllImages: 96, isSplits: 10, bootstrapReps: 500, setBootstrapReps: 5, trajectoryImages: 6 },
      full: { samplesPerSeed: 2500, seeds: [0, 1, 2], sampleBatch: 250, nllImages: 2000, isSplits: 10, bootstrapReps: 1000, setBootstrapReps: 20, trajectoryImages: 128 },
    },
    profile,
  );
  const { trajectoryImages, ...rest } = sizes;
  const { trajectory: trajOver, ...over } = overrides;
  const cfg: EvalConfig = {
    ...rest,
    temperature: 1, topK: 0, topP: 1, cfgScale: 1,
    nllBatch: 64, fill: BACKGROUND_FILL, precisionRecall: true, prK: 3, level: 0.95, featureBatch: 256,
    ...over,
    trajectory: { ...DEFAULT_TRAJECTORY_CONFIG, images: trajectoryImages, bootstrapReps: rest.bootstrapReps, ...trajOver },
  };
  validateEvalConfig(cfg);
  return cfg;
}

/** Check a config; each problem names the field (`eval.seeds`) and the fix. */
export function validateEvalConfig(cfg: EvalConfig): void {
  const int = (k: keyof EvalConfig, min: number) => {
    const v = cfg[k] as unknown as number;
    ensure(Number.isInteger(v) && v >= min, `must be a whole number >= ${min}, got ${v}`, `eval.${k}`, `set ${k} to a whole number >= ${min}`);
  };
  int('samplesPerSeed', 2);
  ensure(Array.isArray(cfg.seeds) && cfg.seeds.length >= 2 && cfg.seeds.every((s) => Number.isInteger(s)) && new Set(cfg.seeds).size === cfg.seeds.length,
    `must be at least 2 distinct whole numbers (intervals need them), got ${JSON.stringify(cfg.seeds)}`, 'eval.seeds', 'use e.g. [0, 1]');
  int('sampleBatch', 1);
  ensure(Number.isFinite(cfg.temperature) && cfg.temperature >= 0, `must be >= 0, got ${cfg.temperature}`, 'eval.temperature', 'use 1 (0 = greedy)');
  int('topK', 0);
  ensure(cfg.topP > 0 && cfg.topP <= 1, `must lie in (0, 1], got ${cfg.topP}`, 'eval.topP', 'use 1 (off) or e.g. 0.95');
  ensure(Number.isFinite(cfg.cfgScale) && cfg.cfgScale >= 0, `must be a number >= 0, got ${cfg.cfgScale}`, 'eval.cfgScale', 'use 1 (off) or e.g. 1.5');
  int('nllImages', 1);
  int('nllBatch', 1);
  if (cfg.recognizabilityFractions !== undefined) {
    const f = cfg.recognizabilityFractions;
    ensure(Array.isArray(f) && f.length >= 2 && f[0] === 0 && f[f.length - 1] === 1 && f.every((x, i) => i === 0 || x > f[i - 1]),
      `must increase from exactly 0 to exactly 1, got ${JSON.stringify(f)}`, 'eval.recognizabilityFractions', 'pass e.g. [0, 0.25, 0.5, 0.75, 1], or leave it out');
  }
  ensure(Number.isFinite(cfg.fill), `must be a number, got ${cfg.fill}`, 'eval.fill', `use BACKGROUND_FILL (${BACKGROUND_FILL})`);
  int('isSplits', 1);
  ensure(cfg.samplesPerSeed >= cfg.isSplits, `samplesPerSeed ${cfg.samplesPerSeed} is fewer than the ${cfg.isSplits} IS splits`, 'eval.isSplits', 'use fewer splits or more samples');
  int('prK', 1);
  ensure(!cfg.precisionRecall || cfg.samplesPerSeed > cfg.prK, `precision/recall need more than k = ${cfg.prK} samples`, 'eval.samplesPerSeed', 'generate more samples or set precisionRecall false');
  int('bootstrapReps', 2);
  int('setBootstrapReps', 0);
  ensure(cfg.setBootstrapReps !== 1, 'one replicate per seed gives no spread', 'eval.setBootstrapReps', 'use 0 (seed range) or >= 2');
  ensure(cfg.level > 0 && cfg.level < 1, `must lie strictly between 0 and 1, got ${cfg.level}`, 'eval.level', 'use 0.95');
  int('featureBatch', 1);
  ensure(cfg.trajectory && Number.isInteger(cfg.trajectory.images) && cfg.trajectory.images >= 0, `trajectory.images must be a whole number >= 0, got ${cfg.trajectory?.images}`, 'eval.trajectory.images', 'use 0 to skip, or e.g. 16');
}

// ---------------------------------------------------------------- context

/** Where a profile's evaluation report lives: `<runRoot>/eval-<profile>` (tables under `tables/`). */
export function evalReportDir(runRoot: string, profile: ProfileName = activeProfile()): string {
  return path.join(runRoot, `eval-${profile}`);
}

/** Statistics of the real test images under the feature network, computed once and shared by every setting. */
export interface RealFeatureStats {
  /** Pool (FID) features. */
  pool: ReferenceStats;
  /** Spatial (sFID) features. */
  spatial: ReferenceStats;
  /** A seeded subset of the pool rows for precision / recall ([prRows * poolDim]). */
  prRows: Float32Array;
  poolDim: number;
  spatialDim: number;
  classes: number;
  /** Real images behind the statistics. */
  n: number;
}

/**
 * RealFeatureStats of real images' feature-net outputs (featureNetOutputs of
 * the test split): both covariances with their square roots, and `prRows`
 * rows (default 1,000, a seeded subset when there are more) for
 * precision / recall.
 */
export function realFeatureStats(outputs: FeatureNetOutputs, opts: { prRows?: number; seed?: number } = {}): RealFeatureStats {
  ensure(outputs && outputs.n >= 2, `needs at least 2 real images, got ${outputs?.n}`, 'realFeatureStats(outputs)', 'pass featureNetOutputs(net, testImages) of the test split');
  const want = Math.min(outputs.n, opts.prRows ?? 1000);
  const idx = Array.from({ length: outputs.n }, (_, i) => i);
  if (want < outputs.n) rng(seedFrom(opts.seed ?? 0, 'eval-pr-real-rows')).shuffle(idx);
  const d = outputs.poolDim;
  const prRows = new Float32Array(want * d);
  for (let i = 0; i < want; i++) prRows.set(outputs.pool.subarray(idx[i] * d, (idx[i] + 1) * d), i * d);
  return {
    pool: referenceStats(outputs.pool, outputs.poolDim), spatial: referenceStats(outputs.spatial, outputs.spatialDim), prRows,
    poolDim: outputs.poolDim, spatialDim: outputs.spatialDim, classes: outputs.classes, n: outputs.n,
  };
}

/** What every setting is evaluated against. */
export interface EvalContext {
  /** Tokens [N * T] -> images [N * H * W] in [-1, 1] (a VqTokenizer, or any object with decode). */
  tokenizer: { decode(tokens: Int32Array): Float32Array };
  featureNet: FeatureNet;
  /** realFeatureStats of the real test images. */
  realStats: RealFeatureStats;
  /** Token cache test split: grids [N * T] and labels [N] (held out from every training stage). */
  testTokens: Int32Array;
  testLabels: Int32Array;
  /** The block geometry of the block settings (e.g. 8 x 8 tokens, 2 x 2 blocks). */
  geo: BlockGeometry;
}

// ---------------------------------------------------------------- results

/** The scalar metrics of a seed / a setting. */
export const EVAL_METRICS = ['fid', 'sfid', 'is', 'precision', 'recall', 'accuracy', 'recognizabilityAuc', 'nllBits'] as const;
export type EvalMetric = (typeof EVAL_METRICS)[number];

/** One generation trajectory as frames: frame t shows the first t + 1 blocks of the order decoded. */
export interface TrajectoryExample {
  classId: number;
  blockOrder: number[];
  /** [numBlocks * height * width], undecoded pixels = the config's fill. */
  frames: Float32Array;
  height: number;
  width: number;
}

/** Everything measured for one seed. */
export interface SeedResult {
  seed: number;
  /** Samples generated. */
  n: number;
  /** The scalar metrics (precision / recall NaN when switched off). */
  metrics: Record<EvalMetric, number>;
  /** Bootstrap replicates of FID / sFID / IS (setBootstrapReps each). */
  replicates: { fid: Float64Array; sfid: Float64Array; is: Float64Array };
  /** Per-sample values: 0/1 class accuracy, recognizability AUC; per test image: NLL bits per token. */
  perSample: { accuracy: Float64Array; recognizabilityAuc: Float64Array; nllBits: Float64Array };
  /** Per sample: 1 where the classifier recognises the class at each fraction ([n * fractions]). */
  recognizedAt: Uint8Array;
  /** Accuracy at each fraction. */
  curve: number[];
  /** Generated tokens [n * T], their conditioning classes and block orders (decode again for grids). */
  tokens: Int32Array;
  classes: Int32Array;
  blockOrders: number[][];
  example: TrajectoryExample;
}

/** Seconds spent per phase, all seeds together. */
export interface EvalTimings {
  sample: number;
  decode: number;
  features: number;
  fid: number;
  bootstrap: number;
  precisionRecall: number;
  recognizability: number;
  nll: number;
  trajectory: number;
  total: number;
}

/** The evaluation of one setting. */
export interface SettingResult {
  name: string;
  notes?: string;
  policy: string;
  geometry: { gridH: number; gridW: number; blockH: number; blockW: number; numBlocks: number };
  /** Per metric: mean over seeds and interval (summary.ts). */
  metrics: Record<EvalMetric, MetricSummary>;
  /** Recognizability curve: accuracy at each fraction of blocks decoded, pooled over seeds, with a bootstrap band. */
  curve: { fractions: number[]; accuracy: number[]; lo: number[]; hi: number[]; fill: string };
  seeds: SeedResult[];
  trajectory?: TrajectoryResult;
  samplesPerSeed: number;
  /** The sampling settings used (identical for every setting of a report). */
  sampling: { temperature: number; topK: number; topP: number; cfgScale: number };
  seconds: EvalTimings;
}

export type SettingOutcome = SettingResult | MissingSetting;

// ---------------------------------------------------------------- evaluation

/** n class ids balanced over `classes` (counts differ by at most one), shuffled by the seed. */
export function balancedClasses(n: number, classes: number, seed: number): Int32Array {
  const out = Array.from({ length: n }, (_, i) => i % classes);
  rng(seedFrom(seed, 'eval-classes')).shuffle(out);
  return Int32Array.from(out);
}

/** The policy seen by samples offset .. offset + B - 1 of a seed (sampleImages numbers each call's states from 0). */
function offsetPolicy(p: OrderPolicy, offset: number): OrderPolicy {
  if (offset === 0) return p;
  return { name: p.name, nextBlocks: (states: readonly PolicyState[]) => p.nextBlocks(states.map((s) => ({ ...s, index: s.index + offset }))) };
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
  const needed = cfg.nllImages * cfg.seeds.length;
  ensure(ctx.testLabels.length >= needed, `NLL needs ${needed} test images (${cfg.nllImages} per seed x ${cfg.seeds.length} seeds, disjoint), the split has ${ctx.testLabels.length}`,
    'eval.nllImages', `lower nllImages to at most ${Math.floor(ctx.testLabels.length / cfg.seeds.length)}`);
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
 * then undecoded blocks are blanked with renderPartialImages), exact NLL
 * bits per token on a disjoint slice of the test split under the setting's
 * policy (nllUnderPolicy), and one example trajectory. Then the oracle
 * trajectory metrics (cfg.trajectory) once per setting, with the first
 * seed's policy. Aggregates over seeds as summary.ts describes.
 * `progress` is a bar factory (session.progress). Leaks no tensors.
 */
export async function evaluateSetting(setting: EvalSetting | MissingSetting, ctx: EvalContext, cfg: EvalConfig,
  progress?: (opts: { total: number; label: string }) => Progress): Promise<SettingOutcome> {
  if (isMissing(setting)) return setting;
  validateEvalConfig(cfg);
  const { geo, height, width, fractions } = checkContext(setting, ctx, cfg);
  const m = setting.backbone, T = seqLen(m.cfg), C = m.cfg.numClasses, px = height * width, N = cfg.samplesPerSeed;
  const net = ctx.featureNet, real = ctx.realStats;
  const sec: EvalTimings = { sample: 0, decode: 0, features: 0, fid: 0, bootstrap: 0, precisionRecall: 0, recognizability: 0, nll: 0, trajectory: 0, total: 0 };
  const t0 = Date.now();
  const timed = <R>(key: keyof EvalTimings, f: () => R): R => {
    const s = Date.now();
    try { return f(); } finally { sec[key] += (Date.now() - s) / 1000; }
  };
  const timedAsync = async <R>(key: keyof EvalTimings, f: () => Promise<R>): Promise<R> => {
    const s = Date.now();
    try { return await f(); } finally { sec[key] += (Date.now() - s) / 1000; }
  };
  const batches = Math.ceil(N / cfg.sampleBatch);
  const bar = progress?.({ total: cfg.seeds.length * (batches + 3) + (cfg.trajectory.images > 0 ? 1 : 0), label: `eval ${setting.name}` });
  const classify = featureNetClassifier(net, cfg.featureBatch);
  const layout = { geo, height, width };
  const seeds: SeedResult[] = [];
  let policyName = setting.policy.name;
  try {
    for (const [k, seed] of cfg.seeds.entries()) {
      const policy = setting.policyFor?.(seed) ?? setting.policy;
      if (k === 0) policyName = policy.name;
      // 1. Samples, in batches; the policy sees each sample's index within the seed.
      const classes = balancedClasses(N, C, seed);
      const tokens = new Int32Array(N * T);
      const blockOrders: number[][] = [];
      for (let b = 0; b < batches; b++) {
        const lo = b * cfg.sampleBatch, hi = Math.min(N, lo + cfg.sampleBatch);
        const res = await timedAsync('sample', () => sampleImages(m, {
          classes: classes.subarray(lo, hi), policy: offsetPolicy(policy, lo), geometry: geo,
          temperature: cfg.temperature, topK: cfg.topK, topP: cfg.topP, cfgScale: cfg.cfgScale, seed: seedFrom(seed, 'eval-sample', b),
        }));
        tokens.set(res.tokens, lo * T);
        blockOrders.push(...res.blockOrders);
        bar?.tick(1, { seed, stage: 'sample' });
      }
      // 2. Decode and measure with the feature network.
      const images = timed('decode', () => ctx.tokenizer.decode(tokens));
      ensure(images.length === N * px, `decode returned ${images.length} values for ${N} images of ${height}x${width}`, 'ctx.tokenizer.decode',
        `use the tokenizer whose images match the feature net (${height}x${width})`);
      const out = timed('features', () => featureNetOutputs(net, images, cfg.featureBatch));
      const genPool = featureStats(out.pool, out.poolDim), genSpatial = featureStats(out.spatial, out.spatialDim);
      const fid = timed('fid', () => frechetToReference(real.pool, genPool));
      const sfid = timed('fid', () => frechetToReference(real.spatial, genSpatial));
      const splits = cfg.isSplits;
      const is = inceptionScore(out.probs, C, splits).mean;
      const reps = { fid: new Float64Array(cfg.setBootstrapReps), sfid: new Float64Array(cfg.setBootstrapReps), is: new Float64Array(cfg.setBootstrapReps) };
      timed('bootstrap', () => {
        for (let r = 0; r < cfg.setBootstrapReps; r++) {
          const idx = resampleIndices(N, `eval-set-bootstrap/${seed}`, r);
          reps.fid[r] = frechetToReference(real.pool, featureStats(gatherRows(out.pool, out.poolDim, idx), out.poolDim));
          reps.sfid[r] = frechetToReference(real.spatial, featureStats(gatherRows(out.spatial, out.spatialDim, idx), out.spatialDim));
          reps.is[r] = inceptionScore(gatherRows(out.probs, C, idx), C, splits).mean;
        }
      });
      const pr = cfg.precisionRecall ? timed('precisionRecall', () => precisionRecall(real.prRows, out.pool, out.poolDim, cfg.prK)) : { precision: NaN, recall: NaN };
      const accuracy = new Float64Array(N);
      for (let i = 0; i < N; i++) {
        let best = 0;
        for (let c = 1; c < C; c++) if (out.probs[i * C + c] > out.probs[i * C + best]) best = c;
        accuracy[i] = best === classes[i] ? 1 : 0;
      }
      bar?.tick(1, { seed, stage: 'features' });
      // 3. Progressive recognizability along each sample's own order (probabilities recorded per fraction).
      const recognizedAt = new Uint8Array(N * fractions.length);
      const curve = timed('recognizability', () => {
        let call = 0;
        const recording = (imgs: Float32Array) => {
          const p = classify(imgs);
          for (let i = 0; i < N; i++) {
            let best = 0;
            for (let c = 1; c < C; c++) if (p[i * C + c] > p[i * C + best]) best = c;
            recognizedAt[i * fractions.length + call] = best === classes[i] ? 1 : 0;
          }
          call++;
          return p;
        };
        return recognizabilityCurve({ classify: recording, images, labels: classes, layout, orders: blockOrders, fractions, fill: cfg.fill });
      });
      const recognizabilityAuc = new Float64Array(N);
      const row = new Array<number>(fractions.length);
      for (let i = 0; i < N; i++) {
        for (let f = 0; f < fractions.length; f++) row[f] = recognizedAt[i * fractions.length + f];
        recognizabilityAuc[i] = curveAuc(fractions, row);
      }
      bar?.tick(1, { seed, stage: 'recognizability' });
      // 4. Exact NLL on this seed's slice of the test split, under this seed's policy.
      const n0 = k * cfg.nllImages, n1 = n0 + cfg.nllImages;
      const nll = await timedAsync('nll', () => nllUnderPolicy(m, ctx.testTokens.subarray(n0 * T, n1 * T), ctx.testLabels.subarray(n0, n1), policy, geo, cfg.nllBatch));
      const nllBits = Float64Array.from(nll.perImage, (v) => v / T / Math.LN2);
      bar?.tick(1, { seed, stage: 'nll' });
      // 5. One example trajectory: sample 0.
      const visible = new Uint8Array(geo.numBlocks * geo.numBlocks);
      blockOrders[0].forEach((blk, t) => { for (let f = t; f < geo.numBlocks; f++) visible[f * geo.numBlocks + blk] = 1; });
      const frameSource = new Float32Array(geo.numBlocks * px);
      for (let f = 0; f < geo.numBlocks; f++) frameSource.set(images.subarray(0, px), f * px);
      const example: TrajectoryExample = { classId: classes[0], blockOrder: blockOrders[0].slice(), frames: renderPartialImages(frameSource, layout, visible, cfg.fill), height, width };
      seeds.push({
        seed, n: N,
        metrics: { fid, sfid, is, precision: pr.precision, recall: pr.recall, accuracy: mean(accuracy), recognizabilityAuc: curve.auc, nllBits: nll.bitsPerToken },
        replicates: reps, perSample: { accuracy, recognizabilityAuc, nllBits }, recognizedAt, curve: curve.accuracy,
        tokens, classes, blockOrders, example,
      });
    }
    // 6. Oracle trajectory metrics, once per setting (first seed's policy).
    let trajectory: TrajectoryResult | undefined;
    if (cfg.trajectory.images > 0) {
      const policy = setting.policyFor?.(cfg.seeds[0]) ?? setting.policy;
      trajectory = await timedAsync('trajectory', () => trajectoryMetrics(m, geo, policy, { tokens: ctx.testTokens, labels: ctx.testLabels }, cfg.trajectory));
      bar?.tick(1, { stage: 'trajectory' });
    }
    sec.total = (Date.now() - t0) / 1000;
    bar?.done({ seconds: Math.round(sec.total) });
    return {
      name: setting.name, notes: setting.notes, policy: policyName,
      geometry: { gridH: geo.gridH, gridW: geo.gridW, blockH: geo.blockH, blockW: geo.blockW, numBlocks: geo.numBlocks },
      metrics: aggregate(seeds, cfg, setting.name),
      curve: aggregateCurve(seeds, fractions, cfg, setting.name),
      seeds, trajectory, samplesPerSeed: N,
      sampling: { temperature: cfg.temperature, topK: cfg.topK, topP: cfg.topP, cfgScale: cfg.cfgScale },
      seconds: sec,
    };
  } catch (err) {
    bar?.done({ stopped: 'error' });
    throw err;
  }
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
    summarizeSamples(seeds.map((s) => s.perSample[key]), cfg.bootstrapReps, `eval-bootstrap/${name}/${key}`, cfg.level);
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

/** What happened to one setting in evaluateSettings. */
export interface EvalSettingEvent {
  name: string;
  /** 'computed' (and, with a cacheDir, stored), 'cached' (loaded from the cacheDir), 'missing' (marker passed through). */
  source: 'computed' | 'cached' | 'missing';
  /** The setting's cache file (with a cacheDir). */
  file?: string;
  /** Why an existing cache file was not used (unreadable, or written for another identity). */
  ignored?: string;
}

export interface EvaluateSettingsOptions {
  /**
   * Resumable evaluation: store each finished setting's outcome in this folder
   * (created if missing; one file per setting, written atomically) and load,
   * instead of recomputing, the settings already there for the same setting,
   * policy, backbone weights, config and context. Format and key: lib/eval/cache.ts.
   */
  cacheDir?: string;
  /** Called after each setting. */
  onSetting?: (event: EvalSettingEvent) => void;
}

/**
 * Evaluate several settings in turn (missing ones pass through). With
 * `opts.cacheDir`, finished settings are stored and a rerun (after a crash or
 * kill) loads them: the result equals that of an uninterrupted run (timings
 * aside: a loaded outcome keeps the seconds it was computed in).
 */
export async function evaluateSettings(settings: readonly (EvalSetting | MissingSetting)[], ctx: EvalContext, cfg: EvalConfig,
  progress?: (opts: { total: number; label: string }) => Progress, opts: EvaluateSettingsOptions = {}): Promise<SettingOutcome[]> {
  const out: SettingOutcome[] = [];
  const dir = opts.cacheDir;
  if (dir !== undefined) {
    validateEvalConfig(cfg);
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new OrderHeadError(`cannot create the evaluation cache folder (${(err as Error).message})`, `${dir} (cacheDir)`,
        'pass a writable folder path for cacheDir (not a file), e.g. <report dir>/cache');
    }
    removeStaleTempFiles(dir); // of writers killed mid-write
  }
  let contextPrint: string | undefined;
  for (const s of settings) {
    if (isMissing(s)) {
      out.push(s);
      opts.onSetting?.({ name: s.name, source: 'missing' });
      continue;
    }
    if (dir === undefined) {
      out.push(await evaluateSetting(s, ctx, cfg, progress));
      opts.onSetting?.({ name: s.name, source: 'computed' });
      continue;
    }
    contextPrint ??= evalContextFingerprint(ctx);
    const { key, identity } = evalCacheIdentity(s, ctx, cfg, contextPrint);
    const file = evalCacheFile(dir, s.name, key);
    const read = readEvalCache(file, key, identity);
    if (read && 'outcome' in read) {
      out.push(read.outcome);
      opts.onSetting?.({ name: s.name, source: 'cached', file });
      continue;
    }
    const res = await evaluateSetting(s, ctx, cfg, progress);
    writeEvalCache(file, key, identity, res as SettingResult);
    out.push(res);
    opts.onSetting?.({ name: s.name, source: 'computed', file, ...(read ? { ignored: read.ignored } : {}) });
  }
  return out;
}
