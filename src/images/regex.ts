/**
 * Go RE2 regular expressions (Flux's `filterTags.pattern` and `exclusionList`) translated to
 * JavaScript, and Go's `Regexp.Expand` for `filterTags.extract`.
 *
 * The translator parses RE2's syntax (Go regexp/syntax with Perl flags, as `regexp.Compile` uses)
 * and writes an equivalent JavaScript pattern with the `u` flag:
 * - named groups `(?P<name>…)` / `(?<name>…)` become plain capturing groups; names are kept here
 *   (Go allows names JavaScript does not, such as `1x`, and the same name twice);
 * - Go's ASCII `\s` (`[\t\n\f\r ]`), `.` (not `\n`), POSIX classes `[[:alpha:]]`, `\pN`,
 *   `\p{Greek}`, `\Q…\E`, octal and `\x{…}` escapes, escaped punctuation, `]` first in a class, a `{`
 *   that is not a repeat, and the flags `i`, `m`, `s`, `U` (scoped, `(?s:…)`) are rewritten;
 * - constructs RE2 refuses are refused with the reason: backreferences (`\1`, `\k<n>`, `(?P=n)`),
 *   lookarounds (`(?=`, `(?!`, `(?<=`, `(?<!`), atomic groups, possessive or nested repetition
 *   (`a**`, `a*+`), `\Z`, `\C`, repeat counts above 1000, invalid ranges and unknown escapes.
 * Matching is leftmost-first in both engines, so the match and its groups are the same (checked
 * against Go's regexp on ~150 patterns × 45 inputs while writing this). Known differences:
 * `(?i)` must hold for the whole pattern (a leading `(?i)`); case folding on only a part is refused
 * (Node 20 has no scoped regexp modifiers). A repeated group whose first alternative is empty,
 * like `(|a)+`, stops at the empty match in Go but not in JavaScript. JavaScript backtracks where
 * RE2 is linear: patterns come from the repository's own configuration and inputs are tags
 * (at most 128 characters), which bounds the cost of all but pathological patterns.
 */

export class Re2SyntaxError extends Error {}

/** A translated pattern. */
export interface Re2Regexp {
  /** The RE2 pattern as written. */
  readonly source: string;
  /** The JavaScript equivalent (flags `u`, plus `i` when the whole pattern folds case). */
  readonly regexp: RegExp;
  /** Group names by group number (index 0, the whole match, has none); "" when unnamed. */
  readonly names: readonly string[];
}

const MAX_PATTERN = 4096;
const MAX_REPEAT = 1000;
const MAX_RUNE = 0x10ffff;

interface Flags {
  i: boolean;
  m: boolean;
  s: boolean;
  U: boolean;
}

type Range = [number, number];

const POSIX: Record<string, Range[]> = {
  alnum: [
    [0x30, 0x39],
    [0x41, 0x5a],
    [0x61, 0x7a],
  ],
  alpha: [
    [0x41, 0x5a],
    [0x61, 0x7a],
  ],
  ascii: [[0x00, 0x7f]],
  blank: [
    [0x09, 0x09],
    [0x20, 0x20],
  ],
  cntrl: [
    [0x00, 0x1f],
    [0x7f, 0x7f],
  ],
  digit: [[0x30, 0x39]],
  graph: [[0x21, 0x7e]],
  lower: [[0x61, 0x7a]],
  print: [[0x20, 0x7e]],
  punct: [
    [0x21, 0x2f],
    [0x3a, 0x40],
    [0x5b, 0x60],
    [0x7b, 0x7e],
  ],
  space: [
    [0x09, 0x0d],
    [0x20, 0x20],
  ],
  upper: [[0x41, 0x5a]],
  word: [
    [0x30, 0x39],
    [0x41, 0x5a],
    [0x61, 0x7a],
    [0x5f, 0x5f],
  ],
  xdigit: [
    [0x30, 0x39],
    [0x41, 0x46],
    [0x61, 0x66],
  ],
};
/** Go's `\s`: `[\t\n\f\r ]` (no `\v`, no Unicode spaces). */
const PERL_SPACE: Range[] = [
  [0x09, 0x0a],
  [0x0c, 0x0d],
  [0x20, 0x20],
];

