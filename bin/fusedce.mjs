#!/usr/bin/env node
// fusedce command line:
//   fusedce bench [options]       the cross-entropy benchmark (bench/cross_entropy.bench.mjs;
//                                 `fusedce bench --help` lists its options)
//   fusedce gradcheck [options]   checks each op's analytic gradient against central finite
//                                 differences and prints a verdict table; exits 1 if any fails
import { parseArgs } from 'node:util';

const [command, ...rest] = process.argv.slice(2);
const usage =
  'usage: fusedce bench [--quick] [--json] [--filter S] [--peers LIST] [--threads LIST] [--out DIR]\n' +
  '       fusedce gradcheck [--op ce|soft|kl|bce|all] [--dtype f32|bf16|f16|all] [--vocab N] [--rows N] [--samples N] [--json]';

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
    console.log('| op | dtype | shape | checked | max abs error | max rel error | worst element (analytic vs numeric) | verdict |');
    console.log('|---|---|---|---|---|---|---|---|');
    for (const r of reports)
      console.log(`| ${r.op} | ${r.dtype} | ${r.rows}×${r.vocab} | ${r.checked} | ${e(r.maxAbsError)} | ${e(r.maxRelError)} | ` +
        `[${r.worst.index}] ${e(r.worst.analytic)} vs ${e(r.worst.numeric)} | ${r.ok ? 'ok' : 'FAIL'} |`);
    console.log(`\ncentral differences, step ${reports[0]?.eps}; an element passes when |analytic − numeric| ≤ ${reports[0]?.atol} + ${reports[0]?.rtol}·|numeric|`);
  }
  if (reports.some((r) => !r.ok)) process.exitCode = 1;
}

if (command === 'bench') {
  process.argv = [process.argv[0], new URL('../bench/cross_entropy.bench.mjs', import.meta.url).pathname, ...rest];
  await import('../bench/cross_entropy.bench.mjs');
} else if (command === 'gradcheck') {
  try {
    await gradcheckCommand(rest);
  } catch (e) {
    console.error(e.message);
    console.error(usage);
    process.exitCode = 2;
  }
} else if (command === undefined || command === '--help' || command === '-h') {
  console.log(usage);
} else {
  console.error(`fusedce: unknown command '${command}'\n${usage}`);
  process.exitCode = 2;
}
