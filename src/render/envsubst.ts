// biome-ignore-all lint/suspicious/noTemplateCurlyInString: this module parses literal ${...} expressions.
/**
 * Post-build variable substitution, a port of Flux's `envsubst` (fluxcd/pkg/envsubst, itself a
 * fork of drone/envsubst), so a manifest renders here exactly as it renders under Flux.
 *
 * Algorithm: one left-to-right pass. Top-level text is copied through, except that `$$` becomes
 * `$` and `${` starts an expression; a bare `$v` is plain text. An expression is parsed by a
 * recursive-descent parser that mirrors Flux's scanner rune for rune (the same accept functions
 * and token modes, so the same odd corners: a replace pattern may contain `}`, escapes `\/`,
 * `\\` and `$$` only apply inside replace arguments, default arguments are evaluated even when
 * the variable is set) and evaluates it as soon as it is parsed. Parse errors throw at once;
 * variables that are unset in strict mode are only recorded, so the caller sees every missing
 * name in one go. Text without `${` or `$$` is returned as-is without being scanned.
 *
 * Deliberate differences from Flux (each one where Flux crashes, drops text, produces invalid
 * UTF-8 or silently does something surprising):
 * - `${v+x}`, `${v-x}`, `${v?x}`, `${v:+x}`, `${v:?x}` are errors naming the unsupported
 *   operator. (Flux reports "missing closing brace" for the first three and silently treats the
 *   last two like `${v:-x}`.)
 * - A NUL character is ordinary text (Flux's scanner takes it for end of input and drops the rest).
 * - `%`/`%%` match the glob against suffixes directly; Flux reverses the pattern text, which
 *   breaks `[...]` classes and `\` escapes in suffix patterns. `#`/`##`/`%`/`%%` never split a
 *   character (Flux tries every byte prefix).
 * - Expressions nested more than 100 deep are rejected instead of recursing without bound.
 * Faithful quirks kept on purpose: `${#v}`, `${v:p:l}` count UTF-8 bytes; `${v#*}`/`${v%*}`
 * remove one character (Flux never considers the empty match); `${v/#p/}` and `${v/%p/}` leave
 * the value unchanged; all default forms also apply to a set-but-empty value.
 */
import { SluiceError } from "../core/index.js";

export interface SubstitutionResult {
  /** The substituted text. */
  output: string;
  /**
   * Strict mode only: variables referenced without a value and without a default, unique, in
   * order of first appearance. Always empty in non-strict mode.
   */
  missing: string[];
}

export type VarLookup = ReadonlyMap<string, string>;

const VAR_NAME = /^[_a-zA-Z][_a-zA-Z0-9]*$/;

/** Whether `name` is acceptable as a substitution variable name (Flux's `^[_[:alpha:]][_[:alpha:][:digit:]]*$`). */
export function validateVarName(name: string): boolean {
  return VAR_NAME.test(name);
}

/** Cheap check: could `envsubst` change this text at all? (It contains `${` or `$$`.) */
export function hasSubstitution(text: string): boolean {
  return text.includes("${") || text.includes("$$");
}

/**
 * Substitutes `${...}` expressions in `text` with Flux semantics.
 *
 * Values are inserted as-is. In strict mode a variable that is not in `vars` and has no default
 * is reported in `missing` (its expansion renders as if the value were empty); in non-strict mode
 * unset variables are simply empty. The output is the same in both modes.
 *
 * @example envsubst("name: ${APP}-config", new Map([["APP", "web"]]), { strict: false }).output // "name: web-config"
 * @throws SluiceError("SubstitutionFailed") when an expression cannot be parsed.
 */