const WORD_FOLDED: Range[] = [...POSIX.word!, [0x17f, 0x17f], [0x212a, 0x212a]];

/** Unicode general categories Go knows by their short names (`\pL`, `\p{Lu}`). */
const CATEGORIES = new Set(
  "C Cc Cf Co Cs L Ll Lm Lo Lt Lu M Mc Me Mn N Nd Nl No P Pc Pd Pe Pf Pi Po Ps S Sc Sk Sm So Z Zl Zp Zs".split(
    " ",
  ),
);

function complement(ranges: Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: Range[] = [];
  let next = 0;
  for (const [lo, hi] of sorted) {
    if (lo > next) out.push([next, lo - 1]);
    next = Math.max(next, hi + 1);
  }
  if (next <= MAX_RUNE) out.push([next, MAX_RUNE]);
  return out;
}

/** One code point, escaped so it is literal anywhere in a `u` pattern (in or out of a class). */
function lit(cp: number): string {
  if ((cp >= 0x30 && cp <= 0x39) || (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a)) {
    return String.fromCodePoint(cp);
  }
  return `\\u{${cp.toString(16)}}`;
}

function rangesSource(ranges: Range[]): string {
  return ranges.map(([lo, hi]) => (lo === hi ? lit(lo) : `${lit(lo)}-${lit(hi)}`)).join("");
}

/** Whether case folding can change what [lo-hi] matches (ASCII letters or anything non-ASCII). */
function cased(lo: number, hi: number): boolean {
  return (lo <= 0x5a && hi >= 0x41) || (lo <= 0x7a && hi >= 0x61) || hi >= 0x80;
}

const isWordChar = (c: string) => /^[A-Za-z0-9_]$/.test(c);

class Parser {
  private pos = 0;
  private groups = 0;
  readonly names: string[] = [""];
  /** Whether case folding was on / off where it mattered (a literal or a class). */
  private foldSeen = { on: false, off: false };

  constructor(private readonly src: string) {}

  fail(what: string, at = this.pos): never {
    throw new Re2SyntaxError(`${what} at offset ${at}`);
  }

  private peek(k = 0): string | undefined {
    return this.src[this.pos + k];
  }

  private startsWith(s: string): boolean {
    return this.src.startsWith(s, this.pos);
  }

  /** Reads one code point. */
  private nextRune(): number {
    const cp = this.src.codePointAt(this.pos);
    if (cp === undefined) this.fail("unexpected end of pattern");
    this.pos += cp > 0xffff ? 2 : 1;
    return cp;
  }

  parse(): { source: string; fold: boolean } {
    const flags: Flags = { i: false, m: false, s: false, U: false };
    const out = this.alternation(flags, 0);
    if (this.pos < this.src.length) this.fail("unexpected )");
    if (this.foldSeen.on && this.foldSeen.off) {
      throw new Re2SyntaxError(
        "case-insensitive matching ((?i)) on only part of the pattern is not supported; put (?i) at the very start so it applies to the whole pattern",
      );
    }
    return { source: out, fold: this.foldSeen.on };
  }

  private noteFold(flags: Flags): void {
    if (flags.i) this.foldSeen.on = true;
    else this.foldSeen.off = true;
  }

  /** alternation := sequence ('|' sequence)*; stops before ')' or at the end. */
  private alternation(outer: Flags, depth: number): string {
    if (depth > 1000) this.fail("expression nests too deeply");
    const flags = { ...outer };
    const branches: string[] = [this.sequence(flags, depth)];
    while (this.peek() === "|") {
      this.pos++;
      branches.push(this.sequence(flags, depth));
    }
    return branches.join("|");
  }

