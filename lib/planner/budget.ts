/**
 * Curriculum Stage 6: the adaptive budget (METHOD.md Algorithm 4, §6.6).
 *
 *   b_t = Router(z_R, H_t) ∈ budget set (default {1, 2, 4});
 *   q_t = OrderHead(z_R, H_t); reveal the top-b_t blocks of q_t, in decreasing
 *   probability; replan.
 *
 * Router input (one vector per state, from one planner call): the mean and
 * the max over the *unseen* block slots of the planner's final latent z_R
 * (z_R already reads H_t and the mask), the planner's top probability and the
 * entropy (nats) of its next-block distribution, and |R|/nb. A small MLP
 * (standardised input -> hidden -> SiLU -> one logit per budget) scores the
 * budgets; a budget k > |R| is masked (-1e9), so the router never asks for
 * more blocks than remain. The set must contain 1 (`checkBudgetSet`), so some
 * budget is always allowed and any remainder is reachable.
 *
 * Router training target (defined here; METHOD.md leaves it open). For a
 * state S with label utility u (the planner's label: u or u_extrap) and the
 * frozen planner's probabilities p over the unseen blocks R:
 *
 *   U_plan(k)   = Σ u(a) over the planner's k most probable unseen blocks
 *   U_oracle(k) = Σ u(a) over the k unseen blocks with the highest u
 *   k*(S)       = the largest k in the set with k <= |R| and
 *                 U_oracle(k) − U_plan(k) <= δ · |U_oracle(k)|,
 *                 and 1 when no k qualifies.
 *
 * For positive sums the condition reads U_plan(k) >= (1 − δ) · U_oracle(k):
 * "committing to the planner's top k loses at most a fraction δ of what the
 * oracle's best k blocks are worth". δ defaults to 0.1. Consequences: at
 * |R| = k the two sets coincide, so the target near the end is the largest
 * budget that fits (no point replanning when everything left is revealed
 * anyway); a state where even the planner's top-1 misses by more than δ gets
 * k* = 1 (replan after every block).
 *
 * Single-step utilities: u(a | S) is the value of revealing block a *alone*
 * after S — the oracle dataset stores exactly that. The value of revealing a
 * set of k blocks jointly, u({a_1..a_k} | S), would need oracle passes for
 * every k-subset of R (C(|R|, k) of them per state) and is not stored. Summing
 * single-step utilities ignores interactions between the revealed blocks
 * (two neighbouring blocks inform the same unseen tokens, so their joint value
 * is below the sum), and it ignores that after revealing a the best next block
 * may change. The rule therefore measures what the router needs — whether the
 * planner's ranking beyond its top-1 agrees with the oracle's, so that skipping
 * the replanning steps costs little — not the exact value of a k-block reveal.
 */
import * as tf from '@tensorflow/tfjs';
import { ensure, oneOf, OrderHeadError } from '../runtime/errors';
import { AdamW, warmupCosine } from '../runtime/optim';
import { rng, rngFromState, seedFrom } from '../runtime/seed';
import { openRun, Run } from '../runtime/run';
import { checkpointName, latestCheckpoint, loadCheckpoint, removeOtherCheckpoints, saveCheckpoint } from '../runtime/checkpoint';
import { ProfileName } from '../runtime/profile';
import { BlockGeometry, checkPolicyChoice, OrderPolicy, PolicyState } from '../order';
import { GPT } from '../backbone/gpt';
import { FeatureItem, PlannerFeatures, plannerFeatures } from './features';
import { checkLatentSteps, LatentSteps, Planner, PlannerConfig, plannerForward, PlannerOutput } from './orderhead';
import { plannerInputs } from './orderhead';
import { PlannerData, splitByImage } from './train';
import { featureItems } from './policy';
import { weightsFingerprint } from '../runtime/checkpoint';

/** The default budget set of Algorithm 4. */
export const BUDGETS: readonly number[] = [1, 2, 4];

/**
 * Check a budget set: a non-empty, strictly increasing list of powers of two
 * (1, 2, 4, 8, ...) that contains 1 (so any remainder can be revealed) and
 * whose largest budget is at most `numBlocks`. Returns a copy.
 */
