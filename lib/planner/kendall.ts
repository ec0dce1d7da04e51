/**
 * Kendall's tau-b, the second rank correlation of the planner metrics
 * (metrics.ts) beside Spearman's (lib/oracle/agreement): how well a chooser's
 * scores order the unseen blocks like the oracle utility does.
 */
import { ensure } from '../runtime/errors';

/**
 * Kendall's tau-b of two equal-length lists:
 *   tau_b = (C - D) / sqrt((P - Tx) (P - Ty)),
 * P = m(m-1)/2 pairs, C / D = concordant / discordant pairs (tied in neither
 * list), Tx / Ty = pairs tied in x / in y (a pair tied in both counts in both).
 * In [-1, 1]; 1 for the same strict order, -1 for the reverse. NaN when
 * m < 2 or when either list is constant (the denominator is 0). Values may be
 * ±Infinity (equal infinities tie); NaN values are an error. O(m^2).
 */
export function kendallTau(x: ArrayLike<number>, y: ArrayLike<number>): number {
  ensure(x.length === y.length, `lists of lengths ${x.length} and ${y.length}`, 'kendallTau(x, y)', 'pass paired values');
  const m = x.length;
  for (let i = 0; i < m; i++) {
    ensure(!Number.isNaN(x[i]) && !Number.isNaN(y[i]), `NaN at position ${i}`, 'kendallTau(x, y)', 'drop the pairs with missing values first');
  }
  if (m < 2) return NaN;
  let c = 0, d = 0, tx = 0, ty = 0;
  for (let i = 0; i < m; i++) {
    const xi = x[i], yi = y[i];
    for (let j = i + 1; j < m; j++) {
      const dx = xi < x[j] ? -1 : xi > x[j] ? 1 : 0;
      const dy = yi < y[j] ? -1 : yi > y[j] ? 1 : 0;
      if (dx === 0) tx++;
      if (dy === 0) ty++;
      if (dx !== 0 && dy !== 0) {
        if (dx === dy) c++;
        else d++;
      }
    }
  }
  const p = (m * (m - 1)) / 2;
  const den = Math.sqrt((p - tx) * (p - ty));
  return den > 0 ? (c - d) / den : NaN;
}
