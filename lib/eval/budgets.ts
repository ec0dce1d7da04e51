/**
 * Matched budgets at evaluation time (METHOD.md §6): every backbone that
 * enters one comparison must have the same training budget (optimizer
 * steps, batch, tokens seen; lib/backbone/training-budget.ts). The check runs
 * before anything is evaluated and refuses a mismatch, naming each setting
 * and its budget, unless the caller lists the setting in `allowUnmatched`
 * with its reason (which the report then prints next to its row).
 */
import { formatBudget, sameBudget, TrainingBudget } from '../backbone/training-budget';
import { OrderHeadError } from '../runtime/errors';
import { EvalSetting, isMissing, MissingSetting } from './settings';

/** Settings allowed to differ from the contest budget, each with the reason the report shows. */
export type UnmatchedBudgets = Readonly<Record<string, string>>;

export interface BudgetCheck {
  /** The contest budget: the one every matched setting has (undefined when no backbone records one). */
  budget?: TrainingBudget;
  /** Per setting: its budget, and the allowed reason when it differs. */
  bySetting: Record<string, { budget?: TrainingBudget; unmatched?: string }>;
}

/**
 * Check that every (non-missing) setting's backbone has the budget of the
 * first one that is not in `allowUnmatched`. A backbone that records no
 * budget counts as different, except when none records one (nothing to
 * compare: random-init backbones in tests).
 */
export function checkMatchedBudgets(settings: readonly (EvalSetting | MissingSetting)[], allowUnmatched: UnmatchedBudgets = {}): BudgetCheck {
  const present = settings.filter((s): s is EvalSetting => !isMissing(s));
  const bySetting: BudgetCheck['bySetting'] = {};
  for (const s of present) bySetting[s.name] = { budget: s.backbone.budget };
  if (present.every((s) => s.backbone.budget === undefined)) return { bySetting };
  const contest = present.find((s) => !(s.name in allowUnmatched) && s.backbone.budget)?.backbone.budget;
  const differs = (b?: TrainingBudget) => !b || !contest || !sameBudget(b, contest);
  const bad = present.filter((s) => differs(s.backbone.budget) && !(s.name in allowUnmatched));
  if (bad.length) {
    const lines = present.map((s) => `'${s.name}': ${s.backbone.budget ? formatBudget(s.backbone.budget) : 'no budget recorded'}`);
    throw new OrderHeadError(`backbones with different training budgets: ${bad.map((s) => `'${s.name}'`).join(', ')} differ from ${contest ? formatBudget(contest) : 'the others'} (${lines.join('; ')})`,
      'evaluateSettings (budgets)', 'evaluate backbones of one matched-budget run (notebooks 02 and 06 train them), or list a setting in allowUnmatched with the reason the report should show');
  }
  for (const s of present) if (s.name in allowUnmatched && differs(s.backbone.budget)) bySetting[s.name].unmatched = allowUnmatched[s.name];
  return { budget: contest, bySetting };
}
