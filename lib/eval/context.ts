/**
 * What every evaluation setting is measured against: the decoder, the feature
 * network, the real test images' feature statistics and the held-out test
 * split (EvalContext); and where a profile's evaluation report lives.
 */
import * as path from 'node:path';
import { BlockGeometry } from '../order';
import { ensure } from '../runtime/errors';
import { activeProfile, ProfileName } from '../runtime/profile';
import { rng, seedFrom } from '../runtime/seed';
import { FeatureNet, FeatureNetOutputs } from './feature-net';
import { ReferenceStats, referenceStats } from './frechet';

/** Where a profile's evaluation report lives: `<runRoot>/eval-<profile>` (tables under `tables/`). */
export function evalReportDir(runRoot: string, profile: ProfileName = activeProfile()): string {
  return path.join(runRoot, `eval-${profile}`);
}

/** Statistics of the real test images under the feature network, computed once and shared by every setting. */
export interface RealFeatureStats {
  /** Pool (FID) features. */
  pool: ReferenceStats;
  /** Spatial (sFID) features. */
  spatial: ReferenceStats;
  /** A seeded subset of the pool rows for precision / recall ([prRows * poolDim]). */
  prRows: Float32Array;
  poolDim: number;
  spatialDim: number;
  classes: number;
  /** Real images behind the statistics. */
  n: number;
}

/**
 * RealFeatureStats of real images' feature-net outputs (featureNetOutputs of
 * the test split): both covariances with their square roots, and `prRows`
 * rows (default 1,000, a seeded subset when there are more) for
 * precision / recall.
 */
export function realFeatureStats(outputs: FeatureNetOutputs, opts: { prRows?: number; seed?: number } = {}): RealFeatureStats {
  ensure(outputs && outputs.n >= 2, `needs at least 2 real images, got ${outputs?.n}`, 'realFeatureStats(outputs)', 'pass featureNetOutputs(net, testImages) of the test split');
  const want = Math.min(outputs.n, opts.prRows ?? 1000);
  const idx = Array.from({ length: outputs.n }, (_, i) => i);
  if (want < outputs.n) rng(seedFrom(opts.seed ?? 0, 'eval-pr-real-rows')).shuffle(idx);
  const d = outputs.poolDim;
  const prRows = new Float32Array(want * d);
  for (let i = 0; i < want; i++) prRows.set(outputs.pool.subarray(idx[i] * d, (idx[i] + 1) * d), i * d);
  return {
    pool: referenceStats(outputs.pool, outputs.poolDim), spatial: referenceStats(outputs.spatial, outputs.spatialDim), prRows,
    poolDim: outputs.poolDim, spatialDim: outputs.spatialDim, classes: outputs.classes, n: outputs.n,
  };
}

/** What every setting is evaluated against. */
export interface EvalContext {
  /** Tokens [N * T] -> images [N * H * W] in [-1, 1] (a VqTokenizer, or any object with decode). */
  tokenizer: { decode(tokens: Int32Array): Float32Array };
  featureNet: FeatureNet;
  /** realFeatureStats of the real test images. */
  realStats: RealFeatureStats;
  /** Token cache test split: grids [N * T] and labels [N] (held out from every training stage). */
  testTokens: Int32Array;
  testLabels: Int32Array;
  /** The block geometry of the block settings (e.g. 8 x 8 tokens, 2 x 2 blocks). */
  geo: BlockGeometry;
}
