/**
 * Fréchet distances between feature sets (METHOD.md section 7): the Gaussian
 * statistics they compare (mean, unbiased covariance), the distance between
 * two such Gaussians, its form against a fixed reference set whose square
 * root is computed once (ReferenceStats), and FID / sFID on pooled / spatial
 * features. Layouts in feature-rows.ts; show every number with
 * FEATURE_NET_CAVEAT (metrics.ts).
 */
import { ensure } from '../runtime/errors';
import { EigenMethod, sqrtPsd, symmetricEigen } from './eigen';
import { rowsOf } from './feature-rows';

/** Mean of the rows: a [dim] vector. */
export function featureMean(feats: ArrayLike<number>, dim: number): Float64Array {
  const n = rowsOf(feats, dim, 'featureMean(feats)');
  ensure(n > 0, 'has no rows', 'featureMean(feats)', 'pass at least one feature row');
  const mu = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mu[j] += feats[i * dim + j];
  for (let j = 0; j < dim; j++) mu[j] /= n;
  return mu;
}

/**
 * Sample covariance of the rows, [dim * dim] row-major, with the unbiased
 * 1/(N-1) normalisation of `numpy.cov(rowvar=False)`, which the reference FID
 * code (TTUR, pytorch-fid, the ADM evaluator) uses. `mu` defaults to
 * featureMean.
 */
export function featureCovariance(feats: ArrayLike<number>, dim: number, mu: ArrayLike<number> = featureMean(feats, dim)): Float64Array {
  const n = rowsOf(feats, dim, 'featureCovariance(feats)');
  ensure(n >= 2, `has ${n} row(s); a covariance needs at least 2`, 'featureCovariance(feats)', 'pass more samples (FID is only meaningful with thousands)');
  ensure(mu.length === dim, `mu has ${mu.length} values, expected ${dim}`, 'featureCovariance(mu)', 'pass featureMean(feats, dim)');
  const cov = new Float64Array(dim * dim);
  const x = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) x[j] = feats[i * dim + j] - mu[j];
    // Upper triangle only; mirrored below.
    for (let a = 0; a < dim; a++) {
      const xa = x[a];
      if (xa === 0) continue;
      const row = a * dim;
      for (let b = a; b < dim; b++) cov[row + b] += xa * x[b];
    }
  }
  const inv = 1 / (n - 1);
  for (let a = 0; a < dim; a++) {
    for (let b = a; b < dim; b++) {
      const v = cov[a * dim + b] * inv;
      cov[a * dim + b] = v;
      cov[b * dim + a] = v;
    }
  }
  return cov;
}

/** Mean and covariance of a feature set: what FID compares (cache these for the reference set). */
export interface FeatureStats {
  /** [dim] */
  mu: Float64Array;
  /** [dim * dim] row-major, unbiased. */
  sigma: Float64Array;
  dim: number;
  /** Rows the statistics were computed from. */
  n: number;
}

/** featureMean + featureCovariance in one call. */
export function featureStats(feats: ArrayLike<number>, dim: number): FeatureStats {
  const mu = featureMean(feats, dim);
  return { mu, sigma: featureCovariance(feats, dim, mu), dim, n: feats.length / dim };
}

/** C = A B for [n * n] row-major matrices. */
function matMul(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ci = i * n;
    for (let k = 0; k < n; k++) {
      const aik = a[ci + k];
      if (aik === 0) continue;
      const bk = k * n;
      for (let j = 0; j < n; j++) c[ci + j] += aik * b[bk + j];
    }
  }
  return c;
}

/**
 * Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2):
 *
 *   ||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)).
 *
 * S1 S2 is not symmetric, but it is similar to the symmetric PSD matrix
 * sqrt(S1) S2 sqrt(S1), so tr(sqrt(S1 S2)) = Σ sqrt(eig(sqrt(S1) S2 sqrt(S1))):
 * two symmetric eigendecompositions (symmetricEigen; `method` 'ml-matrix'
 * for the reference solver), no complex square roots (the
 * reference code's scipy.linalg.sqrtm needs an "imaginary component" fix-up
 * that this formulation avoids). Negative eigenvalues from round-off are
 * clamped to 0, and so is a total that round-off takes just below 0.
 */
export function frechetDistance(
  mu1: ArrayLike<number>, sigma1: ArrayLike<number>, mu2: ArrayLike<number>, sigma2: ArrayLike<number>, method: EigenMethod = 'ql',
): number {
  const d = mu1.length;
  ensure(d > 0 && mu2.length === d, `the means have ${mu1.length} and ${mu2.length} values`, 'frechetDistance(mu1, mu2)', 'compare feature sets of the same dimension');
  ensure(sigma1.length === d * d && sigma2.length === d * d, `the covariances have ${sigma1.length} and ${sigma2.length} values, expected ${d}x${d} = ${d * d}`, 'frechetDistance(sigma1, sigma2)', 'pass featureCovariance(feats, dim) of both sets');
  let meanTerm = 0;
  for (let i = 0; i < d; i++) meanTerm += (mu1[i] - mu2[i]) ** 2;
  let tr1 = 0, tr2 = 0;
  for (let i = 0; i < d; i++) {
    tr1 += sigma1[i * d + i];
    tr2 += sigma2[i * d + i];
  }
  const s1Half = sqrtPsd(sigma1, d, method);
  const s2 = Float64Array.from(sigma2 as ArrayLike<number>);
  const inner = matMul(matMul(s1Half, s2, d), s1Half, d); // sqrt(S1) S2 sqrt(S1), symmetric PSD up to round-off
  const { values } = symmetricEigen(inner, d, { vectors: false, method });
  let trSqrt = 0;
  for (let i = 0; i < d; i++) trSqrt += Math.sqrt(Math.max(0, values[i]));
  return Math.max(0, meanTerm + tr1 + tr2 - 2 * trSqrt);
}

