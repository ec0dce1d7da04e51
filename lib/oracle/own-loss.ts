/**
 * How much of the utility u is the candidate's own loss (notebook
 * 03_stage2_oracle), from the primary labeling's stored token losses.
 */
import type { OracleDataset } from './dataset';

/**
 * How much of u is the candidate's *own* loss. With L_rest summed over all of
 * R, u(a | S) = Σ_{j ∈ a} l_j(S) + Σ_{j ∈ R \ a} [l_j(S) - l_j(S ∪ {a})]: the
 * first term rewards revealing the block that is hardest to predict itself,
 * the second is the future-context value u_extrap (w = uniform) measures.
 * From the primary labeling's stored l_j(S), over states with >= 2 candidates.
 */
export interface OwnLossStats {
  n: number;
  /** Share of states where a* is the hidden block with the largest own loss Σ_{j∈a} l_j(S). */
  aStarIsMaxOwnLoss: number;
  /** The same for a*_extrap (primary weight). */
  aStarExtrapIsMaxOwnLoss: number;
  /** Mean share of u(a*) that is a*'s own loss. */
  ownShareOfU: number;
  /** Agreement of a uniformly random hidden block with the max-own-loss block (mean 1 / candidates). */
  chance: number;
}

export function ownLossStats(ds: OracleDataset): OwnLossStats {
  const { geo } = ds;
  const nb = geo.numBlocks, T = geo.numTokens;
  const p = ds.labelings[0];
  // Cells of each block, raster inside the block.
  const cells: number[][] = Array.from({ length: nb }, (_, b) => {
    const r0 = Math.floor(b / geo.blocksX) * geo.blockH, c0 = (b % geo.blocksX) * geo.blockW;
    const out: number[] = [];
    for (let r = 0; r < geo.blockH; r++) for (let c = 0; c < geo.blockW; c++) out.push((r0 + r) * geo.gridW + c0 + c);
    return out;
  });
  let n = 0, same = 0, sameX = 0, share = 0, chance = 0;
  for (let i = 0; i < ds.n; i++) {
    const candidates = nb - ds.size[i];
    if (candidates < 2 || p.aStar[i] < 0) continue;
    let best = -1, bestV = -Infinity;
    const own = new Float64Array(nb);
    for (let b = 0; b < nb; b++) {
      if (ds.visible[i * nb + b]) continue;
      for (const c of cells[b]) own[b] += ds.tokenLoss[i * T + c];
      if (own[b] > bestV) {
        bestV = own[b];
        best = b;
      }
    }
    n++;
    if (best === p.aStar[i]) same++;
    if (best === p.aStarExtrap[i]) sameX++;
    const u = p.u[i * nb + p.aStar[i]];
    if (u !== 0 && Number.isFinite(u)) share += own[p.aStar[i]] / u;
    chance += 1 / candidates;
  }
  const z = (x: number) => (n > 0 ? x / n : NaN);
  return { n, aStarIsMaxOwnLoss: z(same), aStarExtrapIsMaxOwnLoss: z(sameX), ownShareOfU: z(share), chance: z(chance) };
}
