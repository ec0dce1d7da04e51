/**
 * "What this run showed" (notebook 03_stage2_oracle): Markdown bullet lines
 * computed from the reference-rank, own-loss, locality and agreement
 * numbers, reading by reading. Nothing here is a conclusion written in
 * advance: every verdict (leans late or not, interval includes 0.5 or not,
 * local or not) is decided from the numbers passed in.
 */
import type { LocalityRow } from './locality';
import type { AgreementRow } from './agreement';
import type { OwnLossRow } from './own-loss';
import type { ReferenceRankRow } from './reference-rank';
import { IntervalEnds, Verdict, verdictOf } from '../stats/verdict';
import { Finding, finding, findingSentence, Phrasebook } from '../stats/findings';

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(0)}%` : 'n/a');
const signed = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(0)}`;
const num = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');

/** Locality rows of a subset of states (e.g. early states, small |S|) and how to name that subset. */
export interface LocalitySubset {
  /** e.g. '|S| = 1-5'. */
  label: string;
  rows: LocalityRow[];
}

/** The numbers oracleFindings writes about; each part is optional but `locality` and `agreement`. */
export interface OracleFindingsInput {
  /** localityTable(ds): every labeling, all states with |S| >= 1 that every labeling has. */
  locality: readonly LocalityRow[];
  /** agreementTable(ds). */
  agreement: readonly AgreementRow[];
  /** The same locality rows over small |S|, where chance is far from 100%; verdicts then rest on them. */
  early?: LocalitySubset;
  /** ownLossTable(ds): one row per reading. */
  own?: readonly OwnLossRow[];
  /** referenceRankTable(ds), with intervals. */
  ranks?: readonly ReferenceRankRow[];
}

/** Chance: the mean rank of a label drawn at random among the hidden blocks. */
const CHANCE_RANK = 0.5;

/** How far an interval lies from chance 0.5, by where it lies (0 when it includes it). */
const GAP_FROM_HALF: Readonly<Record<Verdict, (r: IntervalEnds) => number>> = {
  higher: (r) => r.lo - CHANCE_RANK, lower: (r) => CHANCE_RANK - r.hi, 'no difference': () => 0,
};
const gapFromHalf = (r: IntervalEnds) => GAP_FROM_HALF[verdictOf(r, CHANCE_RANK)](r);

/** A reading's mean rank in raster order against chance, as a finding record. */
const rankFinding = (r: ReferenceRankRow): Finding =>
  finding({ subject: `${r.reading} reading`, claim: `mean rank of ${targetName(r.target, r.weight)}`, reference: 'chance', estimate: r.meanRank, lo: r.lo, hi: r.hi, against: CHANCE_RANK, digits: 2 });

/** The reference-order check as finding records (for findingsTable): every reading's mean rank against chance 0.5. */
export const referenceRankFindings = (ranks: readonly ReferenceRankRow[]): Finding[] => ranks.map(rankFinding);

const TEACHER_FORCED_WORDS: Phrasebook = {
  higher: () => 'the teacher-forced labels lean late in raster: their whole interval lies above 0.5',
  lower: () => 'the teacher-forced labels lean *early* in raster, not late: their whole interval lies below 0.5',
  'no difference': () => 'the teacher-forced labels do not lean late in raster in this run: their interval includes 0.5',
};
const BLOCK_MARGINAL_WORDS: Phrasebook = {
  higher: (f) => `the block-marginal interval does not include 0.5 (it lies ${num(gapFromHalf(f))} above it)`,
  lower: (f) => `the block-marginal interval does not include 0.5 (it lies ${num(gapFromHalf(f))} below it)`,
  'no difference': () => 'the block-marginal interval includes 0.5',
};
const interval = (r: ReferenceRankRow) => `${num(r.meanRank)} [${num(r.lo)}, ${num(r.hi)}]`;
const targetName = (t: 'u' | 'u_extrap', weight: string) => (t === 'u' ? 'a* = argmax u' : `a*_extrap = argmax u_extrap (w = ${weight})`);

/**
 * The reference-order lines for one target: each reading's mean rank with its
 * interval, whether the teacher-forced labels lean late, whether the
 * block-marginal interval includes 0.5, and whether the pattern the readings
 * predict holds (block-marginal no farther from 0.5 than one-step, teacher-
 * forced above both).
 */
