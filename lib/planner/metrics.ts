/**
 * Planner calibration metrics (METHOD.md section 7, "Planner calibration":
 * top-1 / top-k agreement with the oracle, rank correlation, regret
 * u(a*) - u(a_t), calibration error) of one chooser against the oracle.
 * Plain typed arrays, no tensors. Beside this file: the baseline choosers the
 * planner is compared against (baselines.ts), the two statistics the metrics
 * use that lib/oracle does not have (Kendall's tau-b, kendall.ts; the expected
 * calibration error, calibration.ts), and the rows of a metrics table
 * (metrics-table.ts).
 *
 * Layout (shared by every function here and in baselines.ts): n states,
 * nb = numBlocks blocks per state, row-major [n * nb] arrays, state i's
 * block b at `i * nb + b`.
 * - `visible: Uint8Array`: 1 = block visible (in S), 0 = unseen (in R).
 * - `utility: Float32Array`: the oracle utility vector u(a | S) of METHOD.md
 *   section 3 (or u_extrap; the metrics do not care which), NaN on visible
 *   blocks. It must be finite on every unseen block of a counted state.
 * - `scores: Float32Array`: a chooser's preference per block, higher =
 *   preferred (a planner's logits, a baseline's scores). Ignored on visible
 *   blocks (any value, NaN included). On unseen blocks: any number but NaN;
 *   -Infinity / +Infinity are allowed (e.g. masked logits) and order as usual.
 * - `probs: Float32Array` (optional): a probability distribution over the
 *   unseen blocks of each state (>= 0 there, summing to 1 within 1e-3),
 *   ignored on visible blocks; used only for the calibration error.
 *
 * Definitions, per counted state (a state with at least one unseen block; a
 * state with none has no next block and is left out of every metric):
 * - R = the unseen blocks, m = |R|.
 * - chosen = argmax over R of the scores, ties to the lowest block index
 *   (`chooseFromScores`): what the chooser would reveal next.
 * - a* = argmax over R of the utility, ties to the lowest block index: the
 *   oracle label, with the same tie rule as the stored labels
 *   (lib/oracle/utility.ts), so top-1 is label agreement with a*.
 * - score order = R sorted by score descending, ties by ascending block index
 *   (the chooser's own tie rule, so its first element is `chosen`).
 *   rank(a*) = its 0-based position in that order.
 * - correct = [chosen == a*]; inTopK = [rank(a*) < k]; inTop3 = [rank(a*) < 3].
 * - regret = u(a*) - u(chosen) >= 0, in the utility's units (nats of future
 *   loss).
 * - regretNormalized = regret / (max_R u - min_R u), in [0, 1]; 0 when that
 *   range is 0 (a single unseen block or a constant utility: every choice is
 *   optimal).
 * - spearman = Spearman rank correlation (average ranks on ties;
 *   lib/oracle/agreement `spearman`) between the scores and the utility over R;
 *   kendall = Kendall's tau-b (`kendallTau`) over the same pairs. Both need
 *   m >= 2 and are undefined (NaN) when either list is constant on R (e.g. a
 *   scorer that ties every block).
 * - confidence (with probs) = max over R of probs. probs must agree with
 *   scores: probs[chosen] has to be that maximum (else the error says so).
 *
 * Summaries over the counted states (`summarizePerState`):
 * - n = number of counted states;
 * - top1, topK, top3, regret, regretNormalized = means over all n states;
 * - spearman, kendall = means over the nRank states with m >= 2 where the
 *   correlation is defined (states where it is undefined are left out, and
 *   nRank says how many remain);
 * - ece = expected calibration error (`expectedCalibrationError`) of
 *   (confidence, correct) over the n states with 10 equal-width confidence
 *   bins; undefined without probs.
 * Every summary is a plain mean of the per-state arrays in `perState`, so a
 * bootstrap interval is `summarizePerState(perState, resampledRows)`.
 */
import { ensure, OrderHeadError } from '../runtime/errors';
import { labelAgreement, spearman } from '../oracle/agreement';
import { kendallTau } from './kendall';
import { expectedCalibrationError } from './calibration';

// ---------------------------------------------------------------------------
// Shared checks

function checkNb(nb: number, where: string): void {
  ensure(Number.isInteger(nb) && nb > 0, `nb = ${nb} is not a positive integer`, where, 'pass geo.numBlocks');
}