export function checkBudgetSet(set: readonly number[], numBlocks: number, where = 'router.budgets'): number[] {
  const fix = `use a sorted set of powers of two starting at 1, at most ${numBlocks} (the block count), e.g. [${BUDGETS.filter((k) => k <= numBlocks).join(', ')}]`;
  ensure(Array.isArray(set) && set.length > 0, `the budget set is empty (${JSON.stringify(set)})`, where, fix);
  for (const k of set) {
    ensure(typeof k === 'number' && Number.isInteger(k) && k >= 1 && (k & (k - 1)) === 0, `budget ${String(k)} is not a power of two (1, 2, 4, 8, ...)`, where, fix);
  }
  for (let i = 1; i < set.length; i++) {
    ensure(set[i] > set[i - 1], `the budget set [${set.join(', ')}] is not strictly increasing (${set[i] === set[i - 1] ? `${set[i]} repeats` : `${set[i]} after ${set[i - 1]}`})`, where, fix);
  }
  ensure(set[0] === 1, `the budget set [${set.join(', ')}] lacks 1, so a state with fewer blocks left than its smallest budget could not move`, where, fix);
  const max = set[set.length - 1];
  ensure(max <= numBlocks, `budget ${max} exceeds the ${numBlocks} blocks of the grid`, where, fix);
  return set.slice();
}

// ---------------------------------------------------------------------------
// Router model

export interface RouterConfig {
  /** The budgets it chooses among. Default [1, 2, 4]. */
  budgets: number[];
  /** Hidden width of the MLP. Default 64. */
  hidden: number;
  seed: number;
}

export const ROUTER_DEFAULTS: RouterConfig = { budgets: [...BUDGETS], hidden: 64, seed: 0 };

/** What a router reads: the planner it sits on and the block grid. */
export interface RouterShape {
  /** Planner width w (z_R's last dimension). */
  plannerWidth: number;
  numBlocks: number;
  /** 2w + 3: mean z_R, max z_R, top probability, entropy, |R|/nb. */
  inputDim: number;
}

export interface Router {
  cfg: RouterConfig;
  shape: RouterShape;
  /** Trained: w1 [D, h], b1 [h], w2 [h, K], b2 [K]. */
  params: Record<string, tf.Variable>;
  /** Input standardisation from the training states (not trained): mean [D], std [D]. */
  stats: { mean: tf.Variable; std: tf.Variable };
}

export const routerInputDim = (plannerWidth: number): number => 2 * plannerWidth + 3;

/** A fresh router (identity standardisation until trainRouter sets it from the data). */
export function createRouter(cfg: RouterConfig, shape: Omit<RouterShape, 'inputDim'>): Router {
  const budgets = checkBudgetSet(cfg.budgets, shape.numBlocks);
  ensure(Number.isInteger(cfg.hidden) && cfg.hidden > 0, `hidden = ${cfg.hidden}`, 'router.hidden', 'use a positive integer (default 64)');
  const D = routerInputDim(shape.plannerWidth), h = cfg.hidden, K = budgets.length;
  const r = rng(seedFrom(cfg.seed, 'router-init'));
  const normal = (n: number, std: number) => Float32Array.from({ length: n }, () => r.normal() * std);
  const v = (t: tf.Tensor, trainable = true) => { const x = tf.variable(t, trainable); t.dispose(); return x; };
  return {
    cfg: { ...cfg, budgets }, shape: { ...shape, inputDim: D },
    params: {
      w1: v(tf.tensor2d(normal(D * h, 1 / Math.sqrt(D)), [D, h])), b1: v(tf.zeros([h])),
      w2: v(tf.tensor2d(normal(h * K, 0.02), [h, K])), b2: v(tf.zeros([K])),
    },
    stats: { mean: v(tf.zeros([D]), false), std: v(tf.ones([D]), false) },
  };
}

export function disposeRouter(rt: Router): void {
  tf.dispose([...Object.values(rt.params), rt.stats.mean, rt.stats.std]);
}

/**
 * Router input [B, 2w+3] from one planner output and the visible mask [B, nb]
 * (1 = visible): mean and max of z_R over unseen slots, top probability,
 * entropy of the next-block distribution, |R|/nb.
 */
export function routerInputs(out: PlannerOutput, visible: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const z = out.latents[out.latents.length - 1]; // z_R [B, nb, w]
    const [, nb] = visible.shape;
    const unseen = tf.sub(1, visible); // [B, nb]
    const u3 = tf.expandDims(unseen, -1); // [B, nb, 1]
    const count = tf.sum(unseen, 1, true); // [B, 1] = |R|
    const mean = tf.div(tf.sum(tf.mul(z, u3), 1), count); // [B, w]
    const max = tf.max(tf.add(z, tf.mul(tf.sub(u3, 1), 1e9)), 1); // [B, w]: visible slots pushed to -1e9
    const p = tf.softmax(out.logits); // [B, nb], 0 on visible
    const top = tf.max(p, 1, true); // [B, 1]
    const ent = tf.neg(tf.sum(tf.mul(p, tf.log(tf.maximum(p, 1e-12))), 1, true)); // [B, 1] nats
    return tf.concat([mean, max, top, ent, tf.div(count, nb)], 1) as tf.Tensor2D;
  });
}

