/**
 * Trajectory metrics of METHOD.md section 7, measured with the oracle
 * (lib/oracle/utility.ts) on held-out test images, i.e. on ground-truth
 * tokens, along each setting's own block orders a_0, a_1, ..., a_{n-1}
 * (n = numBlocks; S_t = the first t blocks of the order):
 *
 * - the remaining-loss curve L_rest(S_t), t = 0 .. n-1 (L_rest(S_n) = 0), on
 *   `images` test images, with per image its area and its first-half drop:
 *     area      = (1/n) [Σ_{t<n} L_rest(S_t) - L_rest(∅)/2], the area under
 *                 the curve against the fraction decoded t/n, from t = 0 to
 *                 t = n where L_rest = 0 (trapezoids; lower: the order
 *                 front-loads the information);
 *     firstHalf = L_rest(∅) - L_rest(S_h), h = ⌈n/2⌉ = Σ_{t<n/2} u(a_t | S_t),
 *                 the loss removed by the first half of the blocks (higher:
 *                 front-loaded);
 *   and start = L_rest(∅). As L_rest(∅) is the same for every order of one
 *   backbone, the area ranks orders exactly as Σ_t L_rest(S_t) does; the
 *   1/n and the trapezoids put settings with another block count (the raster
 *   baseline's 8 token rows against 16 blocks) on one scale: a straight-line
 *   decline has area L_rest(∅)/2 for every n, where the plain sum / n would
 *   add L_rest(∅)/(2n), a bias that depends on n.
 * - the per-step oracle comparison, on the first `oracleImages` of those
 *   images (it needs u of every candidate at every state, scoreStates, about
 *   |R| times the curve's cost per state): the realized utility u(a_t | S_t)
 *   of each chosen block against the oracle's best max_a u(a | S_t), a
 *   uniformly random choice (the mean of u over the unseen blocks) and the
 *   raster choice (u of the first unseen block in raster block order), all at
 *   the policy's own state S_t; regret and top-1 agreement against **two
 *   targets**, each labelled (ORACLE_TARGETS): 'argmax u' (a*, regret in u)
 *   and 'trained', the planner's trained target (a*_extrap = argmax u_extrap
 *   under the oracle dataset's primary weight, regret in that u_extrap: the
 *   planner is trained on it, METHOD.md §3.4, so judging it on argmax u
 *   alone would judge it on a target it never saw); and the far-context gain
 *   u_extrap(a_t | S_t) with the configured `weight` (`no-neighbours`:
 *   tokens outside a_t's 8 neighbouring blocks only), and its share of u.
 *   When the trained target's weight is another one, the scores are taken
 *   twice (one scoreStates call per weight).
 *
 * Method: roll out the policy once on all images (rollOutOnGroundTruth: it
 * sees only the visible ground truth, as in nllUnderPolicy); then per step t one
 * scoreRestLoss call for the states S_t of all images (they share |S|, so
 * they pack into the same batched passes), and for the oracle comparison one
 * scoreStates call per measured step on the oracle images (oraclePolicy makes
 * exactly the same calls, so its realized u equals the oracle's maximum bit
 * for bit).
 *
 * Reading it: u(a | S) = L_rest(S) - L_rest(S ∪ {a}) in every reading, so the
 * realized utilities telescope: Σ_t u(a_t | S_t) = L_rest(∅) - L_rest(all) =
 * L_rest(∅), whatever the order. The *total* reduction is therefore the same
 * for every policy on one backbone (to the last digit in the order-free
 * block-marginal reading), and is not reported as a result. What an order
 * changes is *when* the loss goes: the curve, its area and the first-half
 * drop; and, per step, how far the choice is from the oracle's at the same
 * state (`regret`, `agreement`). Settings evaluated on the same test images
 * (evaluateSetting always takes the first ones of the split) compare image by
 * image: pairedTrajectoryDifference bootstraps the per-image differences.
 * Intervals: bootstrap over images (summary.ts). The far-context share is a
 * ratio of sums over steps and images, Σ u_extrap(a_t) / Σ u(a_t): per-step
 * ratios explode where u is near zero.
 *
 * A property of the teacher-forced reading to keep in mind: its reference
 * order decodes the remaining blocks in raster order, so revealing the
 * raster-next block changes no other token's loss. The raster choice's u is
 * the loss of its own tokens and its far-context gain is 0 by construction;
 * the block-marginal reading (primary, the default here) has no reference
 * order.
 *
 * The losses are those of the backbone passed in (an evaluation setting's
 * own backbone), in nats.
 */