/** n from a [n * nb] visible mask; throws unless its length is a multiple of nb. */
function statesOf(visible: ArrayLike<number>, nb: number, where: string): number {
  ensure(visible.length % nb === 0,
    `visible has ${visible.length} entries, not a multiple of nb = ${nb}`, where,
    'pass a row-major [n * numBlocks] mask (1 = visible)');
  return visible.length / nb;
}

function checkSameLength(name: string, a: ArrayLike<number>, len: number, where: string): void {
  ensure(a.length === len, `${name} has ${a.length} entries, visible has ${len}`, where,
    `pass ${name} in the same [n * numBlocks] layout as visible`);
}

// ---------------------------------------------------------------------------
// Choice and ranking

/**
 * The block each state's chooser reveals next: argmax of `scores` over the
 * unseen blocks (visible[i * nb + b] = 0), ties to the lowest block index.
 * Visible blocks are never chosen, whatever their score. -1 for a state with
 * no unseen block. A NaN score on an unseen block is an error.
 */
export function chooseFromScores(scores: ArrayLike<number>, visible: ArrayLike<number>, nb: number): Int32Array {
  const where = 'chooseFromScores(scores, visible, nb)';
  checkNb(nb, where);
  const n = statesOf(visible, nb, where);
  checkSameLength('scores', scores, visible.length, where);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = argmaxUnseen(scores, visible, i * nb, nb, 'scores', i);
  return out;
}

/** argmax over unseen blocks of one row, ties to the lowest index; -1 if none unseen; NaN on an unseen block throws. */
function argmaxUnseen(v: ArrayLike<number>, visible: ArrayLike<number>, off: number, nb: number, name: string, state: number): number {
  let best = -1;
  let bestV = -Infinity;
  for (let b = 0; b < nb; b++) {
    if (visible[off + b]) continue;
    const x = v[off + b];
    if (Number.isNaN(x)) {
      throw new OrderHeadError(`${name} is NaN on unseen block ${b} of state ${state}`, `planner metrics (${name})`,
        `give every unseen block a number (-Infinity is allowed); only visible blocks may hold NaN`);
    }
    if (best < 0 || x > bestV) {
      best = b;
      bestV = x;
    }
  }
  return best;
}

/**
 * The same list with ±Infinity replaced by finite values just beyond the
 * finite range, preserving order and ties: lib/oracle/agreement `spearman`
 * ranks by subtraction, which is undefined for equal infinities.
 */
function finiteOrder(v: number[]): number[] {
  let lo = Infinity, hi = -Infinity;
  for (const x of v) {
    if (Number.isFinite(x)) {
      lo = Math.min(lo, x);
      hi = Math.max(hi, x);
    }
  }
  if (lo > hi) lo = hi = 0;
  return v.map((x) => (x === -Infinity ? lo - 1 : x === Infinity ? hi + 1 : x));
}

// ---------------------------------------------------------------------------
// Planner metrics

export interface PlannerMetricsInput {
  /** Blocks per state (geo.numBlocks). */
  nb: number;
  /** [n * nb], 1 = visible. */
  visible: Uint8Array;
  /** [n * nb] oracle utility u(a | S), NaN on visible blocks. */
  utility: Float32Array;
  /** [n * nb] the chooser's scores, higher = preferred; ignored on visible blocks. */
  scores: Float32Array;
  /** [n * nb] the chooser's distribution over unseen blocks, for the calibration error. */
  probs?: Float32Array;
  /** k of top-k agreement (default 3). */
  k?: number;
  /**
   * [n], optional: 0 leaves a state out (e.g. an oracle labeling's `has`,
   * whose missing states hold NaN utilities).
   */
  include?: ArrayLike<number>;
}

/** One entry per counted state, in input order (`index` maps back to the input state). */
export interface PlannerPerState {
  /** k used for inTopK. */
  k: number;
  /** Input state index. */
  index: Int32Array;
  /** m = number of unseen blocks. */
  unseen: Int32Array;
  /** The chooser's block (argmax score over R, lowest index on ties). */
  chosen: Int32Array;
  /** a* = argmax utility over R, lowest index on ties. */
  best: Int32Array;
  /** 1 where chosen == a*. */
  correct: Uint8Array;
  /** 0-based position of a* in the score order (score descending, ties by block index). */
  rank: Int32Array;
  /** 1 where rank(a*) < k. */
  inTopK: Uint8Array;
  /** 1 where rank(a*) < 3. */
  inTop3: Uint8Array;
  /** u(a*) - u(chosen). */
  regret: Float64Array;
  /** regret / (max_R u - min_R u); 0 where that range is 0. */
  regretNormalized: Float64Array;
  /** Spearman(scores, utility) over R; NaN where m < 2 or undefined. */
  spearman: Float64Array;
  /** Kendall tau-b(scores, utility) over R; NaN where m < 2 or undefined. */
  kendall: Float64Array;
  /** max_R probs; present only when probs were given. */
  confidence?: Float64Array;
}

