/**
 * The weighting w(j, a) of the extrapolative utility (METHOD.md sections 3 and
 * 4, Algorithm 2):
 *
 *     u_extrap(a | S) = Σ_{j ∈ R \ a}  w(j, a) · [ l_j(S) - l_j(S ∪ {a}) ]
 *
 * w is a named function of one number, the block distance between the block
 * that holds token j and the candidate block a: the Chebyshev distance on the
 * block grid (`blockDistance` in lib/order: 1 for the 8 neighbouring blocks,
 * 2 for the ring around them, ...). Since j ∈ R \ a, the distance is >= 1.
 *
 * - `uniform`:        w = 1. Then u_extrap is the loss drop on the *other*
 *                     unseen tokens (u minus the loss of a's own tokens).
 * - `no-neighbours`:  w = 0 for distance <= 1 (a's 8 neighbouring blocks), 1
 *                     beyond. Interpolating next to a revealed block is easy
 *                     and local; this counts far-context gain only.
 * - `distance`:       w = distance (linear in the Chebyshev block distance,
 *                     not normalised: 1 for neighbours, 2, 3, ... further
 *                     out). Down-weights adjacent tokens relative to far ones
 *                     without dropping them. Normalising by the grid's
 *                     largest distance would rescale every u_extrap of a
 *                     geometry by one constant and change no label (argmax),
 *                     so we keep the plain integer weights.
 */
import { oneOf } from '../runtime/errors';
import { BlockGeometry, blockDistance } from '../order';

export type WeightName = 'uniform' | 'no-neighbours' | 'distance';

/** The named weightings, in the order notebooks show them. */
export const WEIGHTS: readonly WeightName[] = Object.freeze(['uniform', 'no-neighbours', 'distance'] as const);

/** w(j, a) as a function of the block distance between j's block and a (see the file comment). */
export function blockWeight(name: WeightName, distance: number): number {
  switch (name) {
    case 'uniform': return 1;
    case 'no-neighbours': return distance <= 1 ? 0 : 1;
    case 'distance': return distance;
    default: return oneOf(name as string, WEIGHTS, 'oracle.weight') as never;
  }
}

/**
 * The weight table of a geometry: `table[a * numBlocks + b]` = w for a token in
 * block b and the candidate block a (blockWeight of their block distance).
 */
export function blockWeightTable(geo: BlockGeometry, name: WeightName): Float64Array {
  oneOf(name, WEIGHTS, 'oracle.weight');
  const n = geo.numBlocks;
  const table = new Float64Array(n * n);
  for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) table[a * n + b] = blockWeight(name, blockDistance(geo, a, b));
  return table;
}
