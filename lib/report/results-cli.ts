/**
 * `npm run report -- <report folder> [--study <report folder>] [--no-figures]`:
 * regenerate docs/results/ and the README's results section from a main job's
 * report, with the crossover study of the --study report (default: the same
 * report) (results.ts).
 */
import { repoRoot } from '../runtime/paths';
import { OrderHeadError } from '../runtime/errors';
import { writeResults } from './results';

export const RESULTS_USAGE = 'usage: npm run report -- <report folder> [--study <report folder of npm run study>] [--no-figures]   (the folders scripts/main.sh and scripts/study.sh printed)';

/** The command line's report folder, study folder and options; an OrderHeadError naming the problem and the usage otherwise. */
export function parseResultsArgs(args: readonly string[]): { report: string; study?: string; noFigures: boolean } {
  const folders: string[] = [];
  let study: string | undefined, noFigures = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--study') {
      const v = args[i + 1];
      if (v === undefined || v.startsWith('--')) throw new OrderHeadError('--study needs a folder', 'npm run report', RESULTS_USAGE);
      if (study !== undefined) throw new OrderHeadError('--study is given twice', 'npm run report', RESULTS_USAGE);
      study = v;
      i++;
    } else if (a === '--no-figures') noFigures = true;
    else if (a.startsWith('--')) throw new OrderHeadError(`unknown option '${a}'`, 'npm run report', RESULTS_USAGE);
    else folders.push(a);
  }
  if (folders.length !== 1) throw new OrderHeadError(folders.length ? `${folders.length} report folders given: ${folders.join(', ')}` : 'no report folder given', 'npm run report', RESULTS_USAGE);
  return { report: folders[0], ...(study !== undefined ? { study } : {}), noFigures };
}

async function main() {
  let args;
  try {
    args = parseResultsArgs(process.argv.slice(2));
  } catch (e) {
    console.error((e as Error).message);
    process.exit(2);
  }
  const files = await writeResults({ report: args.report, repo: repoRoot(), noFigures: args.noFigures, study: args.study });
  for (const f of files) console.log(`wrote ${f}`);
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e instanceof OrderHeadError ? e.message : e);
    process.exit(1);
  });
}