import { GPT } from '../backbone/gpt';
import { seqLen } from '../backbone/config';
import { rollOutOnGroundTruth } from '../backbone/nll';
import { BlockGeometry, OrderPolicy, PolicyState } from '../order';
import { PRIMARY_READING, Reading, READINGS, scoreRestLoss, scoreStates, StateScore } from '../oracle/utility';
import { WeightName, WEIGHTS } from '../oracle/weights';
import { OracleLabeling, ORACLE_DATASET_DEFAULTS } from '../oracle/dataset-config';
import { LabelName, LABELS } from '../planner/train';
import { PRIMARY_STAGE3_RUN, STAGE3_RUNS } from '../planner/stages';
import { ensure, oneOf } from '../runtime/errors';
import { MetricSummary, summarizeRatio, summarizeSamples } from './summary';

/**
 * The oracle targets a chosen block is judged against (METHOD.md §7.3), by name:
 * - 'trained': the planner's trained target, argmax of its Stage 3 label
 *   (PRIMARY_STAGE3_RUN: u_extrap) under the oracle dataset's primary weight
 *   (TrajectoryConfig.trainedTarget);
 * - 'argmax u': a* = argmax u, the block that removes the most remaining loss,
 *   its own loss included.
 */
export const ORACLE_TARGETS = ['trained', 'argmax u'] as const;
export type OracleTargetName = (typeof ORACLE_TARGETS)[number];

/** What the planner was trained to pick: argmax of `label` (u_extrap under `weight`, or u). */
export interface TrainedTarget {
  label: LabelName;
  /** w of u_extrap (the oracle dataset's primary labelling); unused for label 'u'. */
  weight: WeightName;
}

/**
 * The planner's trained target for an oracle dataset's primary labelling
 * (its manifest's `labelings.primary`; default ORACLE_DATASET_DEFAULTS, the
 * labelling a default dataset gets): the label of PRIMARY_STAGE3_RUN under
 * that labelling's weight. The one place the evaluation learns what the
 * planner was trained on.
 */
export function plannerTrainedTarget(primary: Pick<OracleLabeling, 'weight'> = ORACLE_DATASET_DEFAULTS): TrainedTarget {
  const run = STAGE3_RUNS.find((r) => r.key === PRIMARY_STAGE3_RUN)!;
  return { label: run.label, weight: oneOf(primary?.weight, WEIGHTS, 'oracle dataset manifest (labelings.primary.weight)') };
}

/** A target in words, for captions and legends: "argmax u_extrap, no-neighbours weight (trained target)" or "argmax u". */
export function targetLabel(name: OracleTargetName, trained: TrainedTarget): string {
  if (name === 'argmax u') return 'argmax u';
  return trained.label === 'u' ? 'argmax u (trained target)' : `argmax u_extrap, ${trained.weight} weight (trained target)`;
}

export interface TrajectoryConfig {
  /** Test images whose remaining-loss curve is measured (the first ones of the split). 0 = skip (evaluateSetting). */
  images: number;
  /** Of those, the first `oracleImages` also get the per-step oracle comparison (0 = none; at most `images`). */
  oracleImages: number;
  /**
   * Step indices t of the oracle comparison (S_t = the first t blocks of the
   * order), ascending, in 0 .. numBlocks-1; default every step. Scoring step t
   * costs about (numBlocks - t)^2 continuations of one block each, so the
   * early steps dominate; a subset such as [0, 2, 4, 6, 8] bounds the cost,
   * but then its sums cover those steps only. The remaining-loss curve is
   * always measured at every step.
   */
  steps?: number[];
  /** How l_j is measured; default PRIMARY_READING ('block-marginal': in distribution, order-free). */
  reading: Reading;
  /** w of u_extrap for the far-context gain; default 'no-neighbours'. */
  weight: WeightName;
  /**
   * The planner's trained target, the 'trained' target of the oracle
   * comparison; default plannerTrainedTarget() of the default dataset.
   * Notebook 08 sets it from the oracle dataset's manifest.
   */
  trainedTarget: TrainedTarget;
  /** Max sequences per oracle pass (scoreStates, scoreRestLoss); default theirs (64). */
  batch?: number;
  /** Bootstrap replicates of the intervals over images. */
  bootstrapReps: number;
  /** Interval level. */
  level: number;
  /** Seed of the bootstrap. */
  seed: number;
}

