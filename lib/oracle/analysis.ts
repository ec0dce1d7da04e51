/**
 * Analysis of an oracle dataset (notebook 03_stage2_oracle): where the oracle
 * label a* falls, by |S| bucket; whether it touches the visible region
 * (interpolation, block distance 1) or lies far from it, against the chance
 * level of a uniformly random candidate; agreement between labelings (u vs
 * u_extrap, one-step vs teacher-forced, weights); and the "what this run
 * showed" text, all computed from the stored arrays.
 *
 * Distances are Chebyshev distances on the block grid (`blockDistance`): 1 =
 * one of the 8 neighbouring blocks. The distance of a candidate to the visible
 * set is its distance to the nearest visible block; empty states (|S| = 0)
 * have no visible set and are left out of every locality statistic.
 */
import { ensure } from '../runtime/errors';
import { BlockGeometry } from '../order';
import type { OracleDataset, OracleLabelSet } from './dataset';

/** A range of visible-set sizes, inclusive at both ends. */
export interface SizeBucket {
  label: string;
  lo: number;
  hi: number;
}

/**
 * |S| buckets: the empty state on its own, then 1 .. numBlocks-1 cut into
 * `count - 1` ranges of (nearly) equal width. E.g. 16 blocks, count 4:
 * |S|=0, 1-5, 6-10, 11-15.
 */
export function sizeBuckets(numBlocks: number, count = 4): SizeBucket[] {
  ensure(Number.isInteger(numBlocks) && numBlocks >= 2, `numBlocks ${numBlocks} must be a whole number >= 2`, 'sizeBuckets(numBlocks)', 'pass geo.numBlocks');
  ensure(Number.isInteger(count) && count >= 2, `count ${count} must be a whole number >= 2`, 'sizeBuckets(count)', 'ask for at least 2 buckets');
  const out: SizeBucket[] = [{ label: '|S|=0', lo: 0, hi: 0 }];
  const rest = numBlocks - 1;
  const k = Math.min(count - 1, rest);
  for (let b = 0; b < k; b++) {
    const lo = 1 + Math.floor((b * rest) / k), hi = Math.floor(((b + 1) * rest) / k);
    out.push({ label: lo === hi ? `|S|=${lo}` : `|S|=${lo}-${hi}`, lo, hi });
  }
  return out;
}

/** Index of the bucket holding size `s`, or -1. */
export function bucketOf(buckets: readonly SizeBucket[], s: number): number {
  return buckets.findIndex((b) => s >= b.lo && s <= b.hi);
}

/** Chebyshev distance between blocks a and b on the block grid. */
function dist(geo: BlockGeometry, a: number, b: number): number {
  return Math.max(Math.abs(Math.floor(a / geo.blocksX) - Math.floor(b / geo.blocksX)), Math.abs((a % geo.blocksX) - (b % geo.blocksX)));
}

/**
 * Distance from block `a` to the nearest visible block of the mask row
 * (`visible[offset + b]` = 1 for visible b); Infinity when nothing is visible.
 */
export function distanceToVisible(geo: BlockGeometry, visible: ArrayLike<number>, a: number, offset = 0): number {
  let d = Infinity;
  for (let b = 0; b < geo.numBlocks; b++) if (visible[offset + b]) d = Math.min(d, dist(geo, a, b));
  return d;
}

/** Where labels fall relative to the visible set, with the chance level of a uniformly random candidate. */
export interface LocalityStats {
  /** States counted (|S| >= 1, label present, passing the filter). */
  n: number;
  /** Share of labels touching the visible set (distance 1): interpolation. */
  local: number;
  /** Share at distance 2. */
  near2: number;
  /** Share at distance >= 2: far from the visible region. */
  far: number;
  /** Mean distance of the label to the visible set. */
  meanDistance: number;
  /** The same three numbers for a uniformly random hidden block (averaged over the same states). */
  chanceLocal: number;
  chanceFar: number;
  chanceMeanDistance: number;
  /** Share of labels at each distance 1, 2, 3, ... (index d - 1). */
  byDistance: number[];
}

