/**
 * "What this run showed" for the evaluation notebook: the headline question
 * (does a learned order beat raster and random?) answered per metric from the
 * intervals, in words a reader can check against the tables.
 */
import type { ProfileName } from '../runtime/profile';
import { FEATURE_NET_CAVEAT } from './metrics';
import { EVAL_METRIC_COLUMNS } from './tables';
import { SettingOutcome, SettingResult } from './results';
import { isMissing } from './settings';

/** 'lower', 'higher' or 'overlapping intervals' for a against b on one metric. */
function compare(a: SettingResult, b: SettingResult, key: string): string {
  const x = (a.metrics as Record<string, { mean: number; lo: number; hi: number }>)[key];
  const y = (b.metrics as Record<string, { mean: number; lo: number; hi: number }>)[key];
  if (!x || !y || !Number.isFinite(x.mean) || !Number.isFinite(y.mean)) return 'not measured';
  if (x.hi < y.lo) return 'lower';
  if (x.lo > y.hi) return 'higher';
  return 'overlapping intervals';
}

export function evaluationFindings(outcomes: readonly SettingOutcome[], profile: ProfileName, stamp: string): string {
  const done = outcomes.filter((o): o is SettingResult => !isMissing(o));
  const missing = outcomes.filter(isMissing);
  const lines = [`In this run (**${stamp}**; ${done.length} settings evaluated${missing.length ? `, ${missing.length} missing: ${missing.map((m) => m.name).join(', ')}` : ''}):`];
  const keys = ['nllBits', 'fid', 'accuracy', 'recognizabilityAuc'];
  for (const key of keys) {
    const col = EVAL_METRIC_COLUMNS.find((c) => c.key === key)!;
    const scored = done.filter((o) => Number.isFinite((o.metrics as Record<string, { mean: number }>)[key]?.mean));
    if (!scored.length) continue;
    const val = (o: SettingResult) => (o.metrics as Record<string, { mean: number; lo: number; hi: number }>)[key];
    const best = scored.reduce((a, b) => ((col.better === 'lower' ? val(b).mean < val(a).mean : val(b).mean > val(a).mean) ? b : a));
    lines.push(`- **${col.label}** (${col.better} is better): best *${best.name}* ${val(best).mean.toFixed(col.digits)} [${val(best).lo.toFixed(col.digits)}, ${val(best).hi.toFixed(col.digits)}].`);
    for (const p of scored.filter((o) => o.name.startsWith('OrderHead') || o.name === 'adaptive budget')) {
      const refs = scored.filter((o) => o.name === 'raster baseline' || o.name === 'block-RAR + random order' || o.name === 'block-RAR + raster order');
      lines.push(`  - ${p.name} ${val(p).mean.toFixed(col.digits)}: ${refs.map((r) => `${compare(p, r, key)} than ${r.name} (${val(r).mean.toFixed(col.digits)})`).join('; ')}.`);
    }
  }
  lines.push(`- ${FEATURE_NET_CAVEAT}`);
  if (profile === 'smoke') lines.push('- *Smoke profile*: tiny models and a handful of samples; these numbers exercise the pipeline, they are not evidence about the method.');
  return lines.join('\n');
}