/** Defaults (the sizes come from evalConfig's profiles). */
export const DEFAULT_TRAJECTORY_CONFIG: TrajectoryConfig = Object.freeze({
  images: 64, oracleImages: 6, reading: PRIMARY_READING, weight: 'no-neighbours', trainedTarget: plannerTrainedTarget(), bootstrapReps: 1000, level: 0.95, seed: 0,
}) as TrajectoryConfig;

/** Per-image summaries of the remaining-loss curve (see the file comment). */
export const REMAINING_LOSS_TOTALS = ['start', 'area', 'firstHalf'] as const;
export type RemainingLossTotal = (typeof REMAINING_LOSS_TOTALS)[number];

/** Means over the oracle images at one step t. */
export interface TrajectoryStep {
  step: number;
  /** u(a_t | S_t) of the policy's block. */
  realized: number;
  /** max_a u(a | S_t). */
  oracle: number;
  /** Mean of u(a | S_t) over the unseen blocks (a uniformly random choice). */
  random: number;
  /** u of the first unseen block in raster block order. */
  raster: number;
  /** u_extrap(a_t | S_t) with the configured weight (far-context gain). */
  farRealized: number;
  /** max_a u_extrap(a | S_t). */
  farOracle: number;
  /** Target 'argmax u': share of images whose chosen block is a* (lowest index on ties). */
  agreementU: number;
  /** Target 'trained': the trained target's utility of the chosen block (u_extrap under its weight, or u). */
  realizedTrained: number;
  /** Its maximum over the unseen blocks. */
  oracleTrained: number;
  /** Target 'trained': share of images whose chosen block is its argmax (lowest index on ties). */
  agreementTrained: number;
}

/**
 * Per-image sums over the measured steps of the oracle comparison. The target
 * is in the name: `regretU` / `agreementU` against 'argmax u' (regret in u),
 * `regretTrained` / `agreementTrained` against 'trained' (regret in the
 * trained target's utility).
 */
export const ORACLE_SUMS = ['realized', 'oracle', 'random', 'raster', 'regretU', 'agreementU', 'regretTrained', 'agreementTrained', 'farRealized'] as const;
export type OracleSum = (typeof ORACLE_SUMS)[number];
/** Keys of OracleComparison.totals. */
export type OracleTotalKey = OracleSum | 'farShare';

/** The per-step oracle comparison on the first `images` test images. */
export interface OracleComparison {
  images: number;
  /** w of the far-context gain. */
  weight: WeightName;
  /** The 'trained' target these numbers were judged against, and both targets in words (targetLabel). */
  trainedTarget: TrainedTarget;
  targetLabels: Record<OracleTargetName, string>;
  /** The measured step indices. */
  steps: number[];
  perStep: TrajectoryStep[];
  /**
   * Mean over images of each per-image sum over the measured steps
   * (`agreement`: mean share of steps), with bootstrap intervals over images;
   * `farShare` = Σ farRealized / Σ realized (ratio of sums, bootstrap over
   * images). Over all steps `realized` telescopes to L_rest(∅) (file comment).
   */
  totals: Record<OracleTotalKey, MetricSummary>;
  /** The per-image values behind `totals`. */
  perImage: Record<OracleSum, Float64Array>;
}