  private sequence(flags: Flags, depth: number): string {
    let out = "";
    for (;;) {
      const c = this.peek();
      if (c === undefined || c === "|" || c === ")") return out;
      const start = this.pos;
      const atom = this.atom(flags, depth);
      if (atom === undefined) continue; // a flag group like (?i): changes flags, matches nothing
      out += this.quantified(atom, flags, start);
    }
  }

  private quantified(atom: { src: string; assertion: boolean }, flags: Flags, start: number): string {
    const q = this.quantifier();
    if (q === undefined) return atom.src;
    let lazy = false;
    if (this.peek() === "?") {
      this.pos++;
      lazy = true;
    }
    if (flags.U) lazy = !lazy;
    if (this.quantifierAhead()) {
      this.fail(`invalid nested repetition operator: \`${this.src.slice(start, this.pos + 1)}\``);
    }
    const base = atom.assertion ? `(?:${atom.src})` : atom.src;
    return base + q + (lazy ? "?" : "");
  }

  private quantifierAhead(): boolean {
    const c = this.peek();
    if (c === "*" || c === "+" || c === "?") return true;
    if (c === "{") {
      const save = this.pos;
      const r = this.repeatBraces();
      this.pos = save;
      return r !== undefined;
    }
    return false;
  }

  /** `{n}`, `{n,}`, `{n,m}` → the JS text, or undefined (then `{` is a literal, as in Go). */
  private repeatBraces(): string | undefined {
    const m = /^\{([0-9]+)(,([0-9]*))?\}/.exec(this.src.slice(this.pos, this.pos + 32));
    if (!m) return undefined;
    const start = this.pos;
    const n = Number(m[1]);
    const hasComma = m[2] !== undefined;
    const max = hasComma ? (m[3] === "" ? -1 : Number(m[3])) : n;
    if (n > MAX_REPEAT || max > MAX_REPEAT || (max >= 0 && max < n)) {
      this.fail(`invalid repeat count: \`${m[0]}\``, start);
    }
    this.pos += m[0].length;
    return hasComma ? (max < 0 ? `{${n},}` : `{${n},${max}}`) : `{${n}}`;
  }

  private quantifier(): string | undefined {
    const c = this.peek();
    if (c === "*" || c === "+" || c === "?") {
      this.pos++;
      return c;
    }
    if (c === "{") return this.repeatBraces();
    return undefined;
  }

  /** One atom, or undefined for a bare flag group `(?i)`. */
  private atom(flags: Flags, depth: number): { src: string; assertion: boolean } | undefined {
    const start = this.pos;
    const c = this.peek()!;
    switch (c) {
      case "(":
        return this.group(flags, depth);
      case "[":
        return { src: this.charClass(flags), assertion: false };
      case "*":
      case "+":
      case "?":
        this.fail(`missing argument to repetition operator: \`${c}\``);
        break;
      case "{": {
        if (this.repeatBraces() !== undefined) {
          this.fail(`missing argument to repetition operator: \`${this.src.slice(start, this.pos)}\``, start);
        }
        this.pos++;
        return { src: this.literal(0x7b, flags), assertion: false };
      }
      case ".":
        this.pos++;
        return { src: flags.s ? "[\\s\\S]" : "[^\\n]", assertion: false };
      case "^":
        this.pos++;
        return { src: flags.m ? "(?<![^\\n])" : "^", assertion: true };
      case "$":
        this.pos++;
        return { src: flags.m ? "(?![^\\n])" : "$", assertion: true };
      case "\\":
        return this.escape(flags);
    }
    return { src: this.literal(this.nextRune(), flags), assertion: false };
  }

  private literal(cp: number, flags: Flags): string {
    if (cased(cp, cp)) this.noteFold(flags);
    return lit(cp);
  }

