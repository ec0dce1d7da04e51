/**
 * The Inception Score (METHOD.md section 7) of class probabilities, computed
 * split by split as in the improved-GAN code and the ADM evaluator. Layouts in
 * feature-rows.ts; show every number with FEATURE_NET_CAVEAT (metrics.ts).
 */
import { ensure } from '../runtime/errors';
import { rowsOf } from './feature-rows';

/** Inception Score: mean and spread over splits. */
export interface InceptionScore {
  /** Mean of the per-split scores (the reported IS). */
  mean: number;
  /** Population standard deviation of the per-split scores (numpy's np.std, as in improved-gan). */
  std: number;
  /** exp(E_x[KL(p(y|x) || p(y))]) of each split. */
  scores: number[];
}

/**
 * Inception Score of class probabilities `probs` ([N * classes], rows summing
 * to 1, e.g. the `probs` of featureNetOutputs), computed as in the
 * improved-GAN code and the ADM evaluator: the N rows are cut into `splits`
 * contiguous parts; for each, p(y) is the part's mean row and the score is
 * exp(mean over rows of KL(p(y|x) || p(y))). Ranges from 1 (every image gets
 * the same prediction) to `classes` (confident and class-balanced).
 *
 * 0 · log 0 is taken as 0, so exactly-zero probabilities (float32 softmax
 * underflow, one-hot rows) count as no contribution instead of NaN. Rows are
 * not reordered: shuffle generated samples first if they come grouped by class.
 * Show it with FEATURE_NET_CAVEAT.
 */
export function inceptionScore(probs: ArrayLike<number>, classes: number, splits = 10): InceptionScore {
  const n = rowsOf(probs, classes, 'inceptionScore(probs)');
  ensure(Number.isInteger(splits) && splits >= 1, `splits ${splits} must be a whole number >= 1`, 'inceptionScore(splits)', 'use 10 (the usual choice) or 1');
  ensure(n >= splits, `has ${n} rows, fewer than the ${splits} splits`, 'inceptionScore(probs)', 'pass more samples or fewer splits');
  const scores: number[] = [];
  const py = new Float64Array(classes);
  const logPy = new Float64Array(classes);
  for (let s = 0; s < splits; s++) {
    const lo = Math.floor((s * n) / splits), hi = Math.floor(((s + 1) * n) / splits);
    py.fill(0);
    for (let i = lo; i < hi; i++) for (let c = 0; c < classes; c++) py[c] += probs[i * classes + c];
    for (let c = 0; c < classes; c++) {
      py[c] /= hi - lo;
      logPy[c] = py[c] > 0 ? Math.log(py[c]) : 0;
    }
    let kl = 0;
    for (let i = lo; i < hi; i++) {
      for (let c = 0; c < classes; c++) {
        const p = probs[i * classes + c];
        if (p > 0) kl += p * (Math.log(p) - logPy[c]);
      }
    }
    scores.push(Math.exp(kl / (hi - lo)));
  }
  const mean = scores.reduce((a, b) => a + b, 0) / splits;
  const std = Math.sqrt(scores.reduce((a, b) => a + (b - mean) ** 2, 0) / splits);
  return { mean, std, scores };
}