export function envsubst(text: string, vars: VarLookup, opts: { strict: boolean }): SubstitutionResult {
  let j = text.indexOf("$");
  if (j === -1) return { output: text, missing: [] };
  let missing: Set<string> | undefined;
  let parser: Parser | undefined;
  let out = "";
  let seg = 0;
  while (j !== -1) {
    const next = text.charCodeAt(j + 1);
    if (next === LBRACE) {
      out += text.slice(seg, j);
      if (parser === undefined) {
        missing = new Set();
        parser = new Parser(text, vars, opts.strict, missing);
      }
      parser.pos = j + 2;
      out += parser.parseFunc(j, 0);
      seg = parser.pos;
      j = text.indexOf("$", seg);
    } else if (next === DOLLAR) {
      out += text.slice(seg, j + 1);
      seg = j + 2;
      j = text.indexOf("$", seg);
    } else {
      j = text.indexOf("$", j + 1);
    }
  }
  if (seg === 0) return { output: text, missing: [] };
  out += text.slice(seg);
  return { output: out, missing: missing === undefined ? [] : [...missing] };
}

// ---------------------------------------------------------------------------------------------
// Scanner: the token modes and accept functions of Flux's parse/scan.go.

const EOF = -1;
const DOLLAR = 0x24;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const BACKSLASH = 0x5c;
const SLASH = 0x2f;
const COLON = 0x3a;
const HASH = 0x23;
const PERCENT = 0x25;
const EQUAL = 0x3d;
const COMMA = 0x2c;
const CARET = 0x5e;
const MINUS = 0x2d;
const PLUS = 0x2b;
const QUESTION = 0x3f;

const M_IDENT = 1;
const M_LBRACK = 2;
const M_RBRACK = 4;
const M_ESCAPE = 8;

const T_ILLEGAL = 0;
const T_EOF = 1;
const T_IDENT = 2;
const T_LBRACK = 3;
const T_RBRACK = 4;

/** Decides whether code point `c`, the `i`-th unit of the token being scanned (1-based), belongs to it. */
type Accept = (c: number, i: number) => boolean;

const UNICODE_IDENT = /^[\p{L}\p{Nd}_]$/u;
const acceptIdent: Accept = (c) =>
  (c >= 0x61 && c <= 0x7a) ||
  (c >= 0x41 && c <= 0x5a) ||
  (c >= 0x30 && c <= 0x39) ||
  c === 0x5f ||
  (c > 0x7f && UNICODE_IDENT.test(String.fromCodePoint(c)));
const acceptColon: Accept = (c) => c === COLON;
const acceptOneHash: Accept = (c, i) => c === HASH && i === 1;
const acceptNotClosing: Accept = (c) => c !== RBRACE;
const acceptHashFunc: Accept = (c, i) => c === HASH && i < 3;
const acceptPercentFunc: Accept = (c, i) => c === PERCENT && i < 3;
const acceptDefaultFunc: Accept = (c, i) =>
  (i === 1 && c === COLON) || (i === 2 && (c === EQUAL || c === MINUS || c === QUESTION || c === PLUS));
const acceptReplaceFunc: Accept = (c, i) =>
  (i === 1 && c === SLASH) || (i === 2 && (c === SLASH || c === HASH || c === PERCENT));
const acceptOneEqual: Accept = (c, i) => i === 1 && c === EQUAL;
const acceptOneColon: Accept = (c, i) => i === 1 && c === COLON;
const rejectColonClose: Accept = (c) => c !== COLON && c !== RBRACE;
const acceptSlash: Accept = (c) => c === SLASH;
const acceptNotSlash: Accept = (c) => c !== SLASH;
const acceptCasingFunc: Accept = (c, i) => (c === COMMA || c === CARET) && i < 3;

/** Operators that supply their own value when the variable is unset (exempt from strict mode). */
const DEFAULT_OPS = new Set(["=", ":=", ":-"]);

const MAX_DEPTH = 100;

class Parser {
  pos = 0;
  private start = 0;
  private mode = 0;
  private accept: Accept = acceptIdent;
  /** Token text with escape characters removed; built only when an escape was seen. */
  private parts: string[] | null = null;
  private segStart = 0;
  /** Start of the innermost expression being parsed, for error messages. */
  private exprStart = 0;

  constructor(
    private readonly buf: string,
    private readonly vars: VarLookup,
    private readonly strict: boolean,
    private readonly missing: Set<string>,
  ) {}

  private read(): number {
    if (this.pos >= this.buf.length) return EOF;
    const c = this.buf.codePointAt(this.pos)!;
    this.pos += c > 0xffff ? 2 : 1;
    return c;
  }

