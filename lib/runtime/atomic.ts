/**
 * Crash-safe file writes.
 *
 * Training runs for hours and gets killed (Ctrl-C, kernel restart, OOM, full
 * disk). A checkpoint or config written in place can be left half-written and
 * then poison the resume. So files are written to a temp file in the same
 * folder, fsynced, and renamed over the target (rename is atomic on POSIX
 * within one filesystem): a reader sees either the old file or the new one.
 *
 * Metrics are append-only JSON lines; a line is written by a single append so
 * a kill leaves at most one torn line at the end, which the reader skips and
 * reports.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { OrderHeadError } from './errors';

/**
 * The file-system calls `writeFileAtomic` makes. Tests replace one of them to
 * simulate failures (ENOSPC on write, EXDEV on rename) without filling a disk.
 */
export interface AtomicIo {
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number): number;
  fsyncSync(fd: number): void;
  renameSync(from: string, to: string): void;
}

const realIo: AtomicIo = {
  writeSync: (fd, buffer, offset, length) => fs.writeSync(fd, buffer, offset, length),
  fsyncSync: (fd) => fs.fsyncSync(fd),
  renameSync: (from, to) => fs.renameSync(from, to),
};

export interface WriteAtomicOptions {
  /** Replace some file-system calls (for tests); unspecified ones are the real ones. */
  io?: Partial<AtomicIo>;
}

/** The errno code of a Node system error, if it is one. */
function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

/** Turn a low-level error into a message that names the file and what to do. */
function writeError(target: string, err: unknown, what: string): OrderHeadError {
  if (err instanceof OrderHeadError) return err;
  const code = errCode(err);
  const detail = err instanceof Error ? err.message : String(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new OrderHeadError(
      `${what} failed: no space left on the device (disk full? ${code}); the previous file, if any, is unchanged`,
      target,
      'free disk space (old runs under runs/ are the usual culprit) or point the run root at a larger disk, then retry',
    );
  }
  if (code === 'ENOENT') {
    return new OrderHeadError(
      `${what} failed: the folder ${path.dirname(target)} does not exist (${detail})`,
      target,
      'create the folder first, or check the path for typos',
    );
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new OrderHeadError(
      `${what} failed: not allowed to write here (${code})`,
      target,
      'choose a writable folder (for example set the run root to a folder under your home)',
    );
  }
  return new OrderHeadError(`${what} failed: ${detail}`, target, 'check the disk and the path, then retry; the previous file, if any, is unchanged');
}

/**
 * The name `writeFileAtomic` gives its temp file: `<target>.tmp-<pid>-<8 hex>`
 * (groups: the target's name, the writer's pid). A writer killed mid-write
 * leaves one behind; `removeStaleTempFiles` clears them.
 */
export const ATOMIC_TEMP_RE = /^(.+)\.tmp-(\d+)-[0-9a-f]+$/;

/**
 * Durably replace `target` with `data`: write `target.tmp-<pid>-<rand>` in the
 * same folder, fsync it, rename it over `target`, fsync the folder. On any
 * failure the temp file is removed, the old `target` is untouched, and an
 * OrderHeadError naming `target` is thrown.
 */
export function writeFileAtomic(target: string, data: string | Uint8Array, options: WriteAtomicOptions = {}): void {
  const io: AtomicIo = { ...realIo, ...options.io };
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const tmp = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  let fd: number | undefined;
  let renamed = false;
  try {
    fd = fs.openSync(tmp, 'wx', 0o644);
    let off = 0;
    while (off < bytes.length) {
      const n = io.writeSync(fd, bytes, off, bytes.length - off);
      if (n <= 0) throw Object.assign(new Error(`write returned ${n}`), { code: 'EIO' });
      off += n;
    }
    io.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    io.renameSync(tmp, target);
    renamed = true;
  } catch (err) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        /* already failing; the original error is the one to report */
      }
    }
    if (!renamed) {
      try {
        fs.unlinkSync(tmp);
      } catch {
        /* the temp file may never have been created */
      }
    }
    throw writeError(target, err, 'atomic write');
  }
  fsyncDir(path.dirname(target));
}

/**
 * Make the rename itself durable. Some platforms (Windows) and filesystems
 * cannot fsync a folder; the file is already complete then, so failures here
 * are ignored rather than reported as a failed save.
 */
function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    /* best effort, see above */
  } finally {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        /* ignore */
      }
    }
  }
}

/**
 * JSON cannot represent NaN or ±Infinity (`JSON.stringify` writes null). A NaN
 * loss is exactly what a metrics log must keep, so non-finite numbers are
 * written as the strings "NaN", "Infinity" and "-Infinity".
 */
function keepNonFinite(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) ? String(value) : value;
}

export interface AppendOptions {
  /** Replace `fs.appendFileSync` (for tests that simulate a full disk). */
  appendFileSync?: (file: string, data: string) => void;
}

/**
 * Append `obj` as one JSON line to `file` (created if missing). The whole line,
 * newline included, goes out in one `appendFileSync` call. If an earlier
 * process was killed mid-line, the file does not end in a newline; a newline is
 * put first so the new record starts its own line and only the torn one is lost.
 */
