// PyTorch CPU peer: F.cross_entropy through a Python child process (torch_ce.py), on the same
// data written to temporary raw files. Used when `python3 -c 'import torch'` works (or the
// interpreter named by FUSEDCE_BENCH_PYTHON); skipped with a note otherwise. PyTorch times itself
// (median of repeated calls), so process start-up is not counted. bf16 and f16 logits are fed
// natively; PyTorch 1.13 computes the bf16 loss in bf16, hence a looser loss check.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('./torch_ce.py', import.meta.url));

/** Finds a Python with torch; returns a peer or { skip: reason }. */
export function torchPeer() {
  const candidates = [process.env.FUSEDCE_BENCH_PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean);
  for (const py of candidates) {
    try {
      const version = execFileSync(py, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      return {
        name: 'PyTorch',
        version,
        python: py,
        /** Times forward and fwd+bwd at each thread count; data: the logits' raw typed array. */
        run(data, targets, rows, vocab, dtype, threads, seconds) {
          const dir = mkdtempSync(path.join(os.tmpdir(), 'fusedce-bench-'));
          try {
            const lp = path.join(dir, 'logits.bin'), tp = path.join(dir, 'targets.bin');
            writeFileSync(lp, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
            writeFileSync(tp, new Uint8Array(targets.buffer, targets.byteOffset, targets.byteLength));
            const out = execFileSync(py, [script, lp, tp, rows, vocab, dtype, threads.join(','), seconds].map(String), {
              encoding: 'utf8', maxBuffer: 1 << 20, env: { ...process.env, OMP_NUM_THREADS: String(Math.max(...threads)) },
            });
            return JSON.parse(out).results;
          } finally {
            rmSync(dir, { recursive: true, force: true });
          }
        },
      };
    } catch {}
  }
  return { skip: `PyTorch not found (tried ${candidates.join(', ')}; on Debian: apt-get install python3-torch)` };
}