function referenceOrderLine(rows: readonly ReferenceRankRow[], target: 'u' | 'u_extrap'): string | undefined {
  if (rows.length === 0) return undefined;
  const by = new Map(rows.map((r) => [r.reading, r] as const));
  const bm = by.get('block-marginal'), tf = by.get('teacher-forced'), os = by.get('one-step');
  const weight = rows.find((r) => r.target === 'u_extrap')?.weight ?? '';
  const parts: string[] = [
    `for ${targetName(target, weight)} the mean rank is ${rows.map((r) => `${interval(r)} under the ${r.reading} reading`).join(', ')} (n = ${rows[0].n} states of ${rows[0].images} images)`,
  ];
  if (tf) parts.push(findingSentence(rankFinding(tf), TEACHER_FORCED_WORDS));
  if (bm) parts.push(findingSentence(rankFinding(bm), BLOCK_MARGINAL_WORDS));
  let verdict = '';
  if (bm && tf && os) {
    const bmOk = gapFromHalf(bm) <= gapFromHalf(os);
    // Teacher-forced "above both": its whole interval lies above both other intervals' upper ends.
    const tfAbove = verdictOf(tf, Math.max(bm.hi, os.hi)) === 'higher';
    verdict = bmOk && tfAbove
      ? ' So the expected pattern holds: block-marginal sits no farther from 0.5 than one-step, and teacher-forced sits above both.'
      : ` So the expected pattern (block-marginal no farther from 0.5 than one-step, teacher-forced above both) does not hold here: ${[
        bmOk ? '' : `block-marginal lies farther from 0.5 than one-step (${num(gapFromHalf(bm))} vs ${num(gapFromHalf(os))})`,
        tfAbove ? '' : `the teacher-forced interval does not lie above both others (its lower end ${num(tf.lo)} vs upper ends ${num(bm.hi)} and ${num(os.hi)})`,
      ].filter(Boolean).join('; ')}.`;
  }
  return `${parts.join('; ')}.${verdict}`;
}

/**
 * "What this run showed": Markdown bullet lines, reading by reading. With
 * `ranks`: where each reading's labels sit in raster order against 0.5, with
 * the verdicts of the reference-order check. With `own`: how much of u(a*)
 * is the candidate's own loss under each reading. Always: for each reading,
 * how often a* and a*_extrap touch the visible region against a random hidden
 * block (with `early`, also on small |S|, and the verdict rests on those
 * states), then how w shifts the primary reading's labels, then how often
 * the readings pick the same block.
 */
