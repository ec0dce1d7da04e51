/**
 * Training and loading the feature network (lib/eval/feature-net.ts).
 *
 * `trainFeatureNet` trains in a run folder (openRun: config.json, a
 * folder made with another config is refused naming the field), checkpoints
 * atomically (safetensors with the config in the metadata), resumes from the
 * newest checkpoint, and reports test accuracy. `loadFeatureNet` opens the
 * finished net for evaluation.
 */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { OrderHeadError, ensure } from '../runtime/errors';
import { accumulateGrads, AdamW, scheduledLr } from '../runtime/optim';
import { openRun, Run } from '../runtime/run';
import { assignWeights, latestCheckpoint, loadCheckpoint } from '../runtime/checkpoint';
import { Progress, yieldToEventLoop } from '../runtime/progress';
import { loadDataset } from '../data/dataset';
import { EpochCursor, resumeTraining, TrainCallOptions, TrainCallResult, trainCallResult, TrainingOutcome } from '../runtime/train-loop';
import type { LabelledImages } from '../tokenizer/cache';
import { FEATURE_NET_MODEL_KEYS, FEATURE_NET_STAGE, FeatureNetConfig, validateFeatureNetConfig } from './feature-net-config';
import { checkLabelled, crossEntropy, evaluateFeatureNet, FeatureNet, featureNetForward } from './feature-net';


export interface TrainFeatureNetOptions extends TrainCallOptions {
  config: FeatureNetConfig;
  /** Training images; default: loadDataset(config.data.train). */
  train?: LabelledImages;
  /** Test images (evaluated at the end of the call); default: loadDataset(config.data.test). */
  test?: LabelledImages;
}

export interface TrainFeatureNetResult extends TrainCallResult {
  /** The trained net; the caller disposes it. */
  net: FeatureNet;
  run: Run<FeatureNetConfig>;
  /** True when step = config.steps (a finished net, what loadFeatureNet accepts). */
  complete: boolean;
  /** Accuracy on the test set at `step`. */
  testAccuracy: number;
  /** Mean test cross-entropy at `step`. */
  testLoss: number;
  testImages: number;
}

/** What the last checkpoint's `extra` records about the test set. */
interface TestRecord {
  testAccuracy?: number;
  testLoss?: number;
  testImages?: number;
}

function loadSplit(given: LabelledImages | undefined, cfg: FeatureNetConfig, split: 'train' | 'test'): LabelledImages {
  if (given) return given;
  return loadDataset({ ...cfg.data[split], pad: cfg.imageSize });
}

/**
 * Train the feature network of `options.config` in `options.runDir` (await
 * it), resuming from the newest checkpoint there; `train` and `test` default
 * to the config's datasets. A run folder made with another config is refused,
 * naming each differing field (openRun). At the end of the call the test set
 * is evaluated and the accuracy logged, stored in the last checkpoint and
 * returned. The returned net belongs to the caller (dispose it).
 */
export async function trainFeatureNet(options: TrainFeatureNetOptions): Promise<TrainFeatureNetResult> {
  const cfg = options?.config;
  ensure(cfg !== undefined, 'no config given', 'trainFeatureNet(options.config)', 'pass config: featureNetConfig(session.profile)');
  validateFeatureNetConfig(cfg);
  ensure(typeof options.runDir === 'string' && options.runDir.length > 0, 'no run folder given', 'trainFeatureNet(options.runDir)', 'pass runDir: featureNetRunDir(session.runRoot, session.profile)');
  const runDir = path.resolve(options.runDir);
  const run = openRun<FeatureNetConfig>({ root: path.dirname(runDir), name: path.basename(runDir), stage: FEATURE_NET_STAGE, config: cfg, resume: true, backend: options.backend });
  const net = FeatureNet.init(cfg);
  try {
    return await train(options, run, net);
  } catch (err) {
    net.dispose();
    throw err;
  }
}

