/**
 * Our QL eigensolver against ml-matrix's EigenvalueDecomposition (eigen.ts),
 * at the feature network's FID and sFID dimensions, in one invocation:
 * best-of-N times, their ratio, how far the eigenvalues and Fréchet distances
 * differ, and how well each square root squares back. This is why eigen.ts
 * keeps its QL. Prints a table; writes nothing.
 *
 *   npm run bench:eigen
 */
import { Matrix } from 'ml-matrix';
import { EIGEN_METHODS, EigenMethod, symmetricEigen, sqrtPsd } from '../lib/eval/eigen';
import { featureStats, frechetDistance } from '../lib/eval/frechet';
import { featureNetConfig, featureNetDims } from '../lib/eval/feature-net-config';
import { rng } from '../lib/runtime/seed';

/** Best of `runs` wall times of f, in ms. */
function best(runs: number, f: () => unknown): number {
  let t = Infinity;
  for (let r = 0; r < runs; r++) {
    const t0 = process.hrtime.bigint();
    f();
    t = Math.min(t, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return t;
}

/** Correlated features ([n * dim]): a random mixing of dim/4 latent factors plus noise, like a conv layer's. */
function features(n: number, dim: number, seed: string): Float32Array {
  const r = rng(seed), k = Math.max(1, dim >> 2);
  const mix = Float64Array.from({ length: k * dim }, () => r.normal());
  const out = new Float32Array(n * dim), z = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < k; a++) z[a] = r.normal();
    for (let j = 0; j < dim; j++) {
      let s = 0.3 * r.normal();
      for (let a = 0; a < k; a++) s += z[a] * mix[a * dim + j];
      out[i * dim + j] = Math.max(0, s); // ReLU features: some dead units, skewed marginals
    }
  }
  return out;
}

/** [n * n] row-major product, by ml-matrix (only to build the test matrix). */
function matMul(a: Float64Array, b: Float64Array, n: number): Float64Array {
  return Float64Array.from(Matrix.from1DArray(n, n, a).mmul(Matrix.from1DArray(n, n, b)).to1DArray());
}

const sorted = (v: ArrayLike<number>) => Array.from(v).sort((x, y) => x - y);
function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 0, err = 0;
  for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(a[i]));
  for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs(a[i] - b[i]));
  return err / Math.max(scale, 1e-300);
}

const METHODS = EIGEN_METHODS; // ['ql', 'ml-matrix']: ours first
const rows: string[][] = [['case', 'QL ms', 'ml-matrix ms', 'ml-matrix/QL', 'accuracy (QL vs ml-matrix)']];
const fmt = (x: number) => x.toFixed(x < 10 ? 2 : 0);

// ---- At the default feature network's FID (pooled) and sFID (spatial) dimensions.
const { poolDim, spatialDim } = featureNetDims(featureNetConfig('default'));
for (const dim of [poolDim, spatialDim]) {
  const runs = dim > 256 ? 3 : 7;
  const ref = featureStats(features(2000, dim, `ref-${dim}`), dim);
  const gen = featureStats(features(1000, dim, `gen-${dim}`), dim);
  // The eigenvalues-only pass frechetToReference makes per FID, on sqrt(Σ_ref) Σ_gen sqrt(Σ_ref).
  const half = sqrtPsd(ref.sigma, dim);
  const inner = matMul(matMul(half, gen.sigma, dim), half, dim);
  const valuesBy = (method: EigenMethod) => symmetricEigen(inner, dim, { vectors: false, method }).values;
  const tV = METHODS.map((m) => best(runs, () => valuesBy(m)));
  rows.push([`eigenvalues only, d=${dim}`, fmt(tV[0]), fmt(tV[1]), (tV[1] / tV[0]).toFixed(2), `max |Δλ| / max λ = ${maxRelDiff(sorted(valuesBy('ql')), sorted(valuesBy('ml-matrix'))).toExponential(1)}`]);
  // The reference statistics' square root (eigenvectors too): how well each squares back.
  const tS = METHODS.map((m) => best(runs, () => sqrtPsd(ref.sigma, dim, m)));
  const residual = (m: EigenMethod) => { const r = sqrtPsd(ref.sigma, dim, m); return maxRelDiff(ref.sigma, matMul(r, r, dim)).toExponential(1); };
  rows.push([`sqrtPsd, d=${dim}`, fmt(tS[0]), fmt(tS[1]), (tS[1] / tS[0]).toFixed(2), `|R R - Σ| / max Σ: ${METHODS.map(residual).join(' vs ')}`]);
  // A whole Fréchet distance (two decompositions and the products).
  const fd = (m: EigenMethod) => frechetDistance(ref.mu, ref.sigma, gen.mu, gen.sigma, m);
  const tF = METHODS.map((m) => best(runs, () => fd(m)));
  const [f1, f2] = METHODS.map(fd);
  rows.push([`frechetDistance, d=${dim}`, fmt(tF[0]), fmt(tF[1]), (tF[1] / tF[0]).toFixed(2), `${f1} vs ${f2} (rel ${(Math.abs(f1 - f2) / f1).toExponential(1)}, bit-identical: ${f1 === f2})`]);
}

const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
for (const r of rows) console.log(r.map((v, c) => (c === 0 || c === 4 ? v.padEnd(widths[c]) : v.padStart(widths[c]))).join('  '));