/** The summary numbers; see the module comment for the definitions. */
export interface PlannerSummary {
  /** Counted states (at least one unseen block, included). */
  n: number;
  k: number;
  /** Share of states with chosen == a*. */
  top1: number;
  /** Share of states with a* among the top 3 by score. */
  top3: number;
  /** Share of states with a* among the top k by score (equals top3 for k = 3). */
  topK: number;
  /** Mean per-state Spearman over the nRank states where it is defined. */
  spearman: number;
  /** Mean per-state Kendall tau-b over the same states. */
  kendall: number;
  /** States with m >= 2 where both correlations are defined. */
  nRank: number;
  /** Mean u(a*) - u(chosen). */
  regret: number;
  /** Mean regret / (max_R u - min_R u). */
  regretNormalized: number;
  /** Expected calibration error, 10 equal-width bins; undefined without probs. */
  ece?: number;
}

export interface PlannerMetrics extends PlannerSummary {
  /** Per-state values behind every summary, for bootstrap intervals and breakdowns (e.g. by |S|). */
  perState: PlannerPerState;
}

/**
 * Planner metrics of one chooser (its `scores`, optionally its `probs`)
 * against the oracle `utility`; see the module comment for every definition.
 * States with no unseen block (or include[i] = 0) are left out.
 */