/** Additive mask [B, K]: -1e9 where budget k exceeds the blocks remaining. */
function budgetMask(budgets: readonly number[], remaining: ArrayLike<number>): tf.Tensor2D {
  const K = budgets.length, B = remaining.length, m = new Float32Array(B * K);
  for (let i = 0; i < B; i++) {
    ensure(remaining[i] >= 1, `state ${i} has ${remaining[i]} blocks left`, 'router', 'route only states with unseen blocks');
    budgets.forEach((k, j) => { if (k > remaining[i]) m[i * K + j] = -1e9; });
  }
  return tf.tensor2d(m, [B, K]);
}

/** Router logits [B, K] over its budgets for inputs x [B, D]; budgets above `remaining[i]` (= |R|) are masked. */
export function routerForward(rt: Router, x: tf.Tensor2D, remaining: ArrayLike<number>): tf.Tensor2D {
  return tf.tidy(() => {
    const xn = tf.div(tf.sub(x, rt.stats.mean), rt.stats.std);
    const h = tf.matMul(xn, rt.params.w1).add(rt.params.b1); // [B, h]
    const logits = tf.add(tf.matMul(tf.mul(h, tf.sigmoid(h)), rt.params.w2), rt.params.b2); // [B, K]
    return tf.add(logits, budgetMask(rt.cfg.budgets, remaining)) as tf.Tensor2D;
  });
}

/** The budget (a value of the set, not an index) with the highest masked logit, per row of logits [B, K]. */
export function chooseBudgets(rt: Router, logits: tf.Tensor2D): number[] {
  const K = rt.cfg.budgets.length, v = logits.dataSync();
  return Array.from({ length: logits.shape[0] }, (_, i) => {
    let best = 0;
    for (let j = 1; j < K; j++) if (v[i * K + j] > v[i * K + best]) best = j;
    return rt.cfg.budgets[best];
  });
}

// ---------------------------------------------------------------------------
// Router target

/** Unseen blocks sorted by decreasing `score` (ties: lower block index first). */
function ranked(score: ArrayLike<number>, visible: ArrayLike<number>, nb: number, o = 0): number[] {
  const r: number[] = [];
  for (let b = 0; b < nb; b++) if (!visible[o + b]) r.push(b);
  return r.sort((a, c) => score[o + c] - score[o + a] || a - c);
}

/**
 * The router target k* of one state (see the module comment): the largest
 * budget k <= |R| whose planner top-k utility sum is within δ·|oracle top-k
 * sum| of the oracle's top-k sum; 1 when none is. `utility`, `probs` and
 * `visible` are length-nb rows (utility may be NaN on visible blocks).
 */
export function routerTarget(utility: ArrayLike<number>, probs: ArrayLike<number>, visible: ArrayLike<number>, budgets: readonly number[], delta: number): number {
  const nb = visible.length;
  const byPlanner = ranked(probs, visible, nb), byOracle = ranked(utility, visible, nb);
  ensure(byPlanner.length > 0, 'the state has no unseen block', 'routerTarget(visible)', 'give states with at least one unseen block');
  for (const b of byOracle) {
    ensure(Number.isFinite(utility[b]), `utility of unseen block ${b} is ${utility[b]}`, 'routerTarget(utility)', 'pass the oracle utility vector of the state (finite on unseen blocks)');
  }
  let target = 1;
  for (const k of budgets) {
    if (k > byPlanner.length) break;
    let plan = 0, orc = 0;
    for (let j = 0; j < k; j++) { plan += utility[byPlanner[j]]; orc += utility[byOracle[j]]; }
    if (orc - plan <= delta * Math.abs(orc) + 1e-9) target = k; // + 1e-9: float rounding when the sets coincide
  }
  return target;
}

// ---------------------------------------------------------------------------
// Router training (Stage 6) on a frozen planner

export interface RouterTrainConfig {
  router: RouterConfig;
  /** δ of the target rule. Default 0.1. */
  delta: number;
  /** Latent steps R the planner runs at; default (undefined): the planner's own. */
  latentSteps?: LatentSteps;
  steps: number;
  /** States per step. Default 256 (the inputs are cached: steps are cheap). */
  batch: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  clipNorm: number;
  evalEvery: number;
  /** Split by image as Stage 3 (use the same value so val/test states stay unseen). Default 8. */
  heldOutEvery: number;
  seed: number;
}

