/**
 * Curriculum Stage 2: how the states (visible block sets S) of an oracle
 * dataset are drawn. Deterministic, and independent of sharding:
 * - state s of image i (s = 0 .. statesPerImage-1) has size
 *   |S| = (i · statesPerImage + s) mod numBlocks, so sizes cycle evenly over
 *   0 .. numBlocks-1 across the dataset (each image covers all sizes when
 *   statesPerImage is a multiple of numBlocks; otherwise consecutive images
 *   continue the cycle where the previous one stopped);
 * - S is the first |S| blocks of a uniformly random block order drawn from
 *   `rng(seedFrom(seed, 'oracle-state', i, s))`, so the visible set is a
 *   uniform random subset of that size, and its reveal sequence (the order of
 *   that prefix) is stored too.
 */
import { rng, seedFrom } from '../runtime/seed';
import { BlockGeometry, randomBlockOrder } from '../order';
import type { OracleDatasetConfig } from './dataset-config';

/** The rule above in one line, recorded in every manifest (`stateSampling`). */
export const STATE_SAMPLING_RULE =
  "state s of image i: |S| = (i * statesPerImage + s) mod numBlocks; S = the first |S| blocks of randomBlockOrder(geo, rng(seedFrom(seed, 'oracle-state', i, s))), stored in that reveal order";

/** |S| of state s of image i: cycles over 0 .. numBlocks-1 across the dataset. */
export function stateSize(cfg: Pick<OracleDatasetConfig, 'statesPerImage'>, numBlocks: number, image: number, s: number): number {
  return (image * cfg.statesPerImage + s) % numBlocks;
}

/** The reveal sequence (visible blocks in reveal order) of state s of image i; deterministic. */
export function stateSequence(cfg: Pick<OracleDatasetConfig, 'statesPerImage' | 'seed'>, geo: BlockGeometry, image: number, s: number): number[] {
  const size = stateSize(cfg, geo.numBlocks, image, s);
  return randomBlockOrder(geo, rng(seedFrom(cfg.seed, 'oracle-state', image, s))).slice(0, size);
}
