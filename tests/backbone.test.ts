/** The GPT backbone on wasm: shapes, initial loss, a leak-free training step that learns. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useWasm } from './helpers';
import { gptConfig, seqLen } from '../lib/backbone/config';
import { forward, initParams, lmLoss, orderTables } from '../lib/backbone/gpt';
import { AdamW, accumulateGrads } from '../lib/runtime/optim';
import { OrderHeadError } from '../lib/runtime/errors';

test('forward gives logits [B*T, V] and loss ~ ln V at init', async () => {
  await useWasm();
  const cfg = gptConfig('tiny');
  const T = seqLen(cfg);
  const p = initParams(cfg, 1);
  const tables = orderTables(cfg);
  const toks = tf.randomUniform([3, T], 0, cfg.vocabSize, 'int32') as tf.Tensor2D;
  const cls = tf.tensor1d([0, 1, 2], 'int32');
  const logits = forward(cfg, p, tables, tf.slice(toks, [0, 0], [3, T - 1]) as tf.Tensor2D, cls);
  assert.deepEqual(logits.shape, [3 * T, cfg.vocabSize]);
  const loss = lmLoss(cfg, p, tables, toks, cls).dataSync()[0];
  assert.ok(Math.abs(loss - Math.log(cfg.vocabSize)) < 0.2, `initial loss ${loss} vs ln V ${Math.log(cfg.vocabSize)}`);
  tf.dispose([logits, toks, cls, ...Object.values(tables), ...Object.values(p)]);
});

test('a training step keeps tf.memory().numTensors flat and the loss falls', async () => {
  await useWasm();
  const cfg = gptConfig('tiny');
  const T = seqLen(cfg);
  const p = initParams(cfg, 2);
  const opt = new AdamW(p, { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, clipNorm: 1 });
  const tables = orderTables(cfg);
  const toks = tf.randomUniform([4, T], 0, cfg.vocabSize, 'int32', 7) as tf.Tensor2D;
  const cls = tf.tensor1d([0, 1, 2, 0], 'int32');
  const step = () => {
    const { grads, loss } = accumulateGrads(p, 2, (i) =>
      lmLoss(cfg, p, tables, tf.slice(toks, [2 * i, 0], [2, T]) as tf.Tensor2D, tf.slice(cls, [2 * i], [2]) as tf.Tensor1D));
    opt.apply(grads);
    tf.dispose(Object.values(grads));
    return loss;
  };
  const first = step();
  const before = tf.memory().numTensors;
  let last = first;
  for (let i = 0; i < 40; i++) last = step();
  assert.equal(tf.memory().numTensors, before, 'tensors leaked by the training step');
  assert.ok(last < first * 0.7, `loss did not fall: ${first} -> ${last}`);
});

test('unknown model size lists the valid ones', () => {
  assert.throws(() => gptConfig('huge'), (e: unknown) => e instanceof OrderHeadError && /tiny, small, bench/.test(e.message));
});

test('a head width that cannot split into 2D rotary pairs is refused', () => {
  assert.throws(() => gptConfig('tiny', { dModel: 18, nHead: 3 }), /backbone.dModel/);
});