export const ROUTER_TRAIN_DEFAULTS: RouterTrainConfig = {
  router: ROUTER_DEFAULTS, delta: 0.1, steps: 400, batch: 256, lr: 1e-3, warmup: 20, weightDecay: 0.01, clipNorm: 1, evalEvery: 25, heldOutEvery: 8, seed: 0,
};

/** Stage 6 config per profile (smoke: a second in CI). */
export function routerTrainConfig(profile: ProfileName, overrides: Partial<RouterTrainConfig> = {}): RouterTrainConfig {
  const byProfile: Record<ProfileName, Partial<RouterTrainConfig>> = {
    smoke: { steps: 16, batch: 32, evalEvery: 4, warmup: 2 },
    default: {},
    full: { steps: 1500, evalEvery: 50 },
  };
  oneOf(profile, ['smoke', 'default', 'full'] as const, 'routerTrainConfig(profile)');
  const cfg = { ...ROUTER_TRAIN_DEFAULTS, ...byProfile[profile], ...overrides };
  cfg.router = { ...ROUTER_DEFAULTS, ...(overrides.router ?? {}) };
  validateRouterTrainConfig(cfg);
  return cfg;
}

export function validateRouterTrainConfig(cfg: RouterTrainConfig): void {
  for (const k of ['steps', 'batch', 'evalEvery', 'heldOutEvery'] as const) {
    ensure(Number.isInteger(cfg[k]) && cfg[k] > 0, `${k} = ${cfg[k]} is not a positive integer`, `router.${k}`, 'use a positive integer');
  }
  ensure(cfg.heldOutEvery >= 3, `heldOutEvery = ${cfg.heldOutEvery} leaves no training images`, 'router.heldOutEvery', 'use the Stage 3 value (default 8)');
  ensure(Number.isFinite(cfg.delta) && cfg.delta >= 0 && cfg.delta < 1, `delta = ${cfg.delta}`, 'router.delta', 'use δ in [0, 1) (default 0.1)');
  ensure(Number.isFinite(cfg.lr) && cfg.lr > 0, `lr = ${cfg.lr}`, 'router.lr', 'use a positive learning rate');
  if (cfg.latentSteps !== undefined) checkLatentSteps(cfg.latentSteps, 'router.latentSteps');
}

/** The frozen planner's view of every state, computed once: router inputs, probabilities, |R|. */
export interface RouterCache {
  n: number;
  /** [n, D] router inputs. */
  x: Float32Array;
  /** [n, nb] the planner's next-block probabilities. */
  probs: Float32Array;
  /** [n] |R|. */
  remaining: Int32Array;
}

/** Router inputs and planner probabilities of every feature row (planner at R latent steps; batched, no gradients). */
export function routerCache(pl: Planner, f: PlannerFeatures, R: LatentSteps = pl.cfg.latentSteps, batch = 256): RouterCache {
  const nb = f.numBlocks, D = routerInputDim(pl.cfg.width);
  const out: RouterCache = { n: f.n, x: new Float32Array(f.n * D), probs: new Float32Array(f.n * nb), remaining: new Int32Array(f.n) };
  for (let s = 0; s < f.n; s += batch) {
    const rows = Array.from({ length: Math.min(batch, f.n - s) }, (_, i) => s + i);
    const [x, p] = tf.tidy(() => {
      const inp = plannerInputs(f, rows);
      const o = plannerForward(pl, inp, R);
      return [routerInputs(o, inp.visible), tf.softmax(o.logits)];
    });
    out.x.set(x.dataSync(), s * D);
    out.probs.set(p.dataSync(), s * nb);
    tf.dispose([x, p]);
  }
  for (let i = 0; i < f.n; i++) {
    let c = 0;
    for (let b = 0; b < nb; b++) if (!f.visible[i * nb + b]) c++;
    out.remaining[i] = c;
  }
  return out;
}

/** Router targets (indices into `budgets`) of every state of `data` under the planner probabilities `probs` [n, nb]. */
export function routerTargets(data: PlannerData, probs: Float32Array, budgets: readonly number[], delta: number): Int32Array {
  const nb = data.features.numBlocks, n = data.features.n;
  return Int32Array.from({ length: n }, (_, i) => {
    const sl = (a: ArrayLike<number>) => Array.prototype.slice.call(a, i * nb, (i + 1) * nb) as number[];
    return budgets.indexOf(routerTarget(sl(data.utility), sl(probs), sl(data.features.visible), budgets, delta));
  });
}