export function oracleFindings(input: OracleFindingsInput): string[] {
  const { locality, agreement, early, own, ranks } = input;
  const lines: string[] = [];
  const primaryU = locality.find((r) => r.primary && r.target === 'u');
  const primaryWeight = locality.find((r) => r.primary && r.target === 'u_extrap')?.weight;
  const readings = [...new Set(locality.map((r) => r.reading))];

  if (ranks && ranks.length > 0) {
    const pick = (t: 'u' | 'u_extrap') => readings.flatMap((rd) => {
      const of = ranks.filter((r) => r.reading === rd && r.target === t);
      const row = of.find((r) => t === 'u' || r.weight === primaryWeight) ?? of[0];
      return row ? [row] : [];
    });
    const body = (['u', 'u_extrap'] as const).map((t) => referenceOrderLine(pick(t), t)).filter((x): x is string => x !== undefined);
    if (body.length > 0) {
      lines.push('- **Reference-order check** (the label\'s rank among the hidden blocks in raster order, 0 = first, 1 = last, chance 0.50; 95% bootstrap intervals over images, on the states every reading labels):');
      for (const x of body) lines.push(`  - ${x.charAt(0).toUpperCase()}${x.slice(1)}`);
    }
  }

  if (own && own.length > 0) {
    const known = own.filter((o) => o.n > 0);
    const parts = own.map((o) => (o.n > 0
      ? `under the ${o.reading} reading, a*'s own loss makes up ${pct(o.ownShareOfU)} [${pct(o.shareLo)}, ${pct(o.shareHi)}] of u(a*), and a* is the hidden block with the largest own loss in ${pct(o.aStarIsMaxOwnLoss)} of ${o.n} states (chance ${pct(o.chance)})`
      : `under the ${o.reading} reading it cannot be told (the dataset stores neither its token losses nor a w = uniform labeling of it)`));
    const dominated = known.filter((o) => o.aStarIsMaxOwnLoss - o.chance > 0.3 && o.ownShareOfU > 0.5).map((o) => o.reading);
    lines.push(`- **What drives u**: u(a | S) credits a with the loss of its own tokens as well as with its help to the rest; ${parts.join('; ')}. ` +
      (dominated.length > 0
        ? `So under the ${dominated.join(' and ')} reading${dominated.length > 1 ? 's' : ''} u mostly rewards revealing the hardest block itself; u_extrap, which drops that term, is the label that measures future-context value.`
        : known.length > 0 ? 'The own-loss term does not dominate u under any reading measured here.' : ''));
  }

  const key = (r: LocalityRow) => `${r.reading}|${r.target}|${r.weight}`;
  const earlyOf = new Map((early?.rows ?? []).map((r) => [key(r), r] as const));
  const basis = (r: LocalityRow): LocalityRow => earlyOf.get(key(r)) ?? r;
  for (const rd of readings) {
    const rows = locality.filter((r) => r.reading === rd && (r.target === 'u' || r.weight === (primaryWeight ?? r.weight)));
    const parts = rows.map((r) => {
      const e = earlyOf.get(key(r));
      return `${r.target === 'u' ? 'a*' : `a*_extrap (w = ${r.weight})`} touches the visible region in ${pct(r.local)} of ${r.n} states against ${pct(r.chanceLocal)} for a random hidden block` +
        (e && early ? ` (${early.label}: ${pct(e.local)} against ${pct(e.chanceLocal)}, n = ${e.n})` : '');
    });
    if (parts.length > 0) lines.push(`- **Locality, ${rd} reading**: ${parts.join('; ')}.`);
  }
  if (primaryU) {
    const b = basis(primaryU);
    const where = earlyOf.has(key(primaryU)) && early ? ` in the states with ${early.label}` : '';
    const lift = b.local - b.chanceLocal;
    const mostly = b.local >= 0.5 ? 'mostly blocks that touch the visible region' : 'mostly blocks away from the visible region';
    // Binomial standard error of the chance share over n states: a lift within 2 se (and within 5 points) is noise.
    const se = Math.sqrt(Math.max(b.chanceLocal * (1 - b.chanceLocal), 1e-12) / Math.max(b.n, 1));
    const band = Math.max(0.05, 2 * se);
    const vsChance = findingSentence(finding({ subject: 'a*', claim: 'local share minus chance', reference: 'a random hidden block', estimate: lift,
      lo: lift - band, hi: lift + band, digits: 2 }), {
      higher: () => 'more than a random hidden block would: it prefers interpolating next to what is visible',
      lower: () => 'less than a random hidden block would: it prefers blocks away from the visible region',
      'no difference': () => `no clear difference from a random hidden block (2 standard errors at n = ${b.n}: ${signed(2 * se)} points)`,
    });
    lines.push(`- **Overall** (primary, ${primaryU.reading} reading): a* picks ${mostly}${where}: ${pct(b.local)} local against ${pct(b.chanceLocal)} for a random hidden block, ${signed(lift)} points — ${vsChance}.`);
    const extraps = locality.filter((r) => r.target === 'u_extrap' && r.reading === primaryU.reading);
    if (extraps.length > 0) {
      const parts = extraps.map((r) => `w = ${r.weight}: ${pct(basis(r).local)} local (${signed(basis(r).local - b.local)} points vs u)`);
      const farthest = extraps.reduce((x, y) => (basis(y).meanDistance > basis(x).meanDistance ? y : x));
      lines.push(`- **How w changes it** (${primaryU.reading} reading${where}): ${parts.join('; ')}. The label reaching farthest is u_extrap with w = ${farthest.weight} (mean distance ${num(basis(farthest).meanDistance)} vs ${num(b.meanDistance)} for u).`);
    }
  }

  // Pairs of labelings, u and u_extrap together: "same a* in x% (a*_extrap y%)".
  const pairs = new Map<string, AgreementRow[]>();
  for (const r of agreement) {
    const k = r.what === 'reading vs reading' ? `${r.readings[0]} and ${r.readings[1]}` : `${r.a} and ${r.b}`;
    pairs.set(k, [...(pairs.get(k) ?? []), r]);
  }
  const said = (k: string, rows: AgreementRow[]) => {
    const u = rows.find((r) => r.target === 'u') ?? rows[0], x = rows.find((r) => r !== u);
    return `${k}: ${pct(u.agree)}${x ? ` (a*_extrap: ${pct(x.agree)})` : ''} of ${u.n} states, chance ${pct(u.chance)}`;
  };
  const across = [...pairs].filter(([, rows]) => rows[0].what === 'reading vs reading');
  if (across.length > 0) {
    lines.push(`- **Do the readings agree?** Share of states where two readings pick the same a*: ${across.map(([k, rows]) => said(k, rows)).join('; ')}.`);
  }
  const within = [...pairs].filter(([, rows]) => rows[0].what !== 'reading vs reading');
  if (within.length > 0) {
    lines.push(`- **Within a reading**, the share of states with the same label: ${within.map(([k, rows]) => said(k, rows)).join('; ')}.`);
  }
  return lines;
}