export function plannerMetrics(input: PlannerMetricsInput): PlannerMetrics {
  const where = 'plannerMetrics';
  const { nb, visible, utility, scores, probs, include } = input;
  const k = input.k ?? 3;
  checkNb(nb, `${where}(nb)`);
  ensure(Number.isInteger(k) && k >= 1, `k = ${k} is not a positive integer`, `${where}(k)`, 'use k = 3 (top-3 agreement)');
  const nAll = statesOf(visible, nb, `${where}(visible)`);
  checkSameLength('utility', utility, visible.length, `${where}(utility)`);
  checkSameLength('scores', scores, visible.length, `${where}(scores)`);
  if (probs) checkSameLength('probs', probs, visible.length, `${where}(probs)`);
  if (include) ensure(include.length === nAll, `include has ${include.length} entries for ${nAll} states`, `${where}(include)`, 'pass one 0/1 flag per state');

  const rows: number[] = [];
  for (let i = 0; i < nAll; i++) {
    if (include && !include[i]) continue;
    let m = 0;
    for (let b = 0; b < nb; b++) if (!visible[i * nb + b]) m++;
    if (m > 0) rows.push(i);
  }
  const n = rows.length;
  const ps: PlannerPerState = {
    k,
    index: Int32Array.from(rows),
    unseen: new Int32Array(n),
    chosen: new Int32Array(n),
    best: new Int32Array(n),
    correct: new Uint8Array(n),
    rank: new Int32Array(n),
    inTopK: new Uint8Array(n),
    inTop3: new Uint8Array(n),
    regret: new Float64Array(n),
    regretNormalized: new Float64Array(n),
    spearman: new Float64Array(n),
    kendall: new Float64Array(n),
    confidence: probs ? new Float64Array(n) : undefined,
  };
  for (let r = 0; r < n; r++) {
    const i = rows[r], off = i * nb;
    const us: number[] = [], ss: number[] = [];
    let uMin = Infinity, uMax = -Infinity;
    for (let b = 0; b < nb; b++) {
      if (visible[off + b]) continue;
      const u = utility[off + b];
      ensure(Number.isFinite(u), `utility is ${u} on unseen block ${b} of state ${i}`, `${where}(utility)`,
        'give every unseen block a finite utility, or leave the state out with include (e.g. the labeling\'s has)');
      us.push(u);
      ss.push(scores[off + b]);
      uMin = Math.min(uMin, u);
      uMax = Math.max(uMax, u);
    }
    const chosen = argmaxUnseen(scores, visible, off, nb, 'scores', i);
    const best = argmaxUnseen(utility, visible, off, nb, 'utility', i);
    const sBest = scores[off + best];
    let rank = 0;
    for (let b = 0; b < nb; b++) {
      if (visible[off + b] || b === best) continue;
      const s = scores[off + b];
      if (s > sBest || (s === sBest && b < best)) rank++;
    }
    const regret = utility[off + best] - utility[off + chosen];
    ps.unseen[r] = us.length;
    ps.chosen[r] = chosen;
    ps.best[r] = best;
    ps.correct[r] = chosen === best ? 1 : 0;
    ps.rank[r] = rank;
    ps.inTopK[r] = rank < k ? 1 : 0;
    ps.inTop3[r] = rank < 3 ? 1 : 0;
    ps.regret[r] = regret;
    ps.regretNormalized[r] = uMax > uMin ? regret / (uMax - uMin) : 0;
    if (us.length >= 2) {
      const rho = spearman(finiteOrder(ss), us);
      const tau = kendallTau(ss, us);
      // Both are undefined exactly when one list is constant on R.
      ps.spearman[r] = Number.isFinite(rho) && Number.isFinite(tau) ? rho : NaN;
      ps.kendall[r] = Number.isFinite(rho) && Number.isFinite(tau) ? tau : NaN;
    } else {
      ps.spearman[r] = NaN;
      ps.kendall[r] = NaN;
    }
    if (probs && ps.confidence) {
      let sum = 0, max = -Infinity;
      for (let b = 0; b < nb; b++) {
        if (visible[off + b]) continue;
        const p = probs[off + b];
        ensure(Number.isFinite(p) && p >= 0, `probs is ${p} on unseen block ${b} of state ${i}`, `${where}(probs)`,
          'pass a distribution over the unseen blocks (e.g. a masked softmax of the scores)');
        sum += p;
        max = Math.max(max, p);
      }
      ensure(Math.abs(sum - 1) <= 1e-3, `probs of state ${i} sum to ${sum} over its unseen blocks`, `${where}(probs)`,
        'normalise over the unseen blocks only: visible blocks receive no probability');
      ensure(probs[off + chosen] >= max, `probs of state ${i} peak at ${max}, but the block chosen by the scores (${chosen}) has ${probs[off + chosen]}`,
        `${where}(probs)`, 'pass probs that rank the blocks like the scores (e.g. their masked softmax)');
      ps.confidence[r] = max;
    }
  }
  return { ...summarizePerState(ps), perState: ps };
}

/**
 * The summary numbers from per-state values: over all counted states, or over
 * `rows` (indices into the per-state arrays, repeats allowed: a bootstrap
 * resample). Definitions in the module comment.
 */
export function summarizePerState(ps: PlannerPerState, rows?: ArrayLike<number>): PlannerSummary {
  const N = rows ? rows.length : ps.index.length;
  const at = (r: number) => (rows ? rows[r] : r);
  let top1 = 0, top3 = 0, topK = 0, regret = 0, regretN = 0, nRank = 0, rho = 0, tau = 0;
  for (let r = 0; r < N; r++) {
    const i = at(r);
    top3 += ps.inTop3[i];
    topK += ps.inTopK[i];
    regret += ps.regret[i];
    regretN += ps.regretNormalized[i];
    if (Number.isFinite(ps.spearman[i]) && Number.isFinite(ps.kendall[i])) {
      nRank++;
      rho += ps.spearman[i];
      tau += ps.kendall[i];
    }
  }
  // top-1 is label agreement between the choices and a* over the rows.
  const pick = (a: Int32Array) => Int32Array.from({ length: N }, (_, r) => a[at(r)]);
  top1 = N > 0 ? labelAgreement(pick(ps.chosen), pick(ps.best)).agree : NaN;
  const z = (x: number, d: number) => (d > 0 ? x / d : NaN);
  const out: PlannerSummary = {
    n: N, k: ps.k,
    top1, top3: z(top3, N), topK: z(topK, N),
    spearman: z(rho, nRank), kendall: z(tau, nRank), nRank,
    regret: z(regret, N), regretNormalized: z(regretN, N),
  };
  if (ps.confidence) out.ece = expectedCalibrationError(ps.confidence, ps.correct, 10, rows);
  return out;
}