/** Everything a router checkpoint records about what it was trained on. */
export interface RouterCheckpointConfig {
  train: RouterTrainConfig;
  shape: RouterShape;
  /** The frozen planner: config and a hash of its weights. */
  planner: { cfg: PlannerConfig; weights: string; latentSteps: LatentSteps };
  backboneFingerprint: string;
  label: string;
  reading: string;
  weight: string;
  /** The target rule, in words (stored so a table can quote it). */
  targetRule: string;
}

export const ROUTER_TARGET_RULE =
  'k* = the largest budget k <= |R| such that sum of u over the planner\'s top-k blocks >= sum over the oracle\'s top-k blocks - delta*|that sum| ' +
  '(single-step utilities; k* = 1 when none qualifies)';

export interface TrainRouterOptions {
  maxSteps?: number;
  onStep?: (step: number, m: { loss: number; lr: number; valLoss?: number; valAcc?: number }) => void;
}

export interface TrainRouterResult {
  run: Run<RouterCheckpointConfig>;
  /** The best-by-validation router (caller disposes). */
  router: Router;
  steps: number;
  bestStep: number;
  bestValLoss: number;
  bestPath: string;
  /** How often each budget is the target, over the training and validation states. */
  targetCounts: { train: Record<number, number>; val: Record<number, number> };
  /** Seconds spent caching the planner's outputs. */
  cacheSeconds: number;
}

/**
 * Train (or resume) a router in `<root>/<name>` on a frozen planner: the
 * planner's outputs for every state are computed once (`routerCache`), the
 * targets from the rule above, then the small MLP trains on the training
 * states (split by image as Stage 3); the best-by-validation-CE weights are
 * kept as `best-step<N>`.
 */
