/**
 * "What this run showed" for Stages 5 and 6 (notebooks 06 and 07): the run's
 * numbers in sentences, each with its interval and the verdict it supports.
 * Stages 3 and 4 have theirs beside their steps (stage3Findings, stage4Findings in stages.ts).
 */
import type { ProfileName } from '../runtime/profile';
import type { JointTuningConfig, JointTuningResult } from './joint';
import { deltaWords, MetricsRow, OrderNllComparisonRow, orderNllFinding, pairedDifference, pairedFinding } from './stages';
import { estimateCell, Finding, findingsSection } from '../stats/findings';

const SMOKE_NOTE = '- *Smoke profile*: a tiny backbone and a few steps; these numbers exercise the pipeline, they are not evidence about the method.';

/**
 * Notebook 06: the backbone's drift under the guard, the kept checkpoint, and
 * the planner's held-out top-1 and regret before and after tuning (paired 95%
 * bootstrap intervals on the same states).
 */
/** Held-out NLL of each Stage 5 run at step 0 and at its kept checkpoint, in the planner's orders, raster and random blocks. */
export function stage5ComparisonRows(runs: Readonly<Record<string, Pick<JointTuningResult, 'log' | 'bestStep'>>>): Record<string, string | number>[] {
  return Object.entries(runs).filter(([, r]) => r.log.evals.length > 0).map(([name, r]) => {
    const e0 = r.log.evals[0], kept = r.log.evals.find((e) => e.step === r.bestStep) ?? e0;
    return {
      'L_AR on': name, 'kept step': r.bestStep, steps: r.log.steps,
      'planner orders: step 0': e0.plannerBits, 'planner orders: kept': kept.plannerBits, 'Δ planner orders': kept.plannerBits - e0.plannerBits,
      'raster: kept': kept.rasterBits, 'Δ raster': kept.rasterBits - e0.rasterBits, 'random blocks: kept': kept.randomBits, 'Δ random blocks': kept.randomBits - e0.randomBits,
    };
  });
}

/** What notebook 06 adds to the Stage 5 findings: the raster control, the contest's budgets and fixed order. */
export interface Stage5Context {
  control?: Pick<JointTuningResult, 'log' | 'bestStep'>;
  budgets?: readonly { backbone: string; steps: number; 'tokens seen': number; epochs: number }[];
  fixedOrder?: readonly number[];
  orderImages?: number;
  trainImages?: number;
}

/** The planner after Stage 5 against itself before, on the same held-out states: [top-1, regret] as finding records. */
export function stage5FindingRows(planner: { before: MetricsRow; after: MetricsRow }): [Finding, Finding] {
  const { before, after } = planner;
  return [pairedFinding('planner after tuning', 'top-1', 'before tuning', pairedDifference(before, after, 'correct'), 'higher is better'),
    pairedFinding('planner after tuning', 'regret', 'before tuning', pairedDifference(before, after, 'regret'), 'lower is better', 'nats')];
}

export function stage5Findings(joint: Pick<JointTuningResult, 'log' | 'bestStep'>, cfg: JointTuningConfig,
  planner: { before: MetricsRow; after: MetricsRow }, profile: ProfileName, stamp: string, ctx: Stage5Context = {}): string {
  const f3 = (v: number) => v.toFixed(3), f4 = (v: number) => v.toFixed(4);
  const signed = (v: number) => `${v >= 0 ? '+' : ''}${f4(v)}`;
  const { log } = joint, { before, after } = planner;
  const dRaster = log.after.raster - log.before.raster, dRandom = log.after.random - log.before.random;
  const [dTop1, dRegret] = stage5FindingRows(planner);
  return findingsSection([
    `In this run (**${stamp}**; ${log.steps} steps, top ${cfg.topBlocks} blocks, λ = ${cfg.lambda}):`,
    `- **Backbone drift**: held-out raster NLL ${f4(log.before.raster)} → ${f4(log.after.raster)} bits/token (${signed(dRaster)}), ` +
      `random-block NLL ${f4(log.before.random)} → ${f4(log.after.random)} (${signed(dRandom)}); threshold ${cfg.maxNllIncrease} bits/token: ` +
      `${Math.max(dRaster, dRandom) <= cfg.maxNllIncrease ? 'within it' : 'exceeded'}.` +
      (log.stoppedEarly ? ` The guard stopped the run (${log.stopReason}).` : ''),
    `- **Kept checkpoint**: step ${joint.bestStep} of ${log.steps}: the lowest held-out objective ln 2 · NLL in the pair's planner orders + λ · planner validation loss, among checkpoints within the threshold` +
      (joint.bestStep === 0 ? ' (step 0: no tuned checkpoint did better on held-out data, so the untuned pair is kept).' : '.'),
    ...stage5Comparison(joint, ctx.control),
    ...(ctx.budgets?.length ? [`- **Matched budgets**: ${ctx.budgets.map((b) => `${b.backbone} ${b.steps} steps (${(b['tokens seen'] / 1e6).toFixed(2)}M tokens, ${b.epochs.toFixed(2)} epochs)`).join('; ')}.`] : []),
    ...(ctx.fixedOrder ? [`- **Fixed order** (the planner's average order over ${ctx.orderImages ?? '?'} of ${ctx.trainImages ?? '?'} training images): ${ctx.fixedOrder.join(' ')}.`] : []),
    `- **Planner**: top-1 ${f3(before.summary.top1)} → ${f3(after.summary.top1)} (paired ${deltaWords(dTop1)}), ` +
      `regret ${f3(before.summary.regret)} → ${f3(after.summary.regret)} (${deltaWords(dRegret)}).`,
    profile === 'smoke' ? SMOKE_NOTE : '',
  ], [dTop1, dRegret]);
}

