/**
 * Where the oracle label falls on the block grid (notebook 03_stage2_oracle):
 * counts of label positions per |S| bucket, for heatmaps.
 */
import { SizeBucket, StateArrays, bucketOf } from './analysis';

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