/** The arrays the locality statistics read; an OracleDataset has them all. */
export interface StateArrays {
  geo: BlockGeometry;
  n: number;
  /** [n, numBlocks] visible masks. */
  visible: Uint8Array;
  /** [n] |S|. */
  size: Int32Array;
}

/**
 * Locality of `labels` (one block per state, -1 = none) over the states that
 * have |S| >= 1, a label, and pass `filter`.
 */
export function localityStats(states: StateArrays, labels: Int32Array, filter?: (i: number) => boolean): LocalityStats {
  const { geo, n, visible, size } = states;
  const nb = geo.numBlocks;
  ensure(labels.length === n, `${labels.length} labels for ${n} states`, 'localityStats(labels)', 'pass one label per state');
  let count = 0, local = 0, near2 = 0, far = 0, sumD = 0, cLocal = 0, cFar = 0, cSumD = 0;
  const hist: number[] = [];
  for (let i = 0; i < n; i++) {
    const a = labels[i];
    if (a < 0 || size[i] < 1 || (filter && !filter(i))) continue;
    const d = distanceToVisible(geo, visible, a, i * nb);
    count++;
    sumD += d;
    if (d <= 1) local++;
    else far++;
    if (d === 2) near2++;
    hist[d - 1] = (hist[d - 1] ?? 0) + 1;
    // Chance: a uniformly random hidden block of the same state.
    let m = 0, l = 0, f = 0, s = 0;
    for (let b = 0; b < nb; b++) {
      if (visible[i * nb + b]) continue;
      const db = distanceToVisible(geo, visible, b, i * nb);
      m++;
      s += db;
      if (db <= 1) l++;
      else f++;
    }
    cLocal += l / m;
    cFar += f / m;
    cSumD += s / m;
  }
  const z = (x: number) => (count > 0 ? x / count : NaN);
  return {
    n: count, local: z(local), near2: z(near2), far: z(far), meanDistance: z(sumD),
    chanceLocal: z(cLocal), chanceFar: z(cFar), chanceMeanDistance: z(cSumD),
    byDistance: Array.from(hist, (h) => z(h ?? 0)),
  };
}

/** Counts of label positions over the block grid, per |S| bucket: counts[row][col]. */
export interface LabelHeatmap {
  bucket: SizeBucket;
  n: number;
  counts: number[][];
}

export function labelHeatmaps(states: StateArrays, labels: Int32Array, buckets: readonly SizeBucket[]): LabelHeatmap[] {
  const { geo, n, size } = states;
  const maps = buckets.map((bucket) => ({ bucket, n: 0, counts: Array.from({ length: geo.blocksY }, () => new Array<number>(geo.blocksX).fill(0)) }));
  for (let i = 0; i < n; i++) {
    const a = labels[i];
    const k = bucketOf(buckets, size[i]);
    if (a < 0 || k < 0) continue;
    maps[k].n++;
    maps[k].counts[Math.floor(a / geo.blocksX)][a % geo.blocksX]++;
  }
  return maps;
}

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

/** A block-grid matrix of per-block values (NaN -> null) for a heatmap. */
export function blockGridValues(geo: BlockGeometry, values: ArrayLike<number>, offset = 0): (number | null)[][] {
  return Array.from({ length: geo.blocksY }, (_, r) => Array.from({ length: geo.blocksX }, (_, c) => {
    const v = values[offset + r * geo.blocksX + c];
    return Number.isFinite(v) ? v : null;
  }));
}

/**
 * A copy of one image ([height * width] pixels) with the hidden blocks set to
 * `fill` (default -1, background), for showing a visible state. The image is
 * cut into the geometry's block grid (pixels per token = height / gridH).
 */