  private peek(): number {
    return this.pos < this.buf.length ? this.buf.codePointAt(this.pos)! : EOF;
  }

  private text(): string {
    if (this.parts === null) return this.buf.slice(this.start, this.pos);
    return this.parts.join("") + this.buf.slice(this.segStart, this.pos);
  }

  private scan(): number {
    this.start = this.pos;
    this.parts = null;
    this.segStart = this.pos;
    const c = this.read();
    if (c === EOF) return T_EOF;
    if (this.mode & M_LBRACK && c === DOLLAR && this.buf.charCodeAt(this.pos) === LBRACE) {
      this.pos++;
      return T_LBRACK;
    }
    if (this.mode & M_RBRACK && c === RBRACE) return T_RBRACK;
    if (this.scanIdent(c)) return T_IDENT;
    return T_ILLEGAL;
  }

  /** Is `c` (just read) an escape character? Only in escape mode, i.e. inside replace arguments. */
  private escaped(c: number): boolean {
    if ((this.mode & M_ESCAPE) === 0) return false;
    const n = this.buf.charCodeAt(this.pos);
    return (c === DOLLAR && n === DOLLAR) || (c === BACKSLASH && (n === SLASH || n === BACKSLASH));
  }

  /** Drops the escape character just read and takes the (ASCII) character after it literally. */
  private skipEscape(): void {
    if (this.parts === null) this.parts = [];
    this.parts.push(this.buf.slice(this.segStart, this.pos - 1));
    this.segStart = this.pos;
    this.pos++;
  }

  private scanIdent(c: number): boolean {
    if ((this.mode & M_IDENT) === 0) return false;
    if (this.escaped(c)) this.skipEscape();
    else if (!this.accept(c, this.pos - this.start)) return false;
    for (;;) {
      const before = this.pos;
      const r = this.read();
      if (r === EOF) break;
      if (this.mode & M_LBRACK && r === DOLLAR && this.buf.charCodeAt(this.pos) === LBRACE) {
        this.pos = before;
        break;
      }
      if (this.escaped(r)) {
        this.skipEscape();
        continue;
      }
      if (!this.accept(r, this.pos - this.start)) {
        this.pos = before;
        break;
      }
    }
    return true;
  }

  // -------------------------------------------------------------------------------------------
  // Parser + evaluator: the functions of Flux's parse/parse.go, evaluating as they go.

  private value(name: string, op: string): string {
    const v = this.vars.get(name);
    if (v !== undefined) return v;
    if (this.strict && !DEFAULT_OPS.has(op)) this.missing.add(name);
    return "";
  }

  /** Parses the expression after `${` (which began at `exprStart`) through its `}`, returns its value. */
  parseFunc(exprStart: number, depth: number): string {
    if (depth >= MAX_DEPTH) {
      this.exprStart = exprStart;
      this.fail(
        `expressions are nested more than ${MAX_DEPTH} levels deep`,
        "Simplify the nested ${...} defaults.",
      );
    }
    const outer = this.exprStart;
    this.exprStart = exprStart;
    const result = this.parseFuncBody(depth);
    this.exprStart = outer;
    return result;
  }

  private parseFuncBody(depth: number): string {
    if (this.peek() === HASH) return this.parseLenFunc();
    this.accept = acceptIdent;
    this.mode = M_IDENT;
    if (this.scan() !== T_IDENT) {
      this.pos = this.start;
      this.fail(
        "unable to parse variable name",
        "A variable name is letters, digits and '_', as in ${APP_NAME}.",
      );
    }
    const name = this.text();
    switch (this.peek()) {
      case COLON:
        return this.parseDefaultOrSubstr(name, depth);
      case EQUAL:
        return this.parseDefaultFunc(name, depth);
      case COMMA:
      case CARET:
        return this.parseCasingFunc(name);
      case SLASH:
        return this.parseReplaceFunc(name, depth);
      case HASH:
        return this.parseRemoveFunc(name, acceptHashFunc, depth);
      case PERCENT:
        return this.parseRemoveFunc(name, acceptPercentFunc, depth);
      case MINUS:
        return this.fail(
          `missing closing brace: unexpected "-" after variable name "${name}"`,
          "Variable names cannot contain '-', and the ${var-default} form is not supported: use ${var:-default} or ${var:=default}.",
        );
      case PLUS:
      case QUESTION:
        return this.unsupported(String.fromCharCode(this.peek()));
    }
    this.mode = M_RBRACK;
    if (this.scan() !== T_RBRACK) {
      this.pos = this.start;
      this.fail(
        `missing closing brace after variable name "${name}"`,
        "Close the expression with '}'; variable names are letters, digits and '_'. Write $${ for a literal ${.",
      );
    }
    return this.value(name, "");
  }

