/**
 * The first cell of every notebook: choose the profile and the backend, say
 * both, and hand back what later cells need (run root, progress wired to the
 * notebook's live display).
 */
import * as tf from '@tensorflow/tfjs';
import { activeProfile, profileBanner, ProfileName } from './runtime/profile';
import { BackendReport, initBackend } from './runtime/backend';
import { progress, Progress, ProgressOptions } from './runtime/progress';
import { runRoot } from './runtime/paths';
import { watchParent } from './runtime/parent-watch';
import { DatasetStats } from './data/dataset';
import { DataSummary, dataSummary } from './data/profile-data';
import { inNotebook, liveDisplay, showHtml, stampOutputs } from './report/notebook';
import { escapeHtml, toHtmlTable } from './report/table';

export interface NotebookSession {
  /** Notebook name, e.g. `00_setup`. */
  notebook: string;
  profile: ProfileName;
  backend: BackendReport;
  /** Where this notebook's run folders go. */
  runRoot: string;
  /** Versions of what produced the outputs. */
  versions: Record<string, string>;
  /** A progress bar for a long loop: live in the notebook, a bar on the command line. */
  progress(opts: Omit<ProgressOptions, 'sink'>): Progress;
  /** The dataset (ORDERHEAD_DATA): its name for captions, its class names (index = label), notes on capped counts. */
  dataset: DataSummary;
  /**
   * "profile smoke, Fashion-MNIST subset, backend wasm": the stamp every figure and table carries;
   * showTable, showPlot and showNote add it themselves once the session has started.
   */
  stamp: string;
}


/** Start a notebook (or script): profile, backend, versions, shown as a banner. */
export async function startNotebook(notebook: string): Promise<NotebookSession> {
  const profile = activeProfile();
  // Before the backend starts: a bad ORDERHEAD_DATA fails the first cell at once, with its fix.
  const dataset = dataSummary(profile);
  // A kernel whose runner was killed must not train on (see runtime/parent-watch.ts).
  if (inNotebook()) watchParent();
  const backend = await initBackend({ quiet: inNotebook() });
  const versions: Record<string, string> = {
    node: process.versions.node,
    tfjs: tf.version.tfjs,
    backend: `${backend.kind} (tfjs '${backend.tfBackend}')`,
  };
  const stamp = `profile ${profile}, ${dataset.title}, backend ${backend.kind}`;
  // From here on, every caption, figure title and note the notebook shows carries the stamp.
  stampOutputs(stamp);
  const dataLine = `Dataset: ${dataset.title} (${dataset.key}), ${dataset.classes.length} classes: ${dataset.classes.join(', ')}` +
    dataset.notes.map((n) => `; note: ${n}`).join('');
  const session: NotebookSession = {
    notebook, profile, backend, runRoot: runRoot(), versions, stamp, dataset,
    progress: (opts) => {
      const live = inNotebook() ? liveDisplay() : null;
      // tslab sends display updates through zeromq without waiting; hundreds of
      // sends during one long cell can crash the kernel ("Socket is busy
      // writing"), so notebook redraws are throttled to one every 2 s.
      return progress({ ...opts, minIntervalMs: Math.max(opts.minIntervalMs ?? 0, live ? 2000 : 0) || undefined,
        sink: live ? (text: string) => live.text(text) : undefined });
    },
  };
  if (inNotebook()) {
    showHtml(`<div style="padding:6px 10px;border-left:4px solid #4c78a8;background:#f4f7fb">
<b>${escapeHtml(notebook)}</b> — ${escapeHtml(profileBanner(profile))}<br>${escapeHtml(dataLine)}<br>${escapeHtml(backend.summary)}</div>` +
      toHtmlTable(Object.entries(versions).map(([what, version]) => ({ what, version }))));
  } else {
    console.log(`${notebook}: ${profileBanner(profile)}\n${dataLine}`);
  }
  return session;
}

/**
 * "What this run showed" for notebook 00: the backend chosen (and the ones
 * skipped), the profile's data, its pixel statistics and its class balance.
 */
export function setupFindings(session: Pick<NotebookSession, 'stamp' | 'backend' | 'profile'>, stats: { train: DatasetStats; test: DatasetStats }): string {
  const { train, test } = stats;
  const shares = train.perClass.map((c) => c.share);
  return `In this run (**${session.stamp}**), the backend chosen was **${session.backend.kind}**` +
    (session.backend.skipped.length ? ` (skipped: ${session.backend.skipped.map((s) => s.kind).join(', ')})` : '') +
    `. The ${session.profile} profile uses **${train.n}** training and **${test.n}** test images from ${train.source}, ` +
    `padded to ${train.height}x${train.width}, with pixel mean ${train.pixelMean.toFixed(3)} and std ${train.pixelStd.toFixed(3)} ` +
    `on the [-1, 1] scale (the padding adds background, so the mean sits near -1). Class shares in the training split range from ` +
    `${(100 * Math.min(...shares)).toFixed(1)}% to ${(100 * Math.max(...shares)).toFixed(1)}%, so no class needs reweighting.`;
}