export function hideBlocks(geo: BlockGeometry, image: Float32Array, height: number, width: number, visible: ArrayLike<number>, offset = 0, fill = -1): Float32Array {
  ensure(image.length === height * width && height % geo.gridH === 0 && width % geo.gridW === 0,
    `image of ${image.length} pixels is not ${height}x${width} with a multiple of the ${geo.gridH}x${geo.gridW} token grid`, 'hideBlocks(image)', 'pass one decoded image with its height and width');
  const ph = (height / geo.gridH) * geo.blockH, pw = (width / geo.gridW) * geo.blockW;
  const out = image.slice();
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const b = Math.floor(y / ph) * geo.blocksX + Math.floor(x / pw);
      if (!visible[offset + b]) out[y * width + x] = fill;
    }
  }
  return out;
}

/** One row of the locality table: a labeling's u or u_extrap labels. */
export interface LocalityRow extends LocalityStats {
  reading: string;
  weight: string;
  /** 'u' (a*) or 'u_extrap' (a*_extrap). */
  target: 'u' | 'u_extrap';
  primary: boolean;
}

/**
 * Locality of every labeling of a dataset, for u and for u_extrap, over the
 * states every labeling has (so rows compare like with like), optionally by
 * |S| bucket. u does not depend on w: its rows repeat per weight only when
 * readings differ, so u rows are given once per reading.
 */
export function localityTable(ds: OracleDataset, filter?: (i: number) => boolean): LocalityRow[] {
  return perLabelTarget(ds, filter, (l, target, labels, f) => ({ reading: l.reading, weight: target === 'u' ? '(none: u)' : l.weight,
    target, primary: l.primary, ...localityStats(ds, labels, f) }));
}

/**
 * One row per (labeling, target) over the states every labeling has: u once per
 * reading (it does not depend on w), then u_extrap for every labeling.
 */
function perLabelTarget<R>(ds: OracleDataset, filter: ((i: number) => boolean) | undefined,
  row: (l: OracleDataset['labelings'][number], target: 'u' | 'u_extrap', labels: Int32Array, f: (i: number) => boolean) => R): R[] {
  const common = commonMask(ds);
  const f = (i: number) => common[i] === 1 && (!filter || filter(i));
  const rows: R[] = [];
  const seenU = new Set<string>();
  for (const l of ds.labelings) {
    if (!seenU.has(l.reading)) {
      seenU.add(l.reading);
      rows.push(row(l, 'u', l.aStar, f));
    }
    rows.push(row(l, 'u_extrap', l.aStarExtrap, f));
  }
  return rows;
}

/** 1 for states that every labeling has. */
export function commonMask(ds: OracleDataset): Uint8Array {
  const m = new Uint8Array(ds.n).fill(1);
  for (const l of ds.labelings) for (let i = 0; i < ds.n; i++) if (!l.has[i]) m[i] = 0;
  return m;
}

/** An agreement row between two sets of labels. */
export interface AgreementRow {
  what: string;
  a: string;
  b: string;
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
  return { what, a: labelName(la, ta), b: labelName(lb, tb), n: ag.n, agree: ag.agree, top3: ua.topK, spearman: ua.meanSpearman, chance: chanceAgreement(ds, mask) };
}

/**
 * Agreement rows: u vs u_extrap for every labeling; each compare labeling
 * against the primary (same target); readings against each other.
 */
export function agreementTable(ds: OracleDataset): AgreementRow[] {
  const rows: AgreementRow[] = [];
  const [p, ...others] = ds.labelings;
  for (const l of ds.labelings) rows.push(agreementRow(ds, 'u vs u_extrap', l, 'u', l, 'u_extrap'));
  for (const l of others) {
    if (l.reading !== p.reading) {
      rows.push(agreementRow(ds, 'one-step vs teacher-forced', p, 'u', l, 'u'));
      if (l.weight === p.weight) rows.push(agreementRow(ds, 'one-step vs teacher-forced', p, 'u_extrap', l, 'u_extrap'));
    } else if (l.weight !== p.weight) {
      rows.push(agreementRow(ds, 'weight vs weight', p, 'u_extrap', l, 'u_extrap'));
    }
  }
  return rows;
}