  /** One function argument: a nested `${...}` or a run of text accepted by `accept`. */
  private parseParam(accept: Accept, mode: number, depth: number): string {
    this.accept = accept;
    this.mode = mode | M_LBRACK;
    const start = this.pos;
    switch (this.scan()) {
      case T_LBRACK:
        return this.parseFunc(start, depth + 1);
      case T_IDENT:
      case T_RBRACK:
        return this.text();
      default:
        this.pos = this.start;
        return this.fail("unable to parse substitution within function");
    }
  }

  private parseDefaultOrSubstr(name: string, depth: number): string {
    const c = this.buf.codePointAt(this.pos + 1) ?? EOF;
    if (c === EQUAL || c === MINUS || c === QUESTION || c === PLUS) return this.parseDefaultFunc(name, depth);
    return this.parseSubstrFunc(name, depth);
  }

  /** `${v:offset}` and `${v:offset:length}`. */
  private parseSubstrFunc(name: string, depth: number): string {
    this.accept = acceptOneColon;
    this.mode = M_IDENT;
    if (this.scan() !== T_IDENT) this.badSubstitution();
    const v = this.value(name, ":");
    const offset = this.parseParam(rejectColonClose, M_IDENT, depth);
    this.accept = acceptColon;
    this.mode = M_IDENT | M_RBRACK;
    const t = this.scan();
    if (t === T_RBRACK) return substring(v, offset, undefined);
    if (t !== T_IDENT) this.badSubstitution();
    const length = this.parseParam(acceptNotClosing, M_IDENT, depth);
    this.consumeRbrack();
    return substring(v, offset, length);
  }

  /** `${v#p}`, `${v##p}`, `${v%p}`, `${v%%p}`. */
  private parseRemoveFunc(name: string, accept: Accept, depth: number): string {
    this.accept = accept;
    this.mode = M_IDENT;
    if (this.scan() !== T_IDENT) this.badSubstitution();
    const op = this.text();
    const v = this.value(name, op);
    const pattern = this.parseParam(acceptNotClosing, M_IDENT, depth);
    this.consumeRbrack();
    const suffix = op.charCodeAt(0) === PERCENT;
    return trimGlob(v, pattern, suffix, op.length === 2);
  }

  /** `${v/p/r}`, `${v//p/r}`, `${v/#p/r}`, `${v/%p/r}`. */
  private parseReplaceFunc(name: string, depth: number): string {
    this.accept = acceptReplaceFunc;
    this.mode = M_IDENT;
    if (this.scan() !== T_IDENT) this.badSubstitution();
    const op = this.text();
    const v = this.value(name, op);
    let pattern = "";
    if (this.peek() !== SLASH) pattern = this.parseParam(acceptNotSlash, M_IDENT | M_ESCAPE, depth);
    this.accept = acceptSlash;
    this.mode = M_IDENT;
    if (this.scan() !== T_IDENT) this.badSubstitution();
    let replacement: string | undefined;
    if (this.peek() !== RBRACE) replacement = this.parseParam(acceptNotClosing, M_IDENT | M_ESCAPE, depth);
    this.consumeRbrack();
    return replace(v, op, pattern, replacement);
  }

