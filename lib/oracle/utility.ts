/**
 * The oracle (METHOD.md sections 3 and 4, Algorithms 1 and 2): for a visible
 * block set S of a ground-truth token grid, the token-wise future losses
 * l_j(S), L_rest(S), and for every candidate block a the utilities
 *
 *     u(a | S)        = L_rest(S) - L_rest(S ∪ {a})
 *     u_extrap(a | S) = Σ_{j ∈ R \ a} w(j, a) · [ l_j(S) - l_j(S ∪ {a}) ]
 *
 * with the label a* = argmax_a u(a | S) (and a*_extrap for u_extrap).
 *
 * Definitions (the method's; every result says which reading produced it):
 *
 * - Cells, blocks and the visible set follow lib/order: S is a list of blocks
 *   in the order they were revealed; R = the unseen blocks; the candidates
 *   C = all of R. The *visible prefix* is the class slot followed by the tokens
 *   of S's blocks in reveal order, raster inside each block.
 * - L_rest(S) = Σ_{j ∈ R} l_j(S) (nats, summed over every unseen token; R
 *   includes the candidate's own tokens). For S ∪ {a} the sum runs over R \ a,
 *   so u(a | S) also credits a for the loss of its own tokens; u_extrap does
 *   not (j ∈ R \ a only). With |R| = 1, L_rest(S ∪ {a}) = 0.
 * - `block-marginal` reading (primary): every unseen block B is scored
 *   *alone*, decoded right after the context (raster inside B, teacher-forced
 *   on its own tokens): l_B(S) = -log p(x_B | x_S) = Σ_{j ∈ B} l_j(S), where
 *   l_j(S) is the loss of j's slot in that short continuation. l_j(S ∪ {a}):
 *   a's tokens are appended to the prefix first (teacher-forced, raster inside
 *   a), then B alone. Then L_rest = Σ_B l_B and u_extrap = Σ_{B ≠ a} w(B, a) ·
 *   [l_B(S) - l_B(S ∪ {a})]. In distribution for a block-order backbone (a
 *   block right after a visible set is what block-RAR training shows it) and
 *   free of any reference order: no unseen block is context for another.
 * - `teacher-forced` reading: l_j(S) is the loss of token j when R is decoded
 *   after the prefix in the *reference order*: raster over the remaining
 *   blocks (ascending block index), raster inside each block, teacher-forced
 *   on the ground truth. l_j(S ∪ {a}): a's tokens are appended to the prefix
 *   first, then R \ a in raster block order. Always in distribution for a
 *   block-order backbone.
 * - `one-step` reading: l_j(S) = -log p(x_j | x_S): the backbone is queried for
 *   target cell j in the slot right after the prefix (that slot's input is the
 *   last prefix token, or the class slot when S is empty, and its target-aware
 *   position is j). l_j(S ∪ {a}): the prefix, then a's tokens (teacher-forced,
 *   raster inside a), then one query per j ∈ R \ a, each in the slot right
 *   after a's last token. Queries are independent: in a shared pass each
 *   query slot attends to the prefix, to a's slots and to itself only.
 *   Out of distribution for mid-block cells unless the backbone was trained
 *   on token-level queries (METHOD.md section 3).
 *
 * How a sequence maps to model slots (lib/backbone/gpt.ts): slot t's input is
 * the token decoded at step t-1 (slot 0: the class) and its target-aware
 * position is the cell decoded at step t. The slot whose input is the *last*
 * prefix token therefore depends on what comes next, so the cached prefix of
 * a state is the class slot plus the first |S tokens| - 1 tokens (targets: S's
 * cells); every continuation starts with the slot whose input is the last S
 * token (or the class slot, when S is empty and the cache is empty).
 *
 * Two implementations with the same numbers (the shared types, validation
 * and loss-to-utility step in state-plan.ts):
 * - `scoreStates` (fast path): per state the prefix is computed once on a KV
 *   cache (`extend`, keep); the baseline continuation and all candidates'
 *   continuations (same length: the number of unseen tokens) then run as one
 *   batched `extend` without keep. States with the same |S| are packed into
 *   one pass (their prefixes computed together, each continuation reading its
 *   own state's row of the cache), up to `batch` sequences per pass. Work
 *   that would repeat the baseline is skipped: teacher-forced, the candidate
 *   a = R's first block in raster order continues exactly like the baseline
 *   (a, then R \ a in raster block order), so its losses are copied; one-step
 *   and block-marginal with |R| = 1, the one candidate has nothing left to
 *   score. Block-marginal puts every unseen block's short continuation in one
 *   sequence under a mask (each block's slots see the prefix, the
 *   candidate's slots and their own block's earlier slots only), so the
 *   candidate's slots are computed once for all the blocks that read them.
 *   Cost per state: |S tokens| + (number of continuations) x (unseen tokens)
 *   slots, against (|R| + 1) x numTokens for one full pass per candidate: the
 *   saving is at most ~3x in compute (largest at mid-size S); the rest of the
 *   speed-up over the reference is batching (fewer, larger kernels).
 *   The weight enters only the last step (token losses -> u_extrap), so
 *   `scoreStatesPerWeight` labels several weights of one reading with one
 *   set of passes (the dataset build does).
 * - `scoreStatesReference` (reference.ts): a plain loop, full recomputation from scratch with
 *   the causal `forward` for the baseline and for each candidate: one sequence
 *   of the whole image per candidate (teacher-forced), per (candidate, query)
 *   with the query's cell placed right after the context (one-step), or per
 *   (candidate, block) with the block's cells right after the context
 *   (block-marginal); the later slots of those sequences are causal padding
 *   and are ignored.
 */