async function train(options: TrainFeatureNetOptions, run: Run<FeatureNetConfig>, net: FeatureNet): Promise<TrainFeatureNetResult> {
  const cfg = options.config;
  const test = loadSplit(options.test, cfg, 'test');
  checkLabelled(cfg, test, 'trainFeatureNet(test)');
  const S = cfg.imageSize, px = S * S, B = cfg.batch;
  const data = new EpochCursor(cfg.seed, 'featurenet-data-order');
  let record: TestRecord = {};
  let trainSet: LabelledImages | undefined;
  const batchImages = new Float32Array(B * px), batchLabels = new Int32Array(B);
  const nextBatch = (): void => {
    if (!trainSet) {
      trainSet = loadSplit(options.train, cfg, 'train');
      checkLabelled(cfg, trainSet, 'trainFeatureNet(train)');
    }
    for (let b = 0; b < B; b++) {
      const i = data.next(trainSet.n);
      batchImages.set(trainSet.images.subarray(i * px, (i + 1) * px), b * px);
      batchLabels[b] = trainSet.labels[i];
    }
  };
  const evaluate = () => {
    const ev = evaluateFeatureNet(net, test, cfg.evalBatch);
    record = { testAccuracy: ev.accuracy, testLoss: ev.loss, testImages: ev.n };
    return { test_accuracy: ev.accuracy, test_loss: ev.loss, test_images: ev.n };
  };
  let bar: Progress | undefined;
  let win = { loss: 0, correct: 0, norm: 0, steps: 0, start: Date.now() };
  let outcome: TrainingOutcome;
  try {
    const t = resumeTraining({
      run, stage: FEATURE_NET_STAGE, configName: 'featureNet', optim: cfg, optimizer: AdamW.fromConfig(net.params, cfg), checkpointConfig: cfg,
      checkpointEvery: cfg.checkpointEvery, untilStep: options.untilStep,
      restore: (extra) => {
        data.restore(extra);
        record = { testAccuracy: extra.testAccuracy as number | undefined, testLoss: extra.testLoss as number | undefined, testImages: extra.testImages as number | undefined };
      },
    });
    try {
      if (t.step < t.until) bar = options.progress?.({ total: t.until - t.step, label: 'feature net train' });
      for (let step = t.step; step < t.until; step++) {
        const lr = scheduledLr(cfg, step);
        nextBatch();
        let correctT: tf.Tensor | undefined;
        const { grads, loss } = accumulateGrads(net.params, 1, () => {
          const x = tf.tensor4d(batchImages, [B, S, S, 1]);
          const labels = tf.tensor1d(batchLabels, 'int32');
          const { logits } = featureNetForward(cfg, net.params, x);
          correctT = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), labels), 'float32')));
          return crossEntropy(logits, labels, cfg.classes);
        });
        const correct = correctT!.dataSync()[0];
        correctT!.dispose();
        const gradNorm = t.update(step, loss, grads, lr);
        const s = step + 1;
        // One row per logEvery steps (and at the end of the call), averaged over its window.
        win.loss += loss; win.correct += correct; win.norm += gradNorm; win.steps++;
        let row: Record<string, number> | undefined;
        if (s % cfg.logEvery === 0 || s === t.until) {
          const now = Date.now(), n = win.steps;
          row = { loss: win.loss / n, train_accuracy: win.correct / (n * B), grad_norm: win.norm / n, lr, sec_per_step: (now - win.start) / 1000 / n, epoch: data.progress(trainSet!.n) };
          win = { loss: 0, correct: 0, norm: 0, steps: 0, start: now };
        }
        // Also at the end of the call: its last checkpoint records the test accuracy.
        const evaluation = t.isEvalStep(s) || s === t.until ? evaluate() : undefined;
        if (row) run.logMetrics(s, row);
        if (evaluation) run.logMetrics(s, evaluation);
        if (t.isCheckpointStep(s) || s === t.until) t.checkpoint(s, { extra: { ...data.state(), ...record } });
        if (row) options.onLog?.({ step: s, ...row });
        if (evaluation) options.onLog?.({ step: s, test_accuracy: evaluation.test_accuracy, test_loss: evaluation.test_loss });
        bar?.tick(1, { acc: Number((correct / B).toFixed(3)), ...(evaluation ? { test_acc: Number(evaluation.test_accuracy.toFixed(4)) } : {}) });
        await yieldToEventLoop();
      }
    } finally {
      t.dispose();
    }
    outcome = t.outcome();
  } catch (err) {
    bar?.done({ stopped: 'error' });
    throw err;
  }
  bar?.done();
  // A call that trained nothing (already finished) still reports the test set.
  if (outcome.step === outcome.startStep) evaluate();
  net.source = { checkpoint: outcome.checkpoint, step: outcome.step, testAccuracy: record.testAccuracy };
  return {
    ...trainCallResult(outcome), net, run, complete: outcome.step >= cfg.steps,
    testAccuracy: record.testAccuracy!, testLoss: record.testLoss!, testImages: record.testImages!,
  };
}


