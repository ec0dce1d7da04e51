/**
 * "What this run showed" for the evaluation notebook: the headline question
 * (does a learned order beat the best raster setting?) answered from the
 * paired differences of headline.ts, one sentence per setting; for the
 * remaining-loss curves from the paired differences against the reference
 * setting (an interval that contains 0 is read as no difference); the
 * per-step oracle comparison against both targets; and, given the greedy
 * oracle bound, the headroom on the kept-random backbone (headroom.ts; the
 * bound is never part of the headline).
 */
import type { ProfileName } from '../runtime/profile';
import { FEATURE_NET_CAVEAT } from './metrics';
import { ORACLE_COMPARISON_COLUMNS, TRAJECTORY_COLUMNS, TRAJECTORY_REFERENCE, trajectoryReference, withTrajectory } from './tables';
import { pairedTrajectoryDifference } from './trajectory';
import { SettingOutcome, SettingResult } from './results';
import { isMissing, MissingSetting, RASTER_SETTINGS } from './settings';
import { HeadroomBound, headroomFindings } from './headroom';
import { headline, headlineFindingRows, headlineFindings } from './headline';
import { Direction } from '../stats/verdict';
import { estimateCell, Finding, finding, findingSentence, findingsSection, magnitudeCell, Phrasebook, signedCell } from '../stats/findings';

export function evaluationFindings(outcomes: readonly SettingOutcome[], profile: ProfileName, stamp: string, bound?: HeadroomBound | MissingSetting): string {
  const done = outcomes.filter((o): o is SettingResult => !isMissing(o));
  const missing = outcomes.filter(isMissing);
  const rows: Finding[] = [];
  const lines = [`In this run (**${stamp}**; ${done.length} settings evaluated${missing.length ? `, ${missing.length} missing: ${missing.map((m) => m.name).join(', ')}` : ''}):`];
  // The headline: paired differences against the best raster setting, never overlaps of unpaired intervals.
  if (done.some((o) => (RASTER_SETTINGS as readonly string[]).includes(o.name))) {
    const h = headline(outcomes);
    lines.push(...headlineFindings(h).map((l) => (l.startsWith('- ') ? l : `- ${l}`)));
    rows.push(...headlineFindingRows(h));
  } else {
    lines.push('- No raster setting was evaluated, so there is no headline comparison.');
  }
  lines.push(...trajectoryFindings(outcomes));
  lines.push(...headroomFindings(outcomes, bound));
  lines.push(`- ${FEATURE_NET_CAVEAT}`);
  if (profile === 'smoke') lines.push('- *Smoke profile*: tiny models and a handful of samples; these numbers exercise the pipeline, they are not evidence about the method.');
  return findingsSection(lines, [...rows, ...trajectoryFindingRows(outcomes)]);
}

const digitsOf = (key: string) => [...TRAJECTORY_COLUMNS, ...ORACLE_COMPARISON_COLUMNS].find((c) => c.key === key)!.digits;

/** "front-loads the information more than *block-RAR + raster order*: area lower by 2.20 [1.10, 3.30] nats" and its other verdicts. */
const AREA_WORDS: Phrasebook = {
  lower: (f) => `front-loads the information more than *${f.reference}*: area lower by ${magnitudeCell(f)} nats`,
  higher: (f) => `front-loads the information less than *${f.reference}*: area higher by ${magnitudeCell(f)} nats`,
  'no difference': (f) => `no difference in area from *${f.reference}* (Δ ${estimateCell(f)})`,
};
const FIRST_HALF_WORDS: Phrasebook = {
  higher: (f) => `its first half of the blocks removes ${magnitudeCell(f)} nats more`,
  lower: (f) => `its first half of the blocks removes ${magnitudeCell(f)} nats less`,
  'no difference': (f) => `no difference in what the first half removes (Δ ${estimateCell(f)})`,
};

type WithTrajectory = ReturnType<typeof withTrajectory>[number];

/** A setting's paired Δ area and Δ first-half reduction against the trajectory reference, image by image. */
function trajectoryPair(o: WithTrajectory, ref: WithTrajectory): [Finding, Finding] {
  const of = (key: 'area' | 'firstHalf', claim: string, direction: Direction) => {
    const d = pairedTrajectoryDifference(o.trajectory, ref.trajectory, key);
    return finding({ subject: o.name, claim, reference: ref.name, estimate: d.mean, lo: d.lo, hi: d.hi, digits: digitsOf(key), unit: 'nats', direction });
  };
  return [of('area', 'area under L_rest', 'lower is better'), of('firstHalf', 'first-half reduction', 'higher is better')];
}

