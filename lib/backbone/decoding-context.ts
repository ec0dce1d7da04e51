/**
 * What a decoder has already computed, handed to order policies so a planner
 * need not recompute it (the order-policy interface's `context` slot).
 *
 * After n decoded tokens c_1..c_n a decoder's KV cache holds n slots:
 * slot 0 the class (predicting c_1), slot i the token x[c_i] (predicting
 * c_{i+1}). These are exactly the prefix slots of the planner's feature pass
 * (lib/planner/features.ts): causal attention makes them independent of
 * what comes later. So the planner reads the visible blocks from these slots
 * (`blockHidden`: per block, the sum of the final hidden states of the slots
 * whose input token lies in it) and runs only the unseen blocks' queries on
 * the cache.
 *
 * Two decoders fill it: the sampler (sampleImages) and the teacher-forced
 * rollout of exact NLL under a policy (nllUnderPolicy).
 */
import * as tf from '@tensorflow/tfjs';
import { BlockGeometry, blockCells, cellBlock, PolicyState } from '../order';
import { GPT } from './gpt';
import { disposeCache, emptyCache, extend, KVCache } from './kv-decoder';

export interface DecodingContext {
  /** The model that filled the cache: a policy reading another backbone must not use it. */
  model: GPT;
  /** The decoder's cache; row `row` is this sample, its first `cache.length` slots the decoded tokens'. */
  cache: KVCache;
  row: number;
  /** [numBlocks * d]: per block, the sum of the final hidden states of the cached slots whose input token lies in it. */
  blockHidden: Float32Array;
}

/** The DecodingContext of a policy state, when its decoder filled one for `model`. */
export function decodingContext(state: PolicyState, model: GPT): DecodingContext | undefined {
  const c = state.context as Partial<DecodingContext> | undefined;
  return c && c.model === model && c.cache && c.blockHidden ? (c as DecodingContext) : undefined;
}

/** Per-sample, per-block sums of slot hidden states, as slots are decoded. */
export class BlockHiddenSums {
  readonly sums: Float32Array;
  constructor(readonly samples: number, readonly geo: BlockGeometry, readonly dim: number) {
    this.sums = new Float32Array(samples * geo.numBlocks * dim);
  }

  /** Add the hidden states `hidden` [rows * dim] (rows >= samples) of slots whose input cells are `inCells` (-1: the class slot, not pooled). */
  add(hidden: ArrayLike<number>, inCells: ArrayLike<number>, rowOf: (b: number) => number = (b) => b): void {
    const d = this.dim, nb = this.geo.numBlocks;
    for (let b = 0; b < inCells.length; b++) {
      if (inCells[b] < 0) continue;
      const sample = rowOf(b), o = (sample * nb + cellBlock(this.geo, inCells[b])) * d, h = b * d;
      for (let j = 0; j < d; j++) this.sums[o + j] += hidden[h + j];
    }
  }

  row(sample: number): Float32Array {
    const w = this.geo.numBlocks * this.dim;
    return this.sums.subarray(sample * w, (sample + 1) * w);
  }
}

/**
 * Teacher-forced decoding of token grids alongside a policy rollout: before
 * each planning step, the blocks revealed since the last one are fed to a KV
 * cache of `m` (one extend of L = tokensPerBlock slots for every sample), so
 * the policy sees the same context as during sampling. Two users: the exact-NLL
 * rollout on ground-truth grids, and the sampler when the policy reads another
 * backbone than the one generating (then `grids` is the sampler's token buffer,
 * read block by block as it fills). `dispose` frees the cache.
 */
export function teacherForcedContexts(m: GPT, geo: BlockGeometry, grids: Int32Array, classes: Int32Array) {
  const N = classes.length, T = geo.numTokens, tpb = geo.tokensPerBlock;
  const cache = emptyCache(m, { capacity: T });
  const sums = new BlockHiddenSums(N, geo, m.cfg.dModel);
  const lastCell = new Int32Array(N).fill(-1);
  let fed = 0; // blocks fed per sample
  return {
    contexts(states: readonly PolicyState[]): (DecodingContext | undefined)[] {
      const k = states[0]?.sequence.length ?? 0;
      for (; fed < k; fed++) {
        const L = tpb, inputs = new Int32Array(N * L), inCells = new Int32Array(N * L), tgtCells = new Int32Array(N * L);
        states.forEach((s, i) => {
          blockCells(geo, s.sequence[fed]).forEach((c, j) => {
            const o = i * L + j;
            inputs[o] = lastCell[i] < 0 ? classes[s.index] : grids[s.index * T + lastCell[i]];
            inCells[o] = lastCell[i];
            tgtCells[o] = c;
            lastCell[i] = c;
          });
        });
        const out = extend(m, cache, { B: N, L, inputs, inCells, tgtCells });
        sums.add(out.hidden.dataSync(), inCells, (b) => states[Math.floor(b / L)].index);
        tf.dispose([out.logits, out.hidden]);
      }
      return states.map((s) => (k === 0 ? undefined : { model: m, cache, row: s.index, blockHidden: sums.row(s.index) }));
    },
    dispose: () => disposeCache(cache),
  };
}
