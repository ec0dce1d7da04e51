/**
 * The LlamaGen-style GPT backbone: class-token prefix, RMSNorm, SwiGLU, causal
 * self-attention and 2D rotary positions indexed by the token's spatial cell
 * (not its sequence slot), so the same weights read a sequence in any order.
 * One small file, in the spirit of nanoGPT's model.py.
 *
 * Sequence layout for an image of T = gridH*gridW tokens decoded in the order
 * `cells` (a permutation of 0..T-1; raster for the baseline):
 *
 *   slot    0             1                  ...  T-1
 *   input   [class]       x[cells[0]]        ...  x[cells[T-2]]
 *   rotary  none          cell cells[0]      ...  cell cells[T-2]
 *   + tgt   pos(cells[0]) pos(cells[1])      ...  pos(cells[T-1])
 *   target  x[cells[0]]   x[cells[1]]        ...  x[cells[T-1]]
 *
 * Target-aware positions (why): in any order but raster, "the next token" is
 * ambiguous unless the model is told *where* it is. We follow RAR: a learned
 * embedding of the target's cell is added to each input slot. RandAR's
 * alternative, a position-instruction token before every token, doubles the
 * sequence (4x attention cost) for the same information; on 2 CPU cores that
 * is the difference between one epoch and a half.
 *
 * Speed notes for wasm (runtime/wasm-kernels.ts): every dense layer is a 2-D
 * matmul on [B*T, d] rows; q, k, v are separate projections (a fused qkv
 * needs a strided Slice, slow on wasm); the rotary "rotate pairs" is a tiny
 * matmul with a fixed ±1 matrix instead of slices.
 */
import type { TrainingBudget } from './training-budget';
import * as tf from '@tensorflow/tfjs';
import { GPTConfig, seqLen, validateGPTConfig } from './config';
import { rng } from '../runtime/seed';
import { OrderHeadError } from '../runtime/errors';
import { hasLocalMemory } from '../runtime/backend-memory';
import { decodeAttention, decodeKernelsAvailable, fusedRmsNorm, fusedRope, writeSlotsInPlace } from '../runtime/decode-kernels';

export type Params = Record<string, tf.Variable>;

/** Constant tables a model needs, built once: rotary by cell, pair rotation, causal mask. */
export interface ModelConsts {
  /** [T+1, hd]: row 0 = no rotation (the class slot), row c+1 = cell c. */
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
  /** [hd, hd] with (x·rot)[2i] = -x[2i+1], (x·rot)[2i+1] = x[2i]. */
  rot: tf.Tensor2D;
  /** [T, T] additive causal mask: 0 on and below the diagonal, -1e9 above. */
  mask: tf.Tensor2D;
}

/** A backbone: config, trainable parameters and constants. */
export interface GPT {
  cfg: GPTConfig;
  params: Params;
  consts: ModelConsts;
  /** What it was trained with, when loaded from a checkpoint that records it (loadBackbone): the evaluation matches budgets on it. */
  budget?: TrainingBudget;
}

/** The decode order of a batch: cells[b*T + t] is the cell decoded at step t of sample b. */
export interface DecodeOrder { B: number; T: number; cells: Int32Array }

/** Parameter names and shapes, in a stable order (checkpoints depend on it). */
export function paramShapes(cfg: GPTConfig): [string, number[]][] {
  const { vocabSize: V, numClasses: C, dModel: d, dFF: f, nLayer } = cfg;
  const T = seqLen(cfg);
  const shapes: [string, number[]][] = [
    ['tok_emb', [V, d]],
    ['cls_emb', [C + 1, d]], // + the null class for classifier-free guidance
    ['tgt_pos', [T, d]],     // target-aware position: which cell this slot predicts
  ];
  for (let l = 0; l < nLayer; l++) {
    const p = `h${l}.`;
    shapes.push([p + 'attn_norm', [d]], [p + 'wq', [d, d]], [p + 'wk', [d, d]], [p + 'wv', [d, d]], [p + 'wo', [d, d]],
      [p + 'mlp_norm', [d]], [p + 'w1', [d, f]], [p + 'w3', [d, f]], [p + 'w2', [f, d]]);
  }
  shapes.push(['norm_f', [d]], ['head', [d, V]]);
  return shapes;
}