export function appendJsonLine(file: string, obj: unknown, options: AppendOptions = {}): void {
  const append = options.appendFileSync ?? ((f: string, d: string) => fs.appendFileSync(f, d, 'utf8'));
  let line: string;
  try {
    line = JSON.stringify(obj, keepNonFinite);
  } catch (err) {
    throw new OrderHeadError(
      `the record cannot be written as JSON (${err instanceof Error ? err.message : String(err)})`,
      file,
      'log plain numbers, strings and booleans (no circular objects, no BigInt)',
    );
  }
  if (line === undefined) {
    throw new OrderHeadError('the record is not JSON-serialisable (undefined or a function)', file, 'log a plain object such as { loss: 0.5 }');
  }
  const prefix = endsWithoutNewline(file) ? '\n' : '';
  try {
    append(file, `${prefix}${line}\n`);
  } catch (err) {
    throw writeError(file, err, 'appending a metrics line');
  }
}

/** True when `file` exists, is non-empty and its last byte is not '\n'. */
function endsWithoutNewline(file: string): boolean {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const size = fs.fstatSync(fd).size;
    if (size === 0) return false;
    const last = Buffer.alloc(1);
    fs.readSync(fd, last, 0, 1, size - 1);
    return last[0] !== 0x0a;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** A line `readJsonLines` could not parse. */
export interface SkippedLine {
  /** 1-based line number in the file. */
  line: number;
  /** Whether it was the last line without a newline (a write cut off by a kill). */
  torn: boolean;
  /** The start of the line, for the report. */
  text: string;
}

export interface JsonLines<T> {
  rows: T[];
  skipped: SkippedLine[];
}

export interface ReadJsonLinesOptions {
  /**
   * Where to report skipped lines; default `console.warn`. Pass `() => {}` to
   * stay quiet and inspect `skipped` instead.
   */
  warn?: (message: string) => void;
}

/**
 * Read a JSON-lines file written by `appendJsonLine`. A torn trailing line (a
 * write cut short by a kill) and any unparsable line are skipped and reported,
 * never fatal: losing one metrics row must not make a finished run unreadable.
 * A missing file is an error, since it usually means a wrong path.
 */
export function readJsonLines<T = Record<string, unknown>>(file: string, options: ReadJsonLinesOptions = {}): JsonLines<T> {
  const warn = options.warn ?? ((m: string) => console.warn(m));
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (errCode(err) === 'ENOENT') {
      throw new OrderHeadError('the metrics file does not exist', file, 'check the run folder path; metrics.jsonl is created by openRun()');
    }
    throw new OrderHeadError(`cannot read the file (${err instanceof Error ? err.message : String(err)})`, file, 'check the path and its permissions');
  }
  const lines = text.split('\n');
  const endsClean = text.length === 0 || text.endsWith('\n');
  // After the split, a file ending in '\n' has one empty last element.
  if (endsClean) lines.pop();
  const rows: T[] = [];
  const skipped: SkippedLine[] = [];
  lines.forEach((raw, i) => {
    if (raw.trim() === '') return;
    const isLast = i === lines.length - 1;
    try {
      rows.push(JSON.parse(raw) as T);
    } catch {
      skipped.push({ line: i + 1, torn: isLast && !endsClean, text: raw.slice(0, 80) });
    }
  });
  for (const s of skipped) {
    warn(
      s.torn
        ? `${file}: skipped a torn last line ${s.line} (a write was cut short, probably by a kill): ${JSON.stringify(s.text)}`
        : `${file}: skipped unreadable line ${s.line}: ${JSON.stringify(s.text)}`,
    );
  }
  return { rows, skipped };
}

/** Whether a process with this id runs on this machine (EPERM: it runs, as another user). */
export function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/**
 * Remove temp files (`<name>.tmp-<pid>-<hex>`) left in `dir` by processes that
 * no longer run (killed mid-write); returns the names removed. Temp files of
 * live processes (another writer, e.g. an oracle shard, at work) are left alone. With
 * `mine`, only temp files of those targets are removed, plus any older than
 * `staleAfterMs` (default 10 minutes; a write takes milliseconds): a process
 * on *another machine* sharing the folder looks dead here, but it never
 * writes this shard's parts. The oracle `merge` (run after every shard
 * finished) and `openRun` (one writer per run folder) remove all of them.
 */
export function removeStaleTempFiles(dir: string, opts: { mine?: (target: string) => boolean; staleAfterMs?: number } = {}): string[] {
  const removed: string[] = [];
  if (!fs.existsSync(dir)) return removed;
  const staleAfter = opts.staleAfterMs ?? 10 * 60_000;
  for (const f of fs.readdirSync(dir)) {
    const m = ATOMIC_TEMP_RE.exec(f);
    if (!m || pidAlive(Number(m[2]))) continue;
    const file = path.join(dir, f);
    if (opts.mine && !opts.mine(m[1])) {
      let age = 0;
      try {
        age = Date.now() - fs.statSync(file).mtimeMs;
      } catch {
        continue;
      }
      if (age < staleAfter) continue;
    }
    try {
      fs.unlinkSync(file);
      removed.push(f);
    } catch {
      /* another process removed it first */
    }
  }
  return removed;
}
