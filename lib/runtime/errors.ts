/**
 * One error type for everything a user can get wrong.
 *
 * Every message names *what* (the file or the config field), *what is wrong*
 * and *the fix*, so a notebook cell shows one readable line instead of a
 * stack trace from deep inside tfjs.
 */
export class OrderHeadError extends Error {
  constructor(
    /** What went wrong, in one sentence. */
    readonly problem: string,
    /** Where: a file path, a config field (`stage1.blockSize`) or an env variable. */
    readonly where: string,
    /** What the user should do about it. */
    readonly fix: string,
  ) {
    super(`${where}: ${problem}. Fix: ${fix}`);
    this.name = 'OrderHeadError';
  }
}

/** Throw an OrderHeadError unless `cond` holds. */
export function ensure(cond: unknown, problem: string, where: string, fix: string): asserts cond {
  if (!cond) throw new OrderHeadError(problem, where, fix);
}

/** Check that a name is one of a fixed set; the error lists the valid ones. */
export function oneOf<T extends string>(value: string, valid: readonly T[], where: string): T {
  if ((valid as readonly string[]).includes(value)) return value as T;
  throw new OrderHeadError(
    `unknown value '${value}'`,
    where,
    `use one of: ${valid.join(', ')}`,
  );
}
