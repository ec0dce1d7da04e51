/**
 * The order-policy interface the planner plugs into, the baseline policies,
 * and `rollOutOrder`, which turns any policy into full block orders.
 *
 * A policy is *batched*: one call chooses the next block for every sample of
 * a batch. It must only look at what is visible (the state, the visible
 * tokens, the class, the sampler's context), so that any policy-driven order
 * is a valid autoregressive factorization (METHOD.md section 7, exact
 * likelihood per order), and it must never return a visible block
 * (`checkPolicyChoice`).
 */
import { ensure, oneOf, OrderHeadError } from '../runtime/errors';
import { rng, seedFrom } from '../runtime/seed';
import { BlockGeometry, blockCells, blockDistance } from './geometry';
import { randomBlockOrder, validateBlockOrder } from './orders';
import { emptyState, OrderState, reveal } from './state';

export interface PolicyState extends OrderState {
  /** Index of the sample in the batch (stable over the whole rollout). */
  index: number;
  /** Length numTokens: the token ids decoded so far, -1 where not yet decoded. */
  tokens?: Int32Array;
  /** Class label of the sample, for class-conditional policies. */
  classId?: number;
  /** Opaque slot the sampler can fill, e.g. backbone hidden states for the planner. */
  context?: unknown;
}

export interface OrderPolicy {
  /** Short name used in errors, tables and figure legends. */
  readonly name: string;
  /**
   * Optional: what else fixes the policy's choices besides its name (a seed,
   * hashes of planner or router weights), as a short string. Resumable
   * evaluation (evaluateSettings with a cacheDir) keys its cache on it.
   */
  readonly fingerprint?: string;
  /**
   * Optional: the backbone (a GPT) whose decoding states the policy reads in
   * `context`; decoders fill it only then. A decoder running that backbone
   * hands over its own KV cache; any other decoder keeps a second cache of
   * that backbone, fed with the tokens of each revealed block
   * (lib/backbone/decoding-context.ts). Opaque here: this layer sits below the backbone.
   */
  readonly contextOf?: object;
  /** The next block for each state, in the same order as `states`; never a visible block. */
  nextBlocks(states: readonly PolicyState[]): number[] | Promise<number[]>;
}

/** Throw, naming the policy, unless `block` is an in-range block that is not yet visible in `state`. */
export function checkPolicyChoice(state: OrderState & { index?: number }, block: number, policyName: string): void {
  const { geo } = state;
  const sample = state.index === undefined ? '' : ` for sample ${state.index}`;
  const where = `policy '${policyName}'`;
  if (!(typeof block === 'number' && Number.isInteger(block) && block >= 0 && block < geo.numBlocks)) {
    throw new OrderHeadError(
      `chose block ${String(block)}${sample}, which is not a block index 0..${geo.numBlocks - 1}`,
      where,
      'return one integer block index per state, chosen from remainingBlocks(state)',
    );
  }
  if (state.visible[block]) {
    throw new OrderHeadError(
      `chose block ${block}${sample}, which is already visible (revealed so far: ${state.sequence.join(', ')})`,
      where,
      'choose among remainingBlocks(state): mask visible blocks before taking the argmax',
    );
  }
}

/** A policy's states must share its geometry and have something left to choose. */
function checkStates(geo: BlockGeometry, states: readonly PolicyState[], policyName: string): void {
  for (const s of states) {
    ensure(
      s.geo.numBlocks === geo.numBlocks && s.visible.length === geo.numBlocks,
      `state of sample ${s.index} has ${s.visible.length} blocks, the policy was built for ${geo.numBlocks} ` +
        `(${geo.blocksY}x${geo.blocksX})`,
      `policy '${policyName}'`,
      'build the policy with the same block geometry as the states',
    );
    ensure(
      s.sequence.length < geo.numBlocks,
      `sample ${s.index} has every block visible: there is no next block`,
      `policy '${policyName}'`,
      'call nextBlocks only for samples with remaining blocks',
    );
  }
}

function checkIndex(s: PolicyState, policyName: string): void {
  ensure(
    Number.isInteger(s.index) && s.index >= 0,
    `state.index ${s.index} is not a non-negative integer`,
    `policy '${policyName}'`,
    'give each state its sample index in the batch (0, 1, ...)',
  );
}

/** The first block of `order` that is not visible in `state`. */
function firstRemaining(state: OrderState, order: readonly number[]): number {
  for (const b of order) if (!state.visible[b]) return b;
  return -1; // unreachable after checkStates
}

