/**
 * Progress reporting for long loops (training steps, sampling, evaluation)
 * that works in the three places this project runs:
 *
 * - a terminal (stderr is a TTY): one line redrawn in place with `\r`;
 * - a log file or CI (not a TTY): a full line at every ~10% (and at least once
 *   a minute), so logs stay short but show the run is alive;
 * - a tslab notebook: the notebook layer passes `sink`, typically the text
 *   update of `tslab.newDisplay()`, and one output cell is updated in place.
 *   tslab is not imported here so the library runs without it.
 *
 * Rendering is throttled to one redraw per 100 ms so `tick()` can be called on
 * every step of a fast loop.
 */
import { ensure } from './errors';

export type ProgressInfo = Record<string, number | string>;

/** The part of a Node stream progress needs; tests pass a fake. */
export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): unknown;
}

export interface ProgressOptions {
  /** Number of units (steps, batches, images) the loop will do. */
  total: number;
  /** Shown at the start of the line: `stage1 train`. */
  label: string;
  /** Non-TTY mode: print a line each time this fraction of `total` completes; default 0.1. */
  every?: number;
  /** Notebook display: receives the whole current line each redraw (replace, don't append). */
  sink?: (text: string) => void;
  /** Where terminal/log output goes; default `process.stderr`. */
  stream?: ProgressStream;
  /** Minimum time between redraws in TTY and sink modes; default 100 ms. */
  minIntervalMs?: number;
  /** Non-TTY mode: also print a line when this long passed without one; default 60 s. */
  heartbeatMs?: number;
  /** Clock in ms, for tests; default `Date.now`. */
  now?: () => number;
}

export interface Progress {
  /** Record `n` more units done; `info` (loss, lr...) is shown after the ETA and kept until replaced. */
  tick(n?: number, info?: ProgressInfo): void;
  /** Draw the final line (forced, whatever the throttle) and stop; later calls do nothing. */
  done(info?: ProgressInfo): void;
  /** Units done so far. */
  readonly count: number;
}

/** `0:07`, `12:03`, `1:02:03` */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

function formatValue(v: number | string): string {
  if (typeof v === 'string') return v;
  if (Number.isInteger(v) || !Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

function formatRate(perSecond: number): string {
  if (!Number.isFinite(perSecond) || perSecond <= 0) return '- it/s';
  return perSecond >= 1 ? `${formatValue(perSecond)} it/s` : `${formatValue(1 / perSecond)} s/it`;
}

const BAR_WIDTH = 20;

/** Start reporting progress of a loop of `total` units. */
export function progress(options: ProgressOptions): Progress {
  const { total, label, sink, every = 0.1, minIntervalMs = 100, heartbeatMs = 60_000 } = options;
  ensure(Number.isInteger(total) && total >= 0, `total ${total} is not a non-negative integer`, `progress('${label}').total`, 'pass the number of steps the loop will run');
  ensure(every > 0 && every <= 1, `every ${every} is not in (0, 1]`, `progress('${label}').every`, 'pass a fraction such as 0.1 for a line every 10%');
  const stream = options.stream ?? process.stderr;
  const now = options.now ?? Date.now;
  const mode: 'sink' | 'tty' | 'lines' = sink ? 'sink' : stream.isTTY ? 'tty' : 'lines';
  const start = now();
  const markStep = Math.max(1, Math.ceil(total * every));

  let count = 0;
  let info: ProgressInfo = {};
  // Lines mode waits for the first mark or heartbeat; the others draw on the first tick.
  let lastRender = mode === 'lines' ? start : -Infinity;
  let nextMark = markStep;
  let finished = false;

  const line = (t: number, final: boolean): string => {
    const elapsed = (t - start) / 1000;
    const frac = total > 0 ? Math.min(1, count / total) : 1;
    const filled = Math.round(frac * BAR_WIDTH);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}]`;
    const rate = elapsed > 0 ? count / elapsed : NaN;
    const timing = final
      ? `${formatRate(rate)} done in ${formatDuration(elapsed)}`
      : `${formatRate(rate)} ETA ${count > 0 && elapsed > 0 ? formatDuration((total - count) / rate) : '?'}`;
    const extras = Object.entries(info).map(([k, v]) => `${k}=${formatValue(v)}`);
    return [label, bar, `${Math.floor(frac * 100)}%`, `${count}/${total}`, timing, ...extras].join(' ');
  };

  const render = (t: number, final: boolean): void => {
    lastRender = t;
    const text = line(t, final);
    if (mode === 'sink') {
      sink!(text);
    } else if (mode === 'tty') {
      const width = (stream.columns ?? 100) - 1;
      stream.write(`\r${text.length > width ? text.slice(0, width) : text}\x1b[K${final ? '\n' : ''}`);
    } else {
      stream.write(`${text}\n`);
    }
  };

  return {
    get count() {
      return count;
    },
    tick(n = 1, newInfo?: ProgressInfo): void {
      if (finished) return;
      count += n;
      if (newInfo) info = { ...info, ...newInfo };
      const t = now();
      if (mode === 'lines') {
        if (count >= nextMark || t - lastRender >= heartbeatMs) {
          if (count >= nextMark) nextMark = (Math.floor(count / markStep) + 1) * markStep;
          if (count < total) render(t, false);
        }
      } else if (t - lastRender >= minIntervalMs) {
        render(t, false);
      }
    },
    done(newInfo?: ProgressInfo): void {
      if (finished) return;
      finished = true;
      if (newInfo) info = { ...info, ...newInfo };
      render(now(), true);
    },
  };
}

/** Resolve after pending I/O: a synchronous loop would hold every display update until it ends. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