/**
 * How much of u is the candidate's *own* loss. With L_rest summed over all of
 * R, u(a | S) = Σ_{j ∈ a} l_j(S) + Σ_{j ∈ R \ a} [l_j(S) - l_j(S ∪ {a})]: the
 * first term rewards revealing the block that is hardest to predict itself,
 * the second is the future-context value u_extrap (w = uniform) measures.
 * From the primary labeling's stored l_j(S), over states with >= 2 candidates.
 */
export interface OwnLossStats {
  n: number;
  /** Share of states where a* is the hidden block with the largest own loss Σ_{j∈a} l_j(S). */
  aStarIsMaxOwnLoss: number;
  /** The same for a*_extrap (primary weight). */
  aStarExtrapIsMaxOwnLoss: number;
  /** Mean share of u(a*) that is a*'s own loss. */
  ownShareOfU: number;
  /** Agreement of a uniformly random hidden block with the max-own-loss block (mean 1 / candidates). */
  chance: number;
}

export function ownLossStats(ds: OracleDataset): OwnLossStats {
  const { geo } = ds;
  const nb = geo.numBlocks, T = geo.numTokens;
  const p = ds.labelings[0];
  // Cells of each block, raster inside the block.
  const cells: number[][] = Array.from({ length: nb }, (_, b) => {
    const r0 = Math.floor(b / geo.blocksX) * geo.blockH, c0 = (b % geo.blocksX) * geo.blockW;
    const out: number[] = [];
    for (let r = 0; r < geo.blockH; r++) for (let c = 0; c < geo.blockW; c++) out.push((r0 + r) * geo.gridW + c0 + c);
    return out;
  });
  let n = 0, same = 0, sameX = 0, share = 0, chance = 0;
  for (let i = 0; i < ds.n; i++) {
    const candidates = nb - ds.size[i];
    if (candidates < 2 || p.aStar[i] < 0) continue;
    let best = -1, bestV = -Infinity;
    const own = new Float64Array(nb);
    for (let b = 0; b < nb; b++) {
      if (ds.visible[i * nb + b]) continue;
      for (const c of cells[b]) own[b] += ds.tokenLoss[i * T + c];
      if (own[b] > bestV) {
        bestV = own[b];
        best = b;
      }
    }
    n++;
    if (best === p.aStar[i]) same++;
    if (best === p.aStarExtrap[i]) sameX++;
    const u = p.u[i * nb + p.aStar[i]];
    if (u !== 0 && Number.isFinite(u)) share += own[p.aStar[i]] / u;
    chance += 1 / candidates;
  }
  const z = (x: number) => (n > 0 ? x / n : NaN);
  return { n, aStarIsMaxOwnLoss: z(same), aStarExtrapIsMaxOwnLoss: z(sameX), ownShareOfU: z(share), chance: z(chance) };
}

/** Where labels sit in the teacher-forced reading's reference order (raster over the remaining blocks). */
export interface ReferenceRankRow {
  reading: string;
  weight: string;
  target: 'u' | 'u_extrap';
  n: number;
  /** Mean rank of the label among the hidden blocks in ascending (raster) order, scaled to 0 = first, 1 = last; chance 0.5. */
  meanRank: number;
}

/**
 * Mean normalised reference-order rank of a label over states with >= 2
 * candidates (and `filter`). The teacher-forced reading decodes R in raster
 * block order, so a block early in that order already serves as context for
 * most of R in l_j(S): revealing it first changes little. A mean rank far
 * above 0.5 shows that reference order, not the image, steers the label.
 */