export function trainRouter(root: string, name: string, cfg: RouterTrainConfig, data: PlannerData, planner: Planner,
  opts: TrainRouterOptions = {}): TrainRouterResult {
  validateRouterTrainConfig(cfg);
  const nb = data.features.numBlocks;
  ensure(planner.shape.numBlocks === nb && planner.shape.backboneDim === data.features.dim,
    `the planner was built for ${planner.shape.numBlocks} blocks of a ${planner.shape.backboneDim}-wide backbone, the data has ${nb} blocks of width ${data.features.dim}`,
    'trainRouter(planner)', 'pass the planner trained on these features');
  const budgets = checkBudgetSet(cfg.router.budgets, nb);
  const R = cfg.latentSteps ?? planner.cfg.latentSteps;
  const shape: RouterShape = { plannerWidth: planner.cfg.width, numBlocks: nb, inputDim: routerInputDim(planner.cfg.width) };
  const ckCfg: RouterCheckpointConfig = {
    train: cfg, shape, planner: { cfg: planner.cfg, weights: weightsFingerprint(planner.params), latentSteps: R },
    backboneFingerprint: data.backboneFingerprint, label: data.label, reading: data.reading, weight: data.weight, targetRule: ROUTER_TARGET_RULE,
  };
  const split = splitByImage(data.image, cfg.heldOutEvery);
  const t0 = performance.now();
  const cache = routerCache(planner, data.features, R);
  const cacheSeconds = (performance.now() - t0) / 1000;
  const targets = routerTargets(data, cache.probs, budgets, cfg.delta);
  const counts = (rows: number[]) => { const c: Record<number, number> = {}; for (const k of budgets) c[k] = 0; for (const r of rows) c[budgets[targets[r]]]++; return c; };
  const run = openRun({ root, stage: 'router', name, config: ckCfg, resume: true, backend: tf.getBackend() });
  const rt = createRouter(cfg.router, shape);
  const D = shape.inputDim, K = budgets.length;
  // Standardise the inputs with the training states' statistics (std floored: |R|/nb is constant in a one-size dataset).
  const mean = new Float32Array(D), std = new Float32Array(D);
  for (const r of split.train) for (let j = 0; j < D; j++) mean[j] += cache.x[r * D + j] / split.train.length;
  for (const r of split.train) for (let j = 0; j < D; j++) std[j] += (cache.x[r * D + j] - mean[j]) ** 2 / split.train.length;
  for (let j = 0; j < D; j++) std[j] = Math.max(Math.sqrt(std[j]), 1e-3);
  tf.tidy(() => { rt.stats.mean.assign(tf.tensor1d(mean)); rt.stats.std.assign(tf.tensor1d(std)); });
  const opt = new AdamW(rt.params, { lr: cfg.lr, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: cfg.weightDecay, clipNorm: cfg.clipNorm });
  let step = 0, bestValLoss = Infinity, bestStep = 0;
  let r = rng(seedFrom(cfg.seed, 'router-batches'));
  const ckptDir = run.checkpointDir;
  const last = run.latestCheckpoint('router');
  const weightsOf = () => ({ ...rt.params, 'stats.mean': rt.stats.mean, 'stats.std': rt.stats.std });
  try {
    if (last) {
      const ck = loadCheckpoint(last.path, { expectConfig: ckCfg });
      const all: Record<string, tf.Variable> = weightsOf();
      for (const [k, v] of Object.entries(ck.weights)) {
        const t = k.startsWith('adam.m.') ? opt.m[k.slice(7)] : k.startsWith('adam.v.') ? opt.v[k.slice(7)] : all[k];
        if (t) t.assign(v);
      }
      tf.dispose(Object.values(ck.weights));
      step = ck.step; opt.step = Number(ck.extra.optStep ?? step); r = rngFromState(Number(ck.extra.rngState));
      bestValLoss = Number(ck.extra.bestValLoss ?? Infinity); bestStep = Number(ck.extra.bestStep ?? 0);
    }
    const batchTensors = (rows: readonly number[]) => {
      const x = new Float32Array(rows.length * D), rem = new Int32Array(rows.length), y = new Float32Array(rows.length * K);
      rows.forEach((row, i) => { x.set(cache.x.subarray(row * D, (row + 1) * D), i * D); rem[i] = cache.remaining[row]; y[i * K + targets[row]] = 1; });
      return { x, rem, y };
    };
    const lossOf = (b: { x: Float32Array; rem: Int32Array; y: Float32Array }, n: number) =>
      tf.mean(tf.neg(tf.sum(tf.mul(tf.tensor2d(b.y, [n, K]), tf.logSoftmax(routerForward(rt, tf.tensor2d(b.x, [n, D]), b.rem))), -1))) as tf.Scalar;
    const validate = () => {
      const b = batchTensors(split.val);
      const [loss, logits] = tf.tidy(() => {
        const lg = routerForward(rt, tf.tensor2d(b.x, [split.val.length, D]), b.rem);
        return [tf.mean(tf.neg(tf.sum(tf.mul(tf.tensor2d(b.y, [split.val.length, K]), tf.logSoftmax(lg)), -1))), lg];
      });
      const l = loss.dataSync()[0];
      const chosen = chooseBudgets(rt, logits as tf.Tensor2D);
      tf.dispose([loss, logits]);
      const acc = chosen.filter((k, i) => k === budgets[targets[split.val[i]]]).length / split.val.length;
      return { valLoss: l, valAcc: acc };
    };
    const end = Math.min(cfg.steps, opts.maxSteps !== undefined ? step + opts.maxSteps : cfg.steps);
    while (step < end) {
      const rows = Array.from({ length: cfg.batch }, () => split.train[r.int(split.train.length)]);
      const b = batchTensors(rows);
      const lr = warmupCosine(step, cfg.steps, cfg.warmup, cfg.lr, 0.1);
      const names = Object.keys(rt.params);
      const { value, grads } = tf.variableGrads(() => lossOf(b, rows.length), names.map((k) => rt.params[k]));
      const loss = value.dataSync()[0];
      value.dispose();
      const named: Record<string, tf.Tensor> = {};
      for (const k of names) named[k] = grads[rt.params[k].name];
      if (!Number.isFinite(loss)) {
        tf.dispose(Object.values(grads));
        throw new OrderHeadError(`router loss is ${loss} at step ${step}`, `run ${run.dir}`, `lower router.lr (now ${cfg.lr})`);
      }
      try { opt.apply(named, lr); } finally { tf.dispose(Object.values(grads)); }
      step++;
      const metrics: { loss: number; lr: number; valLoss?: number; valAcc?: number } = { loss, lr };
      const evalStep = step % cfg.evalEvery === 0 || step === cfg.steps;
      if (evalStep) {
        Object.assign(metrics, validate());
        if (metrics.valLoss! < bestValLoss) {
          bestValLoss = metrics.valLoss!; bestStep = step;
          const file = saveCheckpoint(ckptDir, checkpointName('best', step), { weights: weightsOf(), config: ckCfg, step, kind: 'router', extra: { valLoss: bestValLoss, valAcc: metrics.valAcc } });
          removeOtherCheckpoints(ckptDir, 'best', file);
        }
      }
      run.logMetrics(step, metrics); // before the checkpoint: see trainPlanner
      if (evalStep) {
        saveCheckpoint(ckptDir, checkpointName('router', step), {
          weights: { ...weightsOf(), ...opt.state() }, config: ckCfg, step, kind: 'router',
          extra: { optStep: opt.step, rngState: r.state(), bestValLoss, bestStep },
        });
      }
      opts.onStep?.(step, metrics);
    }
  } finally {
    opt.dispose();
    disposeRouter(rt);
  }
  const best = latestCheckpoint(ckptDir, 'best');
  ensure(best, 'no best checkpoint was written', run.dir, 'train for at least evalEvery steps');
  const loaded = loadRouter(best.path, { shape });
  return { run, router: loaded, steps: step, bestStep, bestValLoss, bestPath: best.path, targetCounts: { train: counts(split.train), val: counts(split.val) }, cacheSeconds };
}

