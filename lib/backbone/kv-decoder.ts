/**
 * Fast decoding for the GPT (backbone/gpt.ts): a KV cache, so each new slot
 * costs one row through every layer instead of a `forward` over the whole
 * prefix. It speeds up sampling (backbone/sampler.ts), the decoding context
 * of a state (backbone/decoding-context.ts), the oracle's scoring of every
 * candidate block of a state from one shared prefix (oracle/utility.ts) and
 * the planner's backbone features (planner/features.ts).
 *
 * Three cache modes: growing (k, v concatenated per extend), preallocated and
 * written in place (backends with local memory: the sampler's mode), and a
 * batch-1 prefix shared by B continuations (extend without keep). Small inputs
 * run RMSNorm, rotary and one-query attention as fused JS kernels
 * (runtime/decode-kernels.ts), which cost less than the op-by-op versions'
 * per-kernel overhead.
 *
 * Checked against the reference, `referenceDecodeStep` / `forward` in gpt.ts
 * (same numbers up to float rounding): tests/unit/backbone/gpt.test.ts
 * (every step, raster and random orders; shared prefixes),
 * tests/unit/backbone/decode.test.ts (each fast path and cache mode, wasm and
 * cpu; the sampler with and without the cache) and
 * tests/unit/oracle/oracle.test.ts (the batched scorer against
 * oracle/reference.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { embedSlots, ForwardOut, GPT, rope } from './gpt';
import { Attention, headAttention, mergeHeads, rmsNorm, splitHeads, transformerBlock } from './transformer';
import { OrderHeadError } from '../runtime/errors';
import { hasLocalMemory } from '../runtime/backend-memory';
import { decodeAttention, decodeKernelsAvailable, fusedRmsNorm, fusedRope, queryAttention, writeSlotsInPlace } from '../runtime/decode-kernels';

export interface KVCache {
  /**
   * Per layer: keys and values of the slots seen so far, [B, H, length, hd];
   * or, in a preallocated cache (`capacity` > 0), [B, H, capacity, hd]
   * buffers of which the first `length` slots are filled.
   */
  k: tf.Tensor4D[];
  v: tf.Tensor4D[];
  /** Slots in the cache. */
  length: number;
  /**
   * 0 or absent: k/v hold exactly `length` slots and grow by concat (a new
   * tensor per layer per extend). > 0: preallocated for this many slots; on
   * backends with local memory (wasm, cpu) `extend(…, keep)` writes new slots
   * into the buffers in place (the sampler's mode: no copy of the cache per
   * token). Elsewhere, or past capacity, it falls back to the growing mode
   * (and sets capacity to 0).
   */
  capacity?: number;
}

/**
 * An empty cache. `capacity`: preallocate that many slots (seqLen(cfg) holds
 * a whole image: the class slot and T-1 tokens); the buffers are allocated
 * by the first extend, with its batch.
 */
export function emptyCache(m: GPT, opts: { capacity?: number } = {}): KVCache {
  const capacity = opts.capacity ?? 0;
  if (!(Number.isInteger(capacity) && capacity >= 0)) {
    throw new OrderHeadError(`capacity ${capacity} is not a whole number >= 0`, 'emptyCache(capacity)', 'pass a number of slots, e.g. seqLen(cfg), or 0 for a growing cache');
  }
  return { k: new Array(m.cfg.nLayer).fill(null), v: new Array(m.cfg.nLayer).fill(null), length: 0, capacity };
}

export function disposeCache(c: KVCache): void {
  tf.dispose([...c.k, ...c.v].filter((t) => t));
  c.k.fill(null as unknown as tf.Tensor4D);
  c.v.fill(null as unknown as tf.Tensor4D);
  c.length = 0;
}

/** Slots to append to a cache: B sequences of L slots each. */
export interface Extension {
  /** [B*L]: token ids; in the class slot (first slot of an empty cache) the class id. */
  inputs: Int32Array;
  /** [B*L]: cell of each input token (ignored in the class slot). */
  inCells: Int32Array;
  /** [B*L]: the cell each slot predicts. */
  tgtCells: Int32Array;
  B: number;
  L: number;
  /**
   * Optional additive mask among the new slots, [L*L] shared or [B*L*L] per
   * sequence (0 = attend, -1e9 = blocked); default causal. Every new slot
   * always attends to the whole cached prefix. Lets independent one-step
   * queries share one pass (each sees the prefix and itself only).
   */
  mask?: Float32Array;
  /**
   * One-step queries: each new slot sees the cached prefix and itself only,
   * not the other new slots (the planner asks every unseen block at once,
   * lib/planner/features.ts). Instead of `mask`; the cache is left as it was
   * (extend without keep). On local memory one kernel per layer reads the
   * prefix in place (runtime/decode-kernels.ts `queryAttention`).
   */
  queries?: boolean;
}

