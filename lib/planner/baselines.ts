/**
 * The baseline choosers the planner is compared against (METHOD.md section 7):
 * random, raster-next, nearest-visible and entropy, each given as scores over
 * the blocks of every state (and, for the calibration error, a distribution),
 * in the layout of metrics.ts, so that plannerMetrics measures a baseline
 * exactly like a planner. Each one makes the choice of the matching lib/order
 * policy.
 *
 * The entropy baseline is also an order policy in both directions
 * (entropyFirstPolicy): lowest entropy first (most confident block first)
 * and highest entropy first. The evaluation runs them as settings on the
 * kept-random backbone (METHOD.md §7.1): valid orders that read the
 * backbone's uncertainty, the cheapest state-dependent rivals of the planner.
 */
import { ensure, oneOf } from '../runtime/errors';
import { rng, seedFrom } from '../runtime/seed';
import { BlockGeometry, blockDistance } from '../order/geometry';
import { randomBlockOrder } from '../order/orders';
import { checkPolicyChoice, OrderPolicy, PolicyState } from '../order/policy';
import { GPT } from '../backbone/gpt';
import { chooseFromScores } from './metrics';
import { policyFeatures } from './policy';

/** The baseline choosers, each as a scores array for `plannerMetrics`. */
export const BASELINES = ['random', 'raster-next', 'nearest-visible', 'entropy'] as const;
export type BaselineName = (typeof BASELINES)[number];

export interface BaselineOptions {
  geo: BlockGeometry;
  /** [n * numBlocks], 1 = visible. */
  visible: Uint8Array;
  /** Number of states. */
  n: number;
  /** [n * numBlocks] the backbone's predictive entropy per block; required by 'entropy'. */
  entropy?: Float32Array;
  /** Seed of the 'random' baseline (default 0); the others ignore it. */
  seed?: number | string;
}

/**
 * Scores ([n * numBlocks], NaN on visible blocks) under which
 * `chooseFromScores` makes the baseline's choice, and whose order over the
 * unseen blocks is the baseline's full preference (for top-k and the rank
 * correlations):
 * - 'random': state i follows the block permutation
 *   `randomBlockOrder(geo, rng(seedFrom(seed, 'random-policy', i)))`, score =
 *   numBlocks - position; the choice is the permutation's first unseen block,
 *   a uniform draw among the unseen blocks, deterministic per (seed, i) and
 *   equal to `randomPolicy(geo, seed)`'s choice for sample index i.
 * - 'raster-next': score = numBlocks - b: the lowest-index unseen block first.
 * - 'nearest-visible': score = -(Chebyshev block distance to the nearest
 *   visible block), with `blockDistance`, the distance of
 *   `nearestToVisiblePolicy`; equal distances tie and the chooser breaks ties
 *   by raster, as that policy does with its default ties = 'raster'. With
 *   |S| = 0 every block scores 0: raster, block 0 first.
 * - 'entropy': score = the backbone's predictive entropy of the block
 *   (most uncertain block first; ties by raster).
 * An unknown name throws, listing the valid ones.
 */
export function baselineScores(name: string, opts: BaselineOptions): Float32Array {
  const base = oneOf(name, BASELINES, 'baselineScores(name)');
  const { geo, visible, n } = opts;
  const nb = geo.numBlocks;
  const where = `baselineScores('${base}')`;
  ensure(Number.isInteger(n) && n >= 0, `n = ${n} is not a non-negative integer`, `${where}(n)`, 'pass the number of states');
  ensure(visible.length === n * nb, `visible has ${visible.length} entries, expected n * numBlocks = ${n} * ${nb}`, `${where}(visible)`,
    'pass a row-major [n * numBlocks] mask of the same geometry');
  const out = new Float32Array(n * nb).fill(NaN);
  if (base === 'random') {
    const seed = opts.seed ?? 0;
    for (let i = 0; i < n; i++) {
      const perm = randomBlockOrder(geo, rng(seedFrom(seed, 'random-policy', i)));
      for (let p = 0; p < nb; p++) if (!visible[i * nb + perm[p]]) out[i * nb + perm[p]] = nb - p;
    }
  } else if (base === 'raster-next') {
    for (let i = 0; i < n; i++) for (let b = 0; b < nb; b++) if (!visible[i * nb + b]) out[i * nb + b] = nb - b;
  } else if (base === 'nearest-visible') {
    const dist = new Int32Array(nb * nb);
    for (let a = 0; a < nb; a++) for (let b = 0; b < nb; b++) dist[a * nb + b] = blockDistance(geo, a, b);
    for (let i = 0; i < n; i++) {
      const off = i * nb;
      const seen: number[] = [];
      for (let b = 0; b < nb; b++) if (visible[off + b]) seen.push(b);
      for (let a = 0; a < nb; a++) {
        if (visible[off + a]) continue;
        let d = seen.length === 0 ? 0 : Infinity;
        for (const v of seen) d = Math.min(d, dist[a * nb + v]);
        out[off + a] = -d;
      }
    }
  } else {
    const { entropy } = opts;
    ensure(entropy !== undefined, 'no entropy given', `${where}(entropy)`,
      'pass entropy: Float32Array [n * numBlocks], the backbone\'s predictive entropy per block');
    ensure(entropy.length === n * nb, `entropy has ${entropy.length} entries, expected ${n * nb}`, `${where}(entropy)`,
      'pass entropy in the same [n * numBlocks] layout as visible');
    for (let i = 0; i < n * nb; i++) {
      if (visible[i]) continue;
      ensure(Number.isFinite(entropy[i]), `entropy is ${entropy[i]} on unseen block ${i % nb} of state ${Math.floor(i / nb)}`,
        `${where}(entropy)`, 'give every unseen block a finite entropy');
      out[i] = entropy[i];
    }
  }
  return out;
}

