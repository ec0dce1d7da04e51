/**
 * The one verdict rule of the suite. An interval (a 95% bootstrap interval of
 * a paired difference, or of a value against chance) lies wholly below its
 * reference value, wholly above it, or contains it; an end that touches the
 * reference counts as containing it, whichever way the point estimate
 * points. Every table and finding takes its verdict from verdictOf; the words
 * for a verdict are a lookup on it (findings.ts), never decided again.
 */

/** The ends of an interval. */
export interface IntervalEnds {
  lo: number;
  hi: number;
}

/** Where an interval lies against its reference value (0 for a difference). */
export type Verdict = 'lower' | 'higher' | 'no difference';

/** A verdict read in the quantity's direction. */
export type Merit = 'better' | 'worse' | 'no difference';

/** Which way a quantity improves: NLL, regret, FID are 'lower is better'; top-1 is 'higher is better'. */
export type Direction = 'lower is better' | 'higher is better';

/** 'lower' when the whole interval lies below `against`, 'higher' when wholly above it, else 'no difference'. */
export function verdictOf(d: IntervalEnds, against = 0): Verdict {
  if (d.hi < against) return 'lower';
  if (d.lo > against) return 'higher';
  return 'no difference';
}

const MERIT: Readonly<Record<Direction, Readonly<Record<Verdict, Merit>>>> = {
  'lower is better': { lower: 'better', higher: 'worse', 'no difference': 'no difference' },
  'higher is better': { lower: 'worse', higher: 'better', 'no difference': 'no difference' },
};

/** The verdict as better or worse, given which way the quantity improves. */
export const meritOf = (v: Verdict, direction: Direction): Merit => MERIT[direction][v];
