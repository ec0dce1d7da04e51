/**
 * Trajectory metrics of METHOD.md section 7, measured with the oracle
 * (lib/oracle/utility.ts) on held-out test images, i.e. on ground-truth
 * tokens:
 *
 * - future-loss reduction: along a policy's block order a_0, a_1, ... on an
 *   image, the realized utility u(a_t | S_t) of each chosen block, against
 *   the oracle's best max_a u(a | S_t), a uniformly random choice (the mean of
 *   u over the unseen blocks) and the raster choice (u of the first unseen
 *   block in raster block order), all at the policy's own state S_t;
 * - far-context gain: u_extrap(a_t | S_t) with the `no-neighbours` weight
 *   (tokens outside a_t's 8 neighbouring blocks only), and its share of u.
 *
 * Method: roll out the policy on each image (rollOutOrder: it sees only the
 * visible ground truth, as in nllUnderPolicy), then score every state S_t of
 * the measured steps with scoreStates, one call per step for all images (the
 * states of one step share |S|, so they pack into the same batched passes;
 * oraclePolicy makes exactly the same calls, so its realized u equals the
 * oracle's maximum bit for bit).
 *
 * Reading it: in the teacher-forced reading the realized utilities telescope,
 * Σ_t u(a_t | S_t) = L_rest(∅) - L_rest(all) = L_rest(∅), the loss of
 * decoding the whole image in raster block order from nothing: the *total*
 * over all steps is the same for every policy. What differs is when the
 * reduction comes (per-step curve, `early` = the sum over the first half of
 * the decode) and how far it is from the oracle at the same states (`regret`,
 * `agreement`). Totals are sums over the measured steps per image, then the
 * mean over images (bootstrap over images). The far-context share is a ratio
 * of sums over steps and images, Σ u_extrap(a_t) / Σ u(a_t): per-step ratios
 * explode where u is near zero.
 *
 * A property of the teacher-forced reading to keep in mind: its reference
 * order decodes the remaining blocks in raster order, so revealing the
 * raster-next block changes no other token's loss. The raster choice's u is
 * the loss of its own tokens and its far-context gain is 0 by construction;
 * compare far-context gains under the one-step reading as well.
 *
 * The utilities are those of the backbone passed in (an evaluation setting's
 * own backbone), in nats.
 */
import { GPT } from '../backbone/gpt';
import { seqLen } from '../backbone/config';
import { BlockGeometry, OrderPolicy, PolicyState, rollOutOrder } from '../order';
import { Reading, READINGS, scoreStates, StateScore } from '../oracle/utility';
import { WeightName, WEIGHTS } from '../oracle/weights';
import { ensure, oneOf } from '../runtime/errors';
import { MetricSummary, summarizeRatio, summarizeSamples } from './summary';

export interface TrajectoryConfig {
  /** Test images to roll out and score (the first ones of the split). 0 = skip (evaluateSetting). */
  images: number;
  /**
   * Step indices t to score (S_t = the first t blocks of the order), ascending,
   * in 0 .. numBlocks-1; default every step. Scoring step t costs about
   * (numBlocks - t)^2 continuations of one block each, so the early steps
   * dominate; a subset such as [0, 2, 4, 6, 8] bounds the cost, but then
   * totals are sums over those steps only.
   */
  steps?: number[];
  /** How l_j is measured; default 'teacher-forced' (always in distribution). */
  reading: Reading;
  /** w of u_extrap for the far-context gain; default 'no-neighbours'. */
  weight: WeightName;
  /** Max sequences per oracle pass (scoreStates); default its own (64). */
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
  images: 32, reading: 'teacher-forced', weight: 'no-neighbours', bootstrapReps: 1000, level: 0.95, seed: 0,
}) as TrajectoryConfig;

/** Means over images at one step t. */
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
  /** Share of images whose chosen block is the oracle's a* (argmax u, lowest index on ties). */
  agreement: number;
  /** L_rest(S_t): loss still ahead. */
  lRest: number;
}

/** Per-image sums over the measured steps. */
export const TRAJECTORY_SUMS = ['realized', 'oracle', 'random', 'raster', 'regret', 'farRealized', 'early', 'agreement'] as const;
export type TrajectorySum = (typeof TRAJECTORY_SUMS)[number];
/** Keys of TrajectoryResult.totals. */
export type TrajectoryTotalKey = TrajectorySum | 'farShare';

