#!/usr/bin/env node
// fusedce command line: `fusedce bench [options]` runs the cross-entropy benchmark
// (bench/cross_entropy.bench.mjs; `fusedce bench --help` lists its options).
const [command, ...rest] = process.argv.slice(2);
const usage = 'usage: fusedce bench [--quick] [--json] [--filter S] [--peers LIST] [--out DIR]';
if (command === 'bench') {
  process.argv = [process.argv[0], new URL('../bench/cross_entropy.bench.mjs', import.meta.url).pathname, ...rest];
  await import('../bench/cross_entropy.bench.mjs');
} else if (command === undefined || command === '--help' || command === '-h') {
  console.log(usage);
} else {
  console.error(`fusedce: unknown command '${command}'\n${usage}`);
  process.exitCode = 2;
}
