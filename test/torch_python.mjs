// A python3 that can import torch (Debian: apt-get install python3-torch), or null: the PyTorch
// oracle tests run where one is found and are skipped, saying why, elsewhere.
import { execFileSync } from 'node:child_process';

export function findTorch() {
  for (const py of ['/usr/bin/python3', 'python3']) {
    try {
      execFileSync(py, ['-c', 'import torch'], { stdio: 'ignore' });
      return py;
    } catch { /* next */ }
  }
  return null;
}
