#!/usr/bin/env node
// fusedce command line (npx fusedce <command>):
//   bench [options]       the cross-entropy benchmark against the frameworks and this machine's
//                         ceilings; writes ./fusedce-bench/ (`npx fusedce bench --help`)
//   gradcheck [options]   checks each op's analytic gradient against central finite differences
//                         and prints a verdict table; exits 1 if any fails
//   info [--json]         the version, CPU kernels, native binaries, CUDA state and its reason
//   build-cuda [--out D]  builds the optional CUDA variant (needs nvcc and CMake) where the loader
//                         finds it, outside node_modules for an installed package
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const [command, ...rest] = process.argv.slice(2);
const usage =
  'usage: npx fusedce bench [--quick] [--json] [--filter S] [--peers LIST] [--threads LIST] [--out DIR|none]\n' +
  '       npx fusedce gradcheck [--op ce|soft|kl|bce|all] [--dtype f32|bf16|f16|all] [--vocab N] [--rows N] [--samples N] [--json]\n' +
  '       npx fusedce info [--json]\n' +
  '       npx fusedce build-cuda [--out DIR]';

async function gradcheckCommand(args) {
  const { values } = parseArgs({
    args,
    options: {
      op: { type: 'string', default: 'all' },
      dtype: { type: 'string', default: 'all' },
      vocab: { type: 'string', default: '1000' },
      rows: { type: 'string', default: '3' },
      samples: { type: 'string', default: '32' },
      json: { type: 'boolean', default: false },
    },
  });
  const { GRADCHECK_OPS, gradcheckOp } = await import('fusedce');
  const ops = values.op === 'all' ? GRADCHECK_OPS : values.op.split(',');
  const dtypes = values.dtype === 'all' ? ['f32', 'bf16', 'f16'] : values.dtype.split(',');
  const int = (name) => {
    const v = Number(values[name]);
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`fusedce gradcheck: --${name} must be a positive integer, but got '${values[name]}'`);
    return v;
  };
  const opts = { vocab: int('vocab'), rows: int('rows'), samples: int('samples') };
  const reports = [];
  for (const op of ops) for (const dtype of dtypes) reports.push(...gradcheckOp(op, { ...opts, dtype }));
  if (values.json) {
    console.log(JSON.stringify(reports, null, 2));
  } else {
    const e = (v) => v.toExponential(2);
    // the verdict column is the error/tolerance column read against 1: they cannot disagree
    console.log('| op | dtype | shape | checked | failed | max abs error | max rel error | worst error / tolerance | worst element (analytic vs numeric) | verdict |');
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    for (const r of reports)
      console.log(`| ${r.op} | ${r.dtype} | ${r.rows}×${r.vocab} | ${r.checked} | ${r.failed} | ${e(r.maxAbsError)} | ${e(r.maxRelError)} | ${r.maxErrorRatio.toFixed(3)} | ` +
        `[${r.worst.index}] ${e(r.worst.analytic)} vs ${e(r.worst.numeric)} | ${r.ok ? 'ok' : 'FAIL'} |`);
    const r0 = reports[0];
    if (r0)
      console.log(`\ncentral differences in ${r0.precision} (${r0.precisionReason}), step ${r0.eps}. An element passes when ` +
        `|analytic − numeric| ≤ ${r0.atol} + ${r0.rtol}·|numeric|, i.e. error / tolerance ≤ 1; the verdict is ok when every checked element passes. ` +
        'A large relative error on an element whose gradient is near 0 is within the absolute part of the tolerance.');
  }
  if (reports.some((r) => !r.ok)) process.exitCode = 1;
}

async function infoCommand(args) {
  const { values } = parseArgs({ args, options: { json: { type: 'boolean', default: false } } });
  const { info } = await import('fusedce');
  const i = info();
  if (values.json) {
    console.log(JSON.stringify(i, null, 2));
    return;
  }
  const feats = ['avx2', 'fma', 'f16c', 'avx512', 'avx512bf16'].filter((f) => i.cpu[f]).join(' ') || 'none';
  const lines = [
    `fusedce ${i.version} (${i.root})`,
    `node ${i.node}, N-API ${i.napiVersion}, ${i.platform}`,
    `cpu: ${i.cpu.model}, ${i.cpu.threads} hardware threads; kernels: ${i.cpu.kernels} (features: ${feats})`,
    `native addon: ${i.nativeBinary}`,
    `cuda: ${i.cuda.available ? `available: ${i.cuda.device.name}${i.cuda.device.emulated ? ' (the CPU emulation)' : ''}, ` +
      `compute ${i.cuda.device.computeCapability}, ${(i.cuda.device.totalMemory / 2 ** 30).toFixed(1)} GiB` : `not available: ${i.cuda.reason}`}`,
    `cuda variant: ${i.cuda.binary ?? `not built (npx fusedce build-cuda puts it in ${i.cuda.cacheDir})`}`,
    `default device: ${i.defaultDevice}`,
  ];
  console.log(lines.join('\n'));
}

function buildCudaCommand(args) {
  const script = fileURLToPath(new URL('../scripts/build-cuda.cjs', import.meta.url));
  const r = spawnSync(process.execPath, [script, ...args], { stdio: 'inherit' });
  process.exitCode = r.status ?? 1;
}

try {
  if (command === 'bench') {
    process.argv = [process.argv[0], fileURLToPath(new URL('../bench/cross_entropy.bench.mjs', import.meta.url)), ...rest];
    await import('../bench/cross_entropy.bench.mjs');
  } else if (command === 'gradcheck') {
    await gradcheckCommand(rest);
  } else if (command === 'info') {
    await infoCommand(rest);
  } else if (command === 'build-cuda') {
    buildCudaCommand(rest);
  } else if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    console.log(usage);
  } else {
    console.error(`fusedce: unknown command '${command}'\n${usage}`);
    process.exitCode = 2;
  }
} catch (e) {
  if (!(e instanceof TypeError || e instanceof RangeError) || command === 'bench') throw e;
  console.error(e.message);
  console.error(usage);
  process.exitCode = 2;
}
