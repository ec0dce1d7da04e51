/**
 * Analysis of an oracle dataset (notebook 03_stage2_oracle), all computed from
 * the stored arrays. This file holds what the analyses share: the per-state
 * arrays they read, the |S| buckets they break results down by, and the
 * states every labeling has. The analyses, one question per file:
 * - where the oracle label a* falls on the block grid, by |S| bucket:
 *   label-heatmaps.ts;
 * - whether it touches the visible region (interpolation, block distance 1)
 *   or lies far from it, against the chance level of a uniformly random
 *   candidate: locality.ts;
 * - how much two labelings agree (u vs u_extrap, one reading vs another,
 *   weights): agreement.ts;
 * - how much of u is the candidate's own loss, per reading: own-loss.ts;
 * - whether the teacher-forced reading's reference order steers the label,
 *   per reading with a bootstrap interval: reference-rank.ts;
 * - the "what this run showed" text from those numbers: findings.ts.
 * Views of single states for the figures are in state-views.ts.
 *
 * Readings are compared on the same states: the compare subset, where every
 * labeling exists (`readingLabelings`); intervals are percentile bootstraps
 * over images (`meanOverImages`).
 */
import { ensure } from '../runtime/errors';
import { BlockGeometry } from '../order';
import { summarizeRatio } from '../eval/summary';
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

/** The arrays the locality statistics read; an OracleDataset has them all. */
export interface StateArrays {
  geo: BlockGeometry;
  n: number;
  /** [n, numBlocks] visible masks. */
  visible: Uint8Array;
  /** [n] |S|. */
  size: Int32Array;
}

/** 1 for states that every labeling has. */
export function commonMask(ds: OracleDataset): Uint8Array {
  const m = new Uint8Array(ds.n).fill(1);
  for (const l of ds.labelings) for (let i = 0; i < ds.n; i++) if (!l.has[i]) m[i] = 0;
  return m;
}

/**
 * One labeling per reading present, to compare readings with each other: the
 * one with the primary's weight (so u_extrap differs only by the reading),
 * else the reading's first; the primary's reading first, then dataset order.
 * `mask` holds the states all of them have (the compare subset).
 */
export function readingLabelings(ds: OracleDataset): { labelings: OracleLabelSet[]; mask: Uint8Array } {
  const w = ds.labelings[0].weight;
  const readings = [...new Set(ds.labelings.map((l) => l.reading))];
  const labelings = readings.map((r) => ds.labelings.find((l) => l.reading === r && l.weight === w) ?? ds.labelings.find((l) => l.reading === r)!);
  const mask = new Uint8Array(ds.n).fill(1);
  for (const l of labelings) for (let i = 0; i < ds.n; i++) if (!l.has[i]) mask[i] = 0;
  return { labelings, mask };
}

/** A mean over states with its bootstrap interval over images. */
export interface ImageBootstrapMean {
  /** States counted (finite values). */
  n: number;
  /** Images they come from: the bootstrap's units. */
  images: number;
  mean: number;
  lo: number;
  hi: number;
  level: number;
}

/** How `meanOverImages` intervals are made, for captions. */
export const IMAGE_BOOTSTRAP = 'percentile bootstrap over images (1000 resamples; the states of an image are resampled together)';

/**
 * Mean of per-state `values` (NaN = state not counted) with a percentile
 * bootstrap interval over images: the states of one image share its tokens,
 * so they are not independent draws; resampling whole images keeps that
 * dependence in the interval. Images with more counted states weigh more, as
 * in the mean itself (a ratio of sums per image, summarizeRatio). Seeded.
 */
export function meanOverImages(values: ArrayLike<number>, image: ArrayLike<number>, seed: string, level = 0.95, reps = 1000): ImageBootstrapMean {
  ensure(values.length === image.length, `${values.length} values for ${image.length} states`, 'meanOverImages(values, image)', 'pass one value per state (NaN to skip it) and ds.image');
  const unit = new Map<number, number>();
  const sum: number[] = [], count: number[] = [];
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) continue;
    let k = unit.get(image[i]);
    if (k === undefined) {
      k = sum.length;
      unit.set(image[i], k);
      sum.push(0);
      count.push(0);
    }
    sum[k] += values[i];
    count[k]++;
    n++;
  }
  if (n === 0) return { n: 0, images: 0, mean: NaN, lo: NaN, hi: NaN, level };
  const s = summarizeRatio(sum, count, reps, seed, level);
  return { n, images: sum.length, mean: s.mean, lo: s.lo, hi: s.hi, level };
}
