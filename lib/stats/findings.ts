/**
 * Findings as data first: each claim of a "What this run showed" section is a
 * Finding record (estimate, interval, the verdict verdictOf gives it), and one
 * renderer writes records as a Markdown table or as sentences. A sentence's
 * words are a lookup on the finding's verdict (a Phrasebook), so no finding
 * decides its wording from the interval again.
 */
import { Direction, IntervalEnds, Merit, meritOf, Verdict, verdictOf } from './verdict';

/** One claim of a findings section, with the verdict its interval supports. */
export interface Finding extends IntervalEnds {
  /** What the claim is about: a setting, an order, a reading. */
  subject: string;
  /** The quantity, e.g. 'top-1', 'Δ NLL', 'mean rank'. */
  claim: string;
  /** What it is compared with: a setting's name, or 'chance'. */
  reference: string;
  /** The point estimate: a paired difference (subject − reference), or a value judged against `against`. */
  estimate: number;
  /** The value the interval is judged against: 0 for a difference. */
  against: number;
  verdict: Verdict;
  /** The verdict in the quantity's direction, where it has one. */
  merit?: Merit;
  /** Decimals of the estimate and its interval. */
  digits: number;
  /** e.g. 'bits/token'; '' when none. */
  unit: string;
}

export interface FindingInput extends IntervalEnds {
  subject: string;
  claim: string;
  reference: string;
  estimate: number;
  digits: number;
  unit?: string;
  /** Default 0: the interval is of a difference. */
  against?: number;
  /** Give it where the quantity has a direction: the finding then carries its merit. */
  direction?: Direction;
}

/** A finding record, its verdict from verdictOf. */
export function finding(x: FindingInput): Finding {
  const against = x.against ?? 0;
  const verdict = verdictOf(x, against);
  return {
    subject: x.subject, claim: x.claim, reference: x.reference, estimate: x.estimate, lo: x.lo, hi: x.hi, against, verdict,
    ...(x.direction ? { merit: meritOf(verdict, x.direction) } : {}), digits: x.digits, unit: x.unit ?? '',
  };
}

/** A merit in words. */
export type MeritWords = 'better' | 'worse' | 'no clear difference';

/** The words of a merit in tables and sentences ('no clear difference' is the notebooks' established cell text). */
export const MERIT_WORDS: Readonly<Record<Merit, MeritWords>> = { better: 'better', worse: 'worse', 'no difference': 'no clear difference' };

/** A finding's verdict in words: its merit where it has a direction, else where it lies. */
export const verdictWords = (f: Finding): string => (f.merit ? MERIT_WORDS[f.merit] : f.verdict);

/** "+0.012", "-0.010": a number with its sign. */
export const signedNumber = (v: number, digits: number): string => `${v >= 0 ? '+' : ''}${v.toFixed(digits)}`;

/** "+0.012 [-0.010, +0.034]": an estimate and its interval, every number signed. */
export const signedCell = (estimate: number, d: IntervalEnds, digits: number): string =>
  `${signedNumber(estimate, digits)} [${signedNumber(d.lo, digits)}, ${signedNumber(d.hi, digits)}]`;

/** The finding's estimate and interval, signed. */
export const estimateCell = (f: Finding): string => signedCell(f.estimate, f, f.digits);

/** How far estimate and interval lie from `against`, read away from it (flipped when the finding is 'lower'): [estimate, lo, hi] as text. */
export function magnitudeParts(f: Finding): [string, string, string] {
  const a = f.against;
  const m = f.verdict === 'lower' ? [a - f.estimate, a - f.hi, a - f.lo] : [f.estimate - a, f.lo - a, f.hi - a];
  return [m[0].toFixed(f.digits), m[1].toFixed(f.digits), m[2].toFixed(f.digits)];
}

/** "0.030 [0.010, 0.050]": the magnitude of a resolved finding with its interval. */
export function magnitudeCell(f: Finding): string {
  const [m, lo, hi] = magnitudeParts(f);
  return `${m} [${lo}, ${hi}]`;
}

/** The words of one kind of finding, one entry per verdict. */
export type Phrasebook = Readonly<Record<Verdict, (f: Finding) => string>>;

/** The plain sentence of any finding: "OrderHead R=1, top-1 against R=0: +0.012 [-0.010, +0.034]: no clear difference". */
const plainSentence = (f: Finding) => `${f.subject}, ${f.claim} against ${f.reference}: ${estimateCell(f)}${f.unit ? ` ${f.unit}` : ''}: ${verdictWords(f)}`;

/** One finding as a sentence: the phrasebook's entry for its verdict, or the plain sentence. */
export const findingSentence = (f: Finding, words?: Phrasebook): string => (words ? words[f.verdict](f) : plainSentence(f));

/** Findings as one Markdown table, a row each: subject, claim, reference, estimate with interval, verdict. */
/** A findings section: its sentences, then the same findings as one table (the data the sentences were written from). */
export function findingsSection(sentences: readonly string[], rows: readonly Finding[]): string {
  const text = sentences.filter((l) => l !== '');
  return (rows.length ? [...text, '', findingsTable(rows)] : text).join('\n');
}

export function findingsTable(rows: readonly Finding[]): string {
  const line = (c: readonly string[]) => `| ${c.map((x) => x.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(['', 'claim', 'against', 'estimate [interval]', 'verdict']), '|---|---|---|---:|---|',
    ...rows.map((f) => line([f.subject, f.unit ? `${f.claim} (${f.unit})` : f.claim, f.against === 0 ? f.reference : `${f.reference} (${f.against})`, estimateCell(f), verdictWords(f)])),
  ].join('\n');
}
