// Bad input: each is a TypeError or RangeError naming the argument, never a crash.
import { describe, expect, it } from 'vitest';
import {
  bf16,
  crossEntropyBackward,
  crossEntropyBackwardAsync,
  crossEntropyForward,
  crossEntropyForwardAsync,
  logits,
  type Logits,
} from 'fusedce';

const rows = 3;
const vocab = 5;
const z32 = logits(new Float32Array(rows * vocab).fill(0.5), rows, vocab);
const zbf = logits(bf16.fromFloat32(new Float32Array(rows * vocab)), rows, vocab, 'bf16');
const targets = new Int32Array([0, 4, -100]);
const lse = crossEntropyForward(z32, targets).lse;

/** Asserts fn throws `type` with a message containing every fragment. */
function throwsNaming(fn: () => unknown, type: typeof TypeError | typeof RangeError, ...fragments: string[]) {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a throw').toBeInstanceOf(type);
  for (const f of fragments) expect((err as Error).message).toContain(f);
}

describe('logits()', () => {
  it('rejects a typed array that does not fit the dtype', () => {
    throwsNaming(() => logits(new Float32Array(15), 3, 5, 'bf16'), TypeError, 'logits.data', "dtype 'bf16'", 'bf16.fromFloat32');
    throwsNaming(() => logits(new Uint16Array(15), 3, 5, 'f32'), TypeError, 'logits.data', "'f32'");
    throwsNaming(() => logits(new Uint16Array(15), 3, 5), TypeError, 'logits.dtype', "'bf16' or 'f16'");
    throwsNaming(() => logits(new Float64Array(15) as never, 3, 5), TypeError, 'logits.data', 'Float64Array');
    throwsNaming(() => logits([1, 2, 3] as never, 1, 3), TypeError, 'logits.data', 'Array(3)');
  });
  it('rejects a data length that is not rows·vocab', () => {
    throwsNaming(() => logits(new Float32Array(14), 3, 5), RangeError, 'logits.data', 'rows·vocab = 3·5 = 15', 'Float32Array(14)');
  });
  it('rejects non-integer, negative or non-numeric shapes', () => {
    throwsNaming(() => logits(new Float32Array(15), 3.5, 5), RangeError, 'logits.rows', 'integer');
    throwsNaming(() => logits(new Float32Array(15), -3, 5), RangeError, 'logits.rows');
    throwsNaming(() => logits(new Float32Array(15), 3, 0), RangeError, 'logits.vocab');
    throwsNaming(() => logits(new Float32Array(15), 3, 2 ** 31), RangeError, 'logits.vocab');
    throwsNaming(() => logits(new Float32Array(15), '3' as never, 5), TypeError, 'logits.rows', "'3'");
    throwsNaming(() => logits(new Float32Array(15), 3, NaN), RangeError, 'logits.vocab');
  });
  it('rejects an unknown dtype', () => {
    throwsNaming(() => logits(new Float32Array(15), 3, 5, 'f64' as never), RangeError, 'logits.dtype', "'f64'");
  });
});