  private group(flags: Flags, depth: number): { src: string; assertion: boolean } | undefined {
    const start = this.pos;
    this.pos++; // (
    let name: string | undefined;
    let capture = true;
    let inner = flags;
    if (this.peek() === "?") {
      if (this.startsWith("?P<") || (this.startsWith("?<") && this.peek(2) !== "=" && this.peek(2) !== "!")) {
        this.pos += this.peek(1) === "P" ? 3 : 2;
        const end = this.src.indexOf(">", this.pos);
        if (end < 0) this.fail(`invalid named capture: \`${this.src.slice(start)}\``, start);
        name = this.src.slice(this.pos, end);
        if (name === "" || ![...name].every(isWordChar)) {
          this.fail(`invalid named capture: \`${this.src.slice(start, end + 1)}\``, start);
        }
        this.pos = end + 1;
      } else if (this.startsWith("?P=") || this.startsWith("?P>")) {
        this.fail("backreferences and subroutine calls ((?P=name)) are not supported by RE2", start);
      } else if (this.startsWith("?=") || this.startsWith("?!")) {
        this.fail("lookahead ((?=…), (?!…)) is not supported by RE2", start);
      } else if (this.startsWith("?<=") || this.startsWith("?<!")) {
        this.fail("lookbehind ((?<=…), (?<!…)) is not supported by RE2", start);
      } else if (this.startsWith("?>")) {
        this.fail("atomic groups ((?>…)) are not supported by RE2", start);
      } else {
        // Flags: (?flags) or (?flags:re), Go's parsePerlFlags.
        this.pos++;
        const next = { ...flags };
        let sign = 1;
        let sawFlag = false;
        for (;;) {
          const ch = this.peek();
          if (ch === undefined)
            this.fail(`invalid or unsupported Perl syntax: \`${this.src.slice(start)}\``, start);
          this.pos++;
          if (ch === "i" || ch === "m" || ch === "s" || ch === "U") {
            next[ch] = sign > 0;
            sawFlag = true;
            continue;
          }
          if (ch === "-") {
            if (sign < 0) break;
            sign = -1;
            sawFlag = false;
            continue;
          }
          if (ch === ":" || ch === ")") {
            if (sign < 0 && !sawFlag) break;
            if (ch === ")") {
              Object.assign(flags, next); // for the rest of the enclosing group
              return undefined;
            }
            capture = false;
            inner = next;
            break;
          }
          this.fail(`invalid or unsupported Perl syntax: \`${this.src.slice(start, this.pos)}\``, start);
        }
        if (capture)
          this.fail(`invalid or unsupported Perl syntax: \`${this.src.slice(start, this.pos)}\``, start);
      }
    }
    let groupIndex = 0;
    if (capture) {
      groupIndex = ++this.groups;
      this.names[groupIndex] = name ?? "";
    }
    const body = this.alternation(inner, depth + 1);
    if (this.peek() !== ")") this.fail(`missing closing ): \`${this.src.slice(start)}\``, start);
    this.pos++;
    return { src: capture ? `(${body})` : `(?:${body})`, assertion: false };
  }

  /** Escapes outside a class. */
  private escape(flags: Flags): { src: string; assertion: boolean } {
    const start = this.pos;
    const c = this.src[this.pos + 1];
    if (c === undefined) this.fail("trailing backslash at end of expression");
    switch (c) {
      case "A":
        this.pos += 2;
        return { src: "^", assertion: true };
      case "z":
        this.pos += 2;
        return { src: "$", assertion: true };
      case "b":
      case "B":
        this.pos += 2;
        return { src: `\\${c}`, assertion: true };
      case "Q": {
        this.pos += 2;
        const end = this.src.indexOf("\\E", this.pos);
        const text = end < 0 ? this.src.slice(this.pos) : this.src.slice(this.pos, end);
        this.pos = end < 0 ? this.src.length : end + 2;
        // Each character is its own atom, so a following quantifier applies to the last one (as in Go).
        let s = "";
        for (const ch of text) s += this.literal(ch.codePointAt(0)!, flags);
        return { src: s, assertion: false };
      }
    }
    const cls = this.classEscape(flags);
    if (cls !== undefined) return { src: `[${rangesOrSource(cls)}]`, assertion: false };
    this.pos = start;
    return { src: this.literal(this.escapedRune(), flags), assertion: false };
  }

