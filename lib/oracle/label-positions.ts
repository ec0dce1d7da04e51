/**
 * Where a*_extrap falls on the block grid in the first steps, set against the
 * label its weight gives when the image has nothing to say (METHOD.md §3.2,
 * notebook 03_stage2_oracle): the evidence the primary weight is chosen on.
 *
 * The **count prior** of a weight w at a state S: if every other unseen block
 * gained the same, u_extrap(a | S) would be proportional to the count term
 * c_w(a | S) = Σ_{B ∈ R \ a} w(B, a | S) (weights.ts `countTerm`), so the
 * label would be argmax_a c_w(a | S); ties are split evenly (each tied block
 * gets 1 / ties). Under `no-neighbours` with nothing visible on the 4 x 4
 * block grid that is the four corners (12 far blocks against 10 on an edge
 * and 7 in the centre); under `uniform` and the mean weights every candidate
 * ties, so the prior is chance (a uniformly random unseen block).
 *
 * Per labeling (reading, weight) and |S| (default 0, 1, 2: the first steps,
 * where the grid is open and the count prior is strongest): the share of
 * states whose label is each block, the count prior and chance averaged over
 * the same states, their total variation distances (each with its sampling
 * floor: the TV that labels drawn from the prior, or chance, itself would
 * show on as many states), and the share of labels on the grid's border
 * against the prior's and chance's. A label distribution close to its count
 * prior and far from chance is the count prior speaking, not the image. Rows use the states every labeling has (the compare subset),
 * so weights and readings are read on the same states.
 */
import * as path from 'node:path';
import { ensure, oneOf } from '../runtime/errors';
import { rng } from '../runtime/seed';
import { BlockGeometry } from '../order';
import type { OracleDataset } from './dataset';
import { commonMask } from './analysis';
import { blockWeightTable, BlockWeights, countTerm, WeightName, WEIGHTS } from './weights';

/** The visible-set sizes the label-position table looks at by default: the first three steps. */
export const LABEL_POSITION_SIZES: readonly number[] = Object.freeze([0, 1, 2]);

export interface LabelPositionRow {
  reading: string;
  weight: WeightName;
  /** True for the dataset's primary labeling. */
  primary: boolean;
  /** |S|. */
  size: number;
  /** States counted (every labeling has them). */
  states: number;
  /** [numBlocks] share of the states whose a*_extrap is block b. */
  labels: Float64Array;
  /** [numBlocks] the count prior: argmax_a c_w(a | S), ties split evenly, averaged over the same states. */
  prior: Float64Array;
  /** [numBlocks] chance: 1 / |R| on every unseen block, averaged over the same states. */
  chance: Float64Array;
  /** Total variation distance ½ Σ_b |labels_b − prior_b| (0 = the labels are the count prior). */
  tvPrior: number;
  /**
   * The sampling floor of tvPrior: its mean over 200 seeded draws of one label
   * per state from that state's prior. With a few hundred states a TV near
   * the floor is as close to the prior as labels can get.
   */
  tvPriorFloor: number;
  /** Total variation distance between the labels and chance. */
  tvChance: number;
  /** The sampling floor of tvChance (labels drawn uniformly from each state's unseen blocks). */
  tvChanceFloor: number;
  /** Share of labels on border blocks (the outer ring of the block grid). */
  borderLabels: number;
  /** The count prior's border share. */
  borderPrior: number;
  /** Chance's border share (the border's share of the unseen blocks). */
  borderChance: number;
}

/** True for blocks on the outer ring of the block grid. */
export function isBorderBlock(geo: BlockGeometry, b: number): boolean {
  const y = Math.floor(b / geo.blocksX), x = b % geo.blocksX;
  return y === 0 || x === 0 || y === geo.blocksY - 1 || x === geo.blocksX - 1;
}

/**
 * The count prior of weight `w` at one state (its unseen blocks `remaining`):
 * the blocks that maximise c_w(a | S), each with share 1 / ties.
 */
export function countPriorBlocks(w: BlockWeights, remaining: readonly number[]): number[] {
  const c = remaining.map((a) => countTerm(w, a, remaining));
  const best = Math.max(...c);
  // Sums of 1/k can miss 1 by an ulp: ties are equal up to float rounding.
  return remaining.filter((_, k) => c[k] >= best - 1e-9 * Math.max(1, Math.abs(best)));
}

const tv = (p: Float64Array, q: Float64Array) => 0.5 * p.reduce((s, v, b) => s + Math.abs(v - q[b]), 0);

/** Per state a list of equally likely blocks, added into `into` as shares (1 / list length each). */
function addUniform(blocks: readonly number[], into: Float64Array): void {
  for (const b of blocks) into[b] += 1 / blocks.length;
}

/**
 * Mean TV between `target` ([numBlocks], the mean of the states' own
 * distributions) and the label shares of one label drawn per state,
 * uniformly from that state's list: how far finite samples of the target
 * itself land from it.
 */