/** Fresh parameters: N(0, initStd) matrices, residual outputs scaled by 1/sqrt(2·nLayer), unit norm gains. */
export function initParams(cfg: GPTConfig, seed = 0): Params {
  validateGPTConfig(cfg);
  const r = rng(seed);
  const params: Params = {};
  for (const [name, shape] of paramShapes(cfg)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    if (shape.length === 1) values.fill(1);
    else {
      const residualOut = name.endsWith('.wo') || name.endsWith('.w2');
      const std = cfg.initStd * (residualOut ? 1 / Math.sqrt(2 * cfg.nLayer) : 1);
      for (let i = 0; i < size; i++) values[i] = r.normal() * std;
    }
    // Unnamed: tfjs variable names are global, and several models live side by side.
    const init = tf.tensor(values, shape);
    params[name] = tf.variable(init, true);
    init.dispose(); // the variable holds its own reference to the data
  }
  return params;
}

/**
 * Rotary tables by cell. Head dims are split into pairs; the first half of the
 * pairs rotates with the cell's row, the second half with its column.
 */
export function modelConsts(cfg: GPTConfig): ModelConsts {
  const T = seqLen(cfg);
  const hd = cfg.dModel / cfg.nHead;
  const pairs = hd / 2, half = pairs / 2;
  const cos = new Float32Array((T + 1) * hd).fill(1), sin = new Float32Array((T + 1) * hd);
  for (let cell = 0; cell < T; cell++) {
    const row = Math.floor(cell / cfg.gridW), col = cell % cfg.gridW, o = (cell + 1) * hd;
    for (let p = 0; p < pairs; p++) {
      const freq = Math.pow(cfg.ropeBase, -(p % half) / half);
      const angle = (p < half ? row : col) * freq;
      cos[o + 2 * p] = cos[o + 2 * p + 1] = Math.cos(angle);
      sin[o + 2 * p] = sin[o + 2 * p + 1] = Math.sin(angle);
    }
  }
  const rot = new Float32Array(hd * hd);
  for (let p = 0; p < pairs; p++) {
    rot[(2 * p + 1) * hd + 2 * p] = -1;
    rot[(2 * p) * hd + 2 * p + 1] = 1;
  }
  const mask = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) mask[i * T + j] = -1e9;
  return {
    cos: tf.tensor2d(cos, [T + 1, hd]), sin: tf.tensor2d(sin, [T + 1, hd]),
    rot: tf.tensor2d(rot, [hd, hd]), mask: tf.tensor2d(mask, [T, T]),
  };
}

/** A fresh backbone. */
export function createGPT(cfg: GPTConfig, seed = 0): GPT {
  return { cfg, params: initParams(cfg, seed), consts: modelConsts(cfg) };
}

/** Wrap loaded parameters (e.g. from a checkpoint) as a backbone. */
export function gptFromParams(cfg: GPTConfig, params: Params): GPT {
  for (const [name, shape] of paramShapes(cfg)) {
    const p = params[name];
    if (!p || !tf.util.arraysEqual(p.shape, shape)) {
      throw new OrderHeadError(`parameter ${name} has shape [${p?.shape ?? 'missing'}], the config needs [${shape}]`,
        'backbone checkpoint', 'load the checkpoint with the config it was trained with');
    }
  }
  return { cfg, params, consts: modelConsts(cfg) };
}

export function disposeGPT(m: GPT): void {
  tf.dispose([...Object.values(m.params), ...Object.values(m.consts)]);
}

/** Raster decode order for B samples. */
export function rasterOrder(cfg: GPTConfig, B: number): DecodeOrder {
  const T = seqLen(cfg);
  const cells = new Int32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) cells[b * T + t] = t;
  return { B, T, cells };
}

/** The same decode order for every sample of a batch. */
export function sharedOrder(cells: ArrayLike<number>, B: number): DecodeOrder {
  const T = cells.length;
  const all = new Int32Array(B * T);
  for (let b = 0; b < B; b++) all.set(Array.from(cells), b * T);
  return { B, T, cells: all };
}

/** Reorder token grids (N x T, indexed by cell) into decode order. */
export function tokensInOrder(grids: Int32Array, order: DecodeOrder): Int32Array {
  const out = new Int32Array(order.B * order.T);
  for (let b = 0; b < order.B; b++) {
    const o = b * order.T;
    for (let t = 0; t < order.T; t++) out[o + t] = grids[o + order.cells[o + t]];
  }
  return out;
}

