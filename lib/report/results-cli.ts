/**
 * `npm run report -- <report folder> [--no-figures]`: regenerate docs/results/
 * and the README's results section from a main job's report (results.ts).
 */
import { repoRoot } from '../runtime/paths';
import { OrderHeadError } from '../runtime/errors';
import { writeResults } from './results';

async function main() {
  const args = process.argv.slice(2);
  const report = args.find((a) => !a.startsWith('--'));
  if (!report) {
    console.error('usage: npm run report -- <report folder> [--no-figures]   (the folder scripts/main.sh printed)');
    process.exit(2);
  }
  const files = await writeResults({ report, repo: repoRoot(), noFigures: args.includes('--no-figures') });
  for (const f of files) console.log(`wrote ${f}`);
}

main().catch((e) => {
  console.error(e instanceof OrderHeadError ? e.message : e);
  process.exit(1);
});
