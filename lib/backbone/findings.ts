/**
 * "What this run showed" for Stage 1 (notebook 02): what a random block order
 * costs each model, from the exact-NLL table of its checkpoints.
 */
import type { ProfileName } from '../runtime/profile';
import { CheckpointNllRow } from './order-nll';

/**
 * What the two order gaps (bits/token) say: the random-phase block-RAR
 * checkpoint pays nothing for a random order, the raster-only model pays
 * over twice as much as it, or neither (no intervals here: one gap each).
 */
type OrderRobustness = 'no cost' | 'raster pays more' | 'not conclusive';

function orderRobustness(rarGap: number, rasterGap: number): OrderRobustness {
  if (rarGap <= 0) return 'no cost';
  if (rasterGap > 2 * rarGap) return 'raster pays more';
  return 'not conclusive';
}

const f3 = (x: number) => x.toFixed(3);
const ROBUSTNESS_WORDS: Readonly<Record<OrderRobustness, (rar: CheckpointNllRow, ras: CheckpointNllRow, profile: ProfileName) => string>> = {
  'no cost': (rar, ras) => `The random-phase block-RAR checkpoint is no worse under random block orders than under raster (gap ${f3(rar.gap)}), while the raster-only model's random-order NLL is ${f3(ras.gap)} bits/token above its raster NLL: the block-RAR backbone is the order-robust one the planner needs.`,
  'raster pays more': (rar, ras) => `The raster-only model pays ${(ras.gap / rar.gap).toFixed(1)}x more for a random order than the random-phase block-RAR checkpoint: the block-RAR backbone is the order-robust one the planner needs.`,
  'not conclusive': (rar, ras, profile) => `Here the raster model's random-order penalty is not clearly larger than block-RAR's (${f3(ras.gap)} vs ${f3(rar.gap)}); with this little training (profile ${profile}) the comparison is not conclusive.`,
};

/**
 * The order gap (random blocks − raster, bits/token) of the block-RAR model's
 * last random-phase checkpoint (the one the planner reads), of its final
 * checkpoint and of the raster-only model's final checkpoint, and what they
 * say about order robustness. `rows` is checkpointNllTable's output for the
 * models 'block-rar' and 'raster'; `run` says on how many test images and
 * after how much training (validation images: the test split waits for notebook 08).
 */
export function stage1Findings(rows: readonly CheckpointNllRow[], run: { images: number; trainMinutes: number }, profile: ProfileName, stamp: string): string {
  const rarRows = rows.filter((r) => r.model === 'block-rar');
  const randomPhase = rarRows.filter((r) => r.r >= 1);
  const rar = randomPhase[randomPhase.length - 1] ?? rarRows[0];
  const rarFinal = rarRows.slice(-1)[0];
  const ras = rows.filter((r) => r.model === 'raster').slice(-1)[0];
  const verdict = ROBUSTNESS_WORDS[orderRobustness(rar.gap, ras.gap)](rar, ras, profile);
  return [
    `In this run (**${stamp}**, ${run.images} validation images, seed 0, ${run.trainMinutes.toFixed(1)} min of training for both models side by side):`,
    `- **block-RAR, random-phase checkpoint (step ${rar.step}, r = ${rar.r.toFixed(2)})**: raster ${f3(rar.bits.raster)}, random blocks ${f3(rar.bits['random-blocks'])} bits/token — gap **${f3(rar.gap)}** bits/token (${(100 * rar.gap / rar.bits.raster).toFixed(1)}% of raster).`,
    `- **block-RAR, final (step ${rarFinal.step}, r = ${rarFinal.r.toFixed(2)})**: raster ${f3(rarFinal.bits.raster)}, random blocks ${f3(rarFinal.bits['random-blocks'])} — gap ${f3(rarFinal.gap)}.`,
    `- **raster-only, final (step ${ras.step})**: raster ${f3(ras.bits.raster)}, random blocks ${f3(ras.bits['random-blocks'])} bits/token — gap **${f3(ras.gap)}** (${(100 * ras.gap / ras.bits.raster).toFixed(1)}% of raster).`,
    verdict,
  ].join('\n');
}
