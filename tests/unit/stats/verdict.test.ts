/**
 * The one verdict rule (lib/stats/verdict.ts) and the finding records and
 * renderers built on it (lib/stats/findings.ts): an interval wholly below or
 * above its reference value is resolved, one that contains or touches it is
 * no difference; words come from lookups on the typed verdict.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Direction, meritOf, Verdict, verdictOf } from '../../../lib/stats/verdict';
import { estimateCell, finding, findingSentence, findingsTable, magnitudeCell, Phrasebook, verdictWords } from '../../../lib/stats/findings';
import { verdict } from '../../../lib/planner/stages';

test('verdictOf: below, above, straddling and touching 0', () => {
  assert.equal(verdictOf({ lo: -0.3, hi: -0.1 }), 'lower');
  assert.equal(verdictOf({ lo: 0.1, hi: 0.3 }), 'higher');
  assert.equal(verdictOf({ lo: -0.1, hi: 0.3 }), 'no difference');
  assert.equal(verdictOf({ lo: 0, hi: 0.3 }), 'no difference', 'an end touching 0 counts as containing it');
  assert.equal(verdictOf({ lo: -0.3, hi: 0 }), 'no difference');
  assert.equal(verdictOf({ lo: 0, hi: 0 }), 'no difference');
  assert.equal(verdictOf({ lo: Number.NaN, hi: Number.NaN }), 'no difference', 'an undefined interval resolves nothing');
});

test('verdictOf against a reference value: chance 0.5', () => {
  assert.equal(verdictOf({ lo: 0.55, hi: 0.7 }, 0.5), 'higher');
  assert.equal(verdictOf({ lo: 0.3, hi: 0.45 }, 0.5), 'lower');
  assert.equal(verdictOf({ lo: 0.45, hi: 0.55 }, 0.5), 'no difference');
  assert.equal(verdictOf({ lo: 0.5, hi: 0.6 }, 0.5), 'no difference', 'touching the reference');
  assert.equal(verdictOf({ lo: 0.1, hi: 0.2 }, 0.5), 'lower', 'above 0 but below the reference');
});

test('meritOf: each direction', () => {
  const all: [Verdict, Direction, string][] = [
    ['lower', 'lower is better', 'better'], ['higher', 'lower is better', 'worse'], ['no difference', 'lower is better', 'no difference'],
    ['lower', 'higher is better', 'worse'], ['higher', 'higher is better', 'better'], ['no difference', 'higher is better', 'no difference'],
  ];
  for (const [v, d, m] of all) assert.equal(meritOf(v, d), m, `${v}, ${d}`);
});

test('the notebook verdict cell: better, worse, no clear difference', () => {
  assert.equal(verdict({ diff: 0.2, lo: 0.1, hi: 0.3 }), 'better');
  assert.equal(verdict({ diff: 0.2, lo: 0.1, hi: 0.3 }, true), 'worse');
  assert.equal(verdict({ diff: -0.2, lo: -0.3, hi: -0.1 }, true), 'better');
  assert.equal(verdict({ diff: 0.1, lo: 0, hi: 0.2 }), 'no clear difference');
});

test('finding records: verdict and merit from the interval; one renderer for tables and sentences', () => {
  const f = finding({ subject: 'OrderHead R=0', claim: 'NLL', reference: 'annealed to raster', estimate: -0.05, lo: -0.07, hi: -0.03, digits: 3, unit: 'bits/token', direction: 'lower is better' });
  assert.equal(f.verdict, 'lower');
  assert.equal(f.merit, 'better');
  assert.equal(f.against, 0);
  assert.equal(estimateCell(f), '-0.050 [-0.070, -0.030]');
  assert.equal(magnitudeCell(f), '0.050 [0.030, 0.070]', 'a lower finding reads as a distance below');
  assert.equal(verdictWords(f), 'better');
  const none = finding({ subject: 's', claim: 'top-1', reference: 'r', estimate: 0.1, lo: 0, hi: 0.2, digits: 2, direction: 'higher is better' });
  assert.equal(verdictWords(none), 'no clear difference');
  const rank = finding({ subject: 'teacher-forced', claim: 'mean rank', reference: 'chance', estimate: 0.7, lo: 0.6, hi: 0.8, against: 0.5, digits: 2 });
  assert.equal(rank.verdict, 'higher');
  assert.equal(rank.merit, undefined, 'no direction, no merit');
  assert.equal(verdictWords(rank), 'higher');
  assert.equal(magnitudeCell(rank), '0.20 [0.10, 0.30]', 'the distance from the reference value');

  const words: Phrasebook = { lower: () => 'below', higher: () => 'above', 'no difference': () => 'level' };
  assert.deepEqual([f, none, rank].map((x) => findingSentence(x, words)), ['below', 'level', 'above']);
  assert.equal(findingSentence(f), 'OrderHead R=0, NLL against annealed to raster: -0.050 [-0.070, -0.030] bits/token: better');

  const table = findingsTable([f, none, rank]).split('\n');
  assert.equal(table.length, 5);
  assert.equal(table[2], '| OrderHead R=0 | NLL (bits/token) | annealed to raster | -0.050 [-0.070, -0.030] | better |');
  assert.equal(table[3], '| s | top-1 | r | +0.10 [+0.00, +0.20] | no clear difference |');
  assert.equal(table[4], '| teacher-forced | mean rank | chance (0.5) | +0.70 [+0.60, +0.80] | higher |');
});
