/**
 * Tables for notebooks: plain HTML for results rows, plus lazy loaders for
 * arquero (queries, grouping) and danfojs (pandas-like describe).
 *
 * Both libraries are loaded only when asked for: arquero 8 is ESM-only, so a
 * CommonJS `require` (which tslab cells compile to) fails with ERR_REQUIRE_ESM
 * and it must come through a real dynamic `import()`; danfojs-node pulls in
 * tfjs and takes most of a second to load.
 */
// arquero is ESM-only; TypeScript flags even a type-only import of it from a CommonJS
// file (TS1479), but the types resolve the same ("types" field) and nothing is emitted.
// @ts-ignore TS1479 (the stable fix, `with { 'resolution-mode': 'import' }`, needs TS >= 5.3)
import type * as Arquero from 'arquero';
import type { DataFrame } from 'danfojs-node';
import { OrderHeadError, ensure } from '../runtime/errors';
import { showHtml, stamped } from './notebook';

/**
 * A result row: any plain object. Typed as `object`, not `Record<string, unknown>`,
 * so interfaces without an index signature (e.g. ClassCount) can be passed.
 */
export type TableRow = object;

export interface HtmlTableOptions {
  caption?: string;
  /** Digits after the point for non-integer numbers; default 4. */
  digits?: number;
  /** Columns in order; default every key, in order of first appearance. */
  columns?: string[];
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escape text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => HTML_ESCAPES[ch]);
}

/** One cell's text: numbers rounded, empty for null/undefined, JSON for objects. */
function cellText(value: unknown, digits: number): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return Number.isInteger(value) || !Number.isFinite(value) ? String(value) : value.toFixed(digits);
  if (typeof value === 'string') return value;
  if (typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (value instanceof Date) return value.toISOString();
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Rows of records as a plain HTML table (numbers right-aligned, everything escaped). */
export function toHtmlTable(rows: readonly TableRow[], opts: HtmlTableOptions = {}): string {
  const digits = opts.digits ?? 4;
  ensure(Number.isInteger(digits) && digits >= 0 && digits <= 20, `digits must be a whole number in 0..20, got ${digits}`, 'toHtmlTable(opts.digits)', 'pass e.g. 3');
  const columns = opts.columns ?? [...new Set(rows.flatMap((row) => Object.keys(row)))];
  const head = columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('');
  const body = rows
    .map((row) => {
      const cells = columns.map((c) => {
        const v = (row as Record<string, unknown>)[c];
        const align = typeof v === 'number' || typeof v === 'bigint' ? ' style="text-align:right"' : '';
        return `<td${align}>${escapeHtml(cellText(v, digits))}</td>`;
      });
      return `<tr>${cells.join('')}</tr>`;
    })
    .join('\n');
  const caption = opts.caption === undefined ? '' : `<caption>${escapeHtml(opts.caption)}</caption>\n`;
  return `<table class="orderhead-table">\n${caption}<thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n</tbody>\n</table>`;
}

/** Show rows as an HTML table in the notebook, its caption stamped (see stamped); nothing outside one. */
export function showTable(rows: readonly TableRow[], opts: HtmlTableOptions = {}): void {
  showHtml(toHtmlTable(rows, opts.caption === undefined ? opts : { ...opts, caption: stamped(opts.caption) }));
}

export type ArqueroModule = typeof Arquero;
export type ArqueroTable = Arquero.ColumnTable;
let arqueroModule: Promise<ArqueroModule> | undefined;

/**
 * The arquero module, imported once. The `import()` stays a real ESM import in
 * our CommonJS output (module Node16), so it works from compiled code and
 * from tslab cells that call into it.
 */
export function loadArquero(): Promise<ArqueroModule> {
  arqueroModule ??= import('arquero').catch((err: unknown) => {
    arqueroModule = undefined; // let a later call retry after the user fixes the install
    throw new OrderHeadError(`cannot load arquero (${(err as Error).message})`, 'node_modules/arquero', 'run `npm ci` in the project root');
  });
  return arqueroModule;
}

/** Rows as an arquero table (use `.params()` or `aq.escape()` for values in expressions). */
export async function arqueroTable(rows: readonly TableRow[]): Promise<ArqueroTable> {
  const aq = await loadArquero();
  return aq.from(rows as object[]);
}

type DanfoModule = typeof import('danfojs-node');
let danfoModule: DanfoModule | undefined;

/** danfojs-node, required on first use only. */
export function loadDanfo(): DanfoModule {
  if (danfoModule) return danfoModule;
  try {
    danfoModule = require('danfojs-node') as DanfoModule;
  } catch (err) {
    throw new OrderHeadError(
      `cannot load danfojs-node (${(err as Error).message})`,
      'node_modules/danfojs-node',
      'run `npm ci` in the project root; package.json overrides map its tfjs-node and xlsx dependencies to installable versions',
    );
  }
  return danfoModule;
}

/** Rows as a danfojs DataFrame (e.g. `.describe()` for summary statistics). */
export function danfoFrame(rows: readonly TableRow[]): DataFrame {
  ensure(rows.length > 0, 'no rows', 'danfoFrame(rows)', 'pass at least one row (danfojs cannot build an empty frame from records)');
  const dfd = loadDanfo();
  return new dfd.DataFrame(rows as object[]);
}
