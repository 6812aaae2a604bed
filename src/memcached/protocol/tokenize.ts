/**
 * Text-protocol tokenising and number parsing over raw bytes, as memcached's `tokenize_command` and `safe_strto*`.
 *
 * @module
 */

/** memcached's `MAX_TOKENS`: 23 tokens, then the rest of the line as one terminal "token". */
export const MAX_TOKENS = 24;

/**
 * Token boundaries of one line. `start[i]`/`end[i]` delimit token i in the source buffer; `count` counts them
 * **including** memcached's terminal token (so `"get a"` gives count 3, as memcached's `ntokens`). `rest` is the
 * offset of unparsed text when the line had more than 23 tokens, else -1.
 */
export class Tokens {
  readonly start = new Int32Array(MAX_TOKENS);
  readonly end = new Int32Array(MAX_TOKENS);
  count = 0;
  rest = -1;

  /** Length of token i (0 for the terminal token). */
  len(i: number): number {
    return i < this.count - 1 ? this.end[i]! - this.start[i]! : 0;
  }
}

/**
 * Splits `src[from, to)` on spaces only (runs collapse), memcached-style: at most 23 tokens; if more text follows,
 * `rest` points at it.
 */
export function tokenize(src: Uint8Array, from: number, to: number, t: Tokens, maxTokens = MAX_TOKENS): void {
  let n = 0;
  let s = from;
  let e = from;
  t.rest = -1;
  for (; e < to; e++) {
    if (src[e] === 0x20) {
      if (s !== e) {
        t.start[n] = s;
        t.end[n] = e;
        n++;
        if (n === maxTokens - 1) {
          e++;
          s = e;
          break;
        }
      }
      s = e + 1;
    }
  }
  if (s !== e) {
    t.start[n] = s;
    t.end[n] = e;
    n++;
  }
  // memcached: the terminal token points at the first unprocessed character, or is NULL at the end of the line.
  if (e < to) t.rest = e;
  t.start[n] = e;
  t.end[n] = e;
  t.count = n + 1;
}

/** Whether `src[start, end)` equals the ASCII string `s`. */
export function tokenIs(src: Uint8Array, start: number, end: number, s: string): boolean {
  if (end - start !== s.length) return false;
  for (let i = 0; i < s.length; i++) if (src[start + i] !== s.charCodeAt(i)) return false;
  return true;
}

function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

/** Parsed number or `undefined`; bigint for the 64-bit parser. */
const BIG64 = 0xffffffffffffffffn;

/**
 * C `strtoull`/`strtoll` over a token, then memcached's acceptance rule: the number must be followed by white space
 * or the end of the token. Returns `[negative, magnitude]` or undefined when no digits or overflow.
 */
function strtoMagnitude(src: Uint8Array, start: number, end: number): [boolean, bigint] | undefined {
  let i = start;
  while (i < end && isSpace(src[i]!)) i++;
  let neg = false;
  if (i < end && (src[i] === 0x2b || src[i] === 0x2d)) {
    neg = src[i] === 0x2d;
    i++;
  }
  const d0 = i;
  let small = 0;
  while (i < end && src[i]! >= 0x30 && src[i]! <= 0x39 && i - d0 < 15) {
    small = small * 10 + src[i]! - 0x30;
    i++;
  }
  let value = BigInt(small);
  while (i < end && src[i]! >= 0x30 && src[i]! <= 0x39) {
    value = value * 10n + BigInt(src[i]! - 0x30);
    i++;
  }
  if (i === d0) return undefined;
  if (i < end && !isSpace(src[i]!)) return undefined;
  return [neg, value];
}

/** memcached's `safe_strtoull`: a uint64 (a negative number is refused when it would wrap past 2^63). */
export function parseU64(src: Uint8Array, start: number, end: number): bigint | undefined {
  const r = strtoMagnitude(src, start, end);
  if (r === undefined) return undefined;
  const [neg, mag] = r;
  if (mag > BIG64) return undefined;
  if (!neg) return mag;
  const v = (BIG64 + 1n - mag) & BIG64;
  if (v >= 1n << 63n) return undefined;
  return v;
}

/** Fast path: a token of plain digits that fits a double exactly (cas, lengths, flags). */
function plainDigits(src: Uint8Array, start: number, end: number): number {
  const n = end - start;
  if (n === 0 || n > 15) return -1;
  let v = 0;
  for (let i = start; i < end; i++) {
    const c = src[i]! - 0x30;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

/**
 * memcached's `safe_strtoul` on 64-bit Linux: parsed as an unsigned long, then truncated to 32 bits (so
 * `4294967296` is accepted as 0, as the real server does); a negative number is refused.
 */
export function parseU32(src: Uint8Array, start: number, end: number): number | undefined {
  const fast = plainDigits(src, start, end);
  if (fast >= 0) return fast % 4294967296;
  const r = strtoMagnitude(src, start, end);
  if (r === undefined) return undefined;
  const [neg, mag] = r;
  if (mag > BIG64) return undefined;
  let v = neg ? (BIG64 + 1n - mag) & BIG64 : mag;
  if (v >= 1n << 63n && neg) return undefined;
  v &= 0xffffffffn;
  return Number(v);
}

/**
 * memcached's `safe_strtol` on 64-bit Linux: parsed as a signed long, then truncated to int32 (as the C assignment
 * does).
 */
export function parseI32(src: Uint8Array, start: number, end: number): number | undefined {
  const fast = plainDigits(src, start, end);
  if (fast >= 0) return fast | 0;
  const r = strtoMagnitude(src, start, end);
  if (r === undefined) return undefined;
  const [neg, mag] = r;
  const signed = neg ? -mag : mag;
  if (signed > 0x7fffffffffffffffn || signed < -0x8000000000000000n) return undefined;
  return Number(BigInt.asIntN(32, signed));
}

/** A uint64 cas as a number (cas values this server hands out stay below 2^53). */
export function parseCas(src: Uint8Array, start: number, end: number): number | undefined {
  const fast = plainDigits(src, start, end);
  if (fast >= 0) return fast;
  const v = parseU64(src, start, end);
  return v === undefined ? undefined : Number(v);
}
