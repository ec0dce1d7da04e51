/**
 * The walk over a dataset's labelings that the locality and reference-rank
 * tables share: one row per (labeling, target), over the states every
 * labeling has. Not part of the public API (lib/oracle/index.ts does not
 * export this file).
 */
import type { OracleDataset } from './dataset';
import { commonMask } from './analysis';

/**
 * One row per (labeling, target) over the states every labeling has: u once per
 * reading (it does not depend on w), then u_extrap for every labeling.
 */
export function perLabelTarget<R>(ds: OracleDataset, filter: ((i: number) => boolean) | undefined,
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
