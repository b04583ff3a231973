// Argument checks shared by every op. Every message has one shape:
//   "<function>: <argument> must be <expected>, but got <actual>[. <what to do>]"
// TypeError for a value of the wrong kind, RangeError for a value of the right kind out of range.

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (ArrayBuffer.isView(v)) {
    const name = (v as object).constructor?.name ?? 'typed array';
    const len = (v as unknown as { length?: number }).length;
    return len === undefined ? name : `${name}(${len})`;
  }
  if (Array.isArray(v)) return `Array(${v.length})`;
  if (typeof v === 'string') return `'${v.length > 40 ? v.slice(0, 40) + '…' : v}'`;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return `${typeof v} ${String(v)}`;
  if (typeof v === 'function') return 'a function';
  return (v as object).constructor?.name ? `a ${(v as object).constructor.name}` : 'an object';
}

function message(fn: string, arg: string, expected: string, got: unknown, hint?: string): string {
  return `${fn}: ${arg} must be ${expected}, but got ${describe(got)}${hint ? `. ${hint}` : ''}`;
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
