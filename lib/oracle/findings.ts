/**
 * "What this run showed" (notebook 03_stage2_oracle): Markdown bullet lines
 * computed from the locality, agreement, own-loss and reference-rank numbers.
 */
import type { LocalityRow } from './locality';
import type { AgreementRow } from './agreement';
import type { OwnLossStats } from './own-loss';
import type { ReferenceRankRow } from './reference-rank';

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(0)}%` : 'n/a');
const signed = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(0)}`;

/** Locality rows of a subset of states (e.g. early states, small |S|) and how to name that subset. */
export interface LocalitySubset {
  /** e.g. '|S| = 1-5'. */
  label: string;
  rows: LocalityRow[];
}

/**
 * "What this run showed": Markdown bullet lines computed from the locality
 * and agreement tables. Says, for u and for u_extrap under each weight,
 * whether the label mostly touches the visible region or lies far from it,
 * against a uniformly random hidden block, and how w shifts that. With
 * `early` (the same rows over small |S|, where chance is far from 100%), each
 * line also gives that subset's numbers, and the conclusion rests on them.
 * With `own` (ownLossStats), one line says how much of u is the candidate's
 * own loss; with `ranks` (referenceRankTable), one line says whether the
 * teacher-forced reading's reference order pulls the labels.
 */
export function oracleFindings(locality: readonly LocalityRow[], agreement: readonly AgreementRow[], early?: LocalitySubset, own?: OwnLossStats,
  ranks?: readonly ReferenceRankRow[]): string[] {
  const lines: string[] = [];
  const key = (r: LocalityRow) => `${r.reading}|${r.target}|${r.weight}`;
  const earlyOf = new Map((early?.rows ?? []).map((r) => [key(r), r] as const));
  const tendency = (r: LocalityRow) => {
    const lift = r.local - r.chanceLocal;
    if (!Number.isFinite(lift)) return 'no states to compare';
    return Math.abs(lift) < 0.05 ? `about as often as a random hidden block (${pct(r.chanceLocal)})`
      : lift > 0 ? `more often than a random hidden block (${pct(r.chanceLocal)})` : `less often than a random hidden block (${pct(r.chanceLocal)})`;
  };
  for (const r of locality) {
    const name = r.target === 'u' ? `**a\\* = argmax u** (${r.reading})` : `**argmax u_extrap, w = ${r.weight}** (${r.reading})`;
    let line = `- ${name}: ${pct(r.local)} of labels touch the visible region (block distance 1), ${tendency(r)}; ${pct(r.far)} lie at distance >= 2 (chance ${pct(r.chanceFar)}); mean distance ${r.meanDistance.toFixed(2)} vs ${r.chanceMeanDistance.toFixed(2)} (n = ${r.n})`;
    const e = earlyOf.get(key(r));
    if (e && early) line += `; for ${early.label}: ${pct(e.local)} local vs ${pct(e.chanceLocal)} by chance (n = ${e.n})`;
    lines.push(`${line}.`);
  }
  const basis = (r: LocalityRow): LocalityRow => earlyOf.get(key(r)) ?? r;
  const uRow = locality.find((r) => r.primary && r.target === 'u');
  if (uRow) {
    const b = basis(uRow);
    const where = earlyOf.has(key(uRow)) && early ? ` in the states with ${early.label}` : '';
    const lift = b.local - b.chanceLocal;
    const mostly = b.local >= 0.5 ? 'mostly blocks that touch the visible region' : 'mostly blocks away from the visible region';
    // Binomial standard error of the chance share over n states: a lift within 2 se is noise.
    const se = Math.sqrt(Math.max(b.chanceLocal * (1 - b.chanceLocal), 1e-12) / Math.max(b.n, 1));
    const vsChance = Math.abs(lift) < Math.max(0.05, 2 * se)
      ? `no clear difference from a random hidden block (2 standard errors at n = ${b.n}: ${signed(2 * se)} points)`
      : lift > 0 ? 'more than a random hidden block would: it prefers interpolating next to what is visible'
        : 'less than a random hidden block would: it prefers blocks away from the visible region';
    lines.push(`- **Overall**: the oracle a* (${uRow.reading}) picks ${mostly}${where}: ${pct(b.local)} local against ${pct(b.chanceLocal)} for a random hidden block, ${signed(lift)} points — ${vsChance}.`);
    const extraps = locality.filter((r) => r.target === 'u_extrap' && r.reading === uRow.reading);
    if (extraps.length > 0) {
      const parts = extraps.map((r) => `w = ${r.weight}: ${pct(basis(r).local)} local (${signed(basis(r).local - b.local)} points vs u)`);
      const farthest = extraps.reduce((x, y) => (basis(y).meanDistance > basis(x).meanDistance ? y : x));
      lines.push(`- **How w changes it**${where}: ${parts.join('; ')}. The label reaching farthest is u_extrap with w = ${farthest.weight} (mean distance ${basis(farthest).meanDistance.toFixed(2)} vs ${b.meanDistance.toFixed(2)} for u).`);
    }
  }
  if (own && uRow && own.n > 0) {
    const dominated = own.aStarIsMaxOwnLoss - own.chance > 0.3 && own.ownShareOfU > 0.5;
    lines.push(`- **What drives u**: in ${pct(own.aStarIsMaxOwnLoss)} of ${own.n} states a* is simply the hidden block with the largest loss of its *own* tokens (chance ${pct(own.chance)}), and that own loss makes up ${pct(own.ownShareOfU)} of u(a*) on average; a*_extrap (w = ${locality.find((r) => r.primary && r.target === 'u_extrap')?.weight ?? '?'}) coincides with it in ${pct(own.aStarExtrapIsMaxOwnLoss)}. ` +
      (dominated ? 'So u mostly rewards revealing the hardest block itself, not the block that helps the rest: u_extrap, which drops that term, is the label that measures future-context value.'
        : 'The own-loss term does not dominate u here.'));
  }
  if (ranks && ranks.length > 0) {
    const shown = ranks.map((r) => `${r.target === 'u' ? 'u' : `u_extrap w = ${r.weight}`} (${r.reading}) ${r.meanRank.toFixed(2)}`);
    const biased = ranks.filter((r) => r.reading === 'teacher-forced' && Math.abs(r.meanRank - 0.5) > 0.1);
    lines.push(`- **Reference-order check** (mean rank of the label among the hidden blocks in raster block order, 0 = first, 1 = last, chance 0.50): ${shown.join('; ')}.` +
      (biased.length > 0
        ? ` The teacher-forced reading decodes R in raster block order, so blocks early in that order already serve as context for the rest of R; labels at rank ${biased.map((r) => r.meanRank.toFixed(2)).join(' / ')} mean that order, not only the image, steers them (${biased.map((r) => (r.target === 'u' ? 'u' : `u_extrap w = ${r.weight}`)).join(', ')}).`
        : ' No label is pulled toward either end of the reference order by more than 0.1.'));
  }
  for (const a of agreement) {
    lines.push(`- ${a.what}: ${a.a} and ${a.b} pick the same block in ${pct(a.agree)} of ${a.n} states (chance ${pct(a.chance)}); top-3 ${pct(a.top3)}, mean Spearman ${Number.isFinite(a.spearman) ? a.spearman.toFixed(2) : 'n/a'}.`);
  }
  return lines;
}