/** RMSNorm of rows x [N, d]: x · rsqrt(mean(x², -1) + eps) · gain [d]. */
export function rmsNorm(x: tf.Tensor2D, gain: tf.Tensor, eps: number): tf.Tensor2D {
  const ms = tf.mean(tf.square(x), -1, true); // [N, 1]
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), gain);
}

// ---------------------------------------------------------------------------
// The transformer block, one for every model here: the GPT's layers (forward,
// extend) and the planner's slot blocks (planner/orderhead.ts). What differs
// between them is a parameter: names, epsilon, MLP gating and the attention.

/** RMSNorm kernel of a block: rmsNorm, or extend's fused one (runtime/decode-kernels.ts). */
export type RmsNorm = (x: tf.Tensor2D, gain: tf.Tensor, eps: number) => tf.Tensor2D;

/**
 * A block's attention: the projections q, k, v [N, d] of the normed rows in,
 * the heads' outputs [N, d] (before wo) out. It owns the heads, the positions
 * and the mask: causal with rotary and the KV cache in the GPT, all-to-all over
 * the block slots in the planner.
 */
export type Attention = (q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D) => tf.Tensor2D;

export interface BlockSpec {
  /** Parameter name prefix: `h${l}.` in the GPT, `pool${l}.` / `core${l}.` in the planner. */
  prefix: string;
  /** Epsilon of both RMSNorms: cfg.normEps in the GPT, 1e-6 in the planner. */
  eps: number;
  /** SwiGLU MLP (w1, w3, w2: the GPT) or plain SiLU (w1, w2: the planner). */
  gated: boolean;
  attend: Attention;
  /** Default rmsNorm. */
  norm?: RmsNorm;
}

/**
 * One pre-norm transformer block on rows x [N, d]:
 *   x1 = x  + Attn(q, k, v of RMSNorm(x)) · wo
 *   x2 = x1 + (SiLU(m·w1) [⊙ m·w3]) · w2,   m = RMSNorm(x1)
 */
export function transformerBlock(p: Params, x: tf.Tensor2D, b: BlockSpec): tf.Tensor2D {
  const { prefix: pre, eps } = b, norm = b.norm ?? rmsNorm;
  const hN = norm(x, p[pre + 'attn_norm'], eps);
  const y = b.attend(tf.matMul(hN, p[pre + 'wq']), tf.matMul(hN, p[pre + 'wk']), tf.matMul(hN, p[pre + 'wv'])); // [N, d]
  const x1 = tf.add(x, tf.matMul(y, p[pre + 'wo'])) as tf.Tensor2D;
  const mN = norm(x1, p[pre + 'mlp_norm'], eps);
  const g = tf.matMul(mN, p[pre + 'w1']); // [N, f]
  const act = tf.mul(g, tf.sigmoid(g)); // SiLU
  return tf.add(x1, tf.matMul(b.gated ? tf.mul(act, tf.matMul(mN, p[pre + 'w3'])) : act, p[pre + 'w2'])) as tf.Tensor2D;
}

/** Rows [B*S, d] (or [B*S, H, hd]) -> heads [B, H, S, hd]; with S = 1 the same memory (no transpose). */
export function splitHeads(t: tf.Tensor, B: number, S: number, H: number): tf.Tensor4D {
  const hd = t.size / (B * S * H);
  return (S === 1 ? tf.reshape(t, [B, H, 1, hd]) : tf.transpose(tf.reshape(t, [B, S, H, hd]), [0, 2, 1, 3])) as tf.Tensor4D;
}

/** Heads [B, H, S, hd] -> rows [B*S, H*hd]. */
export function mergeHeads(y: tf.Tensor4D): tf.Tensor2D {
  const [B, H, S, hd] = y.shape;
  return tf.reshape(S === 1 ? y : tf.transpose(y, [0, 2, 1, 3]), [B * S, H * hd]) as tf.Tensor2D;
}

