/**
 * The model-size registry (lib/backbone/config.ts): every size's parameter
 * count, from paramShapes (no weights allocated: gpt-xl would need 3 GB), and
 * the LlamaGen sizes' SwiGLU width by LlamaGen's formula.
 *
 * LlamaGen (autoregressive/models/gpt.py) has, per size, the same tensors as
 * ours but one: the target-position table tgt_pos [T, dModel], T = 256
 * (RAR-style target-aware positions, backbone/gpt.ts). Its class embedding has
 * 1001 rows like ours (1000 classes + the CFG null class). So
 *
 *   size    ours         - tgt_pos  = LlamaGen    LlamaGen's own comment
 *   gpt-b   111,085,056  - 196,608  = 110,888,448   "111M"
 *   gpt-l   343,173,120  - 262,144  = 342,910,976   "343M"
 *   gpt-xl  775,027,200  - 327,680  = 774,699,520   "775M"
 *
 * (gpt-xl with the old dFF 3456 had 757,332,480.)
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { GPT_SIZES, GPTSize, gptConfig, llamaGenFF, seqLen } from '../../../lib/backbone/config';
import { paramShapes } from '../../../lib/backbone/gpt';

const PARAMS: Record<GPTSize, number> = {
  tiny: 6_032,
  small: 993_792,
  bench: 5_396_480,
  'gpt-b': 111_085_056,
  'gpt-l': 343_173_120,
  'gpt-xl': 775_027_200,
};

const count = (size: GPTSize): number =>
  paramShapes(gptConfig(size)).reduce((a, [, shape]) => a + shape.reduce((x, y) => x * y, 1), 0);

test('every registry size has its pinned parameter count', () => {
  assert.deepEqual(Object.keys(PARAMS).sort(), Object.keys(GPT_SIZES).sort(), 'a size without a pinned count, or a pinned count without a size');
  for (const size of Object.keys(GPT_SIZES) as GPTSize[]) assert.equal(count(size), PARAMS[size], size);
});

test('LlamaGen sizes: dFF = find_multiple(int(2·4·dim/3), 256), and LlamaGen\'s count is ours less the target-position table', () => {
  assert.deepEqual([768, 1024, 1280].map((d) => llamaGenFF(d)), [2048, 2816, 3584]);
  const llamaGen: Partial<Record<GPTSize, number>> = { 'gpt-b': 110_888_448, 'gpt-l': 342_910_976, 'gpt-xl': 774_699_520 };
  for (const [size, n] of Object.entries(llamaGen) as [GPTSize, number][]) {
    const cfg = gptConfig(size);
    assert.equal(cfg.dFF, llamaGenFF(cfg.dModel), size);
    assert.equal(count(size) - seqLen(cfg) * cfg.dModel, n, size);
  }
});
