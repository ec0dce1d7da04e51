/**
 * The weighting w(j, a) of the extrapolative utility (METHOD.md sections 3 and
 * 4, Algorithm 2):
 *
 *     u_extrap(a | S) = Σ_{j ∈ R \ a}  w(j, a) · [ l_j(S) - l_j(S ∪ {a}) ]
 *
 * Every weight starts from a *raw weight* w̃(d), a named function of one
 * number: the block distance d between the block that holds token j and the
 * candidate block a, the Chebyshev distance on the block grid (`blockDistance`
 * in lib/order: 1 for the 8 neighbouring blocks, 2 for the ring around them,
 * ...). Since j ∈ R \ a, d >= 1.
 *
 * Summed weights (w = w̃; their value grows with the number of unseen blocks
 * the candidate has at the weighted distances):
 * - `uniform`:        w̃ = 1. Then u_extrap is the loss drop on the *other*
 *                     unseen tokens (u minus the loss of a's own tokens).
 * - `no-neighbours`:  w̃ = 0 for d <= 1 (a's 8 neighbouring blocks), 1
 *                     beyond. Interpolating next to a revealed block is easy
 *                     and local; this counts far-context gain only.
 * - `distance`:       w̃ = d (linear in the Chebyshev block distance, not
 *                     normalised: 1 for neighbours, 2, 3, ... further out).
 *                     Down-weights adjacent tokens relative to far ones
 *                     without dropping them. Dividing by the grid's largest
 *                     distance would rescale every u_extrap of a geometry by
 *                     one constant and change no label (argmax), so we keep
 *                     the plain integer weights.
 *
 * Mean weights (normalised per candidate *and state*): w̃ divided by its sum
 * over the other unseen blocks, Z(a, S) = Σ_{B ∈ R \ a} w̃(d(B, a)), so that
 * u_extrap is a (weighted) mean gain per unseen block, not a sum:
 * - `no-neighbours-mean`: w = 1[d >= 2] / |far unseen blocks of a|, the mean
 *                     far-context gain per far unseen block.
 * - `distance-mean`:  w = d / Σ_{B ∈ R \ a} d(B, a), the distance-weighted
 *                     mean gain per unseen block.
 * With Z = 0 (no unseen block at a weighted distance, e.g. every far block
 * already visible) all weights of a are 0 and u_extrap(a | S) = 0, as with the
 * summed weight.
 *
 * Why the mean weights: with a summed weight the value counts blocks. On the
 * 4 x 4 block grid with nothing visible, a corner block has 12 unseen blocks
 * at distance >= 2, an edge block 10, a centre block 7 (and `distance` sums
 * 34, 29 and 22). So even when every far block gains the same, the summed
 * weights label the border: a *count prior*. In the default run the far share
 * of the realised utility was only 1-4%, so a*_extrap under `no-neighbours`
 * was the argmax of a small quantity plus that prior, and the planner trained
 * on it learned an outside-in order (corners at mean positions 4-5, centre
 * blocks at 10-13), close to spiral-in, the worst fixed order in RAR's
 * ablation. A mean weight gives every candidate the same value under equal
 * gain per block (its count term, `countTerm`, is 1 for every candidate with
 * a weighted unseen block), so what is left to pick the label is the image.
 * `labelPositionTable` (label-positions.ts) measures how far each weight's
 * labels sit from its count prior.
 */
import { oneOf } from '../runtime/errors';
import { BlockGeometry, blockDistance } from '../order';

export type WeightName = 'uniform' | 'no-neighbours' | 'distance' | 'no-neighbours-mean' | 'distance-mean';

/** The named weightings, in the order notebooks show them (the summed ones, then their means). */
export const WEIGHTS: readonly WeightName[] = Object.freeze(['uniform', 'no-neighbours', 'distance', 'no-neighbours-mean', 'distance-mean'] as const);