/** Load a router checkpoint; with `expect.shape`, refuses one built for another planner width or block grid. */
export function loadRouter(file: string, expect: { shape?: Partial<RouterShape> } = {}): Router {
  const ck = loadCheckpoint<RouterCheckpointConfig>(file);
  try {
    ensure(ck.kind === 'router' && ck.config.shape && ck.config.train, `is a '${ck.kind}' checkpoint, not a router`, file, 'pass a best-step*.safetensors file of a router run');
    const c = ck.config;
    for (const [k, v] of Object.entries(expect.shape ?? {})) {
      ensure((c.shape as unknown as Record<string, number>)[k] === v, `the router was trained for ${k} = ${(c.shape as unknown as Record<string, number>)[k]}, here it is ${v}`,
        `${file} (shape.${k})`, 'use a router trained on this planner, or retrain Stage 6');
    }
    const rt = createRouter(c.train.router, c.shape);
    const all: Record<string, tf.Variable> = { ...rt.params, 'stats.mean': rt.stats.mean, 'stats.std': rt.stats.std };
    for (const [k, v] of Object.entries(all)) {
      const w = ck.weights[k];
      if (!(w && w.shape.join('x') === v.shape.join('x'))) {
        disposeRouter(rt);
        throw new OrderHeadError(`weight ${k} is missing or shaped ${w?.shape.join('x')} (expected ${v.shape.join('x')})`, file, 'the file does not match its own config: use another checkpoint');
      }
      v.assign(w);
    }
    return rt;
  } finally {
    tf.dispose(Object.values(ck.weights));
  }
}

// ---------------------------------------------------------------------------
// Policies: plan once, reveal k blocks

/** An order policy that reveals several blocks per planner call, and counts the calls. */
export interface BudgetPolicy extends OrderPolicy {
  /** Planner calls per sample index (of the current rollout of each sample). */
  plannerCalls(): number[];
  /** The budget chosen at each planner call, per sample index. */
  budgetsChosen(): number[][];
}

/**
 * The shared machinery: per sample a queue of planned blocks. When a sample's
 * queue is empty (or holds only blocks that became visible), the planner runs
 * once on its current state, `chooseK` picks k <= |R|, and the planner's top-k
 * unseen blocks (decreasing probability) are queued; each nextBlocks call
 * serves one block per sample, as sampleImages and nllUnderPolicy expect. A
 * state with nothing visible starts a new rollout of that sample: its queue
 * and counters are reset. Every choice depends only on what was visible when
 * the planner ran, so the order is a valid AR factorization.
 */
