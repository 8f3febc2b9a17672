/**
 * Go's `strconv.ParseFloat(s, 64)`, which Flux's `numerical` policy applies to every tag: decimal
 * (`12`, `-3.5`, `.5`, `5.`, `1e3`, `1_000`), hexadecimal with a binary exponent (`0x1p-2`), and
 * `inf`/`infinity`/`nan` in any case. A syntax error and an overflow (`1234e56789` → ±Inf) are both
 * errors in Go, so both give undefined here.
 */

const DECIMAL = /^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;
const HEX = /^([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?[pP]([+-]?[0-9]+)$/;

/** Go's `underscoreOK`: `_` only between digits (or after a base prefix), never first or last. */
function underscoreOK(str: string): boolean {
  let s = str;
  let saw = "^";
  let i = 0;
  if (s.length >= 1 && (s[0] === "-" || s[0] === "+")) s = s.slice(1);
  let hex = false;
  if (s.length >= 2 && s[0] === "0" && /[bBoOxX]/.test(s[1]!)) {
    i = 2;
    saw = "0";
    hex = s[1] === "x" || s[1] === "X";
  }
  for (; i < s.length; i++) {
    const c = s[i]!;
    if ((c >= "0" && c <= "9") || (hex && /[a-fA-F]/.test(c))) {
      saw = "0";
      continue;
    }
    if (c === "_") {
      if (saw !== "0") return false;
      saw = "_";
      continue;
    }
    if (saw === "_") return false;
    saw = "!";
  }
  return saw !== "_";
}

function hexFloat(sign: string, int: string, frac: string, exp: string): number {
  const mantissa = BigInt(`0x${int}${frac}`);
  const e = Number(exp) - 4 * frac.length;
  if (mantissa === 0n) return sign === "-" ? -0 : 0;
  // Scale in two steps so that 2**e alone cannot overflow or underflow prematurely.
  const half = Math.trunc(e / 2);
  const v = Number(mantissa) * 2 ** half * 2 ** (e - half);
  return sign === "-" ? -v : v;
}

export function parseGoFloat(s: string): number | undefined {
  const special = /^([+-]?)(inf|infinity)$/i.exec(s);
  if (special) return special[1] === "-" ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  if (/^nan$/i.test(s)) return Number.NaN;
  if (s.includes("_") && !underscoreOK(s)) return undefined;
  const t = s.includes("_") ? s.replaceAll("_", "") : s;
  let v: number;
  if (DECIMAL.test(t)) {
    v = Number(t);
  } else {
    const m = HEX.exec(t);
    if (!m || `${m[2]}${m[3] ?? ""}` === "") return undefined;
    v = hexFloat(m[1]!, m[2]!, m[3] ?? "", m[4]!);
  }
  return Number.isFinite(v) ? v : undefined;
}
