/**
 * Why the tokenizer is made of patches and matrix products: time one forward
 * and backward pass of each candidate layer at the tokenizer's sizes on the
 * active backend. Notebook 01 shows the table; the numbers decide the
 * architecture (conv weight gradients on wasm go through im2col, see
 * runtime/wasm-kernels.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { TokenizerConfig, tokenGrid, tokensPerImage } from './config';
import { denseLayer } from './layers';
import { neighbourhoodMask } from './patches';

export interface LayerTiming {
  layer: string;
  /** Shapes in words. */
  shape: string;
  /** Mean milliseconds of forward + backward (all weight gradients). */
  ms: number;
  /** Multiply-adds of the forward pass. */
  forwardMacs: number;
}

/**
 * Time candidate layers on `batch` images of the config's grid (`width`
 * channels per patch), `repeats` times after one warm-up each.
 */
export function benchmarkTokenizerLayers(cfg: TokenizerConfig, batch: number, repeats = 3): LayerTiming[] {
  const { h, w } = tokenGrid(cfg);
  const T = tokensPerImage(cfg), W = cfg.width, H = Math.round(cfg.width * cfg.mlpRatio), N = batch * T;
  const x = tf.randomNormal([N, W], 0, 1, 'float32', 1) as tf.Tensor2D;
  const rows: LayerTiming[] = [];
  const time = (layer: string, shape: string, forwardMacs: number, params: tf.Variable[], f: () => tf.Tensor) => {
    const run = () => {
      const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(f())) as tf.Scalar, params);
      value.dataSync();
      tf.dispose([value, ...Object.values(grads)]);
    };
    run();
    const t0 = performance.now();
    for (let i = 0; i < repeats; i++) run();
    rows.push({ layer, shape, ms: (performance.now() - t0) / repeats, forwardMacs });
  };
  const v = (shape: number[], std: number) => tf.tidy(() => tf.variable(tf.randomNormal(shape, 0, std, 'float32', 2)));
  const w1 = v([W, H], 0.05), b1 = v([H], 0);
  time('dense, tfjs gradient (tf.matMul + bias)', `[${N}, ${W}] -> [${N}, ${H}]`, N * W * H, [w1, b1], () => tf.add(tf.matMul(x, w1), b1));
  time('dense, tokenizer gradient (1ᵀdy bias, narrow transpose)', `[${N}, ${W}] -> [${N}, ${H}]`, N * W * H, [w1, b1], () => denseLayer(x, w1, b1));
  const mix = v([T, T], 0.05);
  const mask = tf.tensor(neighbourhoodMask(w, cfg.mixRadius), [T, T]);
  time(`cross-patch mixing (${T}x${T} per image, radius ${cfg.mixRadius})`, `[${batch}, ${T}, ${W}]`, batch * T * T * W, [mix], () =>
    tf.matMul(tf.reshape(tf.mul(mix, mask), [1, T, T]) as tf.Tensor3D, tf.reshape(x, [batch, T, W]) as tf.Tensor3D));
  const k = v([3, 3, W, W], 0.02);
  time('3x3 conv on the patch grid (Conv2D + im2col filter gradient)', `[${batch}, ${h}, ${w}, ${W}] -> same`, N * 9 * W * W, [k], () =>
    tf.conv2d(tf.reshape(x, [batch, h, w, W]) as tf.Tensor4D, k as unknown as tf.Tensor4D, 1, 'same'));
  tf.dispose([x, w1, b1, mix, mask, k]);
  return rows;
}