import * as tf from '@tensorflow/tfjs';
import { GPT, tokenNll } from '../backbone/gpt';
import { disposeCache, emptyCache, extend, Extension, KVCache } from '../backbone/kv-decoder';
import { BlockGeometry } from '../order';
import {
  Checked, checkInputs, finalize, GeoTables, geoTables, Losses, makePlan, newLosses, OracleConfig, OracleItem, OracleWeightsConfig, Plan, Reading,
  StateScore,
} from './state-plan';
import { blockWeightTable } from './weights';

export { DEFAULT_ORACLE_BATCH, PRIMARY_READING, READINGS } from './state-plan';
export type { OracleConfig, OracleItem, OracleWeightsConfig, Reading, StateScore } from './state-plan';
export { scoreStatesReference } from './reference';

// ---------------------------------------------------------------------------
// Fast path

/** One continuation after a state's cached prefix: L slots. */
interface Seq {
  /** Index of the state in its pack (its row of the pack's prefix cache). */
  slot: number;
  /** Index into the plans. */
  plan: number;
  /** -1: the baseline (state S); otherwise the candidate block a (state S ∪ {a}). */
  cand: number;
  L: number;
  inputs: Int32Array;
  inCells: Int32Array;
  tgtCells: Int32Array;
  /** Per slot: the cell whose loss this slot gives, -1 when not needed. */
  lossCells: Int32Array;
  /** [L*L] additive mask among the new slots; null = causal. */
  mask: Float32Array | null;
}

const BLOCKED = -1e9;
const maskMemo = new Map<string, Float32Array>();

/**
 * The first `reveal` slots are causal among themselves; after them come
 * independent segments of the given lengths, each causal inside and seeing
 * the revealed slots, never another segment. One-step queries are segments
 * of length 1; block-marginal blocks, segments of a block's size.
 */
function segmentMask(reveal: number, segments: number[]): Float32Array {
  const key = `${reveal}/${segments.join(',')}`;
  let mk = maskMemo.get(key);
  if (!mk) {
    const L = reveal + segments.reduce((a, b) => a + b, 0);
    mk = new Float32Array(L * L).fill(BLOCKED);
    for (let r = 0; r < reveal; r++) for (let c = 0; c <= r; c++) mk[r * L + c] = 0;
    let start = reveal;
    for (const len of segments) {
      for (let r = start; r < start + len; r++) {
        for (let c = 0; c < reveal; c++) mk[r * L + c] = 0;
        for (let c = start; c <= r; c++) mk[r * L + c] = 0;
      }
      start += len;
    }
    if (maskMemo.size > 256) maskMemo.clear();
    maskMemo.set(key, mk);
  }
  return mk;
}

/** A causal mask of L slots in the segment layout (one revealed run). */
const causalMask = (L: number) => segmentMask(L, []);