/** Fréchet distance between two sets' statistics (see frechetDistance). */
export function frechetDistanceOfStats(a: FeatureStats, b: FeatureStats): number {
  ensure(a.dim === b.dim, `the statistics have dimensions ${a.dim} and ${b.dim}`, 'frechetDistanceOfStats(a, b)', 'compute both from the same layer of the same feature network');
  return frechetDistance(a.mu, a.sigma, b.mu, b.sigma);
}

/**
 * Statistics of a fixed reference set (the real test images) with what every
 * Fréchet distance against it reuses: sqrt(Σ_ref) and tr(Σ_ref). Computing
 * them once per reference instead of once per comparison saves one full
 * eigendecomposition (with vectors) per FID, the larger half of its cost; an
 * evaluation compares the same reference with many sample sets and bootstrap
 * replicates.
 */
export interface ReferenceStats extends FeatureStats {
  /** sqrtPsd(sigma), [dim * dim]. */
  sqrtSigma: Float64Array;
  /** tr(sigma). */
  trace: number;
}

/** ReferenceStats of a feature set ([N * dim] rows), or of statistics already computed. */
export function referenceStats(featsOrStats: ArrayLike<number> | FeatureStats, dim?: number): ReferenceStats {
  const st = 'sigma' in (featsOrStats as FeatureStats) ? (featsOrStats as FeatureStats) : featureStats(featsOrStats as ArrayLike<number>, dim!);
  let trace = 0;
  for (let i = 0; i < st.dim; i++) trace += st.sigma[i * st.dim + i];
  return { ...st, sqrtSigma: sqrtPsd(st.sigma, st.dim), trace };
}

/**
 * Fréchet distance between a reference (ReferenceStats) and the statistics of
 * another set: the same number as frechetDistanceOfStats(ref, gen) (the trace
 * term uses sqrt(Σ_ref) Σ_gen sqrt(Σ_ref), similar to Σ_ref Σ_gen), with one
 * eigenvalue pass and two matrix products per call.
 */
export function frechetToReference(ref: ReferenceStats, gen: FeatureStats): number {
  const d = ref.dim;
  ensure(gen.dim === d, `the statistics have dimensions ${d} and ${gen.dim}`, 'frechetToReference(ref, gen)', 'compute both from the same layer of the same feature network');
  let meanTerm = 0, trGen = 0;
  for (let i = 0; i < d; i++) {
    meanTerm += (ref.mu[i] - gen.mu[i]) ** 2;
    trGen += gen.sigma[i * d + i];
  }
  const inner = matMul(matMul(ref.sqrtSigma, Float64Array.from(gen.sigma), d), ref.sqrtSigma, d);
  const { values } = symmetricEigen(inner, d, { vectors: false });
  let trSqrt = 0;
  for (let i = 0; i < d; i++) trSqrt += Math.sqrt(Math.max(0, values[i]));
  return Math.max(0, meanTerm + ref.trace + trGen - 2 * trSqrt);
}

/**
 * FID between two feature sets ([N_A * dim] and [N_B * dim], e.g. the `pool`
 * outputs of featureNetOutputs for generated and test images). FID is biased
 * upward at small N: compare settings only at equal sample counts.
 * Show it with FEATURE_NET_CAVEAT.
 */
export function fid(featsA: ArrayLike<number>, featsB: ArrayLike<number>, dim: number): number {
  rowsOf(featsA, dim, 'fid(featsA)');
  rowsOf(featsB, dim, 'fid(featsB)');
  return frechetDistanceOfStats(featureStats(featsA, dim), featureStats(featsB, dim));
}

/**
 * sFID (Nash et al. 2021, as in the ADM evaluator): the same Fréchet distance
 * on *spatial* features (the `spatial` outputs of featureNetOutputs), which
 * keep where things are and so react to layout errors that pooled features
 * average away. Show it with FEATURE_NET_CAVEAT.
 */
export function sfid(spatialA: ArrayLike<number>, spatialB: ArrayLike<number>, dim: number): number {
  rowsOf(spatialA, dim, 'sfid(spatialA)');
  rowsOf(spatialB, dim, 'sfid(spatialB)');
  return frechetDistanceOfStats(featureStats(spatialA, dim), featureStats(spatialB, dim));
}
