/**
 * Graph pieces with gradients of their own: the stop-gradient sg(x) of the VQ
 * formulas, L2 normalisation, and a dense layer whose gradient is written for
 * wasm. Used by the tokenizer (vq.ts, loss.ts) and by the evaluation's feature
 * network.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * Identity forward, zero gradient: sg(x) in the formulas. tfjs has no
 * stop_gradient op, so it is a custom gradient.
 */
export const stopGradient: (x: tf.Tensor) => tf.Tensor = tf.customGrad(((x: tf.Tensor) => ({
  value: tf.clone(x),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor) => tf.Tensor;

/** x / ||x|| over the last axis. */
export function l2Normalise(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.rsqrt(tf.add(tf.sum(tf.square(x), -1, true), 1e-12)));
}

/**
 * y = x W + b for rows x [n, a], W [a, b], with a gradient written for wasm
 * (measured on [8192, 128] -> [8192, 256], see the tokenizer notebook):
 * - db = 1ᵀ dy as a [1, n] x [n, b] product: 0.2 ms, where tf.sum over rows
 *   (tfjs's bias gradient) takes 37 ms;
 * - dW contracts over the n rows, so one operand must be transposed, and wasm's
 *   Transpose (~50 M values/s) costs more than the product itself: we
 *   transpose the narrower of x and dy (dW = xᵀ dy, or (dyᵀ x)ᵀ).
 */
export const denseLayer = tf.customGrad(((x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, save: tf.GradSaveFunc) => {
  save([x, w]);
  return {
    value: tf.add(tf.matMul(x, w), b),
    gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
      const [xs, ws] = saved as tf.Tensor2D[];
      const [n, a] = xs.shape;
      const bOut = ws.shape[1];
      const dx = tf.matMul(dy, tf.transpose(ws));
      const dw = a <= bOut ? tf.matMul(tf.transpose(xs), dy) : tf.transpose(tf.matMul(tf.transpose(dy), xs));
      const db = tf.reshape(tf.matMul(tf.ones([1, n]), dy), [bOut]);
      return [dx, dw, db];
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.Tensor2D;
