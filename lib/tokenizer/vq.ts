/**
 * The VQ tokenizer's network (LlamaGen style, ViT-VQGAN-like patch encoder):
 * encoder, quantiser and decoder on patch rows.
 *
 *   image 32x32 -> 64 patches of 4x4 = 16 pixels            (host-side reshuffle, no strided ops: patches.ts)
 *   encoder: per-patch linear -> `depth` mixer blocks -> linear to codeDim -> L2-normalise = z
 *   quantiser: q = c_k with k = argmax_k <z, c_k>, codes c_k L2-normalised (cosine = nearest in L2)
 *   straight-through: z_q = z + sg(q - z)
 *   decoder: linear -> `depth` mixer blocks -> linear to 16 pixels -> tanh
 *
 * A mixer block is  u = h + (M ⊙ T) h  (cross-patch mixing over the 8x8 grid, one
 * 64x64 matrix T masked to each patch's neighbourhood of radius `mixRadius`, shared
 * by all channels), then  h' = u + W2 relu(W1 u + b1) + b2  (per-patch MLP).
 * Everything is a 2-D matMul over rows [N*64, d] or a 64x64 product per image:
 * both take XNNPACK's fast path on wasm; no convolutions, no strided slices.
 *
 * The weights are made in params.ts, the training loss is in loss.ts, and the
 * VqTokenizer that encodes and decodes images in batches is in vq-tokenizer.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { TokenizerConfig, tokenGrid, tokensPerImage } from './config';
import { TokenizerParams } from './params';
import { neighbourhoodMask } from './patches';
import { denseLayer, l2Normalise, stopGradient } from './layers';

function dense(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return denseLayer(x, w, b);
}

/** `depth` mixer blocks on rows h [nImages*T, W]. */
function mixerBlocks(cfg: TokenizerConfig, p: TokenizerParams, side: 'enc' | 'dec', h: tf.Tensor, nImages: number, mask: tf.Tensor): tf.Tensor {
  const T = tokensPerImage(cfg), W = cfg.width;
  for (let l = 0; l < cfg.depth; l++) {
    const mix = tf.mul(p[`${side}.${l}.mix`], mask);
    // [T, T] @ [n, T, W]: one 64x64 product per image (fast path, no transposes).
    const mixed = tf.matMul(tf.reshape(mix, [1, T, T]) as tf.Tensor3D, tf.reshape(h, [nImages, T, W]) as tf.Tensor3D);
    const u = tf.add(h, tf.reshape(mixed, [nImages * T, W]));
    const f = dense(tf.relu(dense(u, p[`${side}.${l}.fc1.w`], p[`${side}.${l}.fc1.b`])), p[`${side}.${l}.fc2.w`], p[`${side}.${l}.fc2.b`]);
    h = tf.add(u, f);
  }
  return h;
}

function maskTensor(cfg: TokenizerConfig): tf.Tensor {
  return tf.tensor(neighbourhoodMask(tokenGrid(cfg).w, cfg.mixRadius), [tokensPerImage(cfg), tokensPerImage(cfg)]);
}

/** Encoder: patches [n*T, P*P] -> L2-normalised z [n*T, codeDim]. */
export function encodePatches(cfg: TokenizerConfig, p: TokenizerParams, patches: tf.Tensor, nImages: number): tf.Tensor2D {
  return tf.tidy(() => {
    let h = dense(patches, p['enc.in.w'], p['enc.in.b']);
    h = mixerBlocks(cfg, p, 'enc', h, nImages, maskTensor(cfg));
    return l2Normalise(dense(h, p['enc.out.w'], p['enc.out.b'])) as tf.Tensor2D;
  });
}

/** Decoder: (quantised) codes [n*T, codeDim] -> patches [n*T, P*P] in [-1, 1]. */
export function decodeCodes(cfg: TokenizerConfig, p: TokenizerParams, codes: tf.Tensor, nImages: number): tf.Tensor2D {
  return tf.tidy(() => {
    let h = dense(codes, p['dec.in.w'], p['dec.in.b']);
    h = mixerBlocks(cfg, p, 'dec', h, nImages, maskTensor(cfg));
    return tf.tanh(dense(h, p['dec.out.w'], p['dec.out.b'])) as tf.Tensor2D;
  });
}

/** The normalised codebook [K, D]. */
export function normalisedCodebook(p: TokenizerParams): tf.Tensor2D {
  return tf.tidy(() => l2Normalise(p['codebook']) as tf.Tensor2D);
}

/**
 * Nearest code (largest cosine) of each row of z, computed off the gradient
 * tape: the indices come back as a host array (the caller needs them for usage
 * counts anyway) and, when asked, each row's squared distance to its code.
 */
export function nearestCodes(z: tf.Tensor2D, codebookNorm: tf.Tensor2D, withDistances = false): { indices: Int32Array; dist2?: Float32Array } {
  const [idxT, maxT] = tf.tidy(() => {
    const sim = tf.matMul(z, tf.transpose(codebookNorm) as tf.Tensor2D);
    return withDistances ? [tf.argMax(sim, 1), tf.max(sim, 1)] : [tf.argMax(sim, 1)];
  }) as [tf.Tensor, tf.Tensor | undefined];
  const indices = Int32Array.from(idxT.dataSync() as Int32Array);
  idxT.dispose();
  let dist2: Float32Array | undefined;
  if (maxT) {
    const m = maxT.dataSync() as Float32Array;
    dist2 = new Float32Array(m.length);
    // Unit vectors: ||z - c||^2 = 2 - 2 cos.
    for (let i = 0; i < m.length; i++) dist2[i] = Math.max(0, 2 - 2 * m[i]);
    maxT.dispose();
  }
  return { indices, dist2 };
}

/**
 * The quantiser: nearest normalised code q of each z (indices found off the
 * tape), and the straight-through value z_q = z + sg(q - z), which equals q
 * forward and passes the decoder's gradient to z unchanged (none to the codebook).
 */
export function quantise(z: tf.Tensor2D, codebookNorm: tf.Tensor2D): { q: tf.Tensor2D; zq: tf.Tensor2D; indices: Int32Array } {
  const { indices } = nearestCodes(z, codebookNorm);
  const q = tf.gather(codebookNorm, tf.tensor1d(indices, 'int32')) as tf.Tensor2D;
  const zq = tf.add(z, stopGradient(tf.sub(q, z))) as tf.Tensor2D;
  return { q, zq, indices };
}
