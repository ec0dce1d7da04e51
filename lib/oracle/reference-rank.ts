/**
 * The reference-order check (notebook 03_stage2_oracle): where the labels sit
 * in the raster block order the teacher-forced reading decodes the unseen
 * blocks in, per state set and as a table over the dataset's labelings.
 */
import type { OracleDataset } from './dataset';
import { StateArrays } from './analysis';
import { perLabelTarget } from './labeling-rows';

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