/** A teacher-forced run over `cells` after the prefix; losses kept from slot `from` on. */
function forcedSeq(x: Int32Array, firstIn: number, firstCell: number, cells: number[], from: number): Omit<Seq, 'slot' | 'plan' | 'cand'> {
  const L = cells.length;
  const inputs = new Int32Array(L), inCells = new Int32Array(L), tgtCells = new Int32Array(cells), lossCells = new Int32Array(L).fill(-1);
  for (let s = 0; s < L; s++) {
    inputs[s] = s === 0 ? firstIn : x[cells[s - 1]];
    inCells[s] = s === 0 ? firstCell : cells[s - 1];
    if (s >= from) lossCells[s] = cells[s];
  }
  return { L, inputs, inCells, tgtCells, lossCells, mask: null };
}

/**
 * `reveal` teacher-forced cells, then independent segments, each decoded right
 * after the revealed cells (teacher-forced inside the segment): one-step
 * queries (segments of one cell) or block-marginal blocks. A segment's first
 * slot reads the last revealed token (or the continuation's first input).
 */
function segmentSeq(x: Int32Array, firstIn: number, firstCell: number, reveal: number[], segments: number[][]): Omit<Seq, 'slot' | 'plan' | 'cand'> {
  const nr = reveal.length, lens = segments.map((g) => g.length);
  const L = nr + lens.reduce((a, b) => a + b, 0);
  const inputs = new Int32Array(L), inCells = new Int32Array(L), tgtCells = new Int32Array(L), lossCells = new Int32Array(L).fill(-1);
  const put = (s: number, inTok: number, inCell: number, tgt: number) => { inputs[s] = inTok; inCells[s] = inCell; tgtCells[s] = tgt; };
  reveal.forEach((c, s) => put(s, s === 0 ? firstIn : x[reveal[s - 1]], s === 0 ? firstCell : reveal[s - 1], c));
  const segIn = nr ? x[reveal[nr - 1]] : firstIn, segCell = nr ? reveal[nr - 1] : firstCell;
  let s = nr;
  for (const seg of segments) {
    seg.forEach((c, k) => { put(s, k === 0 ? segIn : x[seg[k - 1]], k === 0 ? segCell : seg[k - 1], c); lossCells[s++] = c; });
  }
  // One segment right after the reveal is plain causal: no mask needed.
  return { L, inputs, inCells, tgtCells, lossCells, mask: segments.length > 1 ? segmentMask(nr, lens) : null };
}

/**
 * The continuations of one state (see the file comment): the baseline's, and
 * with `candidates` every candidate's.
 */
function continuations(t: GeoTables, plan: Plan, p: number, reading: Reading, candidates: boolean): Seq[] {
  const x = plan.item.tokens, nS = plan.sCells.length;
  // First slot of every continuation: input = last S token at its cell, or the class slot.
  const firstIn = nS ? x[plan.sCells[nS - 1]] : plan.item.classId;
  const firstCell = nS ? plan.sCells[nS - 1] : -1;
  const out: Seq[] = [];
  // `slot` is the state's row in its pack's prefix cache, set when the state is packed.
  const add = (cand: number, s: Omit<Seq, 'slot' | 'plan' | 'cand'>) => out.push({ ...s, slot: 0, plan: p, cand });
  const others = (a: number) => plan.rCells.filter((c) => t.blockOf[c] !== a);
  if (reading === 'teacher-forced') {
    add(-1, forcedSeq(x, firstIn, firstCell, plan.rCells, 0));
    // The first remaining block in raster order is skipped: its continuation (a, then R \ a in
    // raster block order) is the baseline's, whose losses `sameAsBaseline` copies.
    if (candidates) {
      for (const a of plan.remaining.slice(1)) {
        const aCells = t.cellsOf[a];
        add(a, forcedSeq(x, firstIn, firstCell, [...aCells, ...others(a)], aCells.length));
      }
    }
    return out;
  }
  // One-step: segments of one cell; block-marginal: one segment per unseen block.
  const segmentsOf = (blocks: number[]) => (reading === 'one-step'
    ? blocks.flatMap((b) => t.cellsOf[b]).map((c) => [c])
    : blocks.map((b) => t.cellsOf[b]));
  // S empty: every segment's first slot is a class slot, and only a sequence's first
  // slot can be one, so each segment is its own sequence.
  if (nS) add(-1, segmentSeq(x, firstIn, firstCell, [], segmentsOf(plan.remaining)));
  else for (const seg of segmentsOf(plan.remaining)) add(-1, segmentSeq(x, firstIn, firstCell, [], [seg]));
  // With |R| = 1 the one candidate has nothing left to score (L_rest(S ∪ {a}) = 0).
  if (candidates && plan.remaining.length > 1) {
    for (const a of plan.remaining) add(a, segmentSeq(x, firstIn, firstCell, t.cellsOf[a], segmentsOf(plan.remaining.filter((b) => b !== a))));
  }
  return out;
}

