/**
 * What the planner reads from the backbone (METHOD.md Algorithm 3: Pool(H_t, m_t, positions)).
 *
 * For a state S (visible blocks in reveal order, tokens inside a block in
 * raster order, n = |S| * tokensPerBlock visible tokens c_1..c_n) one
 * backbone pass over L = n + Q slots, Q = one query per unseen block, at the
 * block's first cell:
 *
 *   slot    0          1 .. n-1             n .. n+Q-1  (one per unseen block u, at its first cell j_u)
 *   input   [class]    x[c_1] .. x[c_n-1]   x[c_n]
 *   target  c_1        c_2 .. c_n           j_u
 *   sees    causal prefix                   prefix and itself only
 *
 * The query asks "what comes at block u if u is revealed next?", which is in
 * distribution for a block-order backbone: it was trained to predict the
 * first token of a new block after any set of blocks. Why only the first
 * cell: a query of a block's later cells is a one-step query (METHOD.md §3),
 * out of distribution for the backbone, and those queries were three quarters
 * of every planning step's cost (2x2 blocks) for one feature, the one-step
 * entropy summed over the block (docs/METHOD.md, Algorithm 3, "What the
 * planner reads").
 * Per block the planner gets:
 *   hidden, one d-vector of final hidden state:
 *     visible block v: the mean over the slots whose *input* token lies in v
 *       (the query slots together count as the one slot of x[c_n]): what the
 *       backbone made of v's content;
 *     unseen block u: the hidden state of u's query: what the backbone
 *       expects there, given S;
 *   entropy: the predictive entropy (nats) at u's first cell, 0 on visible
 *   blocks. The block mask m_t and the block positions are added by the
 *   planner itself (lib/planner/orderhead.ts).
 *
 * With |S| = 0 there is no prefix: every query is a class slot of its own.
 * States are grouped by |S| so a group shares one slot layout and one mask.
 */
import * as tf from '@tensorflow/tfjs';
import { ensure } from '../runtime/errors';
import { BlockGeometry, blockCells, cellBlock } from '../order';
import { GPT } from '../backbone/gpt';
import { emptyCache, extend, KVCache } from '../backbone/kv-decoder';
import { DecodingContext } from '../backbone/decoding-context';

/** One state to read: the image's tokens (only visible ones are used), its class and the visible blocks in reveal order. */
export interface FeatureItem {
  /** numTokens token ids; entries of blocks not in `visible` are ignored (may be -1). */
  tokens: ArrayLike<number>;
  classId: number;
  /** Visible blocks in the order they were revealed. */
  visible: readonly number[];
}

/** Backbone features of n states, as flat arrays (frozen-backbone stages cache these). */
export interface PlannerFeatures {
  n: number;
  numBlocks: number;
  /** Backbone width d. */
  dim: number;
  /** [n, numBlocks, dim]: per-block hidden state (see the module comment). */
  hidden: Float32Array;
  /** [n, numBlocks]: predictive entropy (nats) at each unseen block's first token; 0 on visible blocks. */
  entropy: Float32Array;
  /** [n, numBlocks]: 1 = visible. */
  visible: Uint8Array;
  /** [n]: class ids. */
  classId: Int32Array;
}

/** Per-group tensors: hidden [B, nb, d], entropy [B, nb] (caller disposes; differentiable in the backbone). */
export interface FeatureTensors {
  hidden: tf.Tensor3D;
  entropy: tf.Tensor2D;
}

/** Default states per backbone pass. */
export const FEATURE_BATCH = 64;

function checkItem(geo: BlockGeometry, it: FeatureItem, i: number): void {
  ensure(it.tokens.length === geo.numTokens, `state ${i} has ${it.tokens.length} tokens, the grid has ${geo.numTokens}`,
    'planner features', 'pass the full token grid of the image (hidden tokens may be -1)');
  ensure(it.visible.length < geo.numBlocks, `state ${i} has every block visible: there is nothing to plan`,
    'planner features', 'read states with at least one unseen block');
  const seen = new Set<number>();
  for (const b of it.visible) {
    ensure(Number.isInteger(b) && b >= 0 && b < geo.numBlocks && !seen.has(b), `state ${i} lists visible block ${b} twice or out of range`,
      'planner features', `visible blocks are distinct indices 0..${geo.numBlocks - 1}`);
    seen.add(b);
  }
}

