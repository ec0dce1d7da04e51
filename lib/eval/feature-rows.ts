/**
 * The input layout the sample-quality metrics share (frechet.ts,
 * inception-score.ts, precision-recall.ts, bootstrap.ts), and its check.
 * Not part of the public API (lib/eval/index.ts does not export this file).
 *
 * Layouts: a feature set is N rows of `dim` values, row-major
 * (`feats[i * dim + j]`); probabilities are N rows of `classes` values.
 * Accumulations run in float64 whatever the input type.
 */
import { ensure } from '../runtime/errors';

/** Rows of a flat feature array, with the layout checked; `where` names the argument in errors. */
export function rowsOf(feats: ArrayLike<number>, dim: number, where: string): number {
  ensure(Number.isInteger(dim) && dim > 0, `dim ${dim} must be a positive whole number`, where, 'pass the feature dimension (values per row)');
  ensure(
    feats.length % dim === 0,
    `holds ${feats.length} values, not a whole number of rows of ${dim}`,
    where,
    `pass N * ${dim} values laid out row by row (featureNetOutputs gives this layout)`,
  );
  return feats.length / dim;
}