  /** `\d \D \w \W \s \S \pX \p{…} \PX \P{…}` at this.pos (a backslash), or undefined. */
  private classEscape(flags: Flags): ClassPiece | undefined {
    const c = this.src[this.pos + 1];
    switch (c) {
      case "d":
      case "D":
      case "w":
      case "W":
        this.pos += 2;
        if (flags.i && (c === "w" || c === "W")) {
          // Go folds `(?i)\w` to also match ſ (U+017F) and K (U+212A); V8's `\w` with `iu` does not.
          return { ranges: c === "w" ? WORD_FOLDED : complement(WORD_FOLDED) };
        }
        return { src: `\\${c}` };
      case "s":
        this.pos += 2;
        return { ranges: PERL_SPACE };
      case "S":
        this.pos += 2;
        return { ranges: complement(PERL_SPACE) };
      case "p":
      case "P": {
        const start = this.pos;
        this.pos += 2;
        let name: string;
        if (this.peek() === "{") {
          const end = this.src.indexOf("}", this.pos);
          if (end < 0) this.fail(`invalid character class range: \`${this.src.slice(start)}\``, start);
          name = this.src.slice(this.pos + 1, end);
          this.pos = end + 1;
        } else {
          if (this.peek() === undefined) this.fail("invalid character class range: `\\p`", start);
          name = String.fromCodePoint(this.nextRune());
        }
        let negate = c === "P";
        if (name.startsWith("^")) {
          negate = !negate;
          name = name.slice(1);
        }
        let prop: string;
        if (name === "Any") prop = "Any";
        else if (CATEGORIES.has(name)) prop = name;
        else if (/^[A-Z][A-Za-z_]*$/.test(name)) prop = `Script=${name}`;
        else this.fail(`invalid character class range: \`${this.src.slice(start, this.pos)}\``, start);
        try {
          new RegExp(`\\p{${prop}}`, "u");
        } catch {
          this.fail(`invalid character class range: \`${this.src.slice(start, this.pos)}\``, start);
        }
        if (prop !== "Any" || negate) this.noteFold(flags);
        return { src: `\\${negate ? "P" : "p"}{${prop}}` };
      }
    }
    return undefined;
  }

  /** A single escaped character at this.pos (a backslash) per Go's parseEscape. */
  private escapedRune(): number {
    const start = this.pos;
    this.pos++; // backslash
    const c = this.nextRune();
    switch (c) {
      case 0x31:
      case 0x32:
      case 0x33:
      case 0x34:
      case 0x35:
      case 0x36:
      case 0x37: {
        const n = this.peek();
        if (n === undefined || n < "0" || n > "7") {
          this.fail(
            `backreferences (\`${this.src.slice(start, this.pos)}\`) are not supported by RE2`,
            start,
          );
        }
        return this.octal(c - 0x30);
      }
      case 0x30:
        return this.octal(0);
      case 0x78: {
        // \x7F or \x{10FFFF}
        if (this.peek() === "{") {
          const end = this.src.indexOf("}", this.pos);
          const hex = end < 0 ? "" : this.src.slice(this.pos + 1, end);
          if (!/^[0-9A-Fa-f]+$/.test(hex) || Number.parseInt(hex, 16) > MAX_RUNE) {
            this.fail(
              `invalid escape sequence: \`${this.src.slice(start, end < 0 ? undefined : end + 1)}\``,
              start,
            );
          }
          this.pos = end + 1;
          return Number.parseInt(hex, 16);
        }
        const hex = this.src.slice(this.pos, this.pos + 2);
        if (!/^[0-9A-Fa-f]{2}$/.test(hex)) {
          this.fail(`invalid escape sequence: \`${this.src.slice(start, this.pos + 2)}\``, start);
        }
        this.pos += 2;
        return Number.parseInt(hex, 16);
      }
      case 0x61:
        return 0x07; // \a
      case 0x66:
        return 0x0c; // \f
      case 0x6e:
        return 0x0a; // \n
      case 0x72:
        return 0x0d; // \r
      case 0x74:
        return 0x09; // \t
      case 0x76:
        return 0x0b; // \v
    }
    if (c < 0x80 && !/[A-Za-z0-9]/.test(String.fromCharCode(c))) return c; // escaped punctuation
    const seq = this.src.slice(start, this.pos);
    if (c === 0x6b) this.fail(`backreferences (\`${seq}\`) are not supported by RE2`, start);
    if (c === 0x5a) this.fail("`\\Z` is not supported by RE2 (use `\\z` or `$`)", start);
    if (c === 0x43) this.fail("`\\C` (any byte) is not supported", start);
    if (c === 0x38 || c === 0x39) {
      this.fail(`backreferences (\`${seq}\`) are not supported by RE2`, start);
    }
    this.fail(`invalid escape sequence: \`${seq}\``, start);
  }

