/**
 * Sample-quality metrics of METHOD.md section 7 on plain Float32Arrays: FID,
 * sFID, Inception Score, k-NN precision/recall and bootstrap intervals. No
 * tfjs here, so the numbers can be recomputed from stored features anywhere.
 *
 * The features come from OrderHead's own classifier (feature-net.ts), not
 * from ImageNet Inception-v3: every figure or table that shows these numbers
 * must carry FEATURE_NET_CAVEAT.
 *
 * Layouts: a feature set is N rows of `dim` values, row-major
 * (`feats[i * dim + j]`); probabilities are N rows of `classes` values.
 * Accumulations run in float64 whatever the input type.
 */
import { ensure } from '../runtime/errors';
import { Rng, rng } from '../runtime/seed';

/**
 * The sentence to show next to every FID / sFID / IS / precision / recall
 * number (METHOD.md section 7): the feature network is a small classifier
 * trained on the project's own dataset, so the figures compare settings of
 * this project with each other and cannot be compared with ImageNet papers.
 */
export const FEATURE_NET_CAVEAT =
  'FID, sFID, IS, precision and recall here are measured with OrderHead\'s own small classifier trained on this dataset ' +
  '(lib/eval/feature-net.ts), not with ImageNet Inception-v3: they compare settings within this project and are not ' +
  'comparable with numbers from ImageNet papers.';

/** Rows of a flat feature array, with the layout checked; `where` names the argument in errors. */
function rowsOf(feats: ArrayLike<number>, dim: number, where: string): number {
  ensure(Number.isInteger(dim) && dim > 0, `dim ${dim} must be a positive whole number`, where, 'pass the feature dimension (values per row)');
  ensure(
    feats.length % dim === 0,
    `holds ${feats.length} values, not a whole number of rows of ${dim}`,
    where,
    `pass N * ${dim} values laid out row by row (featureNetOutputs gives this layout)`,
  );
  return feats.length / dim;
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
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let k = 1; k < numClasses; k++) if (probs[i * numClasses + k] > probs[i * numClasses + best]) best = k;
    if (best === labels[i]) correct++;
  }
  return correct / n;
}

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

/** Result of `symmetricEigen`. */
export interface SymmetricEigen {
  /** [n] eigenvalues, in no particular order. */
  values: Float64Array;
  /** [n * n] row-major; column k (`vectors[i * n + k]`) is the unit eigenvector of values[k]. Absent when not asked for. */
  vectors?: Float64Array;
  /** Jacobi sweeps, or QL iterations, done. */
  iterations: number;
}

/** The two solvers of `symmetricEigen`. */
export const EIGEN_METHODS = ['ql', 'jacobi'] as const;
export type EigenMethod = (typeof EIGEN_METHODS)[number];

export interface SymmetricEigenOptions {
  /** Also compute the eigenvectors (default true). */
  vectors?: boolean;
  /**
   * 'ql' (default): Householder reduction to tridiagonal form, then implicit
   * QL (EISPACK tred2/tql2, as in JAMA), about 6 n^3 flops with vectors.
   * 'jacobi': cyclic Jacobi rotations, simpler and very accurate for PSD
   * matrices but several times slower (measured at n = 512 in JS: about 8 s
   * against about 1 s), kept as the independent reference the tests compare with.
   */
  method?: EigenMethod;
}

/**
 * Eigendecomposition of a symmetric matrix `a` ([n * n] row-major; the mean
 * of a and aᵀ is used, so round-off asymmetry does no harm). `a` is not
 * modified. Covariances of 512 spatial features take about a second (QL).
 */
export function symmetricEigen(a: ArrayLike<number>, n: number, opts: SymmetricEigenOptions = {}): SymmetricEigen {
  ensure(Number.isInteger(n) && n > 0 && a.length === n * n, `expected an ${n}x${n} matrix (${n * n} values), got ${a.length} values`, 'symmetricEigen(a)', 'pass a square matrix, row-major');
  const method = opts.method ?? 'ql';
  ensure((EIGEN_METHODS as readonly string[]).includes(method), `unknown method '${method}'`, 'symmetricEigen(opts.method)', `use one of: ${EIGEN_METHODS.join(', ')}`);
  const m = Float64Array.from(a as ArrayLike<number>);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const v = 0.5 * (m[i * n + j] + m[j * n + i]);
      m[i * n + j] = v;
      m[j * n + i] = v;
    }
  }
  for (let i = 0; i < m.length; i++) {
    ensure(Number.isFinite(m[i]), `entry ${i} is ${m[i]}`, 'symmetricEigen(a)', 'check the features for NaN/Inf');
  }
  return method === 'jacobi' ? jacobiEigen(m, n, opts.vectors ?? true) : qlEigen(m, n, opts.vectors ?? true);
}

/**
 * Cyclic Jacobi: plane rotations that zero one off-diagonal entry at a time
 * until the off-diagonal mass is negligible. `m` (symmetric) is overwritten.
 */
