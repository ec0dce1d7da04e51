/**
 * Finding a Stage 1 run's checkpoints by their role in the curriculum.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OrderHeadError, ensure } from '../runtime/errors';
import { latestCheckpoint } from '../runtime/checkpoint';

/**
 * The last random-phase (r = 1.00) checkpoint of a Stage 1 run folder: the
 * order-robust backbone the oracle and the planner use (METHOD.md §6.1).
 */
export function randomPhaseCheckpoint(stage1RunDir: string): string {
  const dir = path.join(stage1RunDir, 'checkpoints');
  const fix = 'run notebooks/02_stage1_backbone.ipynb in this profile first (it trains the block-RAR backbone and saves random-phase checkpoints)';
  ensure(fs.existsSync(dir), 'no Stage 1 checkpoints here', dir, fix);
  const re = /^stage1-step(\d+)-r(\d+\.\d+)\.safetensors$/;
  let best: { step: number; file: string } | undefined;
  for (const f of fs.readdirSync(dir)) {
    const m = re.exec(f);
    if (!m || Number(m[2]) < 1) continue;
    const step = Number(m[1]);
    if (!best || step > best.step) best = { step, file: path.join(dir, f) };
  }
  if (!best) {
    const any = latestCheckpoint(dir, 'stage1');
    throw new OrderHeadError(`no random-phase (r = 1.00) checkpoint among the Stage 1 checkpoints${any ? ` (newest: ${any.name})` : ''}`, dir,
      `${fix}; a block-rar run with checkpointEvery below annealStart · steps saves some`);
  }
  return best.file;
}
