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
 * A dataset with `explicitStates` (the on-policy rounds' states, which a
 * planner visited: lib/planner/on-policy.ts) takes its states from that list
 * instead; sizes and draws above do not apply to it.
 */
import { rng, seedFrom } from '../runtime/seed';
import { ensure } from '../runtime/errors';
import { BlockGeometry, randomBlockOrder } from '../order';
import type { OracleDatasetConfig } from './dataset-config';

/** The rule above in one line, recorded in every manifest (`stateSampling`). */
export const STATE_SAMPLING_RULE =
  "state s of image i: |S| = (i * statesPerImage + s) mod numBlocks; S = the first |S| blocks of randomBlockOrder(geo, rng(seedFrom(seed, 'oracle-state', i, s))), stored in that reveal order";

/** |S| of state s of image i: cycles over 0 .. numBlocks-1 across the dataset. */
export function stateSize(cfg: Pick<OracleDatasetConfig, 'statesPerImage'>, numBlocks: number, image: number, s: number): number {
  return (image * cfg.statesPerImage + s) % numBlocks;
}

/** What the manifest says of a dataset with given states (`stateSampling`). */
export const explicitStatesRule = (source: string): string =>
  `given states (${source}): state s of image i = explicitStates.sequences[i * statesPerImage + s], in that reveal order`;

/** The reveal sequence (visible blocks in reveal order) of state s of image i; deterministic. */
export function stateSequence(cfg: Pick<OracleDatasetConfig, 'statesPerImage' | 'seed' | 'explicitStates'>, geo: BlockGeometry, image: number, s: number): number[] {
  if (cfg.explicitStates) {
    const q = cfg.explicitStates.sequences[image * cfg.statesPerImage + s];
    ensure(Array.isArray(q) && q.length < geo.numBlocks && new Set(q).size === q.length && q.every((b) => Number.isInteger(b) && b >= 0 && b < geo.numBlocks),
      `state ${s} of image ${image} is ${JSON.stringify(q)}, not fewer than ${geo.numBlocks} distinct blocks of 0..${geo.numBlocks - 1}`,
      'oracle.explicitStates.sequences', 'give reveal sequences of this block grid with at least one block left unseen');
    return q.slice();
  }
  const size = stateSize(cfg, geo.numBlocks, image, s);
  return randomBlockOrder(geo, rng(seedFrom(cfg.seed, 'oracle-state', image, s))).slice(0, size);
}
