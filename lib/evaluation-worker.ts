/**
 * Worker-thread entry of evaluateSettingsOnWorkers (evaluation.ts): its own
 * single-threaded tfjs engine, the evaluation context rebuilt from the run
 * folders (tokenizer, feature network) and the calling thread's arrays (test
 * tokens, real-image statistics), then one setting per 'evaluate' message:
 * built by contestSettings, evaluated into the shared cache, disposed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { blockGeometry } from './order';
import { BackendChoice, initBackend } from './runtime/backend';
import { OrderHeadError } from './runtime/errors';
import { loadTokenizer } from './tokenizer';
import { loadFeatureNet } from './eval/feature-net-train';
import { EvalContext } from './eval/context';
import { evaluateSettings } from './eval/evaluate-settings';
import { disposeSetting, isMissing } from './eval/settings';
import { curriculumRuns } from './curriculum';
import { contestSettings, EvaluationWorkerJob, EvaluationWorkerMessage } from './evaluation';

async function main(): Promise<void> {
  const job = workerData as EvaluationWorkerJob;
  const post = (m: EvaluationWorkerMessage) => parentPort!.postMessage(m);
  let current: string | undefined;
  try {
    await initBackend({ force: job.backend as BackendChoice, quiet: true, threads: 1 }); // one engine per core: the workers share the machine
    const runs = curriculumRuns(job.runRoot, job.profile);
    const g = job.inputs.geo;
    const geo = blockGeometry({ gridH: g.gridH, gridW: g.gridW, blockH: g.blockH, blockW: g.blockW });
    const inputs = { ...job.inputs, geo };
    const c = job.context;
    const ctx: EvalContext = {
      tokenizer: loadTokenizer(c.tokenizerDir), featureNet: loadFeatureNet(c.featureNetDir),
      realStats: c.realStats, testTokens: c.testTokens, testLabels: c.testLabels, geo,
    };
    parentPort!.on('message', (m: { type: 'evaluate'; name: string }) => {
      void (async () => {
        current = m.name;
        const t0 = Date.now();
        const settings = contestSettings(runs, inputs, (name) => name === m.name);
        try {
          const s = settings[0];
          if (!s || isMissing(s)) throw new OrderHeadError(s ? s.missing : 'is not a setting of contestSettings', `setting '${m.name}'`, 'evaluate settings that notebook 08 lists as ready');
          await evaluateSettings(settings, ctx, job.cfg, undefined, { cacheDir: job.cacheDir, allowUnmatched: job.allowUnmatched, contextFingerprint: job.contextFingerprint });
          post({ type: 'done', name: m.name, seconds: (Date.now() - t0) / 1000 });
        } catch (e) {
          fail(e);
        } finally {
          for (const s of settings) if (!isMissing(s)) disposeSetting(s);
        }
      })();
    });
    post({ type: 'ready' });
  } catch (e) {
    fail(e);
  }
  function fail(e: unknown): void {
    if (e instanceof OrderHeadError) post({ type: 'error', name: current, problem: e.problem, where: e.where, fix: e.fix });
    else post({ type: 'error', name: current, problem: e instanceof Error ? `${e.message}\n${e.stack ?? ''}` : String(e) });
  }
}

if (parentPort) void main();
