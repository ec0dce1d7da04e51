/**
 * The expected calibration error of the planner metrics (metrics.ts, METHOD.md
 * section 7): how far a chooser's confidence in its choice is from how often
 * that choice is the oracle label.
 */
import { ensure } from '../runtime/errors';

/**
 * Expected calibration error with `bins` equal-width confidence bins on
 * [0, 1]: bin j holds confidences in [j / bins, (j + 1) / bins), the last bin
 * also holds 1 (confidence is clamped to [0, 1] first). With N pairs,
 *   ECE = Σ_bins (|B| / N) · |mean correct in B - mean confidence in B|.
 * 0 for a perfectly calibrated chooser. NaN for N = 0. `rows` (optional)
 * picks the pairs to use, repeats allowed (a bootstrap resample).
 */
export function expectedCalibrationError(confidence: ArrayLike<number>, correct: ArrayLike<number>, bins = 10, rows?: ArrayLike<number>): number {
  ensure(confidence.length === correct.length, `${confidence.length} confidences for ${correct.length} outcomes`,
    'expectedCalibrationError(confidence, correct)', 'pass one confidence and one 0/1 outcome per state');
  ensure(Number.isInteger(bins) && bins > 0, `bins = ${bins} is not a positive integer`, 'expectedCalibrationError(bins)', 'use 10 bins');
  const count = new Float64Array(bins), conf = new Float64Array(bins), acc = new Float64Array(bins);
  const N = rows ? rows.length : confidence.length;
  for (let r = 0; r < N; r++) {
    const i = rows ? rows[r] : r;
    const c = Math.min(1, Math.max(0, confidence[i]));
    const j = Math.min(bins - 1, Math.floor(c * bins));
    count[j]++;
    conf[j] += c;
    acc[j] += correct[i] ? 1 : 0;
  }
  if (N === 0) return NaN;
  let ece = 0;
  for (let j = 0; j < bins; j++) if (count[j] > 0) ece += (count[j] / N) * Math.abs(acc[j] / count[j] - conf[j] / count[j]);
  return ece;
}
