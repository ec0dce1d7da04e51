/** The budget set of Algorithm 4 (METHOD.md §6.6): how many blocks one planning step may reveal. */
import { ensure } from '../runtime/errors';

/** The default budget set of Algorithm 4. */
export const BUDGETS: readonly number[] = [1, 2, 4];

/**
 * Check a budget set: a non-empty, strictly increasing list of powers of two
 * (1, 2, 4, 8, ...) that contains 1 (so any remainder can be revealed) and
 * whose largest budget is at most `numBlocks`. Returns a copy.
 */
export function checkBudgetSet(set: readonly number[], numBlocks: number, where = 'router.budgets'): number[] {
  const fix = `use a sorted set of powers of two starting at 1, at most ${numBlocks} (the block count), e.g. [${BUDGETS.filter((k) => k <= numBlocks).join(', ')}]`;
  ensure(Array.isArray(set) && set.length > 0, `the budget set is empty (${JSON.stringify(set)})`, where, fix);
  for (const k of set) {
    ensure(typeof k === 'number' && Number.isInteger(k) && k >= 1 && (k & (k - 1)) === 0, `budget ${String(k)} is not a power of two (1, 2, 4, 8, ...)`, where, fix);
  }
  for (let i = 1; i < set.length; i++) {
    ensure(set[i] > set[i - 1], `the budget set [${set.join(', ')}] is not strictly increasing (${set[i] === set[i - 1] ? `${set[i]} repeats` : `${set[i]} after ${set[i - 1]}`})`, where, fix);
  }
  ensure(set[0] === 1, `the budget set [${set.join(', ')}] lacks 1, so a state with fewer blocks left than its smallest budget could not move`, where, fix);
  const max = set[set.length - 1];
  ensure(max <= numBlocks, `budget ${max} exceeds the ${numBlocks} blocks of the grid`, where, fix);
  return set.slice();
}
