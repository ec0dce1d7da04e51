// Our QL stays: ml-matrix's EigenvalueDecomposition always computes eigenvectors (3-4.5x slower for the eigenvalues-only pass of every FID, npm run bench:eigen) and its last-bit round-off differs, which would change the full-precision eval CSVs.
/**
 * Eigendecomposition of a symmetric matrix and the square root of a positive
 * semi-definite one: the linear algebra the Fréchet distance (frechet.ts)
 * needs, in float64 JS. Two solvers: Householder reduction + implicit QL (the
 * default) and ml-matrix's EigenvalueDecomposition (the independently written
 * reference the tests compare with). Matrices are [n * n] row-major.
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { ensure } from '../runtime/errors';

/** Result of `symmetricEigen`. */
export interface SymmetricEigen {
  /** [n] eigenvalues, in no particular order. */
  values: Float64Array;
  /** [n * n] row-major; column k (`vectors[i * n + k]`) is the unit eigenvector of values[k]. Absent when not asked for. */
  vectors?: Float64Array;
  /** QL iterations done (0 from ml-matrix, which does not report them). */
  iterations: number;
}

/** The two solvers of `symmetricEigen`. */
export const EIGEN_METHODS = ['ql', 'ml-matrix'] as const;
export type EigenMethod = (typeof EIGEN_METHODS)[number];

export interface SymmetricEigenOptions {
  /** Also compute the eigenvectors (default true). */
  vectors?: boolean;
  /**
   * 'ql' (default): Householder reduction to tridiagonal form, then implicit
   * QL (EISPACK tred2/tql2, as in JAMA), about 6 n^3 flops with vectors.
   * 'ml-matrix': ml-matrix's EigenvalueDecomposition, the independent
   * reference the tests compare with; as exact, but it always computes the
   * vectors, so the eigenvalues alone take 3-4.5x longer (n = 128 / 512).
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
  return method === 'ml-matrix' ? mlMatrixEigen(m, n, opts.vectors ?? true) : qlEigen(m, n, opts.vectors ?? true);
}

/**
 * ml-matrix's EigenvalueDecomposition (the same tred2/tql2, written and tested
 * independently): the cross-check of qlEigen. It always computes the vectors.
 */
function mlMatrixEigen(m: Float64Array, n: number, wantVectors: boolean): SymmetricEigen {
  const evd = new EigenvalueDecomposition(Matrix.from1DArray(n, n, m), { assumeSymmetric: true });
  return {
    values: Float64Array.from(evd.realEigenvalues),
    vectors: wantVectors ? Float64Array.from(evd.eigenvectorMatrix.to1DArray()) : undefined,
    iterations: 0,
  };
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
        ensure(iterations < 100 * n, 'the QL iteration did not converge', 'symmetricEigen(a)', 'check the matrix for NaN/Inf');
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