/** Teacher-forced: l_j(S ∪ {a}) = l_j(S) for a = R's first block in raster order (same sequence). */
function sameAsBaseline(t: GeoTables, plan: Plan, ls: Losses, T: number): void {
  const a = plan.remaining[0];
  for (const j of plan.rCells) if (t.blockOf[j] !== a) ls.cand[a * T + j] = ls.base[j];
}

/** The prefix slots of several states with the same |S| > 0: class slot + all S tokens but the last. */
function prefixExtension(plans: Plan[]): Extension {
  const P = plans[0].sCells.length, B = plans.length;
  const inputs = new Int32Array(B * P), inCells = new Int32Array(B * P), tgtCells = new Int32Array(B * P);
  plans.forEach((pl, b) => {
    for (let s = 0; s < P; s++) {
      inputs[b * P + s] = s === 0 ? pl.item.classId : pl.item.tokens[pl.sCells[s - 1]];
      inCells[b * P + s] = s === 0 ? -1 : pl.sCells[s - 1];
      tgtCells[b * P + s] = pl.sCells[s];
    }
  });
  return { B, L: P, inputs, inCells, tgtCells };
}

/** One batched extend over the cached prefixes of a pack; records the losses. */
function runChunk(m: GPT, cache: KVCache, packSize: number, chunk: Seq[], plans: Plan[], losses: Losses[], T: number): void {
  const B = chunk.length, L = chunk[0].L;
  const inputs = new Int32Array(B * L), inCells = new Int32Array(B * L), tgtCells = new Int32Array(B * L), targets = new Int32Array(B * L);
  const allCausal = chunk.every((s) => s.mask === null);
  const shared = !allCausal && chunk.every((s) => s.mask === chunk[0].mask);
  let mask: Float32Array | undefined;
  if (shared) mask = chunk[0].mask!;
  else if (!allCausal) mask = new Float32Array(B * L * L);
  chunk.forEach((s, b) => {
    inputs.set(s.inputs, b * L); inCells.set(s.inCells, b * L); tgtCells.set(s.tgtCells, b * L);
    const x = plans[s.plan].item.tokens;
    for (let i = 0; i < L; i++) targets[b * L + i] = x[s.tgtCells[i]];
    if (mask && !shared) mask.set(s.mask ?? causalMask(L), b * L * L);
  });
  const nll = tf.tidy(() => {
    let c = cache;
    if (cache.length && (packSize > 1 || B > 1)) {
      // Each continuation's own row of the pack's prefix cache, as a batch-B cache. Built with
      // split + concat: on wasm, gather and tile (what extend does for a batch-1 cache) are
      // element-wise loops, 30-50x slower than concat's block copies.
      const rep = (t: tf.Tensor4D) => {
        const rows = packSize > 1 ? tf.split(t, packSize, 0) : [t];
        return tf.concat(chunk.map((s) => rows[s.slot]), 0) as tf.Tensor4D;
      };
      c = { k: cache.k.map(rep), v: cache.v.map(rep), length: cache.length };
    }
    const out = extend(m, c, { B, L, inputs, inCells, tgtCells, mask }, false);
    return tokenNll(out.logits, tf.tensor2d(targets, [B, L], 'int32'));
  });
  const v = nll.dataSync();
  nll.dispose();
  chunk.forEach((s, b) => {
    const ls = losses[s.plan];
    for (let i = 0; i < L; i++) {
      const j = s.lossCells[i];
      if (j < 0) continue;
      if (s.cand < 0) ls.base[j] = v[b * L + i];
      else ls.cand[s.cand * T + j] = v[b * L + i];
    }
  });
}

/**
 * The fast path's passes over every state: the baseline continuations, and
 * with `candidates` every candidate's, packed by |S| and batched by length.
 */