/**
 * Features of states that all have the same number of visible blocks, as
 * tensors (use inside tf.tidy or variableGrads: Stage 5 trains through them).
 */
export function featureTensors(m: GPT, geo: BlockGeometry, items: readonly FeatureItem[]): FeatureTensors {
  const B = items.length, nb = geo.numBlocks, d = m.cfg.dModel, tpb = geo.tokensPerBlock;
  const s = items[0].visible.length, n = s * tpb, Q = nb - s; // one query per unseen block
  items.forEach((it, i) => {
    checkItem(geo, it, i);
    ensure(it.visible.length === s, 'states of one feature group differ in |S|', 'featureTensors', 'group states by |S| (plannerFeatures does)');
    for (const b of it.visible) for (const c of blockCells(geo, b)) {
      ensure(Number.isInteger(it.tokens[c]) && it.tokens[c] >= 0 && it.tokens[c] < m.cfg.vocabSize,
        `state ${i}: visible cell ${c} holds token ${it.tokens[c]}, outside the vocabulary 0..${m.cfg.vocabSize - 1}`,
        'planner features', 'visible blocks must hold decoded tokens');
    }
  });
  // Query slots: one per unseen block, at its first cell, in block order.
  const queries = unseenBlocks(geo, items);
  const Lh = n + Q, q0 = n; // slots whose hidden states we read; the queries start at q0
  const pool = new Float32Array(B * nb * Lh); // [B, nb, Lh]: block <- slot weights (hidden)
  const first = new Float32Array(B * nb * Lh); // 1 at an unseen block's query
  items.forEach((it, b) => {
    const cells = it.visible.flatMap((v) => blockCells(geo, v)); // c_1..c_n
    for (let i = 1; i < n; i++) pool[(b * nb + cellBlock(geo, cells[i - 1])) * Lh + i] += 1 / tpb;
    queries[b].forEach((u, j) => {
      const slot = q0 + j;
      if (n > 0) pool[(b * nb + cellBlock(geo, cells[n - 1])) * Lh + slot] += 1 / (Q * tpb); // the queries' shared input x[c_n]
      pool[(b * nb + u) * Lh + slot] = 1;
      first[(b * nb + u) * Lh + slot] = 1;
    });
  });
  return tf.tidy(() => {
    let out;
    if (n === 0) {
      // No prefix: every query is a one-slot sequence [class] -> its block's first cell.
      const inputs = new Int32Array(B * Q), tgt = new Int32Array(B * Q);
      items.forEach((it, b) => queries[b].forEach((u, j) => { inputs[b * Q + j] = it.classId; tgt[b * Q + j] = firstCell(geo, u); }));
      out = extend(m, emptyCache(m), { B: B * Q, L: 1, inputs, inCells: new Int32Array(B * Q).fill(-1), tgtCells: tgt }, false);
    } else {
      const L = Lh;
      const inputs = new Int32Array(B * L), inCells = new Int32Array(B * L), tgtCells = new Int32Array(B * L);
      items.forEach((it, b) => {
        const cells = it.visible.flatMap((v) => blockCells(geo, v)), o = b * L, last = cells[n - 1];
        inputs[o] = it.classId; inCells[o] = -1; tgtCells[o] = cells[0];
        for (let i = 1; i < n; i++) { inputs[o + i] = it.tokens[cells[i - 1]]; inCells[o + i] = cells[i - 1]; tgtCells[o + i] = cells[i]; }
        queries[b].forEach((u, j) => { inputs[o + n + j] = it.tokens[last]; inCells[o + n + j] = last; tgtCells[o + n + j] = firstCell(geo, u); });
      });
      // Prefix causal; each query sees the prefix and itself.
      const mask = new Float32Array(L * L).fill(-1e9);
      for (let i = 0; i < L; i++) for (let j = 0; j < L; j++) if ((j <= i && j < n) || i === j) mask[i * L + j] = 0;
      out = extend(m, emptyCache(m), { B, L, inputs, inCells, tgtCells, mask }, false);
    }
    const h = tf.reshape(out.hidden, [B, Lh, d]);
    const ent = tf.reshape(entropyOf(out.logits), [B, Lh, 1]);
    return {
      hidden: tf.matMul(tf.tensor3d(pool, [B, nb, Lh]), h) as tf.Tensor3D, // [B, nb, d]
      entropy: tf.reshape(tf.matMul(tf.tensor3d(first, [B, nb, Lh]), ent), [B, nb]) as tf.Tensor2D,
    };
  });
}

