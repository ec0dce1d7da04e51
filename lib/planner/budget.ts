/**
 * Curriculum Stage 6: the adaptive budget (METHOD.md Algorithm 4, §6.6).
 *
 *   b_t = Router(z_R, H_t) ∈ budget set (default {1, 2, 4});
 *   q_t = OrderHead(z_R, H_t); reveal the top-b_t blocks of q_t, in decreasing
 *   probability; replan.
 *
 *
 * The router (router.ts) chooses b_t; its target rule is in router-target.ts
 * and its training in router-train.ts. This file holds the policies: plan
 * once, reveal k blocks.
 */
import * as tf from '@tensorflow/tfjs';
import { ensure } from '../runtime/errors';
import { weightsFingerprint } from '../runtime/checkpoint';
import { BlockGeometry, checkPolicyChoice, OrderPolicy } from '../order';
import { GPT } from '../backbone/gpt';
import { checkLatentSteps, LatentSteps, Planner, plannerForward, plannerInputs, PlannerOutput } from './orderhead';
import { policyFeatures } from './policy';
import { checkBudgetSet } from './budget-set';
import { chooseBudgets, Router, routerForward, routerInputs } from './router';
import { ranked } from './router-target';

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
    contextOf: backbone,
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
        const f = policyFeatures(backbone, geo, need, name);
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