  /** `${v=d}`, `${v:=d}`, `${v:-d}`; the default may mix text and nested expressions. */
  private parseDefaultFunc(name: string, depth: number): string {
    this.accept = this.peek() === EQUAL ? acceptOneEqual : acceptDefaultFunc;
    this.mode = M_IDENT;
    if (this.scan() !== T_IDENT) this.fail("unable to parse default function");
    const op = this.text();
    if (op === ":+" || op === ":?") this.unsupported(op);
    let fallback = "";
    while (this.peek() !== RBRACE) {
      if (this.peek() === EOF) {
        // Flux reports the failed scan of the next argument.
        this.fail("unable to parse substitution within function: missing closing brace");
      }
      fallback += this.parseParam(acceptNotClosing, M_IDENT, depth);
    }
    this.consumeRbrack();
    const v = this.value(name, op);
    return v === "" ? fallback : v;
  }

  /** `${v^}`, `${v^^}`, `${v,}`, `${v,,}` (mixed forms like `${v,^}` leave the value as-is, like Flux). */
  private parseCasingFunc(name: string): string {
    this.accept = acceptCasingFunc;
    this.mode = M_IDENT;
    if (this.scan() !== T_IDENT) this.badSubstitution();
    const op = this.text();
    this.consumeRbrack();
    const v = this.value(name, op);
    switch (op) {
      case "^":
        return mapFirst(v, upper);
      case "^^":
        return mapAll(v, upper);
      case ",":
        return mapFirst(v, lower);
      case ",,":
        return mapAll(v, lower);
      default:
        return v;
    }
  }

  /** `${#v}`: the length of the value in UTF-8 bytes, as Flux (Go's `len`) counts it. */
  private parseLenFunc(): string {
    this.accept = acceptOneHash;
    this.mode = M_IDENT;
    if (this.scan() !== T_IDENT) this.badSubstitution();
    this.accept = acceptIdent;
    this.mode = M_IDENT;
    if (this.scan() !== T_IDENT) {
      this.pos = this.start;
      this.badSubstitution();
    }
    const name = this.text();
    this.consumeRbrack();
    return String(utf8Length(this.value(name, "#")));
  }

  private consumeRbrack(): void {
    this.mode = M_RBRACK;
    if (this.scan() !== T_RBRACK) {
      this.pos = this.start;
      this.badSubstitution();
    }
  }

  private badSubstitution(): never {
    return this.fail(
      this.pos >= this.buf.length ? "bad substitution: missing closing brace" : "bad substitution",
      "Check the expression against the supported forms: ${var}, ${var:=default}, ${var:-default}, ${#var}, ${var^^}, ${var:offset:length}, ${var/pattern/string}, ${var#pattern}, ${var%pattern}.",
    );
  }

  private unsupported(op: string): never {
    return this.fail(
      `unsupported operator "${op}"`,
      "Flux-style substitution supports only the defaults ${var:=default}, ${var=default} and ${var:-default}; write $${ for a literal ${.",
    );
  }

  private fail(reason: string, hint?: string): never {
    const at = Math.min(this.pos, this.buf.length);
    const { line, column } = lineColumn(this.buf, at);
    const expr = snippet(this.buf, this.exprStart, at);
    throw new SluiceError(
      "SubstitutionFailed",
      `variable substitution failed: ${reason} in ${JSON.stringify(expr)} (line ${line}, column ${column})`,
      {
        detail: { reason, offset: at, line, column, expressionOffset: this.exprStart },
        hint: hint ?? "Check the ${...} expression; write $${ for a literal ${.",
      },
    );
  }
}

function lineColumn(text: string, at: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf("\n"); i !== -1 && i < at; i = text.indexOf("\n", i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: at - lineStart + 1 };
}

/** The failing expression from its `${` to a little past the failure point, on one line. */
function snippet(text: string, from: number, at: number): string {
  const end = Math.min(text.length, Math.max(at + 1, from + 2), from + 60);
  let s = text.slice(from, end);
  const nl = s.indexOf("\n");
  if (nl !== -1) s = s.slice(0, nl);
  return end < text.length && nl === -1 ? `${s}…` : s;
}

// ---------------------------------------------------------------------------------------------
// Functions (Flux's funcs.go).

const ASCII = /^[\x00-\x7f]*$/;

function utf8Length(s: string): number {
  return ASCII.test(s) ? s.length : Buffer.byteLength(s, "utf8");
}