describe('crossEntropyForward / crossEntropyBackward arguments', () => {
  it('rejects logits that are not a Logits object, or whose fields disagree', () => {
    throwsNaming(() => crossEntropyForward(new Float32Array(15) as never, targets), TypeError, 'crossEntropyForward', 'logits');
    throwsNaming(() => crossEntropyForward({ ...z32, rows: 4 }, targets), RangeError, 'logits.data');
    throwsNaming(() => crossEntropyForward({ ...zbf, dtype: 'f32' } as Logits, targets), TypeError, 'logits.data');
  });
  it('rejects targets of the wrong type or length', () => {
    throwsNaming(() => crossEntropyForward(z32, [0, 1, 2] as never), TypeError, 'targets', 'Int32Array', 'Int32Array.from');
    throwsNaming(() => crossEntropyForward(z32, new Float32Array(3) as never), TypeError, 'targets', 'Float32Array(3)');
    throwsNaming(() => crossEntropyForward(z32, new Int32Array(2)), RangeError, 'targets', 'length rows (3)');
  });
  it('rejects a target outside [0, vocab) that is not ignoreIndex, naming the row', () => {
    throwsNaming(() => crossEntropyForward(z32, new Int32Array([0, 5, 1])), RangeError, 'targets[1] = 5', '[0, 5)', 'ignoreIndex (-100)');
    throwsNaming(() => crossEntropyForward(z32, new Int32Array([0, 1, -1])), RangeError, 'targets[2] = -1');
    throwsNaming(() => crossEntropyBackward(z32, new Int32Array([0, 1, -100]), lse, { ignoreIndex: 1 }), RangeError, 'targets[2] = -100', 'ignoreIndex (1)');
  });
  it('rejects an unknown reduction and unknown options', () => {
    throwsNaming(() => crossEntropyForward(z32, targets, { reduction: 'avg' as never }), RangeError, 'reduction', "'mean' | 'sum' | 'none'", "'avg'");
    throwsNaming(() => crossEntropyForward(z32, targets, { ignore_index: -1 } as never), TypeError, "unknown option 'ignore_index'", 'ignoreIndex');
    throwsNaming(() => crossEntropyForward(z32, targets, 'mean' as never), TypeError, 'options');
  });
  it('rejects threads < 1 and non-integer threads', () => {
    throwsNaming(() => crossEntropyForward(z32, targets, { threads: 0 }), RangeError, 'threads');
    throwsNaming(() => crossEntropyForward(z32, targets, { threads: 1.5 }), RangeError, 'threads');
    throwsNaming(() => crossEntropyBackward(z32, targets, lse, { threads: -2 }), RangeError, 'threads');
  });
  it('rejects a bad ignoreIndex, gradOutput, gradDtype, withGrad', () => {
    throwsNaming(() => crossEntropyForward(z32, targets, { ignoreIndex: 0.5 }), RangeError, 'ignoreIndex');
    throwsNaming(() => crossEntropyForward(z32, targets, { ignoreIndex: 2 ** 31 }), RangeError, 'ignoreIndex');
    throwsNaming(() => crossEntropyForward(z32, targets, { gradOutput: NaN }), RangeError, 'gradOutput');
    throwsNaming(() => crossEntropyForward(z32, targets, { gradOutput: '1' as never }), TypeError, 'gradOutput');
    throwsNaming(() => crossEntropyForward(z32, targets, { withGrad: true, gradDtype: 'f8' as never }), RangeError, 'gradDtype');
    throwsNaming(() => crossEntropyForward(z32, targets, { withGrad: 1 as never }), TypeError, 'withGrad');
  });
  it('rejects gradOutput of the wrong length, or per-row without reduction none', () => {
    throwsNaming(() => crossEntropyBackward(z32, targets, lse, { reduction: 'none', gradOutput: new Float32Array(2) }), RangeError, 'gradOutput', 'length rows (3)');
    throwsNaming(() => crossEntropyBackward(z32, targets, lse, { gradOutput: new Float32Array(3) }), TypeError, 'gradOutput', "'none'");
    throwsNaming(() => crossEntropyBackward(z32, targets, lse, { gradOutput: new Float64Array(3) as never }), TypeError, 'gradOutput');
  });
  it('rejects lse of the wrong type or length', () => {
    throwsNaming(() => crossEntropyBackward(z32, targets, new Float32Array(2)), RangeError, 'lse', 'length rows (3)');
    throwsNaming(() => crossEntropyBackward(z32, targets, new Float64Array(3) as never), TypeError, 'lse', 'Float32Array');
  });
  it('rejects out of the wrong size or dtype, and out with inPlace', () => {
    const small = logits(new Float32Array(2 * vocab), 2, vocab);
    throwsNaming(() => crossEntropyBackward(z32, targets, lse, { out: small }), RangeError, 'out', '[3, 5]');
    const outBf = logits(new Uint16Array(15), 3, 5, 'bf16');
    throwsNaming(() => crossEntropyBackward(z32, targets, lse, { out: outBf, gradDtype: 'f32' }), TypeError, 'out.dtype', "'f32'");
    throwsNaming(() => crossEntropyBackward(z32, targets, lse, { out: { data: new Uint16Array(15), rows: 3, vocab: 5 } as never }), TypeError, 'out.dtype');
    throwsNaming(() => crossEntropyBackward(z32, targets, lse, { out: z32, inPlace: true }), TypeError, 'out', 'inPlace');
  });
  it('rejects a forward out without withGrad, of the wrong size, or with inPlace', () => {
    const out = logits(new Float32Array(15), 3, 5);
    throwsNaming(() => crossEntropyForward(z32, targets, { out }), TypeError, 'out', 'withGrad');
    throwsNaming(() => crossEntropyForward(z32, targets, { withGrad: true, out: logits(new Float32Array(10), 2, 5) }), RangeError, 'out', '[3, 5]');
    throwsNaming(() => crossEntropyForward(z32, targets, { withGrad: true, out, inPlace: true }), TypeError, 'out', 'inPlace');
  });
  it('rejects inPlace with another gradDtype, or without withGrad', () => {
    throwsNaming(() => crossEntropyForward(zbf, targets, { withGrad: true, inPlace: true, gradDtype: 'f32' }), RangeError, 'gradDtype', "'bf16'", 'inPlace');
    throwsNaming(() => crossEntropyForward(zbf, targets, { inPlace: true }), RangeError, 'inPlace', 'withGrad');
  });
  it('rejects an out that partially overlaps the logits (the native layer checks aliasing)', () => {
    const buf = new Float32Array(rows * vocab + 1);
    const z = logits(buf.subarray(0, 15), rows, vocab);
    const out = logits(buf.subarray(1, 16), rows, vocab);
    throwsNaming(() => crossEntropyBackward(z, targets, lse, { out }), RangeError, 'overlaps logits.data', 'inPlace');
  });
  it('async variants reject (not throw) with the same errors', async () => {
    await expect(crossEntropyForwardAsync(z32, new Int32Array([9, 0, 0]))).rejects.toThrow(RangeError);
    await expect(crossEntropyForwardAsync(z32, new Int32Array([9, 0, 0]))).rejects.toThrow('targets[0] = 9');
    await expect(crossEntropyBackwardAsync(z32, targets, new Float32Array(1))).rejects.toThrow(/lse/);
  });
  it('still works after all those errors', () => {
    expect(crossEntropyForward(z32, targets).loss).toBeCloseTo(Math.log(5), 6);
  });
});