function queuedPolicy(name: string, pl: Planner, backbone: GPT, geo: BlockGeometry, R: LatentSteps,
  chooseK: (out: PlannerOutput, visible: tf.Tensor2D, remaining: Int32Array) => number[], chooser: () => string): BudgetPolicy {
  checkLatentSteps(R, `policy '${name}' (R)`);
  ensure(geo.numBlocks === pl.shape.numBlocks && geo.blocksY === pl.shape.blocksY && backbone.cfg.dModel === pl.shape.backboneDim,
    `the planner was trained for ${pl.shape.blocksY}x${pl.shape.blocksX} blocks of a ${pl.shape.backboneDim}-wide backbone, ` +
    `here: ${geo.blocksY}x${geo.blocksX} blocks, width ${backbone.cfg.dModel}`,
    `policy '${name}'`, 'use the backbone and block grid the planner was trained with');
  const nb = geo.numBlocks;
  const queues = new Map<number, number[]>(), calls = new Map<number, number>(), ks = new Map<number, number[]>();
  const perIndex = <T>(m: Map<number, T>, empty: T): T[] => {
    const n = m.size ? Math.max(...m.keys()) + 1 : 0;
    return Array.from({ length: n }, (_, i) => m.get(i) ?? empty);
  };
  return {
    name,
    /** Planner weights, R and how k is chosen (router weights or the fixed k), read when asked (an evaluation cache key). */
    get fingerprint() { return `planner ${weightsFingerprint(pl.params)} R=${R} ${chooser()}`; },
    nextBlocks(states) {
      const seen = new Set<number>();
      for (const s of states) {
        ensure(Number.isInteger(s.index) && s.index >= 0 && !seen.has(s.index), `state.index ${s.index} is missing, negative or repeated in one call`,
          `policy '${name}'`, 'give each state its sample index in the batch (0, 1, ...)');
        ensure(s.visible.length === nb && s.sequence.length < nb, `sample ${s.index} has no block left to choose (or another grid)`,
          `policy '${name}'`, 'call nextBlocks only for samples with remaining blocks, on the planner\'s grid');
        seen.add(s.index);
        if (s.sequence.length === 0) { queues.delete(s.index); calls.set(s.index, 0); ks.set(s.index, []); }
      }
      const need = states.filter((s) => {
        const q = (queues.get(s.index) ?? []).filter((b) => !s.visible[b]);
        queues.set(s.index, q);
        return q.length === 0;
      });
      if (need.length) {
        const f = plannerFeatures(backbone, geo, featureItems(need, name));
        const remaining = Int32Array.from(need, (s) => nb - s.sequence.length);
        let k: number[] = [];
        const p = tf.tidy(() => {
          const inp = plannerInputs(f);
          const out = plannerForward(pl, inp, R);
          k = chooseK(out, inp.visible, remaining);
          return tf.softmax(out.logits); // [n, nb]
        });
        const probs = p.dataSync() as Float32Array;
        p.dispose();
        need.forEach((s, i) => {
          ensure(Number.isInteger(k[i]) && k[i] >= 1 && k[i] <= remaining[i], `chose budget ${k[i]} with ${remaining[i]} blocks left for sample ${s.index}`,
            `policy '${name}'`, 'mask budgets above |R| (routerForward does)');
          queues.set(s.index, ranked(probs, s.visible, nb, i * nb).slice(0, k[i]));
          calls.set(s.index, (calls.get(s.index) ?? 0) + 1);
          ks.set(s.index, [...(ks.get(s.index) ?? []), k[i]]);
        });
      }
      return states.map((s) => {
        const b = queues.get(s.index)!.shift()!;
        checkPolicyChoice(s, b, name);
        return b;
      });
    },
    plannerCalls: () => perIndex(calls, 0),
    budgetsChosen: () => perIndex(ks, [] as number[]).map((a) => a.slice()),
  };
}

/**
 * Algorithm 4 as an order policy: per planning step the router picks k from
 * its budget set (masked to k <= |R|) and the planner's top-k blocks are
 * revealed in decreasing probability before the planner runs again.
 */
export function budgetPolicy(pl: Planner, router: Router, backbone: GPT, geo: BlockGeometry, R: LatentSteps = pl.cfg.latentSteps,
  name = `orderhead R=${R} + router {${router.cfg.budgets.join(',')}}`): BudgetPolicy {
  ensure(router.shape.plannerWidth === pl.cfg.width && router.shape.numBlocks === geo.numBlocks,
    `the router was trained on a width-${router.shape.plannerWidth} planner over ${router.shape.numBlocks} blocks, here: width ${pl.cfg.width}, ${geo.numBlocks} blocks`,
    `policy '${name}'`, 'use the router trained (trainRouter) on this planner');
  checkBudgetSet(router.cfg.budgets, geo.numBlocks, `policy '${name}' (router budgets)`);
  return queuedPolicy(name, pl, backbone, geo, R, (out, visible, remaining) => {
    const logits = tf.tidy(() => routerForward(router, routerInputs(out, visible), remaining));
    try { return chooseBudgets(router, logits); } finally { logits.dispose(); }
  }, () => `router {${router.cfg.budgets.join(',')}} ${weightsFingerprint({ ...router.params, 'stats.mean': router.stats.mean, 'stats.std': router.stats.std })}`);
}

/** The same with a fixed budget k (k = 1: the plain planner policy; capped at |R| near the end), for comparison. */
export function fixedBudgetPolicy(pl: Planner, backbone: GPT, geo: BlockGeometry, k: number, R: LatentSteps = pl.cfg.latentSteps,
  name = `orderhead R=${R} top-${k}`): BudgetPolicy {
  ensure(Number.isInteger(k) && k >= 1 && k <= geo.numBlocks, `k = ${k}`, `policy '${name}'`, `use a budget between 1 and ${geo.numBlocks}`);
  return queuedPolicy(name, pl, backbone, geo, R, (_out, _v, remaining) => Array.from(remaining, (rem) => Math.min(k, rem)), () => `top-${k}`);
}