export interface LoadFeatureNetOptions {
  /** Accept a net whose training stopped before config.steps (default false: numbers from it would not be comparable). */
  allowIncomplete?: boolean;
  /** The model fields (FEATURE_NET_MODEL_KEYS) given here must match, or the error names each differing field. */
  expectConfig?: Partial<FeatureNetConfig>;
}

/**
 * Load a trained feature network from a checkpoint file or a run folder (its
 * newest `featurenet-step*.safetensors`). Missing folders or checkpoints,
 * truncated or corrupt files, wrong kinds and misshapen weights are
 * OrderHeadErrors naming the path. A net whose training did not finish is
 * refused unless `allowIncomplete`.
 */
export function loadFeatureNet(fileOrRunDir: string, opts: LoadFeatureNetOptions = {}): FeatureNet {
  let file = fileOrRunDir;
  if (!file.endsWith('.safetensors')) {
    const dir = path.join(fileOrRunDir, 'checkpoints');
    const ref = latestCheckpoint(dir, FEATURE_NET_STAGE);
    if (!ref) {
      throw new OrderHeadError(
        'holds no feature-network checkpoint (featurenet-step*.safetensors)',
        dir,
        'train the feature network first (trainFeatureNet with this runDir, in this profile), or pass the right folder',
      );
    }
    file = ref.path;
  }
  const expectKeys = opts.expectConfig ? FEATURE_NET_MODEL_KEYS.filter((k) => opts.expectConfig![k] !== undefined) : undefined;
  const ck = loadCheckpoint<FeatureNetConfig>(file, opts.expectConfig ? { expectConfig: opts.expectConfig, compareKeys: [...expectKeys!] } : {});
  try {
    if (ck.kind !== FEATURE_NET_STAGE) {
      throw new OrderHeadError(`is a '${ck.kind}' checkpoint, not a feature-network checkpoint`, file, 'pass a featurenet-step*.safetensors file or the feature-network run folder');
    }
    validateFeatureNetConfig(ck.config);
    if (ck.step < ck.config.steps && !opts.allowIncomplete) {
      throw new OrderHeadError(
        `the feature network stopped at step ${ck.step} of ${ck.config.steps}; metrics from an unfinished net are not comparable with the finished one's`,
        file,
        'finish training (trainFeatureNet with the same config and runDir resumes), or pass allowIncomplete: true',
      );
    }
    const net = FeatureNet.init(ck.config);
    try {
      assignWeights(net.params, ck.weights, file, 'the file is damaged or belongs to another config: retrain the feature network (delete the run folder or use another one)');
    } catch (err) {
      net.dispose();
      throw err;
    }
    const extra = ck.extra as TestRecord;
    net.source = { checkpoint: file, step: ck.step, testAccuracy: typeof extra.testAccuracy === 'number' ? extra.testAccuracy : undefined };
    return net;
  } finally {
    tf.dispose(Object.values(ck.weights));
  }
}
