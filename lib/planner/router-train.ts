/**
 * Stage 6 training: the router on a frozen planner. The planner's outputs for
 * every oracle state are computed once (`routerCache`), the targets come from
 * the rule of router-target.ts, and the small MLP trains on the training
 * states (split by image as Stage 3) on the shared training loop; the
 * best-by-validation-CE weights are kept as `best-step<N>`.
 */
import * as tf from '@tensorflow/tfjs';
import { ensure, OrderHeadError } from '../runtime/errors';
import { AdamW, OptimConfig, scheduledLr, validateOptimConfig } from '../runtime/optim';
import { rng, rngFromState, seedFrom } from '../runtime/seed';
import { openRun, Run } from '../runtime/run';
import { assignWeights, checkpointName, loadCheckpoint, saveCheckpoint, weightsFingerprint } from '../runtime/checkpoint';
import { profileConfig, ProfileName } from '../runtime/profile';
import { bestCheckpoint, resumeTraining, TrainingOutcome } from '../runtime/train-loop';
import { PlannerFeatures } from './features';
import { checkLatentSteps, LatentSteps, Planner, PlannerConfig, plannerForward, plannerInputs } from './orderhead';
import { gradsByName, PlannerData, splitByImage } from './train';
import { checkBudgetSet } from './budget-set';
import { chooseBudgets, createRouter, disposeRouter, Router, ROUTER_DEFAULTS, RouterConfig, routerForward, routerInputDim, routerInputs, RouterShape } from './router';
import { ROUTER_TARGET_RULE, routerTargets } from './router-target';
export interface RouterTrainConfig extends OptimConfig {
  router: RouterConfig;
  /** δ of the target rule. Default 0.1. */
  delta: number;
  /** Latent steps R the planner runs at; default (undefined): the planner's own. */
  latentSteps?: LatentSteps;
  /** Split by image as Stage 3 (use the same value so val/test states stay unseen). Default 8. */
  heldOutEvery: number;
}

/**
 * Stage 6 defaults: 400 steps of 256 states (the inputs are cached: steps are
 * cheap), validation every 25; β2 = 0.99 as the planner's (a small model on
 * cached inputs).
 */
export const ROUTER_TRAIN_DEFAULTS: RouterTrainConfig = {
  router: ROUTER_DEFAULTS, delta: 0.1, steps: 400, batch: 256, lr: 1e-3, warmup: 20, minLrRatio: 0.1, weightDecay: 0.01, betas: [0.9, 0.99], clipNorm: 1,
  evalEvery: 25, heldOutEvery: 8, seed: 0,
};

/** Stage 6 config per profile (smoke: a second in CI). */
export function routerTrainConfig(profile: ProfileName, overrides: Partial<RouterTrainConfig> = {}): RouterTrainConfig {
  return profileConfig(ROUTER_TRAIN_DEFAULTS, {
    smoke: { steps: 16, batch: 32, evalEvery: 4, warmup: 2 },
    default: {},
    full: { steps: 1500, evalEvery: 50 },
  }, profile, overrides, validateRouterTrainConfig);
}

export function validateRouterTrainConfig(cfg: RouterTrainConfig): void {
  validateOptimConfig(cfg, 'router');
  ensure(cfg.evalEvery > 0, `evalEvery = ${cfg.evalEvery}: the best router is chosen on validation`, 'router.evalEvery', 'use a positive integer');
  ensure(Number.isInteger(cfg.heldOutEvery) && cfg.heldOutEvery >= 3, `heldOutEvery = ${cfg.heldOutEvery} leaves no training images`, 'router.heldOutEvery', 'use the Stage 3 value (default 8)');
  ensure(Number.isFinite(cfg.delta) && cfg.delta >= 0 && cfg.delta < 1, `delta = ${cfg.delta}`, 'router.delta', 'use δ in [0, 1) (default 0.1)');
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
  let r = rng(seedFrom(cfg.seed, 'router-batches'));
  const fixed = { 'stats.mean': rt.stats.mean, 'stats.std': rt.stats.std };
  /** CE of the router against the targets of `rows`, and its logits. */
  const routerCE = (rows: readonly number[]) => {
    const x = new Float32Array(rows.length * D), rem = new Int32Array(rows.length), y = new Float32Array(rows.length * K);
    rows.forEach((row, i) => { x.set(cache.x.subarray(row * D, (row + 1) * D), i * D); rem[i] = cache.remaining[row]; y[i * K + targets[row]] = 1; });
    const logits = routerForward(rt, tf.tensor2d(x, [rows.length, D]), rem);
    return { logits, loss: tf.mean(tf.neg(tf.sum(tf.mul(tf.tensor2d(y, [rows.length, K]), tf.logSoftmax(logits)), -1))) as tf.Scalar };
  };
  let outcome: TrainingOutcome;
  try {
    const t = resumeTraining({
      run, stage: 'router', configName: 'router', optim: cfg, optimizer: AdamW.fromConfig(rt.params, cfg), checkpointConfig: ckCfg, maxSteps: opts.maxSteps,
      restore: (extra, weights, file) => {
        assignWeights(fixed, weights, file, 'the file does not belong to this config: delete the run folder or use another one');
        r = rngFromState(Number(extra.rngState));
      },
    });
    try {
      for (let step = t.step; step < t.until; step++) {
        const lr = scheduledLr(cfg, step);
        const rows = Array.from({ length: cfg.batch }, () => split.train[r.int(split.train.length)]);
        const { value, grads } = tf.variableGrads(() => routerCE(rows).loss, Object.values(rt.params));
        const loss = value.dataSync()[0];
        value.dispose();
        t.update(step, loss, gradsByName(rt.params, grads), lr);
        const s = step + 1;
        let row: { loss: number; lr: number; valLoss?: number; valAcc?: number } = { loss, lr };
        if (t.isEvalStep(s)) {
          const [lossT, logits] = tf.tidy(() => { const o = routerCE(split.val); return [o.loss, o.logits]; });
          const valLoss = lossT.dataSync()[0];
          const chosen = chooseBudgets(rt, logits as tf.Tensor2D);
          tf.dispose([lossT, logits]);
          const e = { valLoss, valAcc: chosen.filter((k, i) => k === budgets[targets[split.val[i]]]).length / split.val.length };
          t.keepBest(s, e.valLoss, () => [{ prefix: 'best', file: saveCheckpoint(run.checkpointDir, checkpointName('best', s),
            { weights: { ...rt.params, ...fixed }, config: ckCfg, step: s, kind: 'router', extra: { valLoss: e.valLoss, valAcc: e.valAcc } }) }]);
          row = { ...row, ...e };
        }
        run.logMetrics(s, row);
        // The input statistics are saved with the weights (a router checkpoint is self-contained) but never trained.
        if (t.isCheckpointStep(s)) t.checkpoint(s, { extra: { rngState: r.state() }, weights: fixed });
        opts.onStep?.(s, row);
      }
    } finally {
      t.dispose();
    }
    outcome = t.outcome();
  } finally {
    disposeRouter(rt);
  }
  const best = bestCheckpoint(run);
  const loaded = loadRouter(best.path, { shape });
  return {
    run, router: loaded, steps: outcome.step, bestStep: outcome.best?.step ?? 0, bestValLoss: outcome.best?.value ?? Infinity, bestPath: best.path,
    targetCounts: { train: counts(split.train), val: counts(split.val) }, cacheSeconds,
  };
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