/** Raster over the block grid: the lowest-numbered remaining block. */
export function rasterPolicy(geo: BlockGeometry): OrderPolicy {
  const name = 'raster';
  const raster = Array.from({ length: geo.numBlocks }, (_, i) => i);
  return {
    name,
    nextBlocks(states) {
      checkStates(geo, states, name);
      return states.map((s) => firstRemaining(s, raster));
    },
  };
}

/** The seeded permutation a randomised policy follows for sample `index`. */
function samplePermutation(geo: BlockGeometry, seed: number | string, purpose: string, index: number): number[] {
  return randomBlockOrder(geo, rng(seedFrom(seed, purpose, index)));
}

/**
 * Uniformly random order, deterministic per (seed, sample index) and
 * independent of the batch's composition: sample i follows the permutation
 * `randomBlockOrder(geo, rng(seedFrom(seed, 'random-policy', i)))`, taking its
 * first block that is not yet visible (from any state this is a uniform
 * choice among the remaining blocks).
 */
export function randomPolicy(geo: BlockGeometry, seed: number | string): OrderPolicy {
  const name = 'random';
  const perms = new Map<number, number[]>();
  return {
    name,
    fingerprint: `random seed ${typeof seed}:${seed}`,
    nextBlocks(states) {
      checkStates(geo, states, name);
      return states.map((s) => {
        checkIndex(s, name);
        let p = perms.get(s.index);
        if (!p) {
          p = samplePermutation(geo, seed, 'random-policy', s.index);
          perms.set(s.index, p);
        }
        return firstRemaining(s, p);
      });
    },
  };
}

/**
 * Explicit orders: one block order for every sample (`number[]`), or one per
 * sample index (`number[][]`, sample i follows orders[i]). Each order is
 * validated; the policy returns the first block of the sample's order that is
 * not yet visible.
 */
export function fixedOrderPolicy(geo: BlockGeometry, orders: number[][] | number[]): OrderPolicy {
  const name = 'fixed';
  ensure(
    Array.isArray(orders) && orders.length > 0,
    'no order given',
    'fixedOrderPolicy(orders)',
    `pass one permutation of 0..${geo.numBlocks - 1}, or one per sample`,
  );
  const perSample = Array.isArray(orders[0]);
  const list: number[][] = perSample
    ? (orders as unknown[]).map((o, i) => validateBlockOrder(geo, o as number[], `fixedOrderPolicy(orders[${i}])`))
    : [validateBlockOrder(geo, orders as number[], 'fixedOrderPolicy(orders)')];
  return {
    name,
    nextBlocks(states) {
      checkStates(geo, states, name);
      return states.map((s) => {
        if (!perSample) return firstRemaining(s, list[0]);
        checkIndex(s, name);
        ensure(
          s.index < list.length,
          `sample ${s.index} has no order: ${list.length} orders were given`,
          `policy '${name}'`,
          'pass one order per sample, or a single order for all samples',
        );
        return firstRemaining(s, list[s.index]);
      });
    },
  };
}

export type TieBreak = 'raster' | 'random';

/**
 * Grow the visible region: a remaining block at minimal Chebyshev distance to
 * the visible set. Ties go to the lowest block index (`ties = 'raster'`, the
 * default), so the first block is block 0. With `ties = 'random'` they go to
 * the earliest block of a per-sample permutation seeded by (seed, index),
 * which also randomises the first block. `seed` matters only for random ties.
 * A baseline for the planner metrics: local growth, no look-ahead.
 */
export function nearestToVisiblePolicy(geo: BlockGeometry, seed: number | string = 0, ties: TieBreak = 'raster'): OrderPolicy {
  const tie = oneOf(ties, ['raster', 'random'] as const, 'nearestToVisiblePolicy(ties)');
  const name = 'nearest-to-visible';
  const perms = new Map<number, number[]>();
  const raster = Array.from({ length: geo.numBlocks }, (_, i) => i);
  return {
    name,
    nextBlocks(states) {
      checkStates(geo, states, name);
      return states.map((s) => {
        let order = raster;
        if (tie === 'random') {
          checkIndex(s, name);
          let p = perms.get(s.index);
          if (!p) {
            p = samplePermutation(geo, seed, 'nearest-to-visible-ties', s.index);
            perms.set(s.index, p);
          }
          order = p;
        }
        if (s.sequence.length === 0) return firstRemaining(s, order);
        let best = -1;
        let bestD = Infinity;
        for (const a of order) {
          if (s.visible[a]) continue;
          let d = Infinity;
          for (const v of s.sequence) d = Math.min(d, blockDistance(geo, a, v));
          if (d < bestD) {
            bestD = d;
            best = a;
          }
        }
        return best;
      });
    },
  };
}

