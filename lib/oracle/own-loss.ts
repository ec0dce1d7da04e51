/**
 * How much of the utility u is the candidate's own loss (notebook
 * 03_stage2_oracle), per reading.
 *
 * With L_rest summed over all of R, u(a | S) = Σ_{j ∈ a} l_j(S) + Σ_{j ∈ R \ a}
 * [l_j(S) - l_j(S ∪ {a})]: the first term rewards revealing the block that is
 * hardest to predict itself, the second is the future-context value that
 * u_extrap with w = uniform measures. So a labeling's own losses come from
 * either of two places: the stored token losses l_j(S) (the primary reading's
 * only), or, exactly, u - u_extrap of a w = uniform labeling of the same
 * reading on the same states.
 */
import type { OracleDataset, OracleLabelSet } from './dataset';
import { meanOverImages, readingLabelings } from './analysis';

/** Own-loss statistics of one labeling over states with >= 2 candidates. */
export interface OwnLossStats {
  n: number;
  /** Share of states where a* is the hidden block with the largest own loss Σ_{j∈a} l_j(S). */
  aStarIsMaxOwnLoss: number;
  /** The same for a*_extrap (this labeling's weight). */
  aStarExtrapIsMaxOwnLoss: number;
  /** Mean share of u(a*) that is a*'s own loss. */
  ownShareOfU: number;
  /** Agreement of a uniformly random hidden block with the max-own-loss block (mean 1 / candidates). */
  chance: number;
}

/** Where a reading's own losses came from (captions name it). */
export type OwnLossSource = 'stored token losses' | 'u - u_extrap (w = uniform)';

/**
 * Σ_{j ∈ a} l_j(S) for every (state, block) under `l`'s reading ([n, numBlocks],
 * NaN where unknown), or undefined when the dataset holds neither source for
 * that reading (see the file comment).
 */
export function ownLosses(ds: OracleDataset, l: OracleLabelSet): { own: Float64Array; source: OwnLossSource } | undefined {
  const { geo } = ds;
  const nb = geo.numBlocks, T = geo.numTokens;
  const own = new Float64Array(ds.n * nb).fill(NaN);
  if (l === ds.labelings[0]) {
    // Cells of each block, raster inside the block.
    for (let b = 0; b < nb; b++) {
      const r0 = Math.floor(b / geo.blocksX) * geo.blockH, c0 = (b % geo.blocksX) * geo.blockW;
      for (let i = 0; i < ds.n; i++) {
        if (ds.visible[i * nb + b]) continue;
        let s = 0;
        for (let r = 0; r < geo.blockH; r++) for (let c = 0; c < geo.blockW; c++) s += ds.tokenLoss[i * T + (r0 + r) * geo.gridW + c0 + c];
        own[i * nb + b] = s;
      }
    }
    return { own, source: 'stored token losses' };
  }
  const uniform = ds.labelings.find((x) => x.reading === l.reading && x.weight === 'uniform');
  if (!uniform) return undefined;
  // u does not depend on w, so the uniform labeling's own u serves (same reading, same states).
  for (let k = 0; k < ds.n * nb; k++) own[k] = uniform.u[k] - uniform.uExtrap[k];
  return { own, source: 'u - u_extrap (w = uniform)' };
}

/** Per-state own-loss facts of a labeling: NaN (share) / -1 (flags) where a state is not counted. */
function ownLossPerState(ds: OracleDataset, l: OracleLabelSet, own: Float64Array, filter?: (i: number) => boolean) {
  const nb = ds.geo.numBlocks;
  const share = new Float64Array(ds.n).fill(NaN);
  const isMax = new Int8Array(ds.n).fill(-1), isMaxExtrap = new Int8Array(ds.n).fill(-1);
  const chance = new Float64Array(ds.n).fill(NaN);
  for (let i = 0; i < ds.n; i++) {
    const candidates = nb - ds.size[i];
    if (candidates < 2 || l.aStar[i] < 0 || (filter && !filter(i))) continue;
    let best = -1, bestV = -Infinity;
    for (let b = 0; b < nb; b++) {
      const v = own[i * nb + b];
      if (!ds.visible[i * nb + b] && v > bestV) {
        bestV = v;
        best = b;
      }
    }
    if (best < 0) continue;
    isMax[i] = best === l.aStar[i] ? 1 : 0;
    isMaxExtrap[i] = best === l.aStarExtrap[i] ? 1 : 0;
    const u = l.u[i * nb + l.aStar[i]];
    // u(a*) = 0 (nothing to share out) counts as a share of 0, keeping the state in n.
    share[i] = u !== 0 && Number.isFinite(u) ? own[i * nb + l.aStar[i]] / u : 0;
    chance[i] = 1 / candidates;
  }
  return { share, isMax, isMaxExtrap, chance };
}

/**
 * Own-loss statistics of labeling `l` (default the primary) over states with
 * >= 2 candidates that pass `filter`; NaN everywhere (n = 0) when the dataset
 * holds no own losses for its reading.
 */
export function ownLossStats(ds: OracleDataset, l: OracleLabelSet = ds.labelings[0], filter?: (i: number) => boolean): OwnLossStats {
  const src = ownLosses(ds, l);
  return statsOf(src ? ownLossPerState(ds, l, src.own, filter) : undefined, ds.n);
}

function statsOf(p: ReturnType<typeof ownLossPerState> | undefined, states: number): OwnLossStats {
  let n = 0, same = 0, sameX = 0, share = 0, chance = 0;
  for (let i = 0; p && i < states; i++) {
    if (p.isMax[i] < 0) continue;
    n++;
    same += p.isMax[i];
    sameX += p.isMaxExtrap[i];
    share += p.share[i];
    chance += p.chance[i];
  }
  const z = (x: number) => (n > 0 ? x / n : NaN);
  return { n, aStarIsMaxOwnLoss: z(same), aStarExtrapIsMaxOwnLoss: z(sameX), ownShareOfU: z(share), chance: z(chance) };
}

/** One reading's row of the own-loss table. */
export interface OwnLossRow extends OwnLossStats {
  reading: string;
  /** The weight of a*_extrap in this row. */
  weight: string;
  /** Where the own losses came from; undefined when the dataset holds none for this reading (n = 0). */
  source?: OwnLossSource;
  /** 95% bootstrap interval of ownShareOfU over images (IMAGE_BOOTSTRAP). */
  shareLo: number;
  shareHi: number;
}

/**
 * ownLossStats for every reading (readingLabelings: the primary's weight), on
 * the states all readings have, with an interval of the own share of u(a*).
 */
export function ownLossTable(ds: OracleDataset): OwnLossRow[] {
  const { labelings, mask } = readingLabelings(ds);
  return labelings.map((l) => {
    const src = ownLosses(ds, l);
    const p = src ? ownLossPerState(ds, l, src.own, (i) => mask[i] === 1) : undefined;
    const share = p ? meanOverImages(p.share, ds.image, `oracle/own-loss/${l.reading}`) : { lo: NaN, hi: NaN };
    return { reading: l.reading, weight: l.weight, source: src?.source, ...statsOf(p, ds.n), shareLo: share.lo, shareHi: share.hi };
  });
}