export interface TrajectoryResult {
  policy: string;
  reading: Reading;
  weight: WeightName;
  images: number;
  numBlocks: number;
  /** Tokens per block of the geometry (u per token = u / tokensPerBlock compares geometries). */
  tokensPerBlock: number;
  /** The measured step indices. */
  steps: number[];
  perStep: TrajectoryStep[];
  /**
   * Mean over images of each per-image sum over the measured steps
   * (`agreement`: mean share of steps), with bootstrap intervals over images;
   * `farShare` = Σ farRealized / Σ realized (ratio of sums, bootstrap over images).
   */
  totals: Record<TrajectoryTotalKey, MetricSummary>;
  /** The per-image values behind `totals` (`early`: sum over measured steps t < numBlocks / 2). */
  perImage: Record<TrajectorySum, Float64Array>;
  /** The policy's block order on each image. */
  blockOrders: number[][];
  seconds: number;
}

/** Test grids and their classes. */
export interface TrajectoryData {
  /** N * numTokens ground-truth tokens (a token cache split). */
  tokens: Int32Array;
  labels: Int32Array;
}

/** Check a trajectory config against a geometry; returns the measured steps. */
export function validateTrajectoryConfig(cfg: TrajectoryConfig, geo: BlockGeometry): number[] {
  ensure(Number.isInteger(cfg.images) && cfg.images >= 1, `images must be a whole number >= 1, got ${cfg.images}`, 'eval.trajectory.images', 'score e.g. 32 test images');
  oneOf(cfg.reading, READINGS, 'eval.trajectory.reading');
  oneOf(cfg.weight, WEIGHTS, 'eval.trajectory.weight');
  const all = Array.from({ length: geo.numBlocks }, (_, t) => t);
  const steps = cfg.steps ?? all;
  ensure(
    Array.isArray(steps) && steps.length > 0 && steps.every((t, i) => Number.isInteger(t) && t >= 0 && t < geo.numBlocks && (i === 0 || t > steps[i - 1])),
    `steps must be ascending step indices in 0..${geo.numBlocks - 1}, got ${JSON.stringify(steps)}`,
    'eval.trajectory.steps',
    `pass e.g. [0, 2, 4, 6] or leave it out for all ${geo.numBlocks} steps`,
  );
  ensure(Number.isInteger(cfg.bootstrapReps) && cfg.bootstrapReps >= 2, `bootstrapReps must be a whole number >= 2, got ${cfg.bootstrapReps}`, 'eval.trajectory.bootstrapReps', 'use e.g. 1000');
  return [...steps];
}

function gridsOf(m: GPT, data: TrajectoryData, n: number, where: string): Int32Array[] {
  const T = seqLen(m.cfg);
  ensure(data.tokens.length % T === 0 && data.tokens.length / T >= n && data.labels.length >= n,
    `holds ${data.tokens.length / T} token grids and ${data.labels.length} labels, ${n} are needed`, where,
    'pass the token cache test split (tokens and labels), or score fewer images');
  return Array.from({ length: n }, (_, i) => data.tokens.subarray(i * T, (i + 1) * T));
}

function scoreStep(m: GPT, geo: BlockGeometry, grids: Int32Array[], labels: ArrayLike<number>, visible: number[][], cfg: { reading: Reading; weight: WeightName; batch?: number }): StateScore[] {
  return scoreStates(m, geo, visible.map((v, i) => ({ tokens: grids[i], classId: labels[i], visible: v })), { reading: cfg.reading, weight: cfg.weight, batch: cfg.batch });
}

/**
 * Future-loss reduction and far-context gain of `policy` on the first
 * `cfg.images` images of `data` (see the file comment). Leaks no tensors
 * (scoreStates and the policy's own calls are tensor-neutral).
 */
