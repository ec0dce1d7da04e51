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
 * - how much two labelings agree (u vs u_extrap, one-step vs teacher-forced,
 *   weights): agreement.ts;
 * - how much of u is the candidate's own loss: own-loss.ts;
 * - whether the teacher-forced reading's reference order steers the label:
 *   reference-rank.ts;
 * - the "what this run showed" text from those numbers: findings.ts.
 * Views of single states for the figures are in state-views.ts.
 */
import { ensure } from '../runtime/errors';
import { BlockGeometry } from '../order';
import type { OracleDataset } from './dataset';

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