/** Every setting's trajectoryPair as finding records (for findingsTable); none without the reference. */
export function trajectoryFindingRows(outcomes: readonly SettingOutcome[]): Finding[] {
  const ref = trajectoryReference(outcomes);
  return ref ? withTrajectory(outcomes).filter((o) => o !== ref).flatMap((o) => trajectoryPair(o, ref)) : [];
}

/** The remaining-loss lines: each setting against the reference, image by image; then the oracle comparison's best. */
function trajectoryFindings(outcomes: readonly SettingOutcome[]): string[] {
  const scored = withTrajectory(outcomes);
  if (!scored.length) return [];
  const t = scored[0].trajectory, dA = digitsOf('area');
  const best = scored.reduce((a, b) => (b.trajectory.totals.area.mean < a.trajectory.totals.area.mean ? b : a));
  const area = best.trajectory.totals.area;
  const lines = [`- **Remaining loss along the order** (${t.reading} reading, the same ${t.images} held-out test images for every setting; the area under L_rest(S_t) is lower when an order removes the loss sooner): ` +
    `lowest area *${best.name}* ${area.mean.toFixed(dA)} [${area.lo.toFixed(dA)}, ${area.hi.toFixed(dA)}] nats. ` +
    'Summed over the whole decode, the reduction Σ_t u(a_t | S_t) is L_rest(∅) for every order (it telescopes), so only its timing is compared.'];
  const ref = trajectoryReference(outcomes);
  if (!ref) {
    lines.push(`  - No paired comparison: the reference *${TRAJECTORY_REFERENCE}* has no trajectory metrics in this run.`);
    return [...lines, ...oracleFindings(scored)];
  }
  for (const o of scored) {
    if (o === ref) continue;
    const [area, half] = trajectoryPair(o, ref);
    const s = pairedTrajectoryDifference(o.trajectory, ref.trajectory, 'start');
    const start = ref.trajectory.totals.start.mean;
    const other = Math.abs(s.mean) > 1e-9 * Math.max(1, Math.abs(start))
      ? ` Its backbone or block geometry differs from the reference's (L_rest(∅) Δ ${signedCell(s.mean, s, digitsOf('start'))}), so this mixes backbone and order.` : '';
    lines.push(`  - ${o.name}: ${findingSentence(area, AREA_WORDS)}; ${findingSentence(half, FIRST_HALF_WORDS)}.${other}`);
  }
  return [...lines, ...oracleFindings(scored)];
}

/**
 * The per-step oracle comparison, once per target (trajectory.ts,
 * ORACLE_TARGETS): who comes closest to the planner's trained target, and
 * who to argmax u, each with every setting's regret and top-1.
 */
function oracleFindings(scored: ReturnType<typeof withTrajectory>): string[] {
  const withOracle = scored.filter((o) => o.trajectory.oracle);
  if (!withOracle.length) return [];
  const c = (o: (typeof withOracle)[number]) => o.trajectory.oracle!.totals;
  const { targetLabels, images } = withOracle[0].trajectory.oracle!;
  const pct = (v: number) => `${(100 * v).toFixed(0)}%`;
  const against = (target: 'Trained' | 'U', words: string) => {
    const regret = `regret${target}` as const, agree = `agreement${target}` as const, dR = digitsOf(regret);
    const best = withOracle.reduce((a, b) => (c(b)[regret].mean < c(a)[regret].mean ? b : a));
    const r = c(best)[regret];
    const others = withOracle.filter((o) => o !== best).map((o) => `${o.name} ${c(o)[regret].mean.toFixed(dR)} (top-1 ${pct(c(o)[agree].mean)})`);
    return `  - against ${words}: lowest regret *${best.name}*, ${r.mean.toFixed(dR)} [${r.lo.toFixed(dR)}, ${r.hi.toFixed(dR)}] nats, ` +
      `its choice at ${pct(c(best)[agree].mean)} of the steps${others.length ? `; the others: ${others.join(', ')}` : ''}.`;
  };
  return [`- **Against the oracle, step by step** (the first ${images} test images only; regret summed over the decode, in each target's own utility):`,
    against('Trained', `the planner's trained target (${targetLabels.trained}, what Stage 3 trains it to pick)`),
    against('U', `${targetLabels['argmax u']} (the block that removes the most remaining loss, its own included)`)];
}