/**
 * A distribution over the unseen blocks for each baseline ([n * numBlocks],
 * 0 on visible blocks; all zero for a state with no unseen block), for the
 * calibration error:
 * - 'random': uniform, 1 / m on each of the m unseen blocks (its choice is
 *   one of them, so confidence = 1 / m);
 * - the deterministic baselines: a point mass on the block they choose. Their
 *   confidence is always 1, so all states fall in the top bin and their
 *   ECE = 1 - top1.
 */
export function baselineProbs(name: string, opts: BaselineOptions): Float32Array {
  const scores = baselineScores(name, opts);
  const { visible, n } = opts;
  const nb = opts.geo.numBlocks;
  const out = new Float32Array(n * nb);
  if (name === 'random') {
    for (let i = 0; i < n; i++) {
      let m = 0;
      for (let b = 0; b < nb; b++) if (!visible[i * nb + b]) m++;
      for (let b = 0; b < nb; b++) if (!visible[i * nb + b]) out[i * nb + b] = 1 / m;
    }
  } else {
    const chosen = chooseFromScores(scores, visible, nb);
    for (let i = 0; i < n; i++) if (chosen[i] >= 0) out[i * nb + chosen[i]] = 1;
  }
  return out;
}

/** Which end of the entropy ranking an entropy-first order reveals next. */
export const ENTROPY_ENDS = ['lowest', 'highest'] as const;
export type EntropyEnd = (typeof ENTROPY_ENDS)[number];

/**
 * Scores under which `chooseFromScores` makes the entropy-first choice: the
 * 'entropy' baseline's scores (highest entropy first), negated for 'lowest'
 * (most confident block first); NaN on visible blocks; ties to the lowest
 * block index either way.
 */
export function entropyFirstScores(first: EntropyEnd, opts: BaselineOptions): Float32Array {
  const end = oneOf(first, ENTROPY_ENDS, 'entropyFirstScores(first)');
  const scores = baselineScores('entropy', opts);
  if (end === 'lowest') for (let i = 0; i < scores.length; i++) scores[i] = -scores[i]; // NaN stays NaN
  return scores;
}

/**
 * An entropy-first order policy over any source of per-block entropies:
 * `entropies(states)` gives [states * numBlocks] (visible blocks ignored),
 * and the policy reveals the unseen block of lowest or highest entropy
 * (entropyFirstScores). The order is a valid AR factorisation as long as
 * `entropies` reads visible tokens only (entropyFirstPolicy's does).
 */
export function entropyOrderPolicy(geo: BlockGeometry, first: EntropyEnd, entropies: (states: readonly PolicyState[]) => Float32Array,
  opts: { name?: string; contextOf?: object; fingerprint?: string } = {}): OrderPolicy {
  const end = oneOf(first, ENTROPY_ENDS, 'entropyOrderPolicy(first)');
  const name = opts.name ?? `${end} entropy first`;
  const nb = geo.numBlocks;
  return {
    name,
    fingerprint: opts.fingerprint ?? `entropy first: ${end}`,
    contextOf: opts.contextOf,
    nextBlocks(states) {
      const visible = new Uint8Array(states.length * nb);
      states.forEach((s, i) => {
        ensure(s.visible.length === nb, `state of sample ${s.index} has ${s.visible.length} blocks, the policy was built for ${nb}`,
          `policy '${name}'`, 'build the policy with the same block geometry as the states');
        visible.set(s.visible, i * nb);
      });
      const out = Array.from(chooseFromScores(entropyFirstScores(end, { geo, visible, n: states.length, entropy: entropies(states) }), visible, nb));
      states.forEach((s, i) => checkPolicyChoice(s, out[i], name));
      return out;
    },
  };
}

/**
 * Lowest ('most confident first') or highest entropy first on `backbone`: a
 * block's entropy is the backbone's predictive entropy at its first token
 * given the visible tokens only (policyFeatures: one query per unseen block,
 * the planner's own input, from the decoder's KV cache when it runs this
 * backbone), so every order it makes is a valid AR factorisation. Cost per
 * planning step: one query slot per unseen block on top of decoding, about
 * what the planner's features cost without the planner.
 */
export function entropyFirstPolicy(backbone: GPT, geo: BlockGeometry, first: EntropyEnd, name = `${first} entropy first`): OrderPolicy {
  return entropyOrderPolicy(geo, first, (states) => policyFeatures(backbone, geo, states, name).entropy, { name, contextOf: backbone });
}

/** The 'entropy' baseline as an order policy: the unseen block where the backbone is most uncertain (notebook 05). */
export function entropyPolicy(backbone: GPT, geo: BlockGeometry): OrderPolicy {
  return entropyFirstPolicy(backbone, geo, 'highest', 'highest entropy');
}