export interface TrajectoryResult {
  policy: string;
  reading: Reading;
  /** Test images of the remaining-loss curve (the first ones of the split). */
  images: number;
  numBlocks: number;
  /** Tokens per block of the geometry (u per token = u / tokensPerBlock compares geometries). */
  tokensPerBlock: number;
  /** L_rest(S_t) for t = 0 .. numBlocks-1: mean over images and bootstrap interval over images, per t. */
  restLoss: { mean: number[]; lo: number[]; hi: number[] };
  /** L_rest(S_t) per image, [images * numBlocks], image-major. */
  restLossPerImage: Float64Array;
  /** Mean over images of start / area / firstHalf, with bootstrap intervals over images. */
  totals: Record<RemainingLossTotal, MetricSummary>;
  /** The per-image values behind `totals`. */
  perImage: Record<RemainingLossTotal, Float64Array>;
  /** The per-step oracle comparison (undefined when oracleImages is 0). */
  oracle?: OracleComparison;
  /** The policy's block order on each image. */
  blockOrders: number[][];
  /** How the intervals were drawn (pairedTrajectoryDifference draws the same way). */
  bootstrap: { reps: number; level: number; seed: number };
  /** Seconds: the policy's rollout, the remaining-loss curve, the oracle comparison, all. */
  seconds: { rollout: number; restLoss: number; oracle: number; total: number };
}

/** Test grids and their classes. */
export interface TrajectoryData {
  /** N * numTokens ground-truth tokens (a token cache split). */
  tokens: Int32Array;
  labels: Int32Array;
}

/**
 * The checks of a trajectory config that need no geometry (evalConfig runs
 * them when images > 0; validateTrajectoryConfig adds the steps).
 */
export function validateTrajectorySizes(cfg: TrajectoryConfig): void {
  ensure(Number.isInteger(cfg.images) && cfg.images >= 1, `images must be a whole number >= 1, got ${cfg.images}`, 'eval.trajectory.images', 'score e.g. 64 test images');
  ensure(Number.isInteger(cfg.oracleImages) && cfg.oracleImages >= 0 && cfg.oracleImages <= cfg.images,
    `oracleImages must be a whole number from 0 to images (${cfg.images}), got ${cfg.oracleImages}`, 'eval.trajectory.oracleImages',
    `use e.g. ${Math.min(6, cfg.images)} (0 = no per-step oracle comparison), or raise images`);
  oneOf(cfg.reading, READINGS, 'eval.trajectory.reading');
  oneOf(cfg.weight, WEIGHTS, 'eval.trajectory.weight');
  ensure(cfg.trainedTarget != null && typeof cfg.trainedTarget === 'object', 'no trained target given', 'eval.trajectory.trainedTarget',
    'leave it out (the default dataset\'s) or pass plannerTrainedTarget(ds.manifest.labelings.primary)');
  oneOf(cfg.trainedTarget.label, LABELS, 'eval.trajectory.trainedTarget.label');
  oneOf(cfg.trainedTarget.weight, WEIGHTS, 'eval.trajectory.trainedTarget.weight');
  ensure(cfg.batch === undefined || (Number.isInteger(cfg.batch) && cfg.batch >= 1), `batch must be a whole number >= 1, got ${cfg.batch}`, 'eval.trajectory.batch', 'leave it out (64) or use e.g. 32');
  ensure(Number.isInteger(cfg.bootstrapReps) && cfg.bootstrapReps >= 2, `bootstrapReps must be a whole number >= 2, got ${cfg.bootstrapReps}`, 'eval.trajectory.bootstrapReps', 'use e.g. 1000');
  ensure(cfg.level > 0 && cfg.level < 1, `level must lie strictly between 0 and 1, got ${cfg.level}`, 'eval.trajectory.level', 'use 0.95');
}

/** Check a trajectory config against a geometry; returns the oracle comparison's measured steps. */
export function validateTrajectoryConfig(cfg: TrajectoryConfig, geo: BlockGeometry): number[] {
  validateTrajectorySizes(cfg);
  const all = Array.from({ length: geo.numBlocks }, (_, t) => t);
  const steps = cfg.steps ?? all;
  ensure(
    Array.isArray(steps) && steps.length > 0 && steps.every((t, i) => Number.isInteger(t) && t >= 0 && t < geo.numBlocks && (i === 0 || t > steps[i - 1])),
    `steps must be ascending step indices in 0..${geo.numBlocks - 1}, got ${JSON.stringify(steps)}`,
    'eval.trajectory.steps',
    `pass e.g. [0, 2, 4, 6] or leave it out for all ${geo.numBlocks} steps`,
  );
  return [...steps];
}

