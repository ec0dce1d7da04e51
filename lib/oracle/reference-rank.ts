/**
 * The reference-order check (notebook 03_stage2_oracle): where the labels sit
 * in the raster block order the teacher-forced reading decodes the unseen
 * blocks in, per state set and as a table over the dataset's labelings, with
 * a bootstrap interval over images, so that every reading can be read
 * against chance (0.5).
 */
import type { OracleDataset } from './dataset';
import { StateArrays, meanOverImages } from './analysis';
import { perLabelTarget } from './labeling-rows';

/** Where labels sit in the teacher-forced reading's reference order (raster over the remaining blocks). */
export interface ReferenceRankRow {
  reading: string;
  weight: string;
  target: 'u' | 'u_extrap';
  /** True for the primary labeling's rows. */
  primary: boolean;
  n: number;
  /** Mean rank of the label among the hidden blocks in ascending (raster) order, scaled to 0 = first, 1 = last; chance 0.5. */
  meanRank: number;
  /** 95% percentile bootstrap interval of meanRank over images (IMAGE_BOOTSTRAP). */
  lo: number;
  hi: number;
  /** Images behind the n states. */
  images: number;
}

/**
 * The normalised reference-order rank of each state's label (0 = the first
 * hidden block in raster order, 1 = the last), NaN for states not counted:
 * fewer than 2 candidates, no label, or failing `filter`. The teacher-forced
 * reading decodes R in raster block order, so a block early in that order
 * already serves as context for most of R in l_j(S): revealing it first
 * changes little. A mean rank far above 0.5 shows that reference order, not
 * the image, steers the label; order-free readings should sit near 0.5.
 */
export function referenceRanks(states: StateArrays, labels: Int32Array, filter?: (i: number) => boolean): Float64Array {
  const nb = states.geo.numBlocks;
  const out = new Float64Array(states.n).fill(NaN);
  for (let i = 0; i < states.n; i++) {
    const a = labels[i];
    const candidates = nb - states.size[i];
    if (a < 0 || candidates < 2 || (filter && !filter(i))) continue;
    let rank = 0;
    for (let b = 0; b < a; b++) if (!states.visible[i * nb + b]) rank++;
    out[i] = rank / (candidates - 1);
  }
  return out;
}

/** Mean of referenceRanks over the counted states. */
export function referenceRank(states: StateArrays, labels: Int32Array, filter?: (i: number) => boolean): { n: number; meanRank: number } {
  let n = 0, sum = 0;
  for (const r of referenceRanks(states, labels, filter)) {
    if (Number.isNaN(r)) continue;
    n++;
    sum += r;
  }
  return { n, meanRank: n > 0 ? sum / n : NaN };
}

/**
 * Mean reference-order rank of u and u_extrap for every labeling (states every
 * labeling has: the compare subset when there are compare labelings, so the
 * readings are read on the same states), with its bootstrap interval over images.
 */
export function referenceRankTable(ds: OracleDataset, filter?: (i: number) => boolean): ReferenceRankRow[] {
  return perLabelTarget(ds, filter, (l, target, labels, f) => {
    const weight = target === 'u' ? '(none: u)' : l.weight;
    const m = meanOverImages(referenceRanks(ds, labels, f), ds.image, `oracle/reference-rank/${l.reading}/${target}/${weight}`);
    return { reading: l.reading, weight, target, primary: l.primary, n: m.n, meanRank: m.mean, lo: m.lo, hi: m.hi, images: m.images };
  });
}