function jacobiEigen(m: Float64Array, n: number, wantVectors: boolean): SymmetricEigen {
  let scale = 0;
  for (let i = 0; i < n * n; i++) scale += m[i] * m[i];
  // Eigenvectors stored as rows of vt (vt = Vᵀ): the rotations then touch two contiguous rows.
  const vt = wantVectors ? new Float64Array(n * n) : undefined;
  if (vt) for (let i = 0; i < n; i++) vt[i * n + i] = 1;
  const tol = Math.max(scale, Number.MIN_VALUE) * 1e-30;
  const maxSweeps = 100;
  let sweeps = 0;
  for (; sweeps < maxSweeps; sweeps++) {
    let off = 0;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) off += m[i * n + j] * m[i * n + j];
    if (off <= tol) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = m[p * n + q];
        if (apq === 0) continue;
        const app = m[p * n + p], aqq = m[q * n + q];
        // Rotation J with c at (p,p),(q,q), s at (p,q), -s at (q,p) such that (Jᵀ A J)_pq = 0.
        const theta = (aqq - app) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        m[p * n + p] = app - t * apq;
        m[q * n + q] = aqq + t * apq;
        m[p * n + q] = 0;
        m[q * n + p] = 0;
        const rp = p * n, rq = q * n;
        for (let k = 0; k < n; k++) {
          if (k === p || k === q) continue;
          const akp = m[rp + k], akq = m[rq + k];
          const np = c * akp - s * akq, nq = s * akp + c * akq;
          // Row and column k of a symmetric matrix hold the same values.
          m[rp + k] = np;
          m[k * n + p] = np;
          m[rq + k] = nq;
          m[k * n + q] = nq;
        }
        if (vt) {
          for (let k = 0; k < n; k++) {
            const vp = vt[rp + k], vq = vt[rq + k];
            vt[rp + k] = c * vp - s * vq;
            vt[rq + k] = s * vp + c * vq;
          }
        }
      }
    }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = m[i * n + i];
  return { values, vectors: vt && transposeSquare(vt, n), iterations: sweeps };
}

function transposeSquare(a: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) out[i * n + k] = a[k * n + i];
  return out;
}

/**
 * Householder tridiagonalisation + implicit QL with shifts (tred2 + tql2 of
 * EISPACK, in the form of the public-domain JAMA library). `v` holds the
 * symmetric matrix on entry and is overwritten. The accumulated transform is
 * kept transposed during QL so each rotation updates two contiguous rows.
 */
