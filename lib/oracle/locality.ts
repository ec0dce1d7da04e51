/**
 * Locality of the oracle labels (notebook 03_stage2_oracle): whether a label
 * touches the visible region (interpolation, block distance 1) or lies far
 * from it, against the chance level of a uniformly random candidate, per
 * state set and as a table over the dataset's labelings.
 *
 * Distances are Chebyshev distances on the block grid (`blockDistance`): 1 =
 * one of the 8 neighbouring blocks. The distance of a candidate to the visible
 * set is its distance to the nearest visible block; empty states (|S| = 0)
 * have no visible set and are left out of every locality statistic.
 */
import { ensure } from '../runtime/errors';
import { BlockGeometry } from '../order';
import type { OracleDataset } from './dataset';
import { StateArrays } from './analysis';
import { perLabelTarget } from './labeling-rows';

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
