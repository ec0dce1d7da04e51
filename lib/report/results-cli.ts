/**
 * `npm run report -- <report folder> [--study <report folder>] [--no-figures]`:
 * regenerate docs/results/ and the README's results section from a main job's
 * report, with the crossover study of the --study report (default: the same
 * report) (results.ts).
 */
import { repoRoot } from '../runtime/paths';
import { OrderHeadError } from '../runtime/errors';
import { writeResults } from './results';

async function main() {
  const args = process.argv.slice(2);
  const at = args.indexOf('--study');
  const study = at >= 0 ? args[at + 1] : undefined;
  const report = args.find((a, i) => !a.startsWith('--') && i !== at + 1);
  if (!report || (at >= 0 && (!study || study.startsWith('--')))) {
    console.error('usage: npm run report -- <report folder> [--study <report folder of npm run study>] [--no-figures]   (the folders scripts/main.sh and scripts/study.sh printed)');
    process.exit(2);
  }
  const files = await writeResults({ report, repo: repoRoot(), noFigures: args.includes('--no-figures'), study });
  for (const f of files) console.log(`wrote ${f}`);
}

main().catch((e) => {
  console.error(e instanceof OrderHeadError ? e.message : e);
  process.exit(1);
});