export interface RollOutOptions {
  /**
   * Ground-truth tokens per sample (numTokens each, ids >= 0). The policy sees
   * only the tokens of visible blocks (-1 elsewhere), as during sampling.
   */
  tokens?: Int32Array[];
  /** Class label per sample. */
  classIds?: number[];
  /** Before each planning step: a decoder's context per state (PolicyState.context), e.g. teacher-forced backbone states. */
  contexts?: (states: readonly PolicyState[]) => readonly unknown[];
}

/**
 * Drive `policy` from empty states to full block orders for `n` samples: one
 * batched `nextBlocks` call per step, each choice checked with
 * `checkPolicyChoice`. Returns the n block orders (each a permutation of the
 * blocks), e.g. to score a policy's orders by NLL.
 */
export async function rollOutOrder(
  policy: OrderPolicy,
  geo: BlockGeometry,
  n: number,
  opts: RollOutOptions = {},
): Promise<number[][]> {
  const g = rollOutSteps(policy, geo, n, opts);
  let r = g.next();
  while (!r.done) r = g.next(await policy.nextBlocks(r.value));
  return r.value;
}

/** rollOutOrder for a policy whose nextBlocks answers synchronously (the planner, the baselines): for synchronous training loops. */
export function rollOutOrderSync(policy: OrderPolicy, geo: BlockGeometry, n: number, opts: RollOutOptions = {}): number[][] {
  const g = rollOutSteps(policy, geo, n, opts);
  let r = g.next();
  while (!r.done) {
    const choices = policy.nextBlocks(r.value);
    ensure(!(choices instanceof Promise), 'answers asynchronously', `policy '${policy.name}'`, 'use rollOutOrder (async) with this policy');
    r = g.next(choices as number[]);
  }
  return r.value;
}

/** The rollout itself: yields each step's states, takes the policy's choices back. */
function* rollOutSteps(policy: OrderPolicy, geo: BlockGeometry, n: number, opts: RollOutOptions): Generator<PolicyState[], number[][], number[]> {
  ensure(Number.isInteger(n) && n >= 0, `n=${n} is not a non-negative integer`, 'rollOutOrder(n)', 'pass the number of samples');
  const { tokens, classIds } = opts;
  if (tokens) {
    ensure(tokens.length === n, `${tokens.length} token grids for ${n} samples`, 'rollOutOrder(opts.tokens)', 'pass one token grid per sample');
    tokens.forEach((t, i) => {
      ensure(
        t.length === geo.numTokens,
        `token grid ${i} has ${t.length} tokens, the ${geo.gridH}x${geo.gridW} grid has ${geo.numTokens}`,
        'rollOutOrder(opts.tokens)',
        'pass row-major token grids of the geometry\'s size',
      );
      ensure(
        t.every((v) => v >= 0),
        `token grid ${i} contains negative ids`,
        'rollOutOrder(opts.tokens)',
        'pass complete ground-truth grids: the rollout itself hides undecoded tokens as -1',
      );
    });
  }
  if (classIds) {
    ensure(classIds.length === n, `${classIds.length} class ids for ${n} samples`, 'rollOutOrder(opts.classIds)', 'pass one class id per sample');
  }
  let states: PolicyState[] = Array.from({ length: n }, (_, index) => {
    const s: PolicyState = { ...emptyState(geo), index };
    if (tokens) s.tokens = new Int32Array(geo.numTokens).fill(-1);
    if (classIds) s.classId = classIds[index];
    return s;
  });
  for (let step = 0; step < geo.numBlocks && n > 0; step++) {
    if (opts.contexts) {
      const ctx = opts.contexts(states);
      states = states.map((s, i) => ({ ...s, context: ctx[i] }));
    }
    const choices: number[] = yield states;
    ensure(
      Array.isArray(choices) && choices.length === n,
      `returned ${Array.isArray(choices) ? `${choices.length} blocks` : String(choices)} for ${n} states at step ${step}`,
      `policy '${policy.name}'`,
      'return one block per state, in the order of the states',
    );
    states = states.map((s, i) => {
      const block = choices[i];
      checkPolicyChoice(s, block, policy.name);
      const next = reveal(s, block);
      if (tokens && s.tokens) {
        const t = s.tokens.slice();
        for (const c of blockCells(geo, block)) t[c] = tokens[i][c];
        next.tokens = t;
      }
      return next;
    });
  }
  return states.map((s) => {
    // Cannot fail after numBlocks checked reveals; kept as a guard for the invariant.
    validateBlockOrder(geo, s.sequence, `rollOutOrder(policy '${policy.name}')`);
    return s.sequence;
  });
}