/** softmax(q·kᵀ/√hd + mask)·v: q [B, H, Lq, hd], k and v [B, H, Lk, hd], additive mask broadcast to [B, H, Lq, Lk] or none. */
export function headAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask?: tf.Tensor): tf.Tensor4D {
  const s = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(q.shape[3])); // [B, H, Lq, Lk]
  return tf.matMul(tf.softmax(mask ? tf.add(s, mask) : s), v); // [B, H, Lq, hd]
}

/** Apply 2D rotary to t [N, d] whose rows have rotary rows cos/sin [N, hd]; returns [N, H, hd]. */
function rope(m: GPT, t: tf.Tensor2D, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor3D {
  const N = t.shape[0], H = m.cfg.nHead, hd = m.cfg.dModel / H;
  const t3 = tf.reshape(t, [N, H, hd]);
  const r = tf.reshape(tf.matMul(tf.reshape(t, [N * H, hd]), m.consts.rot), [N, H, hd]);
  return tf.add(tf.mul(t3, tf.reshape(cos, [N, 1, hd])), tf.mul(r, tf.reshape(sin, [N, 1, hd])));
}

/** Input embedding + target position, and the rotary rows, for B x S slots. */
function embedSlots(m: GPT, firstSlotIsClass: boolean, inputs: tf.Tensor2D, classes: tf.Tensor1D,
  inCells: tf.Tensor2D, tgtCells: tf.Tensor2D): { x: tf.Tensor2D; cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const B = inCells.shape[0], S = inCells.shape[1], d = m.cfg.dModel;
  const parts: tf.Tensor3D[] = [];
  if (firstSlotIsClass) parts.push(tf.reshape(tf.gather(m.params.cls_emb, classes), [B, 1, d]));
  if (inputs.shape[1] > 0) parts.push(tf.reshape(tf.gather(m.params.tok_emb, tf.reshape(inputs, [-1])), [B, inputs.shape[1], d]));
  const emb = parts.length === 1 ? parts[0] : tf.concat(parts, 1); // [B, S, d]
  const tgt = tf.gather(m.params.tgt_pos, tf.reshape(tgtCells, [-1])); // [B*S, d]
  const x = tf.add(tf.reshape(emb, [B * S, d]), tgt) as tf.Tensor2D;
  const rows = tf.add(tf.reshape(inCells, [-1]), tf.scalar(1, 'int32')); // row 0 of the tables = no rotation
  return { x, cos: tf.gather(m.consts.cos, rows), sin: tf.gather(m.consts.sin, rows) };
}

/** Position inputs of a full sequence: input cells ([B,T], -1 for the class slot) and target cells [B,T]. */
export function positionInputs(order: DecodeOrder): { inCells: tf.Tensor2D; tgtCells: tf.Tensor2D } {
  const { B, T, cells } = order;
  const inCells = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    inCells[b * T] = -1;
    for (let t = 1; t < T; t++) inCells[b * T + t] = cells[b * T + t - 1];
  }
  return { inCells: tf.tensor2d(inCells, [B, T], 'int32'), tgtCells: tf.tensor2d(cells, [B, T], 'int32') };
}

export interface ForwardOut {
  /** [B*T, V]: row b*T + t predicts the token decoded at step t. */
  logits: tf.Tensor2D;
  /** [B*T, d]: final normalised hidden states (what a planner reads). */
  hidden: tf.Tensor2D;
}

/**
 * Full teacher-forced forward pass. tokensIn [B, T-1] int32: the image's tokens
 * in decode order, last one dropped; classes [B] int32; order: the decode order.
 */
export function forward(m: GPT, order: DecodeOrder, tokensIn: tf.Tensor2D, classes: tf.Tensor1D): ForwardOut {
  const { cfg, params: p } = m;
  const B = order.B, T = order.T;
  const pos = positionInputs(order);
  const { x: x0, cos, sin } = embedSlots(m, true, tokensIn, classes, pos.inCells, pos.tgtCells);
  let x = x0; // [B*T, d]
  const split = (t: tf.Tensor) => splitHeads(t, B, T, cfg.nHead); // [B, H, T, hd]
  // Causal, rotary by cell on q and k.
  const attend: Attention = (q, k, v) => mergeHeads(headAttention(split(rope(m, q, cos, sin)), split(rope(m, k, cos, sin)), split(v), m.consts.mask));
  for (let l = 0; l < cfg.nLayer; l++) x = transformerBlock(p, x, { prefix: `h${l}.`, eps: cfg.normEps, gated: true, attend });
  const hidden = rmsNorm(x, p.norm_f, cfg.normEps);
  return { logits: tf.matMul(hidden, p.head), hidden };
}