export function referenceRank(states: StateArrays, labels: Int32Array, filter?: (i: number) => boolean): { n: number; meanRank: number } {
  const nb = states.geo.numBlocks;
  let n = 0, sum = 0;
  for (let i = 0; i < states.n; i++) {
    const a = labels[i];
    const candidates = nb - states.size[i];
    if (a < 0 || candidates < 2 || (filter && !filter(i))) continue;
    let rank = 0;
    for (let b = 0; b < a; b++) if (!states.visible[i * nb + b]) rank++;
    n++;
    sum += rank / (candidates - 1);
  }
  return { n, meanRank: n > 0 ? sum / n : NaN };
}

/** referenceRank of u and u_extrap for every labeling (states every labeling has), like localityTable. */
export function referenceRankTable(ds: OracleDataset, filter?: (i: number) => boolean): ReferenceRankRow[] {
  return perLabelTarget(ds, filter, (l, target, labels, f) => ({ reading: l.reading, weight: target === 'u' ? '(none: u)' : l.weight,
    target, ...referenceRank(ds, labels, f) }));
}

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(0)}%` : 'n/a');
const signed = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(0)}`;

/** Locality rows of a subset of states (e.g. early states, small |S|) and how to name that subset. */
export interface LocalitySubset {
  /** e.g. '|S| = 1-5'. */
  label: string;
  rows: LocalityRow[];
}

/**
 * "What this run showed": Markdown bullet lines computed from the locality
 * and agreement tables. Says, for u and for u_extrap under each weight,
 * whether the label mostly touches the visible region or lies far from it,
 * against a uniformly random hidden block, and how w shifts that. With
 * `early` (the same rows over small |S|, where chance is far from 100%), each
 * line also gives that subset's numbers, and the conclusion rests on them.
 * With `own` (ownLossStats), one line says how much of u is the candidate's
 * own loss; with `ranks` (referenceRankTable), one line says whether the
 * teacher-forced reading's reference order pulls the labels.
 */
