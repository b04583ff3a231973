// The commit a benchmark ran at: FUSEDCE_GIT_SHA (a tree copied without its git metadata), else
// HEAD of this package's own checkout, else 'unknown' (an installed package; never the
// repository of a project that installed it).
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export function gitSha() {
  if (process.env.FUSEDCE_GIT_SHA) return process.env.FUSEDCE_GIT_SHA;
  try {
    const root = fileURLToPath(new URL('..', import.meta.url));
    const git = (a) => execFileSync('git', ['-C', root, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (path.resolve(git(['rev-parse', '--show-toplevel'])) === path.resolve(root)) return git(['rev-parse', 'HEAD']);
  } catch {}
  return 'unknown';
}
