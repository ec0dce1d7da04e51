/**
 * Agreement between labelings of an oracle dataset (notebook
 * 03_stage2_oracle): u vs u_extrap, one reading vs another (on the states
 * both have), one weight vs another; as shared labels, top-3 membership and the Spearman rank
 * correlation of the utility vectors, against the agreement of random labels.
 */
import { ensure } from '../runtime/errors';
import type { OracleDataset, OracleLabelSet } from './dataset';
import { readingLabelings } from './analysis';

/** Share of states (where both labels exist and `mask` allows) with the same label. */
export function labelAgreement(a: Int32Array, b: Int32Array, mask?: (i: number) => boolean): { n: number; agree: number } {
  ensure(a.length === b.length, `label arrays of lengths ${a.length} and ${b.length}`, 'labelAgreement(a, b)', 'pass labels of the same states');
  let n = 0, same = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] < 0 || b[i] < 0 || (mask && !mask(i))) continue;
    n++;
    if (a[i] === b[i]) same++;
  }
  return { n, agree: n > 0 ? same / n : NaN };
}

/** Average ranks (1 = smallest) of finite values; ties share their mean rank. */
function ranks(values: number[]): number[] {
  const idx = values.map((v, i) => [v, i] as const).sort((x, y) => x[0] - y[0]);
  const r = new Array<number>(values.length);
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && idx[j + 1][0] === idx[i][0]) j++;
    for (let k = i; k <= j; k++) r[idx[k][1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return r;
}

/** Spearman rank correlation of two equal-length lists (NaN when fewer than 2 or a constant list). */
export function spearman(x: number[], y: number[]): number {
  ensure(x.length === y.length, `lists of lengths ${x.length} and ${y.length}`, 'spearman(x, y)', 'pass paired values');
  if (x.length < 2) return NaN;
  const rx = ranks(x), ry = ranks(y);
  const mx = rx.reduce((a, b) => a + b, 0) / rx.length, my = ry.reduce((a, b) => a + b, 0) / ry.length;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < rx.length; i++) {
    sxy += (rx[i] - mx) * (ry[i] - my);
    sxx += (rx[i] - mx) ** 2;
    syy += (ry[i] - my) ** 2;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : NaN;
}

/**
 * Mean per-state Spearman correlation between two utility vectors ([n, nb]
 * each, NaN on visible blocks), over states with at least 3 candidates where
 * both are finite; also the share of states whose label under `u` is in the
 * top-k of `v`.
 */
export function utilityAgreement(u: Float32Array, v: Float32Array, nb: number, mask?: (i: number) => boolean, k = 3):
  { n: number; meanSpearman: number; topK: number; k: number } {
  ensure(u.length === v.length && u.length % nb === 0, `utility arrays of lengths ${u.length} and ${v.length} for ${nb} blocks`, 'utilityAgreement(u, v)', 'pass [n, numBlocks] arrays of the same states');
  const n = u.length / nb;
  let count = 0, sum = 0, topCount = 0, inTop = 0;
  for (let i = 0; i < n; i++) {
    if (mask && !mask(i)) continue;
    const xs: number[] = [], ys: number[] = [];
    let best = -1;
    for (let b = 0; b < nb; b++) {
      const x = u[i * nb + b], y = v[i * nb + b];
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      xs.push(x);
      ys.push(y);
      if (best < 0 || x > xs[best]) best = xs.length - 1;
    }
    if (xs.length === 0) continue;
    topCount++;
    const better = ys.filter((y) => y > ys[best]).length;
    if (better < k) inTop++;
    if (xs.length < 3) continue;
    const r = spearman(xs, ys);
    if (Number.isFinite(r)) {
      count++;
      sum += r;
    }
  }
  return { n: count, meanSpearman: count > 0 ? sum / count : NaN, topK: topCount > 0 ? inTop / topCount : NaN, k };
}

/** An agreement row between two sets of labels. */
export interface AgreementRow {
  /** 'u vs u_extrap', 'reading vs reading' or 'weight vs weight'. */
  what: string;
  a: string;
  b: string;
  /** The two labelings' readings (equal for 'u vs u_extrap' and 'weight vs weight'). */
  readings: [string, string];
  /** The first labeling's target ('u' or 'u_extrap'). */
  target: 'u' | 'u_extrap';
  n: number;
  /** Share of states with the same label. */
  agree: number;
  /** Share with a's label in b's top-3. */
  top3: number;
  /** Mean per-state Spearman correlation of the utility vectors. */
  spearman: number;
  /** Agreement of two uniformly random labels, averaged over the same states (1 / candidates). */
  chance: number;
}

function chanceAgreement(ds: OracleDataset, mask: (i: number) => boolean): number {
  let n = 0, s = 0;
  for (let i = 0; i < ds.n; i++) {
    if (!mask(i)) continue;
    n++;
    s += 1 / (ds.geo.numBlocks - ds.size[i]);
  }
  return n > 0 ? s / n : NaN;
}

const labelName = (l: OracleLabelSet, target: 'u' | 'u_extrap') => (target === 'u' ? `u (${l.reading})` : `u_extrap (${l.reading}, w=${l.weight})`);

function agreementRow(ds: OracleDataset, what: string, la: OracleLabelSet, ta: 'u' | 'u_extrap', lb: OracleLabelSet, tb: 'u' | 'u_extrap'): AgreementRow {
  const mask = (i: number) => la.has[i] === 1 && lb.has[i] === 1;
  const pick = (l: OracleLabelSet, t: 'u' | 'u_extrap') => (t === 'u' ? { labels: l.aStar, util: l.u } : { labels: l.aStarExtrap, util: l.uExtrap });
  const A = pick(la, ta), B = pick(lb, tb);
  const ag = labelAgreement(A.labels, B.labels, mask);
  const ua = utilityAgreement(A.util, B.util, ds.geo.numBlocks, mask, 3);
  return { what, a: labelName(la, ta), b: labelName(lb, tb), readings: [la.reading, lb.reading], target: ta, n: ag.n, agree: ag.agree, top3: ua.topK, spearman: ua.meanSpearman, chance: chanceAgreement(ds, mask) };
}

/**
 * Agreement rows: u vs u_extrap for every labeling; every pair of readings
 * (readingLabelings: the primary's weight), for u and, when their weights
 * match, for u_extrap; within each reading, its labeling against its other
 * weights (u_extrap). Each row on the states both of its labelings have.
 */
export function agreementTable(ds: OracleDataset): AgreementRow[] {
  const rows: AgreementRow[] = [];
  for (const l of ds.labelings) rows.push(agreementRow(ds, 'u vs u_extrap', l, 'u', l, 'u_extrap'));
  const { labelings: byReading } = readingLabelings(ds);
  byReading.forEach((a, k) => {
    for (const b of byReading.slice(k + 1)) {
      rows.push(agreementRow(ds, 'reading vs reading', a, 'u', b, 'u'));
      if (a.weight === b.weight) rows.push(agreementRow(ds, 'reading vs reading', a, 'u_extrap', b, 'u_extrap'));
    }
  });
  for (const a of byReading) {
    for (const b of ds.labelings) if (b.reading === a.reading && b.weight !== a.weight) rows.push(agreementRow(ds, 'weight vs weight', a, 'u_extrap', b, 'u_extrap'));
  }
  return rows;
}
