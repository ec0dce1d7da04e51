/**
 * How the evaluation suite turns per-seed and per-sample numbers into one
 * "mean and interval" per metric (evaluate.ts, trajectory.ts, tables.ts).
 *
 * Three interval methods, named in every MetricSummary and in table captions:
 *
 * - `bootstrap-samples`: for metrics that are a mean over samples (class
 *   accuracy, recognizability AUC, NLL bits per token, trajectory utilities).
 *   The per-sample values of all seeds are pooled (every seed contributes the
 *   same count, so the pooled mean is the mean of the per-seed means) and a
 *   percentile bootstrap over them (bootstrapInterval) gives [lo, hi].
 * - `bootstrap-recentred`: for set statistics whose value depends on the
 *   sample count (FID, sFID, IS). Within each seed the N samples are
 *   resampled with replacement and the statistic recomputed; resampling
 *   duplicates rows, which raises FID by itself, so the replicates are
 *   recentred on their own median and placed around that seed's estimate
 *   (value_s + rep - median_s). The pooled, recentred replicates of all seeds
 *   give the percentiles: within-seed sampling noise and between-seed
 *   differences both widen the interval, the resampling bias does not shift it.
 * - `seed-range`: [min, max] of the per-seed values, for statistics that a
 *   bootstrap breaks (k-NN precision/recall: a resampled set holds duplicates
 *   at distance 0, which collapses the k-th neighbour radii). With 2 seeds
 *   this is a range, not a confidence interval.
 *
 * - `bootstrap-training-seeds`: for a per-test-image quantity measured under
 *   several training seeds (the crossover study, lib/study): seedImageInterval
 *   resamples the seeds and the images together.
 *
 * In every case `mean` is the mean of the per-seed values (or of the pooled
 * samples, the same thing for equal counts), and the interval is widened to
 * include it when a skewed replicate distribution (tiny sample counts) leaves
 * it outside; so lo <= mean <= hi always holds.
 */
import { ensure } from '../runtime/errors';
import { rng, seedFrom } from '../runtime/seed';
import { bootstrapInterval } from './bootstrap';

export type IntervalMethod = 'bootstrap-samples' | 'bootstrap-recentred' | 'seed-range' | 'bootstrap-training-seeds';

/** One sentence per interval method, for captions and notebook text. */
export const INTERVAL_METHODS: Readonly<Record<IntervalMethod, string>> = Object.freeze({
  'bootstrap-samples': 'percentile bootstrap over the pooled samples (or test images) of all seeds',
  'bootstrap-recentred': 'bootstrap within each seed (samples resampled, statistic recomputed), replicates recentred on their median around the seed\'s value, pooled over seeds',
  'seed-range': 'range (min to max) of the per-seed values',
  'bootstrap-training-seeds': 'bootstrap over training seeds and test images together (each replicate resamples the seeds, then the images), so it holds the variation between training runs',
});

/** A metric's point estimate and interval. */
export interface MetricSummary {
  /** Mean of the per-seed values (= mean of the pooled samples). */
  mean: number;
  lo: number;
  hi: number;
  /** Nominal level of a bootstrap interval (e.g. 0.95); NaN for seed-range. */
  level: number;
  interval: IntervalMethod;
  /** The value of each seed, in the order of the config's seeds (one entry when not seeded). */
  perSeed: number[];
  /** Samples (or images) behind the number, all seeds together. */
  n: number;
}

function widen(s: MetricSummary): MetricSummary {
  return { ...s, lo: Math.min(s.lo, s.mean), hi: Math.max(s.hi, s.mean) };
}

function mean(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i];
  return s / v.length;
}