/**
 * The weight of the primary labeling: the oracle dataset's `weight` default
 * (dataset-config.ts) and the weight a planner config expects of its dataset
 * (planner.weight, lib/planner/train.ts). Switching the primary weight is this
 * one line; old oracle datasets record the weight they were built with
 * (manifest.json, labelings.primary.weight), and a planner refuses one whose
 * weight differs from its config's.
 */
// The mean far gain: under the summed 'no-neighbours' the last default run's planner learned the count prior's outside-in
// order (corners first, fig-06-01 of docs/results before 2026-12-07); notebook 03's label-position table checks it each run.
export const PRIMARY_WEIGHT: WeightName = 'no-neighbours-mean';

/** The mean weights and the summed weight whose raw weight each normalises. */
const MEAN_OF: Readonly<Partial<Record<WeightName, WeightName>>> = Object.freeze({ 'no-neighbours-mean': 'no-neighbours', 'distance-mean': 'distance' });

/** True for the weights normalised per candidate and state (the `-mean` weights). */
export const isMeanWeight = (name: WeightName): boolean => MEAN_OF[name] !== undefined;

/**
 * The raw weight w̃ as a function of the block distance between j's block and
 * a (see the file comment). For the summed weights it is w; for the mean
 * weights it is w before the per-candidate division (`candidateWeights`).
 */
export function blockWeight(name: WeightName, distance: number): number {
  switch (MEAN_OF[name] ?? name) {
    case 'uniform': return 1;
    case 'no-neighbours': return distance <= 1 ? 0 : 1;
    case 'distance': return distance;
    default: return oneOf(name as string, WEIGHTS, 'oracle.weight') as never;
  }
}

/** A weight on a geometry: the raw weights of every (candidate, block) pair, and whether they are divided per candidate and state. */
export interface BlockWeights {
  name: WeightName;
  numBlocks: number;
  /** `raw[a * numBlocks + b]` = w̃ for a token in block b and the candidate block a. */
  raw: Float64Array;
  /** True for the mean weights (divided by Z(a, S), `candidateWeights`). */
  mean: boolean;
}

/** The weight table of a geometry (blockWeight of every block distance); an unknown name is refused with the valid ones. */
export function blockWeightTable(geo: BlockGeometry, name: WeightName): BlockWeights {
  oneOf(name, WEIGHTS, 'oracle.weight');
  const n = geo.numBlocks;
  const raw = new Float64Array(n * n);
  for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) raw[a * n + b] = blockWeight(name, blockDistance(geo, a, b));
  return { name, numBlocks: n, raw, mean: isMeanWeight(name) };
}

/**
 * w(·, a | S) over the blocks for candidate a of a state whose unseen blocks
 * are `remaining` (a among them): `row[b]` is the weight of every token of
 * block b. Summed weights: the table's row. Mean weights: the row divided by
 * Z(a, S) = Σ_{B ∈ R \ a} w̃(B, a), all 0 when Z = 0. Both oracle paths
 * (state-plan.ts `finalize`) and the count prior (`countTerm`) read it.
 */
export function candidateWeights(w: BlockWeights, a: number, remaining: readonly number[]): Float64Array {
  const n = w.numBlocks;
  const row = w.raw.slice(a * n, (a + 1) * n);
  if (!w.mean) return row;
  let z = 0;
  for (const b of remaining) if (b !== a) z += row[b];
  if (z > 0) for (let b = 0; b < n; b++) row[b] /= z;
  else row.fill(0);
  return row;
}

/**
 * The count term c_w(a | S) = Σ_{B ∈ R \ a} w(B, a | S): u_extrap(a | S) if
 * every other unseen block's loss fell by exactly 1 nat. Its argmax over R is
 * the label a weight gives when the image has nothing to say (the count
 * prior): the corners under `no-neighbours` and `distance`, every candidate
 * alike under `uniform` and the mean weights.
 */
export function countTerm(w: BlockWeights, a: number, remaining: readonly number[]): number {
  const row = candidateWeights(w, a, remaining);
  let c = 0;
  for (const b of remaining) if (b !== a) c += row[b];
  return c;
}