function samplingFloor(perState: readonly (readonly number[])[], target: Float64Array, seed: string, reps = 200): number {
  if (perState.length === 0) return NaN;
  const r = rng(seed);
  const shares = new Float64Array(target.length);
  let sum = 0;
  for (let k = 0; k < reps; k++) {
    shares.fill(0);
    for (const blocks of perState) shares[blocks[r.int(blocks.length)]] += 1 / perState.length;
    sum += tv(shares, target);
  }
  return sum / reps;
}

/**
 * The label-position rows of a dataset: one per labeling and size in `sizes`,
 * labelings in dataset order (the primary first). Sizes with no common state
 * give a row with states = 0 and NaN shares.
 */
export function labelPositionTable(ds: OracleDataset, sizes: readonly number[] = LABEL_POSITION_SIZES): LabelPositionRow[] {
  const { geo } = ds;
  const nb = geo.numBlocks;
  ensure(Array.isArray(sizes) && sizes.every((s) => Number.isInteger(s) && s >= 0 && s < nb), `sizes ${JSON.stringify(sizes)}`,
    'labelPositionTable(sizes)', `pass visible-set sizes in 0..${nb - 1}, e.g. [0, 1, 2]`);
  const common = commonMask(ds);
  const border = Float64Array.from({ length: nb }, (_, b) => (isBorderBlock(geo, b) ? 1 : 0));
  const share = (p: Float64Array) => p.reduce((s, v, b) => s + v * border[b], 0);
  const rows: LabelPositionRow[] = [];
  for (const l of ds.labelings) {
    const weight = oneOf(l.weight, WEIGHTS, `${path.join(ds.dir, 'manifest.json')} (labelings: weight)`);
    const w = blockWeightTable(geo, weight);
    for (const size of sizes) {
      const labels = new Float64Array(nb), prior = new Float64Array(nb), chance = new Float64Array(nb);
      const priorBlocks: number[][] = [], unseen: number[][] = [];
      for (let i = 0; i < ds.n; i++) {
        if (!common[i] || ds.size[i] !== size || l.aStarExtrap[i] < 0) continue;
        labels[l.aStarExtrap[i]]++;
        const remaining: number[] = [];
        for (let b = 0; b < nb; b++) if (!ds.visible[i * nb + b]) remaining.push(b);
        priorBlocks.push(countPriorBlocks(w, remaining));
        unseen.push(remaining);
        addUniform(priorBlocks[priorBlocks.length - 1], prior);
        addUniform(remaining, chance);
      }
      const states = unseen.length;
      for (const p of [labels, prior, chance]) for (let b = 0; b < nb; b++) p[b] = states > 0 ? p[b] / states : NaN;
      const seed = `oracle/label-positions/${l.reading}/${weight}/${size}`;
      rows.push({
        reading: l.reading, weight, primary: l.primary, size, states, labels, prior, chance,
        tvPrior: tv(labels, prior), tvPriorFloor: samplingFloor(priorBlocks, prior, `${seed}/prior`),
        tvChance: tv(labels, chance), tvChanceFloor: samplingFloor(unseen, chance, `${seed}/chance`),
        borderLabels: share(labels), borderPrior: share(prior), borderChance: share(chance),
      });
    }
  }
  return rows;
}

/** The per-row numbers a summary pools (state-weighted means over the sizes). */
const POOLED = ['tvPrior', 'tvPriorFloor', 'tvChance', 'tvChanceFloor', 'borderLabels', 'borderPrior', 'borderChance'] as const;

/**
 * One number per labeling: its label-position rows pooled over the sizes.
 * Each POOLED field is the state-weighted mean of the rows' field of that
 * name (TV to the count prior and to chance, their floors, the border shares).
 */
export interface LabelPositionSummary extends Pick<LabelPositionRow, 'reading' | 'weight' | 'primary' | 'states' | (typeof POOLED)[number]> {
  /** The sizes pooled, e.g. '0, 1, 2'. */
  sizes: string;
}

/**
 * Per labeling, the state-weighted mean over its rows of `labelPositionTable`
 * of the TVs and border shares: how close the labels stay to the count prior
 * (small tvPrior with large tvChance: the prior decides) and how much they
 * lean to the border beyond chance.
 */
export function labelPositionSummary(rows: readonly LabelPositionRow[]): LabelPositionSummary[] {
  const key = (r: LabelPositionRow) => `${r.reading}/${r.weight}`;
  return [...new Set(rows.map(key))].map((k) => {
    const of = rows.filter((r) => key(r) === k);
    const states = of.reduce((a, r) => a + r.states, 0);
    const mean = (f: (typeof POOLED)[number]) => (states > 0 ? of.reduce((a, r) => a + (r.states > 0 ? r[f] * r.states : 0), 0) / states : NaN);
    const { reading, weight, primary } = of[0];
    return { reading, weight, primary, sizes: of.map((r) => r.size).join(', '), states, ...Object.fromEntries(POOLED.map((f) => [f, mean(f)])) } as LabelPositionSummary;
  });
}
