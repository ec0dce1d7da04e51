/**
 * The router's training target (Stage 6; METHOD.md leaves it open).
 *
 * For a
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
import { ensure } from '../runtime/errors';
import type { PlannerData } from './train';

/** Unseen blocks sorted by decreasing `score` (ties: lower block index first). */
export function ranked(score: ArrayLike<number>, visible: ArrayLike<number>, nb: number, o = 0): number[] {
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

export const ROUTER_TARGET_RULE =
  'k* = the largest budget k <= |R| such that sum of u over the planner\'s top-k blocks >= sum over the oracle\'s top-k blocks - delta*|that sum| ' +
  '(single-step utilities; k* = 1 when none qualifies)';

/** Router targets (indices into `budgets`) of every state of `data` under the planner probabilities `probs` [n, nb]. */
export function routerTargets(data: PlannerData, probs: Float32Array, budgets: readonly number[], delta: number): Int32Array {
  const nb = data.features.numBlocks, n = data.features.n;
  return Int32Array.from({ length: n }, (_, i) => {
    const sl = (a: ArrayLike<number>) => Array.prototype.slice.call(a, i * nb, (i + 1) * nb) as number[];
    return budgets.indexOf(routerTarget(sl(data.utility), sl(probs), sl(data.features.visible), budgets, delta));
  });
}