export async function trajectoryMetrics(m: GPT, geo: BlockGeometry, policy: OrderPolicy, data: TrajectoryData,
  config: Partial<TrajectoryConfig> = {}, onStep?: (done: number, total: number) => void): Promise<TrajectoryResult> {
  const cfg: TrajectoryConfig = { ...DEFAULT_TRAJECTORY_CONFIG, ...config };
  const steps = validateTrajectoryConfig(cfg, geo);
  const t0 = Date.now();
  const n = cfg.images, nb = geo.numBlocks;
  const grids = gridsOf(m, data, n, 'trajectoryMetrics(data)');
  const labels = data.labels.subarray(0, n);
  const blockOrders = await rollOutOrder(policy, geo, n, { tokens: grids, classIds: Array.from(labels) });
  const perImage = Object.fromEntries(TRAJECTORY_SUMS.map((k) => [k, new Float64Array(n)])) as Record<TrajectorySum, Float64Array>;
  const perStep: TrajectoryStep[] = [];
  steps.forEach((t, k) => {
    const scores = scoreStep(m, geo, grids, labels, blockOrders.map((o) => o.slice(0, t)), cfg);
    const acc = { realized: 0, oracle: 0, random: 0, raster: 0, farRealized: 0, farOracle: 0, agreement: 0, lRest: 0 };
    scores.forEach((sc, i) => {
      const order = blockOrders[i];
      const a = order[t];
      const seen = new Uint8Array(nb);
      for (let j = 0; j < t; j++) seen[order[j]] = 1;
      let best = -Infinity, farBest = -Infinity, sum = 0, count = 0, rasterNext = -1;
      for (let b = 0; b < nb; b++) {
        if (seen[b]) continue;
        if (rasterNext < 0) rasterNext = b;
        best = Math.max(best, sc.u[b]);
        farBest = Math.max(farBest, sc.uExtrap[b]);
        sum += sc.u[b];
        count++;
      }
      const v = { realized: sc.u[a], oracle: best, random: sum / count, raster: sc.u[rasterNext], farRealized: sc.uExtrap[a], farOracle: farBest, agreement: a === sc.aStar ? 1 : 0, lRest: sc.lRest };
      for (const key of Object.keys(acc) as (keyof typeof acc)[]) acc[key] += v[key];
      perImage.realized[i] += v.realized;
      perImage.oracle[i] += v.oracle;
      perImage.random[i] += v.random;
      perImage.raster[i] += v.raster;
      perImage.regret[i] += v.oracle - v.realized;
      perImage.farRealized[i] += v.farRealized;
      perImage.agreement[i] += v.agreement / steps.length;
      if (t < nb / 2) perImage.early[i] += v.realized;
    });
    perStep.push({
      step: t, realized: acc.realized / n, oracle: acc.oracle / n, random: acc.random / n, raster: acc.raster / n,
      farRealized: acc.farRealized / n, farOracle: acc.farOracle / n, agreement: acc.agreement / n, lRest: acc.lRest / n,
    });
    onStep?.(k + 1, steps.length);
  });
  const totals = {} as Record<TrajectoryTotalKey, MetricSummary>;
  for (const key of TRAJECTORY_SUMS) totals[key] = summarizeSamples([perImage[key]], cfg.bootstrapReps, `${cfg.seed}/trajectory/${key}`, cfg.level);
  totals.farShare = summarizeRatio(perImage.farRealized, perImage.realized, cfg.bootstrapReps, `${cfg.seed}/trajectory/farShare`, cfg.level);
  return {
    policy: policy.name, reading: cfg.reading, weight: cfg.weight, images: n, numBlocks: nb, tokensPerBlock: geo.tokensPerBlock, steps, perStep, totals, perImage, blockOrders,
    seconds: (Date.now() - t0) / 1000,
  };
}

/**
 * The greedy oracle as an order policy: at every state it scores all unseen
 * blocks with scoreStates on the *ground truth* of image `state.index` of
 * `data` and picks a* = argmax u. It looks at hidden tokens, so its orders
 * are NOT valid factorizations: use it as the upper reference of the
 * trajectory metrics, never for sampling or NLL.
 */
export function oraclePolicy(m: GPT, geo: BlockGeometry, data: TrajectoryData, oracle: { reading: Reading; weight: WeightName; batch?: number } = DEFAULT_TRAJECTORY_CONFIG): OrderPolicy {
  const name = `oracle (${oracle.reading})`;
  return {
    name,
    nextBlocks(states: readonly PolicyState[]) {
      const idx = states.map((s) => s.index);
      const need = Math.max(...idx) + 1;
      const grids = gridsOf(m, data, need, `policy '${name}'`);
      const scores = scoreStates(m, geo, states.map((s) => ({ tokens: grids[s.index], classId: data.labels[s.index], visible: s.sequence })),
        { reading: oracle.reading, weight: oracle.weight, batch: oracle.batch });
      return scores.map((sc) => sc.aStar);
    },
  };
}
