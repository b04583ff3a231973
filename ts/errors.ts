// Argument checks shared by every op. Every message has one shape:
//   "<function>: <argument> must be <expected>, but got <actual>[. <what to do>]"
// TypeError for a value of the wrong kind, RangeError for a value of the right kind out of range.

/** The constructor name of a typed array, from its tag (so it works for arrays of another realm too). */
function tagOf(v: object): string {
  return Object.prototype.toString.call(v).slice(8, -1);
}

/** A typed array (or any object) made in another realm (a vm context): instanceof this realm's classes fails for it. */
function foreign(v: object): boolean {
  return !(v instanceof Object);
}

const article = (word: string) => (/^[aeiou]/i.test(word) ? 'an' : 'a');

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (ArrayBuffer.isView(v)) {
    const name = Buffer.isBuffer(v) ? 'Buffer' : tagOf(v);
    const len = (v as unknown as { length?: number }).length;
    const s = len === undefined ? name : `${name}(${len})`;
    return foreign(v) ? `${s} from another realm (a vm context)` : s;
  }
  if (Array.isArray(v)) return `Array(${v.length})`;
  if (typeof v === 'string') return `'${v.length > 40 ? v.slice(0, 40) + '…' : v}'`;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return `${typeof v} ${String(v)}`;
  if (typeof v === 'function') return 'a function';
  const name = (v as object).constructor?.name;
  return name ? `${article(name)} ${name}` : 'an object';
}

/**
 * What to do when `got` is an array of the wrong kind for an argument that wants a typed array
 * (the first "…Array" named in `expected`): copy an array of another realm into this one, take a
 * view of a Buffer's bytes, convert BigInt arrays through Number. undefined when none applies.
 */
function arrayHint(arg: string, expected: string, got: unknown): string | undefined {
  const want = /\b(Float32|Float64|Int32|Uint16)Array\b/.exec(expected)?.[0];
  if (!want || !ArrayBuffer.isView(got)) return undefined;
  const size = want === 'Uint16Array' ? 2 : want === 'Float64Array' ? 8 : 4;
  if (foreign(got))
    return `Arrays made in another realm are not ${want}s of this one; copy it into this realm: new ${tagOf(got)}(${arg})`;
  if (Buffer.isBuffer(got))
    return `A Buffer holds bytes: view them as a ${want}, new ${want}(b.buffer, b.byteOffset, b.byteLength / ${size}) with b = ${arg} ` +
      `(b.byteOffset must be a multiple of ${size}; else copy first: new ${want}(Uint8Array.prototype.slice.call(b).buffer))`;
  const tag = tagOf(got);
  if (tag === 'BigInt64Array' || tag === 'BigUint64Array') return `Convert with ${want}.from(${arg}, Number)`;
  return undefined;
}

function message(fn: string, arg: string, expected: string, got: unknown, hint?: string): string {
  const h = arrayHint(arg, expected, got) ?? hint;
  return `${fn}: ${arg} must be ${expected}, but got ${describe(got)}${h ? `. ${h}` : ''}`;
}

export function typeError(fn: string, arg: string, expected: string, got: unknown, hint?: string): TypeError {
  return new TypeError(message(fn, arg, expected, got, hint));
}

export function rangeError(fn: string, arg: string, expected: string, got: unknown, hint?: string): RangeError {
  return new RangeError(message(fn, arg, expected, got, hint));
}

/** An integer in [min, max]; TypeError when not a number, RangeError otherwise. */
export function checkInteger(fn: string, arg: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number') throw typeError(fn, arg, `an integer in [${min}, ${max}]`, v);
  if (!Number.isInteger(v) || v < min || v > max) throw rangeError(fn, arg, `an integer in [${min}, ${max}]`, v);
  return v;
}

export function checkFinite(fn: string, arg: string, v: unknown): number {
  if (typeof v !== 'number') throw typeError(fn, arg, 'a finite number', v);
  if (!Number.isFinite(v)) throw rangeError(fn, arg, 'a finite number', v);
  return v;
}

export function checkBoolean(fn: string, arg: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw typeError(fn, arg, 'a boolean', v);
  return v;
}

export function checkOneOf<T extends string>(fn: string, arg: string, v: unknown, choices: readonly T[]): T {
  const expected = choices.map((c) => `'${c}'`).join(' | ');
  if (typeof v !== 'string') throw typeError(fn, arg, expected, v);
  if (!(choices as readonly string[]).includes(v)) throw rangeError(fn, arg, expected, v);
  return v as T;
}

/**
 * The options object: undefined or a plain object whose keys are all known (catches typos).
 * Returns a snapshot: each option is read once, here (a getter runs once), and every later check
 * and the native request see those values, never the caller's object again.
 */
export function checkOptions<K extends string>(fn: string, opts: unknown, known: readonly K[]): Partial<Record<K, unknown>> {
  if (opts === undefined || opts === null) return {};
  if (typeof opts !== 'object' || Array.isArray(opts) || ArrayBuffer.isView(opts))
    throw typeError(fn, 'options', 'an object', opts);
  const snapshot: Partial<Record<K, unknown>> = {};
  for (const key of Object.keys(opts)) {
    if (!(known as readonly string[]).includes(key))
      throw new TypeError(`${fn}: unknown option '${key}'; known options: ${known.join(', ')}`);
    snapshot[key as K] = (opts as Record<string, unknown>)[key];
  }
  return snapshot;
}
