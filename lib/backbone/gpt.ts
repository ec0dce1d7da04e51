/**
 * The LlamaGen-style GPT backbone: class-token prefix, RMSNorm, SwiGLU, causal
 * self-attention and 2D rotary positions indexed by the token's spatial cell
 * (not its sequence slot), so the same weights read a sequence in any order.
 * One small file, in the spirit of nanoGPT's model.py: the model and its
 * loss. The transformer block it shares with the planner is
 * backbone/transformer.ts; fast decoding (KV cache, fused kernels, in-place
 * writes) is backbone/kv-decoder.ts, checked against `referenceDecodeStep`
 * here, which is `forward` over the prefix.
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
import { Attention, headAttention, mergeHeads, rmsNorm, splitHeads, transformerBlock } from './transformer';

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
  /** The step and validation NLL it was selected at, when loaded from a validation-selected checkpoint (stage1.ts, selectedCheckpoint). */
  selected?: { step: number; validationBits: number; validationImages: number; order: string };
}

/**
 * The decode order of a batch: cells[b*T + t] is the cell decoded at step t of
 * sample b. T = seqLen(cfg) for whole images; `forward` also takes a prefix
 * (the first T < seqLen(cfg) steps), as `referenceDecodeStep` does.
 */
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

/** Where sample `b` of an order generates each cell: [gridH][gridW] decode positions (0 = first token). */
export function decodePositions(order: DecodeOrder, b: number, gridW: number): number[][] {
  const pos: number[][] = Array.from({ length: order.T / gridW }, () => new Array<number>(gridW));
  for (let t = 0; t < order.T; t++) {
    const cell = order.cells[b * order.T + t];
    pos[Math.floor(cell / gridW)][cell % gridW] = t;
  }
  return pos;
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

/** Apply 2D rotary to t [N, d] whose rows have rotary rows cos/sin [N, hd]; returns [N, H, hd]. Also extend's op path (kv-decoder.ts). */
export function rope(m: GPT, t: tf.Tensor2D, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor3D {
  const N = t.shape[0], H = m.cfg.nHead, hd = m.cfg.dModel / H;
  const t3 = tf.reshape(t, [N, H, hd]);
  const r = tf.reshape(tf.matMul(tf.reshape(t, [N * H, hd]), m.consts.rot), [N, H, hd]);
  return tf.add(tf.mul(t3, tf.reshape(cos, [N, 1, hd])), tf.mul(r, tf.reshape(sin, [N, 1, hd])));
}

/** Input embedding + target position, and the rotary rows, for B x S slots (forward's and extend's). */
export function embedSlots(m: GPT, firstSlotIsClass: boolean, inputs: tf.Tensor2D, classes: tf.Tensor1D,
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
 * in decode order, last one dropped; classes [B] int32; order: the decode order
 * (whole images, or prefixes of T < seqLen(cfg) steps).
 */
export function forward(m: GPT, order: DecodeOrder, tokensIn: tf.Tensor2D, classes: tf.Tensor1D): ForwardOut {
  const { cfg, params: p } = m;
  const B = order.B, T = order.T, full = m.consts.mask.shape[0];
  if (!(Number.isInteger(T) && T >= 1 && T <= full)) {
    throw new OrderHeadError(`decode order of ${T} steps, the model holds 1..${full}`, 'forward(order.T)', 'pass a whole image (seqLen(cfg) steps) or a prefix of one');
  }
  const pos = positionInputs(order);
  const { x: x0, cos, sin } = embedSlots(m, true, tokensIn, classes, pos.inCells, pos.tgtCells);
  let x = x0; // [B*T, d]
  const split = (t: tf.Tensor) => splitHeads(t, B, T, cfg.nHead); // [B, H, T, hd]
  const mask = T === full ? m.consts.mask : tf.slice(m.consts.mask, [0, 0], [T, T]); // [T, T]
  // Causal, rotary by cell on q and k.
  const attend: Attention = (q, k, v) => mergeHeads(headAttention(split(rope(m, q, cos, sin)), split(rope(m, k, cos, sin)), split(v), mask));
  for (let l = 0; l < cfg.nLayer; l++) x = transformerBlock(p, x, { prefix: `h${l}.`, eps: cfg.normEps, gated: true, attend });
  const hidden = rmsNorm(x, p.norm_f, cfg.normEps);
  return { logits: tf.matMul(hidden, p.head), hidden };
}

/**
 * The reference decode step: the outputs at the last slot of `forward` over a
 * prefix, no cache. What kv-decoder.ts's `decodeStep` computes one slot at a
 * time, written so that it is obviously right (tests hold the two equal).
 * prefix: the first S steps of each sample's order (the last one is the cell
 * to predict); tokens [B*(S-1)]: the tokens decoded at the first S-1 of them,
 * in decode order; classes [B]. Returns logits [B, V] and hidden [B, d];
 * caller disposes.
 */
export function referenceDecodeStep(m: GPT, prefix: DecodeOrder, tokens: Int32Array, classes: Int32Array): ForwardOut {
  const { B, T: S } = prefix;
  if (tokens.length !== B * (S - 1) || classes.length !== B) {
    throw new OrderHeadError(`${tokens.length} tokens and ${classes.length} classes for ${B} prefixes of ${S} steps`,
      'referenceDecodeStep(tokens, classes)', `pass B*(S-1) = ${B * (S - 1)} tokens and B = ${B} classes`);
  }
  return tf.tidy(() => {
    const out = forward(m, prefix, tf.tensor2d(tokens, [B, S - 1], 'int32'), tf.tensor1d(classes, 'int32'));
    const last = tf.range(S - 1, B * S, S, 'int32'); // [B]: row b*S + S-1
    return { logits: tf.gather(out.logits, last), hidden: tf.gather(out.hidden, last) };
  });
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
