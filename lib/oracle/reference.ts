/**
 * Algorithms 1 and 2 as a plain loop, the reference the fast path
 * (utility.ts `scoreStates`) is tested against: full recomputation with the
 * causal `forward` for the baseline and every candidate, no cache, no sharing.
 */
import * as tf from '@tensorflow/tfjs';
import { DecodeOrder, forward, GPT, tokenNll, tokensInOrder } from '../backbone/gpt';
import { BlockGeometry } from '../order';
import { checkInputs, finalize, geoTables, makePlan, newLosses, OracleConfig, OracleItem, StateScore } from './state-plan';
import { blockWeightTable } from './weights';

/** Per-token NLL [B*T] of full causal forward passes over `orders` (B x T cells) of one image. */
function forwardNll(m: GPT, x: Int32Array, classId: number, orders: number[][]): Float32Array {
  const B = orders.length, T = x.length;
  const order: DecodeOrder = { B, T, cells: new Int32Array(orders.flat()) };
  const grids = new Int32Array(B * T);
  for (let b = 0; b < B; b++) grids.set(x, b * T);
  const ordered = tokensInOrder(grids, order);
  const nll = tf.tidy(() => {
    const toks = tf.tensor2d(ordered, [B, T], 'int32');
    const inputs = tf.slice(toks, [0, 0], [B, T - 1]) as tf.Tensor2D;
    return tokenNll(forward(m, order, inputs, tf.tensor1d(new Int32Array(B).fill(classId), 'int32')).logits, toks);
  });
  const v = nll.dataSync() as Float32Array;
  nll.dispose();
  return v;
}

/**
 * Algorithms 1 and 2 as a plain loop: for the baseline and for each candidate
 * a full causal `forward` from scratch (no cache, no sharing). Teacher-forced:
 * one sequence S, R (baseline) or S, a, R \ a per candidate. One-step: per
 * candidate one batch of sequences, one per query cell j, ordered S, (a,) j,
 * rest; the loss of j is read at the slot right after the context.
 * Block-marginal: the same with one sequence per unseen block B, ordered
 * S, (a,) B, rest; B's losses are read at its slots right after the context.
 */
export function scoreStatesReference(m: GPT, geo: BlockGeometry, items: OracleItem[], cfg: OracleConfig): StateScore[] {
  const { reading, weights: [weight] } = checkInputs(m, geo, items, cfg);
  const t = geoTables(geo), w = blockWeightTable(geo, weight), T = geo.numTokens;
  return items.map((item) => {
    const plan = makePlan(geo, t, item);
    const ls = newLosses(geo);
    const x = item.tokens, cls = item.classId;
    const store = (cand: number, j: number, v: number) => { if (cand < 0) ls.base[j] = v; else ls.cand[cand * T + j] = v; };
    /** Score the context `ctx` (cells) followed by the cells `rest`, for the baseline (-1) or candidate `cand`. */
    const score = (cand: number, ctx: number[], rest: number[]) => {
      if (rest.length === 0) return;
      if (reading === 'teacher-forced') {
        const cells = [...ctx, ...rest];
        const v = forwardNll(m, x, cls, [cells]);
        for (let s = ctx.length; s < T; s++) store(cand, cells[s], v[s]);
      } else {
        // One sequence per segment (a query cell, or an unseen block), placed right after the context.
        const segments = reading === 'one-step' ? rest.map((j) => [j])
          : [...new Set(rest.map((j) => t.blockOf[j]))].map((b) => t.cellsOf[b]);
        const orders = segments.map((seg) => [...ctx, ...seg, ...rest.filter((c) => !seg.includes(c))]);
        const v = forwardNll(m, x, cls, orders);
        segments.forEach((seg, b) => seg.forEach((j, k) => store(cand, j, v[b * T + ctx.length + k])));
      }
    };
    score(-1, plan.sCells, plan.rCells);
    for (const a of plan.remaining) {
      score(a, [...plan.sCells, ...t.cellsOf[a]], plan.rCells.filter((c) => t.blockOf[c] !== a));
    }
    return finalize(geo, t, w, plan, ls);
  });
}