/** Largest B·L·d for which `extend` uses the fused RMSNorm / rotary kernels (runtime/decode-kernels.ts). */
export const FUSED_OPS_MAX = 1 << 16;

/** How one extend runs: decided from the cache, the extension and the backend before any op. */
interface ExtendPlan {
  B: number;
  L: number;
  /** Slots already cached. */
  P: number;
  /** Sequences in the cache: B, or 1 for a prefix shared by all B. */
  prefixB: number;
  /** Preallocated slots of the cache (0: growing). */
  cap: number;
  /** Write the new k, v into the preallocated buffers (else concat). */
  inPlace: boolean;
  /** One new slot without a mask: attention as one fused kernel over the cache (else ops, with a mask). */
  fusedAttention: boolean;
  /** One-step queries over a cached prefix: one fused kernel over the prefix and each query's own slot. */
  queryAttention: boolean;
  /** RMSNorm and rotary as one fused kernel each (else the model's ops). */
  fusedOps: boolean;
}

function planExtend(m: GPT, cache: KVCache, ext: Extension, keep: boolean): ExtendPlan {
  const { B, L } = ext;
  const P = cache.length;
  const prefixB = P ? cache.k[0].shape[0] : B;
  if (P && prefixB !== B && prefixB !== 1) {
    throw new OrderHeadError(`cache holds ${prefixB} sequences, the extension ${B}`, 'extend(cache, ext)', 'extend with the same batch or share a batch-1 prefix');
  }
  if (ext.queries && (keep || ext.mask)) {
    throw new OrderHeadError(keep ? 'one-step queries cannot join the cache' : 'one-step queries come with their own mask', 'extend(cache, ext.queries)',
      keep ? 'call extend(m, cache, ext, false)' : 'pass either queries or mask');
  }
  const cap = cache.capacity ?? 0;
  const local = decodeKernelsAvailable();
  return {
    B, L, P, prefixB, cap,
    inPlace: keep && cap > 0 && P + L <= cap && prefixB === B && hasLocalMemory(),
    fusedAttention: L === 1 && !ext.mask && !ext.queries && local,
    queryAttention: !!ext.queries && P > 0 && local,
    // RMSNorm and rotary as one JS kernel each instead of 6 and ~8 tfjs kernels: per-kernel overhead
    // dominates small inputs (decoding); large ones (the oracle's long continuations) keep the ops.
    fusedOps: local && B * L * m.cfg.dModel <= FUSED_OPS_MAX,
  };
}

/** What every layer of one extend reads, and the k, v it makes for the cache. */
interface ExtendPass extends ExtendPlan {
  m: GPT;
  cache: KVCache;
  /** [B*L, hd]: rotary rows of the new slots. */
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
  /** [B or 1, 1, L, P+L] additive mask of the op attention; null with fused attention. */
  mask: tf.Tensor | null;
  /** Per layer, the tensors the cache is to hold after this extend (none when written in place into existing buffers). */
  newK: tf.Tensor4D[];
  newV: tf.Tensor4D[];
}

/** Embeddings x [B*L, d] and rotary rows of the new slots; in an empty cache the first slot is the class slot. */
function embedExtension(m: GPT, ext: Extension, isClass: boolean): { x: tf.Tensor2D; cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const { B, L } = ext;
  const ids = tf.tensor2d(ext.inputs, [B, L], 'int32');
  const inCells = ext.inCells.slice();
  if (isClass) for (let b = 0; b < B; b++) inCells[b * L] = -1;
  const classes = isClass ? tf.reshape(tf.slice(ids, [0, 0], [B, 1]), [B]) as tf.Tensor1D : tf.zeros([B], 'int32') as tf.Tensor1D;
  const tokens = isClass ? tf.slice(ids, [0, 1], [B, L - 1]) as tf.Tensor2D : ids; // [B, L or L-1]
  return embedSlots(m, isClass, tokens, classes, tf.tensor2d(inCells, [B, L], 'int32'), tf.tensor2d(ext.tgtCells, [B, L], 'int32'));
}

