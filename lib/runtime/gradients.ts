/**
 * The BatchMatMul gradient, registered for every backend.
 *
 * tfjs 4.22's own gradient does not reduce over broadcast batch dimensions
 * (tf.grads of matMul([4,6,5], [1,5,3]) throws a shape error on every backend)
 * and, for a dense layer applied to [B, T, d], computes the weight gradient as
 * a batch of B small products. Ours reduces what was broadcast and folds a
 * shared right operand into one 2-D product, which wasm runs on XNNPACK.
 */
import * as tf from '@tensorflow/tfjs';

/** Sum `x` over the axes that were broadcast to reach it from `shape`. */
function reduceTo(x: tf.Tensor, shape: number[]): tf.Tensor {
  if (tf.util.arraysEqual(x.shape, shape)) return x;
  const axes = tf.backend_util.getReductionAxes(shape, x.shape);
  return tf.reshape(axes.length ? tf.sum(x, axes) : x, shape);
}

function batchMatMulGrad(dy: tf.Tensor, saved: tf.Tensor[], attrs: tf.NamedAttrMap) {
  const [a, b] = saved;
  const { transposeA: ta, transposeB: tb } = attrs as { transposeA: boolean; transposeB: boolean };
  const bBatch = tf.util.sizeFromShape(b.shape.slice(0, -2));
  return {
    a: () => {
      const da = ta ? (tb ? tf.matMul(b, dy, true, true) : tf.matMul(b, dy, false, true))
        : (tb ? tf.matMul(dy, b) : tf.matMul(dy, b, false, true));
      return reduceTo(da, a.shape);
    },
    b: () => {
      if (bBatch === 1 && !ta) {
        // Shared weight: fold all batch rows into one product. a2 [rows, k], dy2 [rows, n].
        const k = a.shape[a.rank - 1], n = dy.shape[dy.rank - 1];
        const a2 = tf.reshape(a, [-1, k]), dy2 = tf.reshape(dy, [-1, n]);
        const db = tb ? tf.matMul(dy2, a2, true, false) : tf.matMul(a2, dy2, true, false);
        return tf.reshape(db, b.shape);
      }
      const db = tb ? (ta ? tf.matMul(dy, a, true, true) : tf.matMul(dy, a, true, false))
        : (ta ? tf.matMul(a, dy) : tf.matMul(a, dy, true, false));
      return reduceTo(db, b.shape);
    },
  };
}

let registered = false;

/** Replace tfjs's BatchMatMul gradient (idempotent). */
export function registerTrainingGradients(): void {
  if (registered) return;
  // registerGradient warns when it overrides; the override is the point here.
  const warn = console.warn;
  console.warn = () => undefined;
  try {
    tf.registerGradient({ kernelName: 'BatchMatMul', inputsToSave: ['a', 'b'], gradFunc: batchMatMulGrad as unknown as tf.GradFunc });
  } finally {
    console.warn = warn;
  }
  registered = true;
}