function gridsOf(m: GPT, data: TrajectoryData, n: number, where: string): Int32Array[] {
  const T = seqLen(m.cfg);
  ensure(data.tokens.length % T === 0 && data.tokens.length / T >= n && data.labels.length >= n,
    `holds ${data.tokens.length / T} token grids and ${data.labels.length} labels, ${n} are needed`, where,
    'pass the token cache test split (tokens and labels), or score fewer images');
  return Array.from({ length: n }, (_, i) => data.tokens.subarray(i * T, (i + 1) * T));
}

/** The states S_t of every image: the first t blocks of its order, as oracle items. */
function statesAt(grids: Int32Array[], labels: ArrayLike<number>, blockOrders: number[][], t: number, n = grids.length) {
  return Array.from({ length: n }, (_, i) => ({ tokens: grids[i], classId: labels[i], visible: blockOrders[i].slice(0, t) }));
}

/**
 * The remaining-loss curve of each image along its order (scoreRestLoss, one
 * call per step for all images), and its per-image start, area and
 * first-half drop.
 */
function remainingLoss(m: GPT, geo: BlockGeometry, grids: Int32Array[], labels: ArrayLike<number>, blockOrders: number[][], cfg: TrajectoryConfig,
  onStep: () => void): Pick<TrajectoryResult, 'restLoss' | 'restLossPerImage' | 'totals' | 'perImage'> {
  const n = grids.length, nb = geo.numBlocks, half = Math.ceil(nb / 2);
  const curve = new Float64Array(n * nb);
  for (let t = 0; t < nb; t++) {
    const l = scoreRestLoss(m, geo, statesAt(grids, labels, blockOrders, t), { reading: cfg.reading, batch: cfg.batch });
    for (let i = 0; i < n; i++) curve[i * nb + t] = l[i];
    onStep();
  }
  const perImage = Object.fromEntries(REMAINING_LOSS_TOTALS.map((k) => [k, new Float64Array(n)])) as Record<RemainingLossTotal, Float64Array>;
  for (let i = 0; i < n; i++) {
    const row = curve.subarray(i * nb, (i + 1) * nb);
    perImage.start[i] = row[0];
    perImage.area[i] = (row.reduce((a, b) => a + b, 0) - row[0] / 2) / nb; // trapezoids down to L_rest(S_n) = 0
    perImage.firstHalf[i] = row[0] - (half < nb ? row[half] : 0); // L_rest(all blocks) = 0
  }
  const seed = cfg.seed;
  const perStep = Array.from({ length: nb }, (_, t) =>
    summarizeSamples([Float64Array.from({ length: n }, (_, i) => curve[i * nb + t])], cfg.bootstrapReps, `${seed}/trajectory/restLoss/${t}`, cfg.level));
  const totals = Object.fromEntries(REMAINING_LOSS_TOTALS.map((k) =>
    [k, summarizeSamples([perImage[k]], cfg.bootstrapReps, `${seed}/trajectory/${k}`, cfg.level)])) as Record<RemainingLossTotal, MetricSummary>;
  return {
    restLoss: { mean: perStep.map((s) => s.mean), lo: perStep.map((s) => s.lo), hi: perStep.map((s) => s.hi) },
    restLossPerImage: curve, totals, perImage,
  };
}

/** A state's utility vector and argmax under the trained target (its label's u or u_extrap). */
function trainedOf(sc: StateScore, target: TrainedTarget): { u: Float32Array; best: number } {
  return target.label === 'u' ? { u: sc.u, best: sc.aStar } : { u: sc.uExtrap, best: sc.aStarExtrap };
}

