/**
 * Evaluating a list of settings in turn (missing ones pass through), resumable:
 * evaluateSettings(settings, ctx, cfg, progress, { cacheDir }) stores each
 * finished setting's outcome and loads it on a rerun (cache.ts).
 */
import * as fs from 'node:fs';
import { OrderHeadError } from '../runtime/errors';
import { Progress } from '../runtime/progress';
import { removeStaleTempFiles } from '../runtime/atomic';
import { evalCacheFile, evalCacheIdentity, evalContextFingerprint, readEvalCache, writeEvalCache } from './cache';
import { validateEvalConfig, EvalConfig } from './config';
import { EvalContext } from './context';
import { SettingOutcome, SettingResult } from './results';
import { EvalSetting, isMissing, MissingSetting } from './settings';
import { evaluateSetting } from './evaluate';
import { checkMatchedBudgets, UnmatchedBudgets } from './budgets';

/** What happened to one setting in evaluateSettings. */
export interface EvalSettingEvent {
  name: string;
  /** 'computed' (and, with a cacheDir, stored), 'cached' (loaded from the cacheDir), 'missing' (marker passed through). */
  source: 'computed' | 'cached' | 'missing';
  /** The setting's cache file (with a cacheDir). */
  file?: string;
  /** Why an existing cache file was not used (unreadable, or written for another identity). */
  ignored?: string;
}

export interface EvaluateSettingsOptions {
  /**
   * Resumable evaluation: store each finished setting's outcome in this folder
   * (created if missing; one file per setting, written atomically) and load,
   * instead of recomputing, the settings already there for the same setting,
   * policy, backbone weights, config and context. Format and key: lib/eval/cache.ts.
   */
  cacheDir?: string;
  /** Called after each setting. */
  onSetting?: (event: EvalSettingEvent) => void;
  /** Settings whose backbone may have another training budget, each with the reason the report prints (budgets.ts). */
  allowUnmatched?: UnmatchedBudgets;
  /** evalContextFingerprint(ctx), when the caller has it (several threads keying one cache use the same). */
  contextFingerprint?: string;
}

/**
 * Evaluate several settings in turn (missing ones pass through). With
 * `opts.cacheDir`, finished settings are stored and a rerun (after a crash or
 * kill) loads them: the result equals that of an uninterrupted run (timings
 * aside: a loaded outcome keeps the seconds it was computed in).
 */
export async function evaluateSettings(settings: readonly (EvalSetting | MissingSetting)[], ctx: EvalContext, cfg: EvalConfig,
  progress?: (opts: { total: number; label: string }) => Progress, opts: EvaluateSettingsOptions = {}): Promise<SettingOutcome[]> {
  const out: SettingOutcome[] = [];
  const budgets = checkMatchedBudgets(settings, opts.allowUnmatched); // before anything runs: a refusal costs nothing
  const selectedBy = new Map(settings.flatMap((s) => (isMissing(s) || !s.backbone.selected ? [] : [[s.name, s.backbone.selected] as const])));
  const withBudget = (o: SettingOutcome): SettingOutcome => {
    if (isMissing(o)) return o;
    const b = budgets.bySetting[o.name], selected = selectedBy.get(o.name);
    return { ...o, ...(b?.budget ? { budget: b.budget } : {}), ...(b?.unmatched ? { unmatchedBudget: b.unmatched } : {}), ...(selected ? { selected } : {}) };
  };
  const dir = opts.cacheDir;
  if (dir !== undefined) {
    validateEvalConfig(cfg);
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new OrderHeadError(`cannot create the evaluation cache folder (${(err as Error).message})`, `${dir} (cacheDir)`,
        'pass a writable folder path for cacheDir (not a file), e.g. <report dir>/cache');
    }
    removeStaleTempFiles(dir); // of writers killed mid-write
  }
  let contextPrint = opts.contextFingerprint;
  for (const s of settings) {
    if (isMissing(s)) {
      out.push(s);
      opts.onSetting?.({ name: s.name, source: 'missing' });
      continue;
    }
    if (dir === undefined) {
      out.push(withBudget(await evaluateSetting(s, ctx, cfg, progress)));
      opts.onSetting?.({ name: s.name, source: 'computed' });
      continue;
    }
    contextPrint ??= evalContextFingerprint(ctx);
    const { key, identity } = evalCacheIdentity(s, ctx, cfg, contextPrint);
    const file = evalCacheFile(dir, s.name, key);
    const read = readEvalCache(file, key, identity);
    if (read && 'outcome' in read) {
      out.push(withBudget(read.outcome));
      opts.onSetting?.({ name: s.name, source: 'cached', file });
      continue;
    }
    const res = await evaluateSetting(s, ctx, cfg, progress);
    writeEvalCache(file, key, identity, res as SettingResult);
    out.push(withBudget(res));
    opts.onSetting?.({ name: s.name, source: 'computed', file, ...(read ? { ignored: read.ignored } : {}) });
  }
  return out;
}
