/**
 * Class accuracy: whether a classifier (the feature network) puts a sample in
 * the class it was generated for. One argmax rule for every caller, so the
 * evaluation and the notebooks count the same way.
 */
import { ensure } from '../runtime/errors';
import { rowsOf } from './feature-rows';

/** The class of row i of [n * C] probabilities (the first of equal maxima). */
export function predictedClass(probs: ArrayLike<number>, i: number, C: number): number {
  let best = 0;
  for (let c = 1; c < C; c++) if (probs[i * C + c] > probs[i * C + best]) best = c;
  return best;
}

/**
 * Share of rows whose most probable class (lowest index on ties) is their
 * label: class accuracy of samples against their conditioning class.
 * `probs` is N rows of `numClasses` values.
 */
export function classificationAccuracy(probs: ArrayLike<number>, labels: ArrayLike<number>, numClasses: number): number {
  const n = rowsOf(probs, numClasses, 'classificationAccuracy(probs)');
  ensure(n === labels.length, `holds ${n} rows of ${numClasses} classes for ${labels.length} labels`, 'classificationAccuracy(labels)', 'pass one label per row');
  ensure(n > 0, 'has no rows', 'classificationAccuracy(probs)', 'pass at least one row');
  let correct = 0;
  for (let i = 0; i < n; i++) if (predictedClass(probs, i, numClasses) === labels[i]) correct++;
  return correct / n;
}