/** The per-step oracle comparison on the first cfg.oracleImages images (scoreStates at every measured step). */
function oracleComparison(m: GPT, geo: BlockGeometry, grids: Int32Array[], labels: ArrayLike<number>, blockOrders: number[][], cfg: TrajectoryConfig,
  steps: number[], onStep: () => void): OracleComparison {
  const n = cfg.oracleImages, nb = geo.numBlocks, target = cfg.trainedTarget;
  const perImage = Object.fromEntries(ORACLE_SUMS.map((k) => [k, new Float64Array(n)])) as Record<OracleSum, Float64Array>;
  const perStep: TrajectoryStep[] = [];
  // One scoreStates call serves both targets unless the trained target's u_extrap has another weight than the far-context gain.
  const ownWeight = target.label === 'u_extrap' && target.weight !== cfg.weight;
  for (const t of steps) {
    const items = statesAt(grids, labels, blockOrders, t, n);
    const scores: StateScore[] = scoreStates(m, geo, items, { reading: cfg.reading, weight: cfg.weight, batch: cfg.batch });
    const trainedScores = ownWeight ? scoreStates(m, geo, items, { reading: cfg.reading, weight: target.weight, batch: cfg.batch }) : scores;
    const acc = { realized: 0, oracle: 0, random: 0, raster: 0, farRealized: 0, farOracle: 0, agreementU: 0, realizedTrained: 0, oracleTrained: 0, agreementTrained: 0 };
    scores.forEach((sc, i) => {
      const order = blockOrders[i];
      const a = order[t];
      const tr = trainedOf(trainedScores[i], target);
      const seen = new Uint8Array(nb);
      for (let j = 0; j < t; j++) seen[order[j]] = 1;
      let best = -Infinity, farBest = -Infinity, trainedBest = -Infinity, sum = 0, count = 0, rasterNext = -1;
      for (let b = 0; b < nb; b++) {
        if (seen[b]) continue;
        if (rasterNext < 0) rasterNext = b;
        best = Math.max(best, sc.u[b]);
        farBest = Math.max(farBest, sc.uExtrap[b]);
        trainedBest = Math.max(trainedBest, tr.u[b]);
        sum += sc.u[b];
        count++;
      }
      const v = {
        realized: sc.u[a], oracle: best, random: sum / count, raster: sc.u[rasterNext], farRealized: sc.uExtrap[a], farOracle: farBest,
        agreementU: a === sc.aStar ? 1 : 0, realizedTrained: tr.u[a], oracleTrained: trainedBest, agreementTrained: a === tr.best ? 1 : 0,
      };
      for (const key of Object.keys(acc) as (keyof typeof acc)[]) acc[key] += v[key];
      perImage.realized[i] += v.realized;
      perImage.oracle[i] += v.oracle;
      perImage.random[i] += v.random;
      perImage.raster[i] += v.raster;
      perImage.regretU[i] += v.oracle - v.realized;
      perImage.agreementU[i] += v.agreementU / steps.length;
      perImage.regretTrained[i] += v.oracleTrained - v.realizedTrained;
      perImage.agreementTrained[i] += v.agreementTrained / steps.length;
      perImage.farRealized[i] += v.farRealized;
    });
    perStep.push(Object.fromEntries([['step', t], ...Object.entries(acc).map(([k, x]) => [k, x / n])]) as unknown as TrajectoryStep);
    onStep();
  }
  const totals = {} as Record<OracleTotalKey, MetricSummary>;
  for (const key of ORACLE_SUMS) totals[key] = summarizeSamples([perImage[key]], cfg.bootstrapReps, `${cfg.seed}/trajectory/${key}`, cfg.level);
  totals.farShare = summarizeRatio(perImage.farRealized, perImage.realized, cfg.bootstrapReps, `${cfg.seed}/trajectory/farShare`, cfg.level);
  const targetLabels = Object.fromEntries(ORACLE_TARGETS.map((k) => [k, targetLabel(k, target)])) as Record<OracleTargetName, string>;
  return { images: n, weight: cfg.weight, trainedTarget: { ...target }, targetLabels, steps, perStep, totals, perImage };
}

/**
 * The remaining-loss curve (all `cfg.images` images) and the per-step oracle
 * comparison (the first `cfg.oracleImages`) of `policy` on `data` (see the
 * file comment). `onStep(done, total)` after each scored step. Leaks no
 * tensors (the oracle and the policy's own calls are tensor-neutral).
 */