/** Per state, its unseen blocks in block order (the order of its query slots). */
function unseenBlocks(geo: BlockGeometry, items: readonly FeatureItem[]): number[][] {
  return items.map((it) => { const v = new Set(it.visible); return Array.from({ length: geo.numBlocks }, (_, b) => b).filter((b) => !v.has(b)); });
}

/** The cell a block's decoding starts at (raster inside the block): where its query asks. */
const firstCell = (geo: BlockGeometry, block: number): number => blockCells(geo, block)[0];

/** Predictive entropy (nats) per row of logits [N, V] -> [N]. */
function entropyOf(logits: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => {
    const logp = tf.logSoftmax(logits);
    return tf.neg(tf.sum(tf.mul(tf.exp(logp), logp), -1)) as tf.Tensor1D;
  });
}

/**
 * Features of any states (grouped by |S| internally, `batch` states per
 * pass), in the order given. `onBatch(done, total)` reports progress.
 */
export function plannerFeatures(m: GPT, geo: BlockGeometry, items: readonly FeatureItem[], batch = FEATURE_BATCH,
  onBatch?: (done: number, total: number) => void): PlannerFeatures {
  const nb = geo.numBlocks, d = m.cfg.dModel, N = items.length;
  const out: PlannerFeatures = {
    n: N, numBlocks: nb, dim: d, hidden: new Float32Array(N * nb * d), entropy: new Float32Array(N * nb),
    visible: new Uint8Array(N * nb), classId: new Int32Array(N),
  };
  const bySize = new Map<number, number[]>();
  items.forEach((it, i) => {
    checkItem(geo, it, i);
    const g = bySize.get(it.visible.length) ?? [];
    g.push(i);
    bySize.set(it.visible.length, g);
    for (const b of it.visible) out.visible[i * nb + b] = 1;
    out.classId[i] = it.classId;
  });
  let done = 0;
  for (const idx of bySize.values()) {
    for (let s = 0; s < idx.length; s += batch) {
      const chunk = idx.slice(s, s + batch);
      const t = featureTensors(m, geo, chunk.map((i) => items[i]));
      const h = t.hidden.dataSync(), e = t.entropy.dataSync();
      tf.dispose([t.hidden, t.entropy]);
      chunk.forEach((i, b) => {
        out.hidden.set(h.subarray(b * nb * d, (b + 1) * nb * d), i * nb * d);
        out.entropy.set(e.subarray(b * nb, (b + 1) * nb), i * nb);
      });
      done += chunk.length;
      onBatch?.(done, N);
    }
  }
  return out;
}

/**
 * The same features of states whose prefix a decoder has already run
 * (lib/backbone/decoding-context.ts): the visible blocks come from the
 * decoded slots' hidden states, and one pass over the cache runs only the
 * unseen blocks' query slots (each sees the cached prefix and itself). All
 * states share one cache and one |S| (the decoders move in lockstep).
 * Equal to `plannerFeatures` up to float rounding (tests/unit/eval/cached-features.test.ts).
 */