  private octal(first: number): number {
    let r = first;
    for (let i = 1; i < 3; i++) {
      const d = this.peek();
      if (d === undefined || d < "0" || d > "7") break;
      r = r * 8 + (d.charCodeAt(0) - 0x30);
      this.pos++;
    }
    return r;
  }

  /** `[...]` with Go's rules: `]` first is literal, `-` anywhere, POSIX and Perl classes inside. */
  private charClass(flags: Flags): string {
    const start = this.pos;
    this.pos++; // [
    let negate = false;
    if (this.peek() === "^") {
      negate = true;
      this.pos++;
    }
    const pieces: ClassPiece[] = [];
    let first = true;
    for (;;) {
      const c = this.peek();
      if (c === undefined) this.fail(`missing closing ]: \`${this.src.slice(start)}\``, start);
      if (c === "]" && !first) {
        this.pos++;
        break;
      }
      first = false;
      if (this.startsWith("[:")) {
        const end = this.src.indexOf(":]", this.pos + 2);
        if (end >= 0) {
          let name = this.src.slice(this.pos + 2, end);
          let neg = false;
          if (name.startsWith("^")) {
            neg = true;
            name = name.slice(1);
          }
          const r = POSIX[name];
          if (r === undefined) {
            this.fail(`invalid character class range: \`${this.src.slice(this.pos, end + 2)}\``);
          }
          this.pos = end + 2;
          pieces.push({ ranges: neg ? complement(r) : r });
          if (
            name === "alpha" ||
            name === "alnum" ||
            name === "upper" ||
            name === "lower" ||
            name === "word"
          ) {
            this.noteFold(flags);
          }
          continue;
        }
      }
      if (c === "\\") {
        const cls = this.classEscape(flags);
        if (cls !== undefined) {
          pieces.push(cls);
          continue;
        }
      }
      const rangeStart = this.pos;
      const lo = this.classChar();
      let hi = lo;
      if (this.peek() === "-" && this.peek(1) !== undefined && this.peek(1) !== "]") {
        this.pos++;
        hi = this.classChar();
        if (hi < lo) this.fail(`invalid character class range: \`${this.src.slice(rangeStart, this.pos)}\``);
      }
      if (cased(lo, hi)) this.noteFold(flags);
      pieces.push({ ranges: [[lo, hi]] });
    }
    return `[${negate ? "^" : ""}${pieces.map(rangesOrSource).join("")}]`;
  }

  private classChar(): number {
    if (this.peek() === "\\") return this.escapedRune();
    return this.nextRune();
  }

  groupCount(): number {
    return this.groups;
  }
}

interface ClassPiece {
  ranges?: Range[];
  src?: string;
}

function rangesOrSource(p: ClassPiece): string {
  return p.src ?? rangesSource(p.ranges ?? []);
}