export function oracleFindings(locality: readonly LocalityRow[], agreement: readonly AgreementRow[], early?: LocalitySubset, own?: OwnLossStats,
  ranks?: readonly ReferenceRankRow[]): string[] {
  const lines: string[] = [];
  const key = (r: LocalityRow) => `${r.reading}|${r.target}|${r.weight}`;
  const earlyOf = new Map((early?.rows ?? []).map((r) => [key(r), r] as const));
  const tendency = (r: LocalityRow) => {
    const lift = r.local - r.chanceLocal;
    if (!Number.isFinite(lift)) return 'no states to compare';
    return Math.abs(lift) < 0.05 ? `about as often as a random hidden block (${pct(r.chanceLocal)})`
      : lift > 0 ? `more often than a random hidden block (${pct(r.chanceLocal)})` : `less often than a random hidden block (${pct(r.chanceLocal)})`;
  };
  for (const r of locality) {
    const name = r.target === 'u' ? `**a\\* = argmax u** (${r.reading})` : `**argmax u_extrap, w = ${r.weight}** (${r.reading})`;
    let line = `- ${name}: ${pct(r.local)} of labels touch the visible region (block distance 1), ${tendency(r)}; ${pct(r.far)} lie at distance >= 2 (chance ${pct(r.chanceFar)}); mean distance ${r.meanDistance.toFixed(2)} vs ${r.chanceMeanDistance.toFixed(2)} (n = ${r.n})`;
    const e = earlyOf.get(key(r));
    if (e && early) line += `; for ${early.label}: ${pct(e.local)} local vs ${pct(e.chanceLocal)} by chance (n = ${e.n})`;
    lines.push(`${line}.`);
  }
  const basis = (r: LocalityRow): LocalityRow => earlyOf.get(key(r)) ?? r;
  const uRow = locality.find((r) => r.primary && r.target === 'u');
  if (uRow) {
    const b = basis(uRow);
    const where = earlyOf.has(key(uRow)) && early ? ` in the states with ${early.label}` : '';
    const lift = b.local - b.chanceLocal;
    const mostly = b.local >= 0.5 ? 'mostly blocks that touch the visible region' : 'mostly blocks away from the visible region';
    // Binomial standard error of the chance share over n states: a lift within 2 se is noise.
    const se = Math.sqrt(Math.max(b.chanceLocal * (1 - b.chanceLocal), 1e-12) / Math.max(b.n, 1));
    const vsChance = Math.abs(lift) < Math.max(0.05, 2 * se)
      ? `no clear difference from a random hidden block (2 standard errors at n = ${b.n}: ${signed(2 * se)} points)`
      : lift > 0 ? 'more than a random hidden block would: it prefers interpolating next to what is visible'
        : 'less than a random hidden block would: it prefers blocks away from the visible region';
    lines.push(`- **Overall**: the oracle a* (${uRow.reading}) picks ${mostly}${where}: ${pct(b.local)} local against ${pct(b.chanceLocal)} for a random hidden block, ${signed(lift)} points — ${vsChance}.`);
    const extraps = locality.filter((r) => r.target === 'u_extrap' && r.reading === uRow.reading);
    if (extraps.length > 0) {
      const parts = extraps.map((r) => `w = ${r.weight}: ${pct(basis(r).local)} local (${signed(basis(r).local - b.local)} points vs u)`);
      const farthest = extraps.reduce((x, y) => (basis(y).meanDistance > basis(x).meanDistance ? y : x));
      lines.push(`- **How w changes it**${where}: ${parts.join('; ')}. The label reaching farthest is u_extrap with w = ${farthest.weight} (mean distance ${basis(farthest).meanDistance.toFixed(2)} vs ${b.meanDistance.toFixed(2)} for u).`);
    }
  }
  if (own && uRow && own.n > 0) {
    const dominated = own.aStarIsMaxOwnLoss - own.chance > 0.3 && own.ownShareOfU > 0.5;
    lines.push(`- **What drives u**: in ${pct(own.aStarIsMaxOwnLoss)} of ${own.n} states a* is simply the hidden block with the largest loss of its *own* tokens (chance ${pct(own.chance)}), and that own loss makes up ${pct(own.ownShareOfU)} of u(a*) on average; a*_extrap (w = ${locality.find((r) => r.primary && r.target === 'u_extrap')?.weight ?? '?'}) coincides with it in ${pct(own.aStarExtrapIsMaxOwnLoss)}. ` +
      (dominated ? 'So u mostly rewards revealing the hardest block itself, not the block that helps the rest: u_extrap, which drops that term, is the label that measures future-context value.'
        : 'The own-loss term does not dominate u here.'));
  }
  if (ranks && ranks.length > 0) {
    const shown = ranks.map((r) => `${r.target === 'u' ? 'u' : `u_extrap w = ${r.weight}`} (${r.reading}) ${r.meanRank.toFixed(2)}`);
    const biased = ranks.filter((r) => r.reading === 'teacher-forced' && Math.abs(r.meanRank - 0.5) > 0.1);
    lines.push(`- **Reference-order check** (mean rank of the label among the hidden blocks in raster block order, 0 = first, 1 = last, chance 0.50): ${shown.join('; ')}.` +
      (biased.length > 0
        ? ` The teacher-forced reading decodes R in raster block order, so blocks early in that order already serve as context for the rest of R; labels at rank ${biased.map((r) => r.meanRank.toFixed(2)).join(' / ')} mean that order, not only the image, steers them (${biased.map((r) => (r.target === 'u' ? 'u' : `u_extrap w = ${r.weight}`)).join(', ')}).`
        : ' No label is pulled toward either end of the reference order by more than 0.1.'));
  }
  for (const a of agreement) {
    lines.push(`- ${a.what}: ${a.a} and ${a.b} pick the same block in ${pct(a.agree)} of ${a.n} states (chance ${pct(a.chance)}); top-3 ${pct(a.top3)}, mean Spearman ${Number.isFinite(a.spearman) ? a.spearman.toFixed(2) : 'n/a'}.`);
  }
  return lines;
}