/** Additive mask [B or 1, 1, L, P+L]: the cached prefix always visible, the new slots causal or as ext.mask says. */
function extensionMask(m: GPT, ext: Extension, P: number): tf.Tensor {
  const { B, L } = ext;
  let newMask: tf.Tensor; // [B or 1, 1, L, L]
  if (ext.queries) newMask = tf.reshape(tf.mul(tf.sub(1, tf.eye(L)), -1e9), [1, 1, L, L]);
  else if (ext.mask) newMask = tf.reshape(tf.tensor(ext.mask), [ext.mask.length === L * L ? 1 : B, 1, L, L]);
  else newMask = tf.reshape(L <= m.consts.mask.shape[0] ? tf.slice(m.consts.mask, [0, 0], [L, L])
    : tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([L, L]), -1, 0)), -1e9), [1, 1, L, L]);
  return P ? tf.concat([tf.zeros([newMask.shape[0], 1, L, P]), newMask], 3) : newMask;
}

/** Rotary on new rows t [B*L, d] -> [B*L, H, hd]: the fused kernel or the model's ops. */
function rotate(s: ExtendPass, t: tf.Tensor2D): tf.Tensor3D {
  return s.fusedOps ? fusedRope(t, s.cos, s.sin) : rope(s.m, t, s.cos, s.sin);
}

/** The first n slots of a cached layer [B, H, ≥n, hd] (a preallocated buffer holds more). */
function filledSlots(t: tf.Tensor4D, n: number): tf.Tensor4D {
  return t.shape[2] === n ? t : tf.slice(t, [0, 0, 0, 0], [t.shape[0], t.shape[1], n, t.shape[3]]) as tf.Tensor4D;
}

/** A batch-1 prefix [1, H, P, hd] shared by B sequences: concat of B references (tf.tile is ~70x slower on wasm). */
function shareBatch1(t: tf.Tensor4D, B: number): tf.Tensor4D {
  return t.shape[0] === B ? t : tf.concat(new Array<tf.Tensor4D>(B).fill(t), 0) as tf.Tensor4D;
}

/** q [B*L, H, hd] over the first n slots of K, V [B, H, ≥n, hd] (exactly n on the op path) -> [B*L, d]. */
function attendCache(s: ExtendPass, q: tf.Tensor, K: tf.Tensor4D, V: tf.Tensor4D, n: number): tf.Tensor2D {
  const d = s.m.cfg.dModel, H = s.m.cfg.nHead;
  if (s.fusedAttention) return tf.reshape(decodeAttention(q, K, V, n, 1 / Math.sqrt(d / H)), [s.B, d]) as tf.Tensor2D;
  return mergeHeads(headAttention(splitHeads(q, s.B, s.L, H), K, V, s.mask!));
}

/** In-place mode: k1, v1 [B*L, d] written at slots P.. of layer l's buffers [B, H, cap, hd], allocated by the first extend. */
function writeToBuffers(s: ExtendPass, l: number, k1: tf.Tensor, v1: tf.Tensor): [tf.Tensor4D, tf.Tensor4D] {
  const H = s.m.cfg.nHead, hd = s.m.cfg.dModel / H;
  const bufK = s.P ? s.cache.k[l] : tf.zeros([s.B, H, s.cap, hd]) as tf.Tensor4D;
  const bufV = s.P ? s.cache.v[l] : tf.zeros([s.B, H, s.cap, hd]) as tf.Tensor4D;
  if (!s.P) { s.newK.push(bufK); s.newV.push(bufV); }
  writeSlotsInPlace(bufK, k1, s.P);
  writeSlotsInPlace(bufV, v1, s.P);
  return [bufK, bufV];
}

/** Growing mode: layer l's cached k, v (shared if batch 1) and the new k1, v1 [B*L, d] joined by concat -> [B, H, P+L, hd]. */
function joinToCache(s: ExtendPass, l: number, k1: tf.Tensor, v1: tf.Tensor): [tf.Tensor4D, tf.Tensor4D] {
  const { B, L, P } = s, H = s.m.cfg.nHead;
  const K = P ? tf.concat([shareBatch1(filledSlots(s.cache.k[l], P), B), splitHeads(k1, B, L, H)], 2) as tf.Tensor4D : splitHeads(k1, B, L, H);
  const V = P ? tf.concat([shareBatch1(filledSlots(s.cache.v[l], P), B), splitHeads(v1, B, L, H)], 2) as tf.Tensor4D : splitHeads(v1, B, L, H);
  s.newK.push(K); s.newV.push(V);
  return [K, V];
}

