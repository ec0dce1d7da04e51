/**
 * The LlamaGen-style GPT backbone: class-token prefix, RMSNorm, SwiGLU, causal
 * self-attention and 2D rotary positions indexed by the token's spatial cell
 * (not its sequence slot), so the same weights can read a sequence in any
 * order. One small file, in the spirit of nanoGPT's model.py.
 *
 * Sequence layout for an image of T = gridH*gridW tokens decoded in the order
 * `cells` (a permutation of 0..T-1, raster by default):
 *
 *   slot    0        1            ...  T-1
 *   input   [class]  x[cells[0]]  ...  x[cells[T-2]]
 *   target  x[cells[0]] x[cells[1]] ... x[cells[T-1]]
 *
 * Speed notes for the wasm backend (see runtime/wasm-kernels.ts): every dense
 * layer is a 2-D matmul on [B*T, d] rows; q, k and v are separate projections
 * (a fused qkv needs a strided Slice that is slow on wasm); the rotary
 * "rotate pairs" is a tiny matmul with a fixed ±1 matrix instead of slices.
 */
import * as tf from '@tensorflow/tfjs';
import { GPTConfig, seqLen, validateGPTConfig } from './config';
import { rng } from '../runtime/seed';

export type Params = Record<string, tf.Variable>;

/** Parameter names and shapes, in a stable order (checkpoints depend on it). */
export function paramShapes(cfg: GPTConfig): [string, number[]][] {
  const { vocabSize: V, numClasses: C, dModel: d, dFF: f, nLayer } = cfg;
  const shapes: [string, number[]][] = [
    ['tok_emb', [V, d]],
    ['cls_emb', [C + 1, d]], // + the null class for classifier-free guidance
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
    params[name] = tf.variable(tf.tensor(values, shape), true, name);
  }
  return params;
}

/**
 * Rotary tables for 2D positions. Head dims are split into pairs; the first
 * half of the pairs rotates with the cell's row, the second half with its
 * column. Slot 0 (the class token) gets no rotation.
 * Returns cos, sin [T, headDim] and the pair-rotation matrix R [headDim, headDim]
 * with (x·R)[2i] = -x[2i+1], (x·R)[2i+1] = x[2i].
 */
export function rotaryTables(cfg: GPTConfig, cells: ArrayLike<number>): { cos: tf.Tensor2D; sin: tf.Tensor2D; rot: tf.Tensor2D } {
  const T = seqLen(cfg);
  const hd = cfg.dModel / cfg.nHead;
  const pairs = hd / 2, half = pairs / 2;
  const cos = new Float32Array(T * hd).fill(1), sin = new Float32Array(T * hd);
  for (let slot = 1; slot < T; slot++) {
    const cell = cells[slot - 1];
    const row = Math.floor(cell / cfg.gridW), col = cell % cfg.gridW;
    for (let p = 0; p < pairs; p++) {
      const i = p % half;
      const freq = Math.pow(cfg.ropeBase, -i / half);
      const angle = (p < half ? row : col) * freq;
      cos[slot * hd + 2 * p] = cos[slot * hd + 2 * p + 1] = Math.cos(angle);
      sin[slot * hd + 2 * p] = sin[slot * hd + 2 * p + 1] = Math.sin(angle);
    }
  }
  const rot = new Float32Array(hd * hd);
  for (let p = 0; p < pairs; p++) {
    rot[(2 * p + 1) * hd + 2 * p] = -1;
    rot[(2 * p) * hd + 2 * p + 1] = 1;
  }
  return { cos: tf.tensor2d(cos, [T, hd]), sin: tf.tensor2d(sin, [T, hd]), rot: tf.tensor2d(rot, [hd, hd]) };
}

/** Additive causal mask [T, T]: 0 on and below the diagonal, -1e9 above. */
export function causalMask(T: number): tf.Tensor2D {
  const m = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) m[i * T + j] = -1e9;
  return tf.tensor2d(m, [T, T]);
}

function rmsNorm(x: tf.Tensor2D, gain: tf.Tensor, eps: number): tf.Tensor2D {
  const ms = tf.mean(tf.square(x), -1, true); // [N, 1]
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), gain);
}

/** Per-order constants the forward pass needs; build once per order, dispose when done. */
export interface OrderTables { cos: tf.Tensor2D; sin: tf.Tensor2D; rot: tf.Tensor2D; mask: tf.Tensor2D }

