/**
 * The router of Algorithm 4 (Stage 6): one budget b_t from the budget set per planning step.
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
 */
import * as tf from '@tensorflow/tfjs';
import { ensure } from '../runtime/errors';
import { rng, seedFrom } from '../runtime/seed';
import { PlannerOutput } from './orderhead';
import { BUDGETS, checkBudgetSet } from './budget-set';

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
