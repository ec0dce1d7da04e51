/**
 * The feature network's layers with wasm-friendly gradients.
 *
 * Training on wasm: tfjs's own conv gradients are slow there (measured on a
 * batch of 64, second conv 16->32 at 16x16: Conv2DBackpropFilter 50 ms,
 * Conv2DBackpropInput 37 ms, MaxPoolGrad 16 ms, against 4 ms for the forward
 * conv), so `convSame` and `maxPool2` carry their own gradients built from
 * fast kernels: dx as a forward conv with the flipped kernel, dW as one plain
 * matmul of host-side im2col patches (written already transposed, because
 * wasm's Transpose is the slow part of the registered filter gradient), and
 * the max-pool gradient by nearest-neighbour upsampling and an argmax mask.
 * One training step of the default net went from 141 ms to 74 ms.
 *
 */
import * as tf from '@tensorflow/tfjs';


/**
 * im2col of x [B, H, W, C] for a k x k 'same' stride-1 convolution, written
 * transposed: [k*k*C, B*H*W], row (ky*k + kx)*C + c, zero outside the image.
 * Then dW [k*k*C, co] = patchesᵀ @ dy[B*H*W, co] is a plain matmul.
 */
export function im2colTransposed(x: Float32Array, B: number, H: number, W: number, C: number, k: number): Float32Array {
  const r = (k - 1) / 2, rows = B * H * W;
  const out = new Float32Array(k * k * C * rows);
  for (let ky = 0; ky < k; ky++) {
    for (let kx = 0; kx < k; kx++) {
      const dy = ky - r, dx = kx - r;
      const x0 = Math.max(0, -dx), x1 = Math.min(W, W - dx);
      for (let c = 0; c < C; c++) {
        let o = ((ky * k + kx) * C + c) * rows;
        for (let b = 0; b < B; b++) {
          for (let y = 0; y < H; y++, o += W) {
            const iy = y + dy;
            if (iy < 0 || iy >= H) continue;
            const src = (b * H + iy) * W * C + c;
            for (let xx = x0; xx < x1; xx++) out[o + xx] = x[src + (xx + dx) * C];
          }
        }
      }
    }
  }
  return out;
}

type ConvFn = (x: tf.Tensor4D, w: tf.Tensor4D, b: tf.Tensor1D) => tf.Tensor4D;

/**
 * y = conv2d(x, w, stride 1, 'same') + b with a gradient built from fast wasm
 * kernels (see the module comment):
 *   dx = conv2d(dy, w flipped in space with in/out channels swapped, 'same')
 *        (the transposed convolution of a stride-1 'same' conv with an odd kernel);
 *   dW = im2colᵀ(x) @ dy, the patches built on the host;
 *   db = 1ᵀ dy as a [1, rows] @ [rows, co] product.
 * With `inputGrad` false, dx is zeros: the first layer's input is data.
 */
function makeConvSame(inputGrad: boolean): ConvFn {
  return tf.customGrad(((x: tf.Tensor4D, w: tf.Tensor4D, b: tf.Tensor1D, save: tf.GradSaveFunc) => {
    save([x, w]);
    return {
      value: tf.add(tf.conv2d(x, w, 1, 'same'), b),
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [xs, ws] = saved as tf.Tensor4D[];
        const [B, H, W, C] = xs.shape;
        const [k, , , co] = ws.shape;
        const rows = B * H * W;
        const dy2 = tf.reshape(dy, [rows, co]); // [B*H*W, co]
        const patchesT = tf.tensor2d(im2colTransposed(xs.dataSync() as Float32Array, B, H, W, C, k), [k * k * C, rows]);
        const dw = tf.reshape(tf.matMul(patchesT, dy2), ws.shape); // [k*k*C, co] -> [k, k, C, co]
        const db = tf.reshape(tf.matMul(tf.ones([1, rows]), dy2), [co]);
        const wFlip = tf.transpose(tf.reverse(ws, [0, 1]), [0, 1, 3, 2]); // [k, k, co, C]
        const dx = inputGrad ? tf.conv2d(dy, wFlip as tf.Tensor4D, 1, 'same') : tf.zerosLike(xs);
        return [dx, dw, db];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as ConvFn;
}

/** Conv layer inside the net (its input needs a gradient). */
export const convSame: ConvFn = makeConvSame(true);
/** Conv layer on the input images (no input gradient). */
export const inputConvSame: ConvFn = makeConvSame(false);

/**
 * 2x2 max-pool, stride 2, with the gradient routed through an argmax mask:
 * dx = upsample(dy) * [x == upsample(max)]. Ties within a window would each
 * get the gradient; after a ReLU the only likely ties are zeros, whose ReLU
 * gradient is zero anyway.
 */
export const maxPool2: (x: tf.Tensor4D) => tf.Tensor4D = tf.customGrad(((x: tf.Tensor4D, save: tf.GradSaveFunc) => {
  const y = tf.maxPool(x, 2, 2, 'valid');
  save([x, y]);
  return {
    value: y,
    gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
      const [xs, ys] = saved as tf.Tensor4D[];
      const [, H, W] = xs.shape;
      const isMax = tf.cast(tf.equal(xs, tf.image.resizeNearestNeighbor(ys, [H, W])), 'float32'); // [B, H, W, C]
      return tf.mul(tf.image.resizeNearestNeighbor(dy, [H, W]), isMax);
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor4D) => tf.Tensor4D;

/** What one forward pass returns (tensors owned by the caller's tidy). */