/** Go's strconv.Atoi (64-bit): optional sign and decimal digits, nothing else, in int64 range. */
function atoi(s: string): number | undefined {
  if (!/^[+-]?[0-9]+$/.test(s)) return undefined;
  const n = BigInt(s);
  if (n > 9223372036854775807n || n < -9223372036854775808n) return undefined;
  return Number(n);
}

/** `${v:offset[:length]}` with Flux's rules (byte offsets, negative values count from the end). */
function substring(s: string, offsetArg: string, lengthArg: string | undefined): string {
  let pos = atoi(offsetArg);
  if (pos === undefined) return s;
  const ascii = ASCII.test(s);
  const bytes = ascii ? undefined : Buffer.from(s, "utf8");
  const len = bytes === undefined ? s.length : bytes.length;
  const slice = (a: number, b: number): string =>
    bytes === undefined ? s.slice(a, b) : bytes.subarray(a, b).toString("utf8");
  if (pos < 0) pos = Math.max(0, len + pos);
  if (lengthArg === undefined) return pos < len ? slice(pos, len) : "";
  const length = atoi(lengthArg);
  if (length === undefined) return s;
  if (length < 0) {
    const end = len + length;
    return end < pos ? "" : slice(pos, end);
  }
  if (pos + length >= len) return pos < len ? slice(pos, len) : "";
  return slice(pos, pos + length);
}

/** Go strings.Replace(s, old, new, n) for n = 1 or all (an empty `old` matches before every character and at the end). */
function goReplace(s: string, old: string, repl: string, all: boolean): string {
  if (old === "") {
    if (!all) return repl + s;
    let out = repl;
    for (const ch of s) out += ch + repl;
    return out;
  }
  if (all) return s.split(old).join(repl);
  const i = s.indexOf(old);
  return i === -1 ? s : s.slice(0, i) + repl + s.slice(i + old.length);
}

function replace(s: string, op: string, pattern: string, replacement: string | undefined): string {
  switch (op) {
    case "/":
      return goReplace(s, pattern, replacement ?? "", false);
    case "//":
      return goReplace(s, pattern, replacement ?? "", true);
    case "/#":
      // Flux needs both arguments: `${v/#p/}` leaves the value unchanged.
      if (replacement === undefined || !s.startsWith(pattern)) return s;
      return replacement + s.slice(pattern.length);
    default:
      // "/%"
      if (replacement === undefined || !s.endsWith(pattern)) return s;
      return s.slice(0, s.length - pattern.length) + replacement;
  }
}

/** Go's unicode.ToUpper/ToLower map one character to one character; keep those that JS expands. */
function upper(ch: string): string {
  const u = ch.toUpperCase();
  return u.length === ch.length || [...u].length === 1 ? u : ch;
}

function lower(ch: string): string {
  if (ch === "\u0130") return "i";
  const l = ch.toLowerCase();
  return l.length === ch.length || [...l].length === 1 ? l : ch;
}

function mapAll(s: string, f: (ch: string) => string): string {
  if (ASCII.test(s)) return f === upper ? s.toUpperCase() : s.toLowerCase();
  let out = "";
  for (const ch of s) out += f(ch);
  return out;
}

function mapFirst(s: string, f: (ch: string) => string): string {
  if (s === "") return s;
  const first = String.fromCodePoint(s.codePointAt(0)!);
  return f(first) + s.slice(first.length);
}

// ---------------------------------------------------------------------------------------------
// Glob trimming: Go path.Match syntax as modified by drone/envsubst (`*` and `?` also match '/').

const G_STAR = -1;
const G_ANY = -2;
/** A glob token: a literal code point (>= 0), G_STAR, G_ANY, or a character class. */
type GlobToken = number | { negated: boolean; ranges: number[] };

