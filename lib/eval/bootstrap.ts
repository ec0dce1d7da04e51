/**
 * Bootstrap percentile intervals (METHOD.md section 7): of the mean of a list
 * of values, or of any statistic recomputed on resamples (resampleRows draws
 * the rows of a feature set), seeded so a notebook shows the same interval on
 * every run.
 */
import { ensure } from '../runtime/errors';
import { Rng, rng } from '../runtime/seed';
import { rowsOf } from './feature-rows';

/** A point estimate with a bootstrap percentile interval. */
export interface Interval {
  /** The point estimate: the sample mean for values, the mean of the replicates for a resampling function. */
  mean: number;
  /** Lower end of the interval (the (1 - level)/2 quantile of the replicates). */
  lo: number;
  /** Upper end (the (1 + level)/2 quantile). */
  hi: number;
  level: number;
  reps: number;
}

/** Linear-interpolation quantile of sorted values (numpy's default). */
function quantileSorted(sorted: Float64Array, q: number): number {
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/**
 * Bootstrap percentile interval at `level` (default 95%).
 *
 * - `source` = values (per-image accuracies, per-trajectory utilities): each
 *   replicate is the mean of N values drawn with replacement; `mean` is the
 *   sample mean.
 * - `source` = a function (r, rep) => statistic: called `reps` times with a
 *   seeded generator; it resamples whatever it needs (for FID:
 *   `(r) => fid(resampleRows(gen, dim, r), ref, dim)`); `mean` is the mean of
 *   the replicates. FID is biased by the sample size, so its interval shows
 *   the spread, not the bias.
 *
 * Seeded (`seed`), so a notebook shows the same interval on every run.
 */
export function bootstrapInterval(
  source: ArrayLike<number> | ((r: Rng, rep: number) => number), reps = 1000, seed: number | string = 0, level = 0.95,
): Interval {
  ensure(Number.isInteger(reps) && reps >= 2, `reps ${reps} must be a whole number >= 2`, 'bootstrapInterval(reps)', 'use 1000 for values, 20-100 for an expensive statistic such as FID');
  ensure(level > 0 && level < 1, `level ${level} must lie strictly between 0 and 1`, 'bootstrapInterval(level)', 'use 0.95');
  const r = rng(seed);
  const reps64 = new Float64Array(reps);
  let mean: number;
  if (typeof source === 'function') {
    for (let k = 0; k < reps; k++) reps64[k] = source(r, k);
    mean = reps64.reduce((a, b) => a + b, 0) / reps;
  } else {
    const n = source.length;
    ensure(n > 0, 'has no values', 'bootstrapInterval(values)', 'pass at least one value');
    let s = 0;
    for (let i = 0; i < n; i++) s += source[i];
    mean = s / n;
    for (let k = 0; k < reps; k++) {
      let t = 0;
      for (let i = 0; i < n; i++) t += source[r.int(n)];
      reps64[k] = t / n;
    }
  }
  for (const v of reps64) {
    ensure(Number.isFinite(v), `a replicate is ${v}`, 'bootstrapInterval(source)', 'check the values or the statistic for NaN/Inf');
  }
  reps64.sort();
  return { mean, lo: quantileSorted(reps64, (1 - level) / 2), hi: quantileSorted(reps64, (1 + level) / 2), level, reps };
}

/** A bootstrap resample of the rows of `feats` (N rows drawn with replacement; `n` rows if given). */
export function resampleRows(feats: Float32Array, dim: number, r: Rng, n?: number): Float32Array {
  const rows = rowsOf(feats, dim, 'resampleRows(feats)');
  ensure(rows > 0, 'has no rows', 'resampleRows(feats)', 'pass at least one row');
  const m = n ?? rows;
  const out = new Float32Array(m * dim);
  for (let i = 0; i < m; i++) {
    const j = r.int(rows);
    out.set(feats.subarray(j * dim, (j + 1) * dim), i * dim);
  }
  return out;
}

/** A mean over training seeds with an interval that includes the seed-to-seed variation. */
export interface SeedImageInterval extends Interval {
  /** The mean over images of each seed, in the order given. */
  perSeed: number[];
  /** Images per seed (the same for every seed: the values are paired by image). */
  images: number;
}

/**
 * The interval of a quantity measured per test image under several training
 * seeds (`perSeed[s][i]`, e.g. a paired NLL difference of image i between two
 * arms trained with seed s). Estimate: the mean over seeds of the mean over
 * images. Each bootstrap replicate resamples the seeds with replacement and,
 * for each drawn seed, the images with replacement (one draw of image indices
 * per replicate, shared by the drawn seeds, since the images are the same),
 * so the interval holds both the training-run and the test-image variation.
 * With one seed it is the plain image bootstrap.
 */
export function seedImageInterval(perSeed: readonly ArrayLike<number>[], reps = 1000, seed: number | string = 0, level = 0.95): SeedImageInterval {
  const S = perSeed.length;
  ensure(S >= 1, 'has no seeds', 'seedImageInterval(perSeed)', 'pass the per-image values of at least one training seed');
  const n = perSeed[0].length;
  ensure(n > 0 && perSeed.every((v) => v.length === n), `the seeds hold ${perSeed.map((v) => v.length).join(', ')} values`, 'seedImageInterval(perSeed)',
    'score every seed on the same test images (the values are paired by image)');
  const means = perSeed.map((v) => { let s = 0; for (let i = 0; i < n; i++) s += v[i]; return s / n; });
  const mean = means.reduce((a, b) => a + b, 0) / S;
  const iv = bootstrapInterval((r) => {
    const seeds = Array.from({ length: S }, () => r.int(S));
    let total = 0;
    for (let i = 0; i < n; i++) {
      const img = r.int(n);
      for (const s of seeds) total += perSeed[s][img];
    }
    return total / (n * S);
  }, reps, seed, level);
  return { mean, lo: Math.min(iv.lo, mean), hi: Math.max(iv.hi, mean), level, reps, perSeed: means, images: n };
}