export function contextFeatures(m: GPT, geo: BlockGeometry, items: readonly FeatureItem[], contexts: readonly DecodingContext[]): PlannerFeatures {
  const B = items.length, nb = geo.numBlocks, d = m.cfg.dModel, tpb = geo.tokensPerBlock;
  const s = items[0].visible.length, n = s * tpb, Q = nb - s; // one query per unseen block
  const cache = contexts[0].cache;
  items.forEach((it, i) => {
    checkItem(geo, it, i);
    ensure(it.visible.length === s && s > 0 && contexts[i].cache === cache && cache.length === n,
      `state ${i} has ${it.visible.length} visible blocks and a cache of ${contexts[i].cache.length} slots; the group needs |S| = ${s} > 0 and one cache of ${n} slots`,
      'contextFeatures', 'pass states of one decoder step (sampleImages and nllUnderPolicy fill them), or use plannerFeatures');
  });
  const queries = unseenBlocks(geo, items);
  const lastCell = items.map((it) => blockCells(geo, it.visible[s - 1])[tpb - 1]); // c_n: the queries' shared input
  const inputs = new Int32Array(B * Q), inCells = new Int32Array(B * Q), tgtCells = new Int32Array(B * Q);
  items.forEach((it, b) => queries[b].forEach((u, j) => {
    const slot = b * Q + j;
    inputs[slot] = it.tokens[lastCell[b]]; inCells[slot] = lastCell[b]; tgtCells[slot] = firstCell(geo, u);
  }));
  const [h, e] = tf.tidy(() => {
    const identity = contexts.every((c, i) => c.row === i) && cache.k[0].shape[0] === B; // the sampler's rows: read in place
    const rows = identity ? null : tf.tensor1d(contexts.map((c) => c.row), 'int32');
    // Some states' rows: gather only their first n slots; all rows in order: the cache itself, read in place.
    const pick = (t: tf.Tensor4D) => (rows ? tf.gather(tf.slice(t, [0, 0, 0, 0], [t.shape[0], t.shape[1], n, t.shape[3]]), rows) as tf.Tensor4D : t); // [B, H, ≥n, hd]
    const prefix: KVCache = { k: cache.k.map(pick), v: cache.v.map(pick), length: n, capacity: rows ? 0 : cache.capacity };
    // Each query sees the prefix and itself only.
    const out = extend(m, prefix, { B, L: Q, inputs, inCells, tgtCells, queries: true }, false);
    return [out.hidden, entropyOf(out.logits)];
  });
  const hq = h.dataSync() as Float32Array, eq = e.dataSync() as Float32Array; // [B*Q, d], [B*Q]
  tf.dispose([h, e]);
  const out: PlannerFeatures = {
    n: B, numBlocks: nb, dim: d, hidden: new Float32Array(B * nb * d), entropy: new Float32Array(B * nb),
    visible: new Uint8Array(B * nb), classId: Int32Array.from(items, (it) => it.classId),
  };
  items.forEach((it, b) => {
    const bh = contexts[b].blockHidden;
    for (const v of it.visible) {
      out.visible[b * nb + v] = 1;
      for (let x = 0; x < d; x++) out.hidden[(b * nb + v) * d + x] = bh[v * d + x] / tpb;
    }
    const last = (b * nb + it.visible[s - 1]) * d; // the queries together count as the one slot of x[c_n]
    queries[b].forEach((u, j) => {
      const q = b * Q + j;
      for (let x = 0; x < d; x++) {
        out.hidden[(b * nb + u) * d + x] = hq[q * d + x];
        out.hidden[last + x] += hq[q * d + x] / (Q * tpb);
      }
      out.entropy[b * nb + u] = eq[q];
    });
  });
  return out;
}

/** Rows `rows` of a feature set (a split of the states). */
export function selectFeatures(f: PlannerFeatures, rows: readonly number[]): PlannerFeatures {
  const nb = f.numBlocks, d = f.dim, N = rows.length;
  const out: PlannerFeatures = {
    n: N, numBlocks: nb, dim: d, hidden: new Float32Array(N * nb * d), entropy: new Float32Array(N * nb),
    visible: new Uint8Array(N * nb), classId: new Int32Array(N),
  };
  rows.forEach((r, i) => {
    out.hidden.set(f.hidden.subarray(r * nb * d, (r + 1) * nb * d), i * nb * d);
    out.entropy.set(f.entropy.subarray(r * nb, (r + 1) * nb), i * nb);
    out.visible.set(f.visible.subarray(r * nb, (r + 1) * nb), i * nb);
    out.classId[i] = f.classId[r];
  });
  return out;
}
