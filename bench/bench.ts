/**
 * `npm run bench`: one AdamW training step of PLATFORM.md's reference GPT
 * (d 256, 6 layers, 8 heads, SwiGLU 768, 64 tokens, batch 64) on the chosen
 * tfjs backend, and the same model in PyTorch (bench/torch_gpt.py, Debian's
 * python3-torch) in the same invocation. Prints both step times, their ratio
 * and the top kernels by time; writes bench/results/latest.json.
 *
 * Options (env): BENCH_STEPS (default 3), BENCH_MICRO (micro-batch, default 16: as fast as 32 or 64 here, with a third of the memory),
 * BENCH_SIZE (model size, default `bench`), ORDERHEAD_BACKEND.
 */
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync } from 'child_process';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/runtime/backend';
import { gptConfig, seqLen } from '../lib/backbone/config';
import { createGPT, lmLoss, numParams, rasterOrder } from '../lib/backbone/gpt';
import { AdamW, accumulateGrads } from '../lib/runtime/optim';

const BATCH = 64;
const steps = Number(process.env.BENCH_STEPS ?? 3);
const micro = Number(process.env.BENCH_MICRO ?? 16);
const size = process.env.BENCH_SIZE ?? 'bench';
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const backend = await initBackend();
  const cfg = gptConfig(size);
  const T = seqLen(cfg);
  const model = createGPT(cfg, 0);
  const params = model.params;
  const opt = new AdamW(params);
  const order = rasterOrder(cfg, micro);
  const tokensAll = tf.randomUniform([BATCH, T], 0, cfg.vocabSize, 'int32') as tf.Tensor2D;
  const classesAll = tf.randomUniform([BATCH], 0, cfg.numClasses, 'int32') as tf.Tensor1D;
  const nMicro = Math.ceil(BATCH / micro);
  const step = () => {
    const { grads, loss } = accumulateGrads(params, nMicro, (i) => {
      const toks = tf.slice(tokensAll, [i * micro, 0], [micro, T]) as tf.Tensor2D;
      const cls = tf.slice(classesAll, [i * micro], [micro]) as tf.Tensor1D;
      return lmLoss(model, order, toks, cls);
    });
    opt.apply(grads);
    tf.dispose(Object.values(grads));
    return loss;
  };
  console.log(`model ${size}: ${(numParams(params) / 1e6).toFixed(2)}M params, batch ${BATCH} as ${nMicro} x ${micro}, ${T} tokens`);
  step(); // warm-up: kernel setup, XNNPACK operator packing
  const before = tf.memory().numTensors;
  const ours: number[] = [];
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    step();
    ours.push(performance.now() - t0);
  }
  const leaked = tf.memory().numTensors - before;
  const prof = await tf.profile(() => { step(); });
  const byKernel = new Map<string, { ms: number; calls: number }>();
  for (const k of prof.kernels) {
    const e = byKernel.get(k.name) ?? { ms: 0, calls: 0 };
    e.ms += Number(k.kernelTimeMs) || 0; e.calls++;
    byKernel.set(k.name, e);
  }
  const topKernels = [...byKernel.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 10)
    .map(([name, e]) => ({ name, ms: Math.round(e.ms), calls: e.calls }));
  const oursMs = median(ours);
  const rssMB = process.memoryUsage().rss / 2 ** 20;

  let torch: { medianMs: number; threads: number; blas: string; torch: string; peakRssMB: number } | { error: string };
  try {
    const out = execFileSync('/usr/bin/python3', [path.join(__dirname, '../../bench/torch_gpt.py'), JSON.stringify(cfg), String(BATCH), String(steps)],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    torch = JSON.parse(out.trim().split('\n').pop()!);
  } catch (e) {
    torch = { error: `PyTorch reference not run (${(e as Error).message.split('\n')[0]}); install python3-torch libopenblas0-pthread: bash scripts/setup.sh` };
  }

  const ratio = 'medianMs' in torch ? oursMs / torch.medianMs : null;
  console.log('\n| run | step (ms, median of ' + steps + ') | tokens/s | peak RSS (MB) |');
  console.log('|---|---:|---:|---:|');
  console.log(`| tfjs ${backend.kind} | ${oursMs.toFixed(0)} | ${(BATCH * T / oursMs * 1000).toFixed(0)} | ${rssMB.toFixed(0)} |`);
  if ('medianMs' in torch) {
    console.log(`| PyTorch ${torch.torch} (${torch.threads} threads, ${path.basename(path.dirname(torch.blas))}) | ${torch.medianMs.toFixed(0)} | ${(BATCH * T / torch.medianMs * 1000).toFixed(0)} | ${torch.peakRssMB.toFixed(0)} |`);
    console.log(`\nratio tfjs/PyTorch: ${ratio!.toFixed(2)}x`);
  } else console.log(`\n${torch.error}`);
  console.log(`tensors leaked per ${steps} steps: ${leaked}`);
  console.log('\ntop kernels (one profiled step):');
  for (const k of topKernels) console.log(`  ${k.name.padEnd(22)} ${String(k.ms).padStart(6)} ms  ${k.calls} calls`);

  const result = { date: new Date().toISOString(), backend: backend.kind, size, batch: BATCH, micro, steps,
    oursMs: ours, oursMedianMs: oursMs, torch, ratio, topKernels, leaked, rssMB };
  const dir = path.join(__dirname, '../../bench/results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'latest.json'), JSON.stringify(result, null, 2) + '\n');
}

main().catch((e) => { console.error(e instanceof Error ? e.message : e); process.exit(1); });
