/** Where things live: the project root, and the root of run folders. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OrderHeadError } from './errors';

/**
 * The project root: the nearest folder above this file holding package.json.
 * Works from lib/runtime (sources) and dist/lib/runtime (compiled) alike.
 */
export function repoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new OrderHeadError('no package.json found in any folder above the library', __dirname, 'run from a checkout of the project (or an install of the package)');
    }
    dir = parent;
  }
}

/**
 * Root folder of run folders: ORDERHEAD_RUN_ROOT when set (the notebook runner
 * sets it to the report folder), else `<project>/runs`, so notebooks executed
 * from notebooks/ and scripts run from anywhere share one place.
 */
export function runRoot(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.ORDERHEAD_RUN_ROOT;
  return fromEnv && fromEnv.trim() !== '' ? path.resolve(fromEnv) : path.join(repoRoot(), 'runs');
}

/**
 * The commit checked out in `repo` (short hash), with "+changes" when tracked
 * files differ from it; "unknown" without git. Reports record it so a result
 * names the code that made it, not the checkout that later reads it.
 */
export function checkoutCommit(repo: string = repoRoot()): string {
  const git = (args: string[]) => execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    return `${git(['rev-parse', '--short', 'HEAD'])}${git(['status', '--porcelain', '--untracked-files=no']) ? '+changes' : ''}`;
  } catch {
    return 'unknown';
  }
}