/** Linear-interpolation quantile of sorted values (numpy's default). */
export function quantileOfSorted(sorted: ArrayLike<number>, q: number): number {
  ensure(sorted.length > 0, 'no values', 'quantileOfSorted(sorted)', 'pass at least one value');
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/**
 * `bootstrap-samples`: per-sample values of each seed (equal counts), pooled
 * and bootstrapped (`reps` replicates, seeded by `seed`).
 */
export function summarizeSamples(perSeed: readonly ArrayLike<number>[], reps: number, seed: number | string, level = 0.95): MetricSummary {
  ensure(perSeed.length > 0 && perSeed.every((v) => v.length > 0), 'has no values', 'summarizeSamples(perSeed)', 'pass at least one value per seed');
  const n = perSeed.reduce((a, v) => a + v.length, 0);
  const pooled = new Float64Array(n);
  let k = 0;
  for (const v of perSeed) for (let i = 0; i < v.length; i++) pooled[k++] = v[i];
  const iv = bootstrapInterval(pooled, reps, seed, level);
  return widen({ mean: iv.mean, lo: iv.lo, hi: iv.hi, level, interval: 'bootstrap-samples', perSeed: perSeed.map(mean), n });
}

/**
 * `bootstrap-recentred` (see the file comment): `values[s]` is seed s's
 * statistic on its own samples, `replicates[s]` its bootstrap replicates.
 * With no replicates at all this falls back to `seed-range`. Recentring can
 * carry the interval past a statistic's natural bound (FID < 0 near a perfect
 * match); `bounds` clamps lo and hi into [min, max].
 */
export function summarizeRecentred(values: readonly number[], replicates: readonly ArrayLike<number>[], n: number, level = 0.95,
  bounds: { min?: number; max?: number } = {}): MetricSummary {
  ensure(values.length > 0 && replicates.length === values.length, `${values.length} values and ${replicates.length} replicate sets`, 'summarizeRecentred(values, replicates)', 'pass one replicate set per seed');
  if (replicates.every((r) => r.length === 0)) return summarizeSeedRange(values, n);
  const pooled: number[] = [];
  values.forEach((v, s) => {
    const r = Float64Array.from(replicates[s]).sort();
    if (r.length === 0) {
      pooled.push(v);
      return;
    }
    const med = quantileOfSorted(r, 0.5);
    for (const x of r) pooled.push(v + x - med);
  });
  for (const x of pooled) ensure(Number.isFinite(x), `a replicate is ${x}`, 'summarizeRecentred(replicates)', 'check the features for NaN/Inf');
  const sorted = Float64Array.from(pooled).sort();
  const clamp = (x: number) => Math.min(bounds.max ?? Infinity, Math.max(bounds.min ?? -Infinity, x));
  return widen({
    mean: mean(values), lo: clamp(quantileOfSorted(sorted, (1 - level) / 2)), hi: clamp(quantileOfSorted(sorted, (1 + level) / 2)),
    level, interval: 'bootstrap-recentred', perSeed: [...values], n,
  });
}

/** `seed-range`: [min, max] of the per-seed values around their mean. */
export function summarizeSeedRange(values: readonly number[], n: number): MetricSummary {
  ensure(values.length > 0, 'has no values', 'summarizeSeedRange(values)', 'pass one value per seed');
  return { mean: mean(values), lo: Math.min(...values), hi: Math.max(...values), level: NaN, interval: 'seed-range', perSeed: [...values], n };
}

/**
 * A ratio of sums, Σ num / Σ den, with a percentile bootstrap over the units
 * (images): each replicate resamples the units and recomputes the ratio, so
 * units with a large denominator weigh more, as in the point estimate.
 */
export function summarizeRatio(num: ArrayLike<number>, den: ArrayLike<number>, reps: number, seed: number | string, level = 0.95): MetricSummary {
  ensure(num.length === den.length && num.length > 0, `${num.length} numerators and ${den.length} denominators`, 'summarizeRatio(num, den)', 'pass one pair per unit');
  const n = num.length;
  let sn = 0, sd = 0;
  for (let i = 0; i < n; i++) { sn += num[i]; sd += den[i]; }
  const value = sn / sd;
  if (!Number.isFinite(value)) return { mean: value, lo: value, hi: value, level, interval: 'bootstrap-samples', perSeed: [value], n };
  const iv = bootstrapInterval((r) => {
    let a = 0, b = 0;
    for (let i = 0; i < n; i++) {
      const j = r.int(n);
      a += num[j];
      b += den[j];
    }
    // A replicate whose denominator vanishes says nothing about the ratio; count it as the estimate.
    return b !== 0 && Number.isFinite(a / b) ? a / b : value;
  }, reps, seed, level);
  return widen({ mean: value, lo: iv.lo, hi: iv.hi, level, interval: 'bootstrap-samples', perSeed: [value], n });
}

/** Row indices for one bootstrap replicate of n rows (with replacement), from a named stream. */
export function resampleIndices(n: number, seed: number | string, rep: number): Int32Array {
  const r = rng(seedFrom(seed, 'resample', rep));
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = r.int(n);
  return out;
}