/** Parses a glob; undefined for a malformed one (Flux then leaves the value unchanged). */
function parseGlob(pattern: string): GlobToken[] | undefined {
  const cps = Array.from(pattern, (ch) => ch.codePointAt(0)!);
  const tokens: GlobToken[] = [];
  let i = 0;
  const esc = (): number | undefined => {
    // Go's getEsc: a class member; '-' and ']' must be escaped, and the class must go on.
    let c = cps[i];
    if (c === undefined || c === MINUS || c === 0x5d) return undefined;
    if (c === BACKSLASH) {
      i++;
      c = cps[i];
      if (c === undefined) return undefined;
    }
    i++;
    return i < cps.length ? c : undefined;
  };
  while (i < cps.length) {
    const c = cps[i++]!;
    if (c === 0x2a) {
      if (tokens[tokens.length - 1] !== G_STAR) tokens.push(G_STAR);
    } else if (c === QUESTION) {
      tokens.push(G_ANY);
    } else if (c === BACKSLASH) {
      const n = cps[i++];
      if (n === undefined) return undefined;
      tokens.push(n);
    } else if (c === 0x5b) {
      let negated = false;
      if (cps[i] === CARET) {
        negated = true;
        i++;
      }
      const ranges: number[] = [];
      for (;;) {
        if (cps[i] === 0x5d && ranges.length > 0) {
          i++;
          break;
        }
        const lo = esc();
        if (lo === undefined) return undefined;
        let hi = lo;
        if (cps[i] === MINUS) {
          i++;
          const h = esc();
          if (h === undefined) return undefined;
          hi = h;
        }
        ranges.push(lo, hi);
      }
      tokens.push({ negated, ranges });
    } else {
      tokens.push(c);
    }
  }
  return tokens;
}

function tokenMatches(t: GlobToken, c: number): boolean {
  if (typeof t === "number") return t === G_ANY || t === c;
  let inClass = false;
  for (let k = 0; k < t.ranges.length; k += 2) {
    if (t.ranges[k]! <= c && c <= t.ranges[k + 1]!) {
      inClass = true;
      break;
    }
  }
  return inClass !== t.negated;
}

/**
 * For each prefix of `cps` (by character count 1..n), whether the glob matches it entirely.
 * A set-of-states simulation, O(n * pattern length), with no backtracking blow-up.
 */
function matchingPrefixes(tokens: readonly GlobToken[], cps: readonly number[]): boolean[] {
  const k = tokens.length;
  let cur = new Uint8Array(k + 1);
  let next = new Uint8Array(k + 1);
  const close = (set: Uint8Array): boolean => {
    let alive = false;
    for (let i = 0; i <= k; i++) {
      if (set[i] === 0) continue;
      alive = true;
      if (i < k && tokens[i] === G_STAR) set[i + 1] = 1;
    }
    return alive;
  };
  cur[0] = 1;
  close(cur);
  const result: boolean[] = [false];
  for (const c of cps) {
    next.fill(0);
    for (let i = 0; i < k; i++) {
      if (cur[i] === 0) continue;
      const t = tokens[i]!;
      if (t === G_STAR) next[i] = 1;
      else if (tokenMatches(t, c)) next[i + 1] = 1;
    }
    const alive = close(next);
    result.push(next[k] === 1);
    if (!alive) break;
    [cur, next] = [next, cur];
  }
  while (result.length <= cps.length) result.push(false);
  return result;
}

/**
 * `#`/`##` (prefix) and `%`/`%%` (suffix): remove the shortest or longest non-empty match of the
 * glob. Like Flux, the empty match is never considered, and a malformed glob changes nothing.
 */
function trimGlob(s: string, pattern: string, suffix: boolean, longest: boolean): string {
  if (s === "") return s;
  const tokens = parseGlob(pattern);
  if (tokens === undefined) return s;
  const chars = Array.from(s);
  const cps = chars.map((ch) => ch.codePointAt(0)!);
  if (suffix) {
    tokens.reverse();
    cps.reverse();
  }
  const ok = matchingPrefixes(tokens, cps);
  let n = 0;
  if (longest) {
    for (let i = chars.length; i >= 1 && n === 0; i--) if (ok[i]) n = i;
  } else {
    for (let i = 1; i <= chars.length && n === 0; i++) if (ok[i]) n = i;
  }
  if (n === 0) return s;
  return suffix ? chars.slice(0, chars.length - n).join("") : chars.slice(n).join("");
}
