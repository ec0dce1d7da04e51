/**
 * Planner metrics as table rows (notebooks 04 and 05): one plain object per
 * setting with the summary numbers of metrics.ts, rounded for display, for
 * arquero / danfo / console.table.
 */
import type { PlannerSummary } from './metrics';

/** One row of a planner-metrics table; null where a number is missing or undefined. */
export interface MetricsTableRow {
  setting: string;
  n: number;
  'top-1': number | null;
  'top-3': number | null;
  Spearman: number | null;
  Kendall: number | null;
  regret: number | null;
  ECE: number | null;
}

/** x rounded to `digits` decimals; null for undefined / NaN / infinite. */
function dec(x: number | undefined, digits: number): number | null {
  if (x === undefined || !Number.isFinite(x)) return null;
  const f = 10 ** digits;
  return Math.round(x * f) / f + 0; // + 0 turns -0 into 0
}

/** x to 3 significant digits; null for undefined / NaN / infinite. */
function sig(x: number | undefined): number | null {
  if (x === undefined || !Number.isFinite(x)) return null;
  return Number(x.toPrecision(3)) + 0;
}

/**
 * Plain row objects for a table (arquero / danfo / console.table), one per
 * setting: n, top-1, top-3, Spearman, Kendall, ECE rounded to 3 decimals;
 * regret (in utility units) to 3 significant digits. ECE is null when the
 * setting had no probs, any metric is null when undefined (NaN).
 */
export function metricsTable(rows: ReadonlyArray<{ setting: string; metrics: PlannerSummary }>): MetricsTableRow[] {
  return rows.map(({ setting, metrics: m }) => ({
    setting,
    n: m.n,
    'top-1': dec(m.top1, 3),
    'top-3': dec(m.top3, 3),
    Spearman: dec(m.spearman, 3),
    Kendall: dec(m.kendall, 3),
    regret: sig(m.regret),
    ECE: dec(m.ece, 3),
  }));
}