export function orderTables(cfg: GPTConfig, cells?: ArrayLike<number>): OrderTables {
  const T = seqLen(cfg);
  const order = cells ?? Array.from({ length: T }, (_, i) => i);
  return { ...rotaryTables(cfg, order), mask: causalMask(T) };
}

/**
 * Forward pass. tokensIn [B, T-1] int32 (the image's tokens in decode order,
 * last one dropped), classes [B] int32. Returns logits [B*T, V] for the T
 * targets, row b*T + t predicting the token decoded at step t.
 */
export function forward(cfg: GPTConfig, p: Params, tables: OrderTables, tokensIn: tf.Tensor2D, classes: tf.Tensor1D): tf.Tensor2D {
  const B = tokensIn.shape[0];
  const T = seqLen(cfg), d = cfg.dModel, H = cfg.nHead, hd = d / H;
  const tok = tf.reshape(tf.gather(p.tok_emb, tf.reshape(tokensIn, [-1])), [B, T - 1, d]);
  const cls = tf.reshape(tf.gather(p.cls_emb, classes), [B, 1, d]);
  let x = tf.reshape(tf.concat([cls, tok], 1), [B * T, d]) as tf.Tensor2D; // [B*T, d]
  const cos = tf.reshape(tables.cos, [1, T, 1, hd]), sin = tf.reshape(tables.sin, [1, T, 1, hd]);
  const rope = (t: tf.Tensor2D) => { // t [B*T, d] -> rotated, [B, T, H, hd]
    const t4 = tf.reshape(t, [B, T, H, hd]);
    const r = tf.reshape(tf.matMul(tf.reshape(t, [B * T * H, hd]), tables.rot), [B, T, H, hd]);
    return tf.add(tf.mul(t4, cos), tf.mul(r, sin));
  };
  const scale = 1 / Math.sqrt(hd);
  for (let l = 0; l < cfg.nLayer; l++) {
    const pre = `h${l}.`;
    const hN = rmsNorm(x, p[pre + 'attn_norm'], cfg.normEps);
    const q = tf.transpose(rope(tf.matMul(hN, p[pre + 'wq'])), [0, 2, 1, 3]); // [B, H, T, hd]
    const k = tf.transpose(rope(tf.matMul(hN, p[pre + 'wk'])), [0, 2, 1, 3]); // [B, H, T, hd]
    const v = tf.transpose(tf.reshape(tf.matMul(hN, p[pre + 'wv']), [B, T, H, hd]), [0, 2, 1, 3]);
    const att = tf.softmax(tf.add(tf.mul(tf.matMul(q, k, false, true), scale), tables.mask)); // [B, H, T, T]
    const y = tf.reshape(tf.transpose(tf.matMul(att, v), [0, 2, 1, 3]), [B * T, d]); // [B*T, d]
    x = tf.add(x, tf.matMul(y, p[pre + 'wo']));
    const mN = rmsNorm(x, p[pre + 'mlp_norm'], cfg.normEps);
    const g = tf.matMul(mN, p[pre + 'w1']); // [B*T, f]
    const swiglu = tf.mul(tf.mul(g, tf.sigmoid(g)), tf.matMul(mN, p[pre + 'w3']));
    x = tf.add(x, tf.matMul(swiglu, p[pre + 'w2']));
  }
  return tf.matMul(rmsNorm(x, p.norm_f, cfg.normEps), p.head); // [B*T, V]
}

/** Mean next-token cross-entropy (nats) of targets [B, T] under logits [B*T, V]. */
export function crossEntropy(logits: tf.Tensor2D, targets: tf.Tensor2D): tf.Scalar {
  const V = logits.shape[1];
  const logp = tf.logSoftmax(logits); // [B*T, V]
  const picked = tf.sum(tf.mul(logp, tf.oneHot(tf.reshape(targets, [-1]), V)), -1); // [B*T]
  return tf.neg(tf.mean(picked)) as tf.Scalar;
}

/** Teacher-forced loss of a batch of token grids [B, T] read in decode order. */
export function lmLoss(cfg: GPTConfig, p: Params, tables: OrderTables, tokens: tf.Tensor2D, classes: tf.Tensor1D): tf.Scalar {
  const T = seqLen(cfg);
  const inputs = tf.slice(tokens, [0, 0], [tokens.shape[0], T - 1]) as tf.Tensor2D;
  return crossEntropy(forward(cfg, p, tables, inputs, classes), tokens);
}

/** Total number of parameters. */
export const numParams = (p: Params): number => Object.values(p).reduce((a, v) => a + v.size, 0);