function qlEigen(v: Float64Array, n: number, wantVectors: boolean): SymmetricEigen {
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  // ---- tred2: V <- Q, d/e <- diagonal/sub-diagonal of QᵀAQ.
  for (let j = 0; j < n; j++) d[j] = v[(n - 1) * n + j];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = v[(i - 1) * n + j];
        v[i * n + j] = 0;
        v[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j];
        v[j * n + i] = f;
        g = e[j] + v[j * n + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += v[k * n + j] * d[k];
          e[k] += v[k * n + j] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        for (let k = j; k <= i - 1; k++) v[k * n + j] -= f * e[k] + g * d[k];
        d[j] = v[(i - 1) * n + j];
        v[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  if (wantVectors) {
    for (let i = 0; i < n - 1; i++) {
      v[(n - 1) * n + i] = v[i * n + i];
      v[i * n + i] = 1;
      const h = d[i + 1];
      if (h !== 0) {
        for (let k = 0; k <= i; k++) d[k] = v[k * n + i + 1] / h;
        for (let j = 0; j <= i; j++) {
          let g = 0;
          for (let k = 0; k <= i; k++) g += v[k * n + i + 1] * v[k * n + j];
          for (let k = 0; k <= i; k++) v[k * n + j] -= g * d[k];
        }
      }
      for (let k = 0; k <= i; k++) v[k * n + i + 1] = 0;
    }
    for (let j = 0; j < n; j++) {
      d[j] = v[(n - 1) * n + j];
      v[(n - 1) * n + j] = 0;
    }
    v[(n - 1) * n + n - 1] = 1;
  } else {
    // Without vectors only the diagonal is needed: it sits on the diagonal of the reduced matrix.
    for (let j = 0; j < n; j++) d[j] = v[j * n + j];
  }
  e[0] = 0;
  // ---- tql2 on (d, e), rotations accumulated into vt = Vᵀ.
  const vt = wantVectors ? transposeSquare(v, n) : undefined;
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  let iterations = 0;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      do {
        iterations++;
        ensure(iterations < 100 * n, 'the QL iteration did not converge', 'symmetricEigen(a)', "try method: 'jacobi', and check the matrix for NaN/Inf");
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1, c2 = c, c3 = c;
        const el1 = e[l + 1];
        let s = 0, s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          if (vt) {
            const ri = i * n, rj = (i + 1) * n;
            for (let k = 0; k < n; k++) {
              const hk = vt[rj + k];
              vt[rj + k] = s * vt[ri + k] + c * hk;
              vt[ri + k] = c * vt[ri + k] - s * hk;
            }
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
  return { values: d, vectors: vt && transposeSquare(vt, n), iterations };
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
 * The symmetric square root of a positive semi-definite matrix,
 * V diag(sqrt(max(λ, 0))) Vᵀ. Eigenvalues that round-off made slightly
 * negative are clamped to 0.
 */
export function sqrtPsd(a: ArrayLike<number>, n: number, method: EigenMethod = 'ql'): Float64Array {
  const { values, vectors } = symmetricEigen(a, n, { vectors: true, method });
  const v = vectors!;
  const out = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const r = Math.sqrt(Math.max(0, values[k]));
    if (r === 0) continue;
    for (let i = 0; i < n; i++) {
      const vik = v[i * n + k] * r;
      if (vik === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += vik * v[j * n + k];
    }
  }
  return out;
}

/**
 * Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2):
 *
 *   ||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)).
 *
 * S1 S2 is not symmetric, but it is similar to the symmetric PSD matrix
 * sqrt(S1) S2 sqrt(S1), so tr(sqrt(S1 S2)) = Σ sqrt(eig(sqrt(S1) S2 sqrt(S1))):
 * two symmetric eigendecompositions (symmetricEigen; `method` 'jacobi' for
 * the slower reference solver), no complex square roots (the
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

/** Squared norms of the rows. */
function rowNorms2(x: ArrayLike<number>, n: number, dim: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += x[i * dim + j] ** 2;
    out[i] = s;
  }
  return out;
}

/** Squared distances from row i of x to every row of y, into `out` [ny]. */
function distancesFromRow(x: ArrayLike<number>, i: number, xn: Float64Array, y: ArrayLike<number>, yn: Float64Array, ny: number, dim: number, out: Float64Array): void {
  const xi = i * dim;
  for (let k = 0; k < ny; k++) {
    let dot = 0;
    const yk = k * dim;
    for (let j = 0; j < dim; j++) dot += x[xi + j] * y[yk + j];
    out[k] = Math.max(0, xn[i] + yn[k] - 2 * dot);
  }
}

/** Squared distance of each row to its k-th nearest other row (the manifold radii). */
function kthNeighbourRadii(x: ArrayLike<number>, n: number, dim: number, k: number): Float64Array {
  const norms = rowNorms2(x, n, dim);
  const radii = new Float64Array(n);
  const d = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    distancesFromRow(x, i, norms, x, norms, n, dim, d);
    // Sorted, d[0] is the row itself (0); d[k] is the k-th nearest other row.
    const sorted = Float64Array.from(d).sort();
    radii[i] = sorted[k];
  }
  return radii;
}

/** Share of rows of `query` inside at least one ball (center row of `ref`, squared radius radii[j]). */
function coverage(query: ArrayLike<number>, nq: number, ref: ArrayLike<number>, nr: number, radii: Float64Array, dim: number): number {
  const qn = rowNorms2(query, nq, dim), rn = rowNorms2(ref, nr, dim);
  const d = new Float64Array(nr);
  let inside = 0;
  for (let i = 0; i < nq; i++) {
    distancesFromRow(query, i, qn, ref, rn, nr, dim, d);
    for (let j = 0; j < nr; j++) {
      if (d[j] <= radii[j]) {
        inside++;
        break;
      }
    }
  }
  return inside / nq;
}

/** k-NN manifold precision and recall. */
export interface PrecisionRecall {
  /** Share of generated samples inside the real manifold (fidelity). */
  precision: number;
  /** Share of real samples inside the generated manifold (coverage). */
  recall: number;
  k: number;
}

/**
 * Improved precision and recall (Kynkäänniemi et al. 2019, as in the ADM
 * evaluator): each sample's manifold ball reaches its k-th nearest neighbour
 * in its own set (k = 3); precision is the share of generated samples inside
 * some real ball, recall the share of real samples inside some generated
 * ball. Exact pairwise distances, O(N² · dim) work: measured 0.8 s for
 * 1,000 + 1,000 samples of dim 128 in JS, growing with N²; subsample larger sets. Show it with
 * FEATURE_NET_CAVEAT.
 */
export function precisionRecall(real: ArrayLike<number>, generated: ArrayLike<number>, dim: number, k = 3): PrecisionRecall {
  const nr = rowsOf(real, dim, 'precisionRecall(real)');
  const ng = rowsOf(generated, dim, 'precisionRecall(generated)');
  ensure(Number.isInteger(k) && k >= 1, `k ${k} must be a whole number >= 1`, 'precisionRecall(k)', 'use k = 3 (the usual choice)');
  ensure(nr > k && ng > k, `needs more than k = ${k} samples in each set, got ${nr} real and ${ng} generated`, 'precisionRecall(real, generated)', 'pass more samples');
  const realRadii = kthNeighbourRadii(real, nr, dim, k);
  const genRadii = kthNeighbourRadii(generated, ng, dim, k);
  return {
    precision: coverage(generated, ng, real, nr, realRadii, dim),
    recall: coverage(real, nr, generated, ng, genRadii, dim),
    k,
  };
}

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