export async function trajectoryMetrics(m: GPT, geo: BlockGeometry, policy: OrderPolicy, data: TrajectoryData,
  config: Partial<TrajectoryConfig> = {}, onStep?: (done: number, total: number) => void): Promise<TrajectoryResult> {
  const cfg: TrajectoryConfig = { ...DEFAULT_TRAJECTORY_CONFIG, ...config };
  const steps = validateTrajectoryConfig(cfg, geo);
  const t0 = Date.now();
  const n = cfg.images, nb = geo.numBlocks;
  const grids = gridsOf(m, data, n, 'trajectoryMetrics(data)');
  const labels = data.labels.subarray(0, n);
  const blockOrders = await rollOutOnGroundTruth(m, data.tokens.subarray(0, n * seqLen(m.cfg)), labels, policy, geo);
  const t1 = Date.now();
  const total = nb + (cfg.oracleImages > 0 ? steps.length : 0);
  let done = 0;
  const tick = () => onStep?.(++done, total);
  const curve = remainingLoss(m, geo, grids, labels, blockOrders, cfg, tick);
  const t2 = Date.now();
  const oracle = cfg.oracleImages > 0 ? oracleComparison(m, geo, grids, labels, blockOrders, cfg, steps, tick) : undefined;
  const t3 = Date.now();
  return {
    policy: policy.name, reading: cfg.reading, images: n, numBlocks: nb, tokensPerBlock: geo.tokensPerBlock, ...curve, oracle, blockOrders,
    bootstrap: { reps: cfg.bootstrapReps, level: cfg.level, seed: cfg.seed },
    seconds: { rollout: (t1 - t0) / 1000, restLoss: (t2 - t1) / 1000, oracle: (t3 - t2) / 1000, total: (t3 - t0) / 1000 },
  };
}

/**
 * `a` minus `ref` on one remaining-loss total, image by image (both must
 * have scored the same test images in the same reading: evaluateSetting
 * gives every setting the first `images` of the split), with a bootstrap
 * interval of the mean difference over images: paired, so the spread of
 * the images themselves, which both settings share, drops out.
 */
export function pairedTrajectoryDifference(a: TrajectoryResult, ref: TrajectoryResult, key: RemainingLossTotal): MetricSummary {
  ensure(a.images === ref.images && a.reading === ref.reading,
    `'${a.policy}' scored ${a.images} images (${a.reading}), the reference '${ref.policy}' ${ref.images} (${ref.reading})`,
    'pairedTrajectoryDifference(ref)', 'compare trajectory results of one evaluation config (same eval.trajectory)');
  const x = a.perImage[key], y = ref.perImage[key];
  const d = Float64Array.from(x, (v, i) => v - y[i]);
  return summarizeSamples([d], a.bootstrap.reps, `${a.bootstrap.seed}/trajectory/paired/${key}`, a.bootstrap.level);
}

/**
 * The greedy oracle as an order policy: at every state it scores all unseen
 * blocks with scoreStates on the *ground truth* of image `state.index` of
 * `data` and picks the argmax of `label`'s utility: a* = argmax u (label
 * 'u', the default) or a*_extrap = argmax u_extrap under `weight`. It looks
 * at hidden tokens, so its orders are NOT valid factorizations: an upper
 * reference of the trajectory metrics (headroom.ts: the greedy oracle
 * bound), never a generator.
 */
export function oraclePolicy(m: GPT, geo: BlockGeometry, data: TrajectoryData,
  oracle: { reading: Reading; weight: WeightName; batch?: number; label?: LabelName } = DEFAULT_TRAJECTORY_CONFIG): OrderPolicy {
  const label = oneOf(oracle.label ?? 'u', LABELS, 'oraclePolicy(oracle.label)');
  const name = label === 'u' ? `greedy oracle (argmax u, ${oracle.reading})` : `greedy oracle (argmax u_extrap, ${oracle.weight}, ${oracle.reading})`;
  return {
    name,
    fingerprint: `reads the true image; ${name}`,
    nextBlocks(states: readonly PolicyState[]) {
      const idx = states.map((s) => s.index);
      const need = Math.max(...idx) + 1;
      const grids = gridsOf(m, data, need, `policy '${name}'`);
      const scores = scoreStates(m, geo, states.map((s) => ({ tokens: grids[s.index], classId: data.labels[s.index], visible: s.sequence })),
        { reading: oracle.reading, weight: oracle.weight, batch: oracle.batch });
      return scores.map((sc) => (label === 'u' ? sc.aStar : sc.aStarExtrap));
    },
  };
}