/** Per-token negative log-likelihood (nats) [B*T] of targets [B, T] under logits [B*T, V]. */
export function tokenNll(logits: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor1D {
  const V = logits.shape[1];
  const logp = tf.logSoftmax(logits); // [B*T, V]
  return tf.neg(tf.sum(tf.mul(logp, tf.oneHot(tf.reshape(targets, [-1]), V)), -1)) as tf.Tensor1D;
}

/** Mean teacher-forced loss (nats per token) of tokens [B, T] given in decode order. */
export function lmLoss(m: GPT, order: DecodeOrder, tokens: tf.Tensor2D, classes: tf.Tensor1D): tf.Scalar {
  const inputs = tf.slice(tokens, [0, 0], [order.B, order.T - 1]) as tf.Tensor2D;
  return tf.mean(tokenNll(forward(m, order, inputs, classes).logits, tokens)) as tf.Scalar;
}

/** Total number of parameters. */
export const numParams = (p: Params): number => Object.values(p).reduce((a, v) => a + v.size, 0);

// ---------------------------------------------------------------------------
// KV cache: one slot at a time, for sampling and for planners that read the
// prefix as it grows.

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
}

/** Largest B·L·d for which `extend` uses the fused RMSNorm / rotary kernels (runtime/decode-kernels.ts). */
export const FUSED_OPS_MAX = 1 << 16;

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
  const { B, L } = ext, d = cfg.dModel, H = cfg.nHead, hd = d / H;
  const isClass = cache.length === 0;
  const P = cache.length;
  const prefixB = P ? cache.k[0].shape[0] : B;
  if (P && prefixB !== B && prefixB !== 1) {
    throw new OrderHeadError(`cache holds ${prefixB} sequences, the extension ${B}`, 'extend(cache, ext)', 'extend with the same batch or share a batch-1 prefix');
  }
  const cap = cache.capacity ?? 0;
  const inPlace = keep && cap > 0 && P + L <= cap && prefixB === B && hasLocalMemory();
  const local = decodeKernelsAvailable();
  const fused = L === 1 && !ext.mask && local;
  // RMSNorm and rotary as one JS kernel each instead of 6 and ~8 tfjs kernels: per-kernel overhead
  // dominates small inputs (decoding); large ones (the oracle's long continuations) keep the ops.
  const fusedOps = local && B * L * d <= FUSED_OPS_MAX;
  const norm = fusedOps ? fusedRmsNorm : rmsNorm;
  const rot = (t: tf.Tensor2D, cos: tf.Tensor, sin: tf.Tensor) => (fusedOps ? fusedRope(t, cos, sin) : rope(m, t, cos, sin));
  const out = tf.tidy(() => {
    const ids = tf.tensor2d(ext.inputs, [B, L], 'int32');
    const inCells = ext.inCells.slice();
    if (isClass) for (let b = 0; b < B; b++) inCells[b * L] = -1;
    const classes = isClass ? tf.reshape(tf.slice(ids, [0, 0], [B, 1]), [B]) as tf.Tensor1D : tf.zeros([B], 'int32') as tf.Tensor1D;
    const tokens = isClass ? tf.slice(ids, [0, 1], [B, L - 1]) as tf.Tensor2D : ids;
    const { x: x0, cos, sin } = embedSlots(m, isClass, tokens, classes, tf.tensor2d(inCells, [B, L], 'int32'),
      tf.tensor2d(ext.tgtCells, [B, L], 'int32'));
    let x = x0; // [B*L, d]
    // Additive mask [B or 1, 1, L, P+L]: prefix always visible, new slots causal or as given (op path only).
    let mask: tf.Tensor | null = null;
    const attnMask = () => {
      if (mask) return mask;
      let newMask: tf.Tensor;
      if (ext.mask) newMask = tf.reshape(tf.tensor(ext.mask), [ext.mask.length === L * L ? 1 : B, 1, L, L]);
      else newMask = tf.reshape(L <= m.consts.mask.shape[0] ? tf.slice(m.consts.mask, [0, 0], [L, L])
        : tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([L, L]), -1, 0)), -1e9), [1, 1, L, L]);
      mask = P ? tf.concat([tf.zeros([newMask.shape[0], 1, L, P]), newMask], 3) : newMask;
      return mask;
    };
    const scale = 1 / Math.sqrt(hd);
    // q [B*L, H, hd] over n cached + new slots of K, V [B, H, ≥n, hd] -> [B*L, d].
    const attendCache = (q: tf.Tensor, K: tf.Tensor4D, V: tf.Tensor4D, n: number): tf.Tensor2D => {
      if (fused) return tf.reshape(decodeAttention(q, K, V, n, scale), [B, d]) as tf.Tensor2D;
      return mergeHeads(headAttention(splitHeads(q, B, L, H), K, V, attnMask()));
    };
    // Share a batch-1 prefix: concat of B references (tf.tile is ~70x slower on wasm).
    const tile = (t: tf.Tensor4D) => (prefixB === B ? t : tf.concat(new Array<tf.Tensor4D>(B).fill(t), 0) as tf.Tensor4D);
    // The filled slots of a cached layer (a preallocated buffer holds more).
    const filled = (t: tf.Tensor4D, n: number) => (t.shape[2] === n ? t : tf.slice(t, [0, 0, 0, 0], [t.shape[0], H, n, hd]) as tf.Tensor4D);
    const newK: tf.Tensor4D[] = [], newV: tf.Tensor4D[] = [];
    // Layer l's attention: rotary on q and k, the new k and v joined to the cache (in place or by concat).
    const cachedAttention = (l: number): Attention => (qIn, kIn, v1) => {
      const q = rot(qIn, cos, sin); // [B*L, H, hd]
      const k1 = rot(kIn, cos, sin);
      if (inPlace) {
        const bufK = P ? cache.k[l] : tf.zeros([B, H, cap, hd]) as tf.Tensor4D;
        const bufV = P ? cache.v[l] : tf.zeros([B, H, cap, hd]) as tf.Tensor4D;
        if (!P) { newK.push(bufK); newV.push(bufV); }
        writeSlotsInPlace(bufK, k1, P);
        writeSlotsInPlace(bufV, v1, P);
        return fused ? attendCache(q, bufK, bufV, P + L) : attendCache(q, filled(bufK, P + L), filled(bufV, P + L), P + L);
      }
      const K = P ? tf.concat([tile(filled(cache.k[l], P)), splitHeads(k1, B, L, H)], 2) as tf.Tensor4D : splitHeads(k1, B, L, H); // [B, H, P+L, hd]
      const V = P ? tf.concat([tile(filled(cache.v[l], P)), splitHeads(v1, B, L, H)], 2) as tf.Tensor4D : splitHeads(v1, B, L, H);
      newK.push(K); newV.push(V);
      return attendCache(q, K, V, P + L);
    };
    for (let l = 0; l < cfg.nLayer; l++) {
      x = transformerBlock(p, x, { prefix: `h${l}.`, eps: cfg.normEps, gated: true, attend: cachedAttention(l), norm });
    }
    const hidden = norm(x, p.norm_f, cfg.normEps);
    return { logits: tf.matMul(hidden, p.head) as tf.Tensor2D, hidden, newK, newV };
  });
  if (inPlace) {
    if (!P) { cache.k = out.newK; cache.v = out.newV; }
    cache.length += L;
  } else if (keep) {
    tf.dispose([...cache.k, ...cache.v].filter((t) => t));
    cache.k = out.newK; cache.v = out.newV; cache.length += L;
    if (cap) cache.capacity = 0; // now a growing cache
  } else tf.dispose([...out.newK, ...out.newV]);
  return { logits: out.logits, hidden: out.hidden };
}

/**
 * Feed one slot per sample and return its outputs. At slot 0 `input` holds class
 * ids (inCell ignored); later it holds the token just decoded at `inCell`.
 * `tgtCell` is the cell to predict next. The cache grows by one slot.
 * Returns logits [B, V] and hidden [B, d]; caller disposes.
 */
export function decodeStep(m: GPT, cache: KVCache, input: Int32Array, inCell: Int32Array, tgtCell: Int32Array): ForwardOut {
  return extend(m, cache, { inputs: input, inCells: inCell, tgtCells: tgtCell, B: input.length, L: 1 });
}