describe('messages that say what to do with an array of the wrong kind', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const vm = require('node:vm') as typeof import('node:vm');
  it('an array from another realm (vm) is named as such, with the copy that fixes it', () => {
    const foreignLogits = vm.runInNewContext('new Float32Array(15)') as Float32Array;
    throwsNaming(() => logits(foreignLogits, rows, vocab), TypeError, 'but got Float32Array(15) from another realm (a vm context)',
      'copy it into this realm: new Float32Array(logits.data)');
    const foreignTargets = vm.runInNewContext('new Int32Array([0, 1, 2])') as Int32Array;
    throwsNaming(() => crossEntropyForward(z32, foreignTargets), TypeError, 'Int32Array(3) from another realm', 'new Int32Array(targets)');
    // the fix it names works
    expect(crossEntropyForward(logits(new Float32Array(foreignLogits), rows, vocab), new Int32Array(foreignTargets)).count).toBe(3);
  });
  it('BigInt64Array targets are told to convert through Number (Int32Array.from alone throws on BigInts)', () => {
    const big = new BigInt64Array([0n, 4n, 2n]);
    expect(() => Int32Array.from(big as unknown as ArrayLike<number>)).toThrow(TypeError);
    throwsNaming(() => crossEntropyForward(z32, big as never), TypeError, 'but got BigInt64Array(3). Convert with Int32Array.from(targets, Number)');
    expect(crossEntropyForward(z32, Int32Array.from(big, Number)).count).toBe(3);
  });
  it('a Buffer gets the typed-array view of its bytes', () => {
    const bytes = Buffer.from(new Float32Array(rows * vocab).fill(0.5).buffer);
    throwsNaming(() => logits(bytes as never, rows, vocab), TypeError, 'but got Buffer(60). A Buffer holds bytes: view them as a Float32Array',
      'new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4) with b = logits.data');
    const b = bytes;
    expect(crossEntropyForward(logits(new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4), rows, vocab), targets).loss)
      .toBeCloseTo(crossEntropyForward(z32, targets).loss, 12);
  });
  it('objects are "an Object", not "a Object"', () => {
    throwsNaming(() => crossEntropyForward(z32, targets, { weight: {} as never }), TypeError, 'but got an Object');
    throwsNaming(() => crossEntropyForward(z32, targets, { weight: new Map() as never }), TypeError, 'but got a Map');
  });
});