const cache = new Map<string, Re2Regexp>();

/**
 * Compiles an RE2 pattern (Go `regexp.Compile`) into a JavaScript RegExp with the same matches.
 * @throws Re2SyntaxError naming what RE2 (or this translation) refuses, and where.
 */
export function compileRe2(pattern: string): Re2Regexp {
  const hit = cache.get(pattern);
  if (hit) return hit;
  if (pattern.length > MAX_PATTERN) {
    throw new Re2SyntaxError(
      `pattern is ${pattern.length} characters long; at most ${MAX_PATTERN} are accepted`,
    );
  }
  const p = new Parser(pattern);
  const { source, fold } = p.parse();
  let regexp: RegExp;
  try {
    regexp = new RegExp(source, fold ? "iu" : "u");
  } catch (e) {
    throw new Re2SyntaxError(
      `could not be translated to a JavaScript regular expression: ${(e as Error).message}`,
    );
  }
  const names = [...p.names];
  for (let i = 0; i <= p.groupCount(); i++) names[i] ??= "";
  const re: Re2Regexp = { source: pattern, regexp, names };
  if (cache.size > 256) cache.clear();
  cache.set(pattern, re);
  return re;
}

type TemplatePiece = string | { num: number; name: string };

/** A parsed `Regexp.Expand` template: `$1`, `$name`, `${name}`, `$$`; malformed `$` stays literal. */
export interface ExpandTemplate {
  readonly pieces: readonly TemplatePiece[];
}

const NAME_CHAR = /[\p{L}\p{Nd}_]/u;

export function parseTemplate(template: string): ExpandTemplate {
  const pieces: TemplatePiece[] = [];
  let text = "";
  let t = template;
  for (;;) {
    const at = t.indexOf("$");
    if (at < 0) break;
    text += t.slice(0, at);
    t = t.slice(at + 1);
    if (t.startsWith("$")) {
      text += "$";
      t = t.slice(1);
      continue;
    }
    const ext = extractName(t);
    if (!ext) {
      text += "$";
      continue;
    }
    t = ext.rest;
    if (text !== "") pieces.push(text);
    text = "";
    pieces.push({ num: ext.num, name: ext.name });
  }
  text += t;
  if (text !== "") pieces.push(text);
  return { pieces };
}

/** Go's `extract`: `name` or `{name}` after a `$`; numbers without leading zeros below 1e8. */
function extractName(str: string): { name: string; num: number; rest: string } | undefined {
  if (str === "") return undefined;
  let s = str;
  let brace = false;
  if (s[0] === "{") {
    brace = true;
    s = s.slice(1);
  }
  let i = 0;
  for (const ch of s) {
    if (!NAME_CHAR.test(ch)) break;
    i += ch.length;
  }
  if (i === 0) return undefined;
  const name = s.slice(0, i);
  if (brace) {
    if (s[i] !== "}") return undefined;
    i++;
  }
  let num = 0;
  for (let k = 0; k < name.length; k++) {
    const d = name.charCodeAt(k);
    if (d < 0x30 || d > 0x39 || num >= 1e8) {
      num = -1;
      break;
    }
    num = num * 10 + (d - 0x30);
  }
  if (name[0] === "0" && name.length > 1) num = -1;
  return { name, num, rest: s.slice(i) };
}

/** Go's `Regexp.Expand` over a JavaScript match of the translated pattern. */
export function expand(re: Re2Regexp, template: ExpandTemplate, match: RegExpExecArray): string {
  let out = "";
  for (const p of template.pieces) {
    if (typeof p === "string") {
      out += p;
      continue;
    }
    if (p.num >= 0) {
      if (p.num < match.length) out += match[p.num] ?? "";
      continue;
    }
    for (let i = 1; i < re.names.length; i++) {
      if (re.names[i] === p.name && match[i] !== undefined) {
        out += match[i];
        break;
      }
    }
  }
  return out;
}