/** The planner-order NLL change of the kept checkpoints of the planner-order run and its raster control. */
function stage5Comparison(joint: Pick<JointTuningResult, 'log' | 'bestStep'>, control?: Pick<JointTuningResult, 'log' | 'bestStep'>): string[] {
  const rows = stage5ComparisonRows(control ? { 'planner orders': joint, 'raster orders': control } : { 'planner orders': joint });
  const f = (v: unknown) => `${Number(v) >= 0 ? '+' : ''}${Number(v).toFixed(4)}`;
  return rows.map((r) => `- **L_AR on ${r['L_AR on']}** (kept step ${r['kept step']}): held-out NLL in the planner's orders ${f(r['Δ planner orders'])} bits/token, raster ${f(r['Δ raster'])}, random blocks ${f(r['Δ random blocks'])} (the drift-guard images; one run each, no interval).`);
}

/** One row of notebook 07's sample-quality table: samples under one budget policy, scored by the feature network. */
export interface BudgetSampleQuality {
  policy: string;
  samples: number;
  'planner calls / image': number;
  /** Share of samples the feature network assigns to their conditioning class. */
  'classified as their class': number;
}

/** Notebook 07's findings as records (for findingsTable): every budget policy's NLL against `reference`. */
export const stage6FindingRows = (nll: readonly OrderNllComparisonRow[], reference = 'planner, k = 1'): Finding[] =>
  nll.filter((r) => r.order !== reference).map((r) => orderNllFinding(r, reference));

/**
 * Notebook 07: every budget policy against the reference (one planner call
 * per block): planner calls per image, NLL difference with its paired
 * interval, and class accuracy of its samples. `calls` maps a policy name to
 * its mean planner calls per held-out image; `nll` is orderNllComparison with
 * `reference` as its reference order.
 */
export function stage6Findings(nll: readonly OrderNllComparisonRow[], calls: Readonly<Record<string, number>>, quality: readonly BudgetSampleQuality[],
  profile: ProfileName, stamp: string, reference = 'planner, k = 1'): string {
  const ref = nll.find((r) => r.order === reference);
  const refQuality = quality.find((q) => q.policy === reference);
  if (!ref || calls[reference] === undefined || !refQuality) return `In this run (**${stamp}**): no '${reference}' policy to compare the budgets with.`;
  const refName = reference.replace(/^planner, /, '');
  const accuracy = (name: string) => quality.find((q) => q.policy === name)?.['classified as their class'];
  return findingsSection([`In this run (**${stamp}**):`,
    ...nll.filter((r) => calls[r.order] !== undefined && r !== ref).map((r) => {
      const acc = accuracy(r.order), d = orderNllFinding(r, reference);
      return `- **${r.order}**: ${calls[r.order].toFixed(2)} planner calls per image against ${calls[reference].toFixed(2)} ` +
        `(${(100 * (1 - calls[r.order] / calls[reference])).toFixed(0)}% fewer); NLL ${r.bitsPerToken.toFixed(3)} bits/token, ${estimateCell(d)} ` +
        `against ${refName} (${d.verdict}); samples classified as their class: ${acc === undefined ? 'not sampled' : acc.toFixed(3)} ` +
        `(${refName}: ${refQuality['classified as their class'].toFixed(3)}).`;
    }),
    profile === 'smoke' ? '- *Smoke profile*: a tiny backbone; these numbers exercise the pipeline, they are not evidence about the method.' : '',
  ], stage6FindingRows(nll, reference).filter((x) => calls[x.subject] !== undefined));
}
