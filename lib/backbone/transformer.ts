/**
 * The transformer block, one for every model here: the GPT's layers
 * (backbone/gpt.ts `forward`, backbone/kv-decoder.ts `extend`) and the
 * planner's slot blocks (planner/orderhead.ts). What differs between them is
 * a parameter: names, epsilon, MLP gating, the RMSNorm kernel and the
 * attention (which owns the heads, the positions and the mask).
 */
import * as tf from '@tensorflow/tfjs';

/** RMSNorm of rows x [N, d]: x · rsqrt(mean(x², -1) + eps) · gain [d]. */
export function rmsNorm(x: tf.Tensor2D, gain: tf.Tensor, eps: number): tf.Tensor2D {
  const ms = tf.mean(tf.square(x), -1, true); // [N, 1]
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), gain);
}

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
 * One pre-norm transformer block on rows x [N, d], weights `p` by name:
 *   x1 = x  + Attn(q, k, v of RMSNorm(x)) · wo
 *   x2 = x1 + (SiLU(m·w1) [⊙ m·w3]) · w2,   m = RMSNorm(x1)
 */
export function transformerBlock(p: Record<string, tf.Tensor>, x: tf.Tensor2D, b: BlockSpec): tf.Tensor2D {
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