/** Layer l's attention: rotary on q and k, the new k and v joined to the cache, the new slots' queries over it. */
function layerAttention(s: ExtendPass, l: number): Attention {
  return (qIn, kIn, v1) => {
    const q = rotate(s, qIn); // [B*L, H, hd]
    const k1 = rotate(s, kIn);
    const n = s.P + s.L;
    if (s.queryAttention) { // the prefix read in place, each query's own k, v beside it: nothing joined
      const hd = s.m.cfg.dModel / s.m.cfg.nHead;
      return tf.reshape(queryAttention(q, s.cache.k[l], s.cache.v[l], k1, v1, s.P, s.L, 1 / Math.sqrt(hd)), [s.B * s.L, s.m.cfg.dModel]) as tf.Tensor2D;
    }
    if (s.inPlace) {
      const [bufK, bufV] = writeToBuffers(s, l, k1, v1);
      // The fused kernel reads the first n slots itself; the ops need them cut out.
      return s.fusedAttention ? attendCache(s, q, bufK, bufV, n) : attendCache(s, q, filledSlots(bufK, n), filledSlots(bufV, n), n);
    }
    const [K, V] = joinToCache(s, l, k1, v1);
    return attendCache(s, q, K, V, n);
  };
}

/** After the pass: the cache takes the new k, v (growing mode), keeps its buffers (in place), or drops them (no keep). */
function commitToCache(cache: KVCache, plan: ExtendPlan, keep: boolean, newK: tf.Tensor4D[], newV: tf.Tensor4D[]): void {
  if (plan.inPlace) {
    if (!plan.P) { cache.k = newK; cache.v = newV; }
    cache.length += plan.L;
  } else if (keep) {
    tf.dispose([...cache.k, ...cache.v].filter((t) => t));
    cache.k = newK; cache.v = newV; cache.length += plan.L;
    if (plan.cap) cache.capacity = 0; // now a growing cache
  } else tf.dispose([...newK, ...newV]);
}

/**
 * Append L slots per sequence to a KV cache and return their outputs: logits
 * [B*L, V] and hidden [B*L, d] (caller disposes). A cache holding one sequence
 * (batch 1) is shared by all B new sequences: the prefix is computed once and
 * read by every continuation — the oracle scores all candidate blocks of a
 * state this way. With `keep`, the cache grows by the new slots (then its
 * batch must be 1 or B); otherwise the cache is left as it was.
 *
 * Fast paths (same numbers up to float rounding; tests/unit/backbone/decode.test.ts): one
 * new slot without a mask (L = 1, decoding) runs attention as one fused
 * kernel over the cached slots (runtime/decode-kernels.ts); a preallocated
 * cache (`emptyCache(m, { capacity })`) is written in place.
 */
export function extend(m: GPT, cache: KVCache, ext: Extension, keep = true): ForwardOut {
  const { cfg, params: p } = m;
  const plan = planExtend(m, cache, ext, keep);
  const norm = plan.fusedOps ? fusedRmsNorm : rmsNorm;
  const out = tf.tidy(() => {
    const { x: x0, cos, sin } = embedExtension(m, ext, plan.P === 0);
    const s: ExtendPass = { ...plan, m, cache, cos, sin, mask: plan.fusedAttention || plan.queryAttention ? null : extensionMask(m, ext, plan.P), newK: [], newV: [] };
    let x = x0; // [B*L, d]
    for (let l = 0; l < cfg.nLayer; l++) {
      x = transformerBlock(p, x, { prefix: `h${l}.`, eps: cfg.normEps, gated: true, attend: layerAttention(s, l), norm });
    }
    const hidden = norm(x, p.norm_f, cfg.normEps); // [B*L, d]
    return { logits: tf.matMul(hidden, p.head) as tf.Tensor2D, hidden, newK: s.newK, newV: s.newV };
  });
  commitToCache(cache, plan, keep, out.newK, out.newV);
  return { logits: out.logits, hidden: out.hidden };
}

/**
 * Feed one slot per sample and return its outputs. At slot 0 `input` holds class
 * ids (inCell ignored); later it holds the token just decoded at `inCell`.
 * `tgtCell` is the cell to predict next. The cache grows by one slot.
 * Returns logits [B, V] and hidden [B, d]; caller disposes. Equals
 * gpt.ts's `referenceDecodeStep` over the same prefix.
 */
export function decodeStep(m: GPT, cache: KVCache, input: Int32Array, inCell: Int32Array, tgtCell: Int32Array): ForwardOut {
  return extend(m, cache, { inputs: input, inCells: inCell, tgtCells: tgtCell, B: input.length, L: 1 });
}