function fastLosses(m: GPT, geo: BlockGeometry, t: GeoTables, plans: Plan[], reading: Reading, batch: number, candidates: boolean): Losses[] {
  const T = geo.numTokens;
  const losses = plans.map(() => newLosses(geo));
  const seqsOf = plans.map((pl, p) => continuations(t, pl, p, reading, candidates));
  const order = plans.map((_, i) => i).sort((a, b) => plans[a].sCells.length - plans[b].sCells.length || a - b);
  for (let i = 0; i < order.length;) {
    // A pack: consecutive states with the same |S|, at most `batch` sequences (at least one state).
    const nS = plans[order[i]].sCells.length;
    const pack = [order[i]];
    let count = seqsOf[order[i++]].length;
    while (i < order.length && plans[order[i]].sCells.length === nS && count + seqsOf[order[i]].length <= batch) {
      count += seqsOf[order[i]].length;
      pack.push(order[i++]);
    }
    const seqs = pack.flatMap((p, slot) => seqsOf[p].map((q) => ({ ...q, slot })));
    const cache = emptyCache(m);
    try {
      if (nS > 0) {
        const pre = extend(m, cache, prefixExtension(pack.map((p) => plans[p])), true);
        tf.dispose([pre.logits, pre.hidden]);
      }
      const byLength = new Map<number, Seq[]>();
      for (const s of seqs) byLength.set(s.L, [...(byLength.get(s.L) ?? []), s]);
      for (const group of byLength.values()) {
        for (let c = 0; c < group.length; c += batch) runChunk(m, cache, pack.length, group.slice(c, c + batch), plans, losses, T);
      }
    } finally {
      disposeCache(cache);
    }
  }
  if (candidates && reading === 'teacher-forced') plans.forEach((p, i) => sameAsBaseline(t, p, losses[i], T));
  return losses;
}

/**
 * Algorithms 1 and 2, fast path: prefixes on a KV cache, all continuations of
 * a state (and of other states with the same |S|) in batched passes of at
 * most `cfg.batch` sequences. Leaks no tensors. Same numbers as
 * `scoreStatesReference` (float tolerance).
 */
export function scoreStates(m: GPT, geo: BlockGeometry, items: OracleItem[], cfg: OracleConfig): StateScore[] {
  return scoreWeights(m, geo, items, checkInputs(m, geo, items, cfg))[0];
}

/**
 * `scoreStates` under several weights of one reading at the cost of one:
 * the weight enters only the last step (token losses -> u_extrap), so the
 * backbone passes are shared. Returns one StateScore list per weight, in
 * `cfg.weights` order; each equals scoreStates with that weight. The oracle
 * dataset build labels all weights of a reading with one call.
 */
export function scoreStatesPerWeight(m: GPT, geo: BlockGeometry, items: OracleItem[], cfg: OracleWeightsConfig): StateScore[][] {
  return scoreWeights(m, geo, items, checkInputs(m, geo, items, cfg));
}

function scoreWeights(m: GPT, geo: BlockGeometry, items: OracleItem[], { batch, reading, weights }: Checked): StateScore[][] {
  const t = geoTables(geo);
  const plans = items.map((it) => makePlan(geo, t, it));
  const losses = fastLosses(m, geo, t, plans, reading, batch, true);
  return weights.map((name) => {
    const w = blockWeightTable(geo, name);
    return plans.map((p, i) => finalize(geo, t, w, p, losses[i]));
  });
}

/**
 * L_rest(S) of each state alone (no candidates): the baseline continuations
 * of the fast path, about 1 / |R| of `scoreStates`' work. Equals
 * `scoreStates(...)[i].lRest` (same passes, float tolerance). For the
 * remaining-loss curves of the trajectory metrics.
 */
export function scoreRestLoss(m: GPT, geo: BlockGeometry, items: OracleItem[], cfg: Pick<OracleConfig, 'reading' | 'batch'>): Float64Array {
  const { batch, reading } = checkInputs(m, geo, items, { weight: 'uniform', ...cfg });
  const t = geoTables(geo);
  const plans = items.map((it) => makePlan(geo, t, it));
  const losses = fastLosses(m, geo, t, plans, reading, batch, false);
  return Float64Array.from(plans, (p, i) => p.rCells.reduce((sum, j) => sum + losses[i].base[j], 0));
}

