// Our own code: the determinism tests and checkpoints pin these mulberry32 streams and a one-integer state(); seedrandom and pure-rand have neither, so switching would change every data order, sample and table.
/**
 * A small seeded PRNG so data order, generation orders and sampling are
 * reproducible across runs and machines. `Math.random` cannot be seeded, and
 * tfjs's own random ops depend on the backend; this one is plain integer
 * arithmetic and gives the same stream everywhere.
 *
 * Generator: mulberry32 (32-bit state, period 2^32). That is plenty for
 * shuffling datasets and drawing orders; it is not for cryptography.
 */
import { ensure } from './errors';

export interface Rng {
  /** Uniform float in [0, 1), 32 bits of resolution. */
  next(): number;
  /** Uniform integer in [0, n); `n` a positive integer up to 2^32. */
  int(n: number): number;
  /** Fisher–Yates shuffle in place; returns the same array for chaining. */
  shuffle<T>(arr: T[]): T[];
  /** Standard normal sample (Box–Muller, two uniforms per call, no cached spare). */
  normal(): number;
  /**
   * The whole generator state as one unsigned 32-bit integer: store it in a
   * checkpoint's `extra` and continue with `rngFromState` on resume.
   */
  state(): number;
}

/** Hash a string (or several seeds) into a 32-bit seed, so streams can be named. */
export function seedFrom(...parts: ReadonlyArray<string | number>): number {
  // FNV-1a over the parts' text, then one splitmix-style finaliser to spread bits.
  let h = 0x811c9dc5;
  for (const part of parts) {
    const text = `${typeof part}:${String(part)}|`;
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * A generator seeded by a number (used as its low 32 bits after truncation) or
 * a string (hashed). Different seeds give independent-looking streams; derive
 * per-purpose streams with `rng(seedFrom(seed, 'data-order', epoch))`.
 */
export function rng(seed: number | string): Rng {
  if (typeof seed === 'string') return rngFromState(seedFrom(seed));
  ensure(Number.isFinite(seed), `seed ${seed} is not a finite number`, 'rng(seed)', 'pass an integer seed such as 0 or 1234');
  // Mix the seed once so nearby seeds (0, 1, 2) do not start on nearby states.
  return rngFromState(seedFrom(Math.trunc(seed)));
}

/** A generator continuing exactly from a saved `state()`. */
export function rngFromState(state: number): Rng {
  ensure(
    Number.isInteger(state) && state >= 0 && state <= 0xffffffff,
    `state ${state} is not an unsigned 32-bit integer`,
    'rngFromState(state)',
    'pass the number returned by rng.state()',
  );
  let a = state >>> 0;
  const nextU32 = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const next = (): number => nextU32() / 4294967296;
  const int = (n: number): number => {
    ensure(
      Number.isInteger(n) && n > 0 && n <= 4294967296,
      `n=${n} must be a positive integer up to 2^32`,
      'rng.int(n)',
      'pass the size of the range to draw from',
    );
    // Modulo bias is below n / 2^32: irrelevant at dataset sizes.
    return Math.floor(next() * n);
  };
  return {
    next,
    int,
    shuffle<T>(arr: T[]): T[] {
      for (let i = arr.length - 1; i > 0; i--) {
        const j = int(i + 1);
        const tmp = arr[i];
        arr[i] = arr[j];
        arr[j] = tmp;
      }
      return arr;
    },
    normal(): number {
      // 1 - next() is in (0, 1], so the log is finite.
      const u = 1 - next();
      const v = next();
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    },
    state: () => a,
  };
}
