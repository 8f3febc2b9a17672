/**
 * A Go text/template engine for the subset commit-message templates use, with Go's output: values
 * print as fmt's `%v` prints them (`map[k:v]` with sorted keys, `[a b]`, `{a b}`, Stringers), maps
 * range in sorted key order, `{{- ` / ` -}}` trim white space, and Sprig's functions behave as Sprig's.
 *
 * Supported: text, `{{/* comments *\/}}`, pipelines (`|`, parentheses, `$x := …`, `$x = …`),
 * `if`/`else if`/`else`, `with`, `range` (slices and maps, `$v :=` / `$k, $v :=`, `else`), fields and
 * zero-argument methods (modelled as fields of a GoType), and the functions in FUNCS. Anything else
 * (`define`, `template`, `block`, `break`, `continue`, other functions, character constants, floats)
 * is a TemplateSyntaxError.
 *
 * Parsing also type-checks the template against the root GoType: a misspelt field, an unknown
 * function or an argument of the wrong type fails when the template is loaded, where Go would fail
 * only when it runs. Values reached through `any` (and/or, reassigned variables) are checked when
 * the template runs (TemplateExecError).
 */
import { createHash } from "node:crypto";

export type GoType =
  | { k: "string" }
  | { k: "int" }
  | { k: "bool" }
  | { k: "any" }
  | {
      k: "struct";
      name: string;
      fields: Record<string, GoType>;
      /** Declared fields, in order, as fmt prints them (promoted fields and methods excluded). */
      printed: string[];
      stringer?: (v: GoStruct) => string;
    }
  | { k: "map"; name: string; key: GoType; elem: GoType }
  | { k: "slice"; name: string; elem: GoType };

export type GoStruct = Record<string, unknown>;
export type GoMap = Extract<GoType, { k: "map" }>;

export const STRING: GoType = { k: "string" };
export const INT: GoType = { k: "int" };
export const BOOL: GoType = { k: "bool" };
export const ANY: GoType = { k: "any" };

/** Own properties only: `constructor` or `toString` must not resolve through the prototype. */
function own<T>(o: Readonly<Record<string, T>>, k: string): T | undefined {
  return Object.hasOwn(o, k) ? o[k] : undefined;
}

function typeName(t: GoType): string {
  switch (t.k) {
    case "struct":
    case "map":
    case "slice":
      return t.name;
    case "any":
      return "interface {}";
    default:
      return t.k;
  }
}

// --- values ---------------------------------------------------------------------------------

/** A missing map entry (Go's invalid reflect.Value, printed `<no value>`). */
const NO_VALUE = Symbol("no value");
/** A nil interface (an invalid value passed to a function), printed `<nil>`. */
const NIL = Symbol("nil");

/** A value with its Go type. */
export interface TV {
  t: GoType;
  v: unknown;
}

function compareGo(t: GoType, a: unknown, b: unknown): number {
  if (t.k === "string") return Buffer.compare(Buffer.from(String(a)), Buffer.from(String(b)));
  if (t.k === "int") return (a as number) - (b as number);
  if (t.k === "struct") {
    for (const f of t.printed) {
      const c = compareGo(t.fields[f]!, (a as GoStruct)[f], (b as GoStruct)[f]);
      if (c !== 0) return c;
    }
  }
  return 0;
}

export function sortedEntries(
  t: Extract<GoType, { k: "map" }>,
  m: Map<unknown, unknown>,
): [unknown, unknown][] {
  return [...m.entries()].sort(([a], [b]) => compareGo(t.key, a, b));
}

/** Go's fmt `%v` (with Stringers honoured at every depth, as fmt does for exported fields). */
function formatValue(t: GoType, v: unknown): string {
  if (v === NO_VALUE) return "<no value>";
  if (v === NIL || v === null || v === undefined) return "<nil>";
  switch (t.k) {
    case "string":
      return String(v);
    case "int":
    case "bool":
      return String(v);
    case "any":
      return formatValue(dynamicType(v), v);
    case "struct":
      if (t.stringer) return t.stringer(v as GoStruct);
      return `{${t.printed.map((f) => formatValue(t.fields[f]!, (v as GoStruct)[f])).join(" ")}}`;
    case "map":
      return `map[${sortedEntries(t, v as Map<unknown, unknown>)
        .map(([k, x]) => `${formatValue(t.key, k)}:${formatValue(t.elem, x)}`)
        .join(" ")}]`;
    case "slice":
      return `[${(v as unknown[]).map((x) => formatValue(t.elem, x)).join(" ")}]`;
  }
}

function dynamicType(v: unknown): GoType {
  if (typeof v === "string") return STRING;
  if (typeof v === "number") return INT;
  if (typeof v === "boolean") return BOOL;
  return ANY;
}

function isTrue(x: TV): boolean {
  const v = x.v;
  if (v === NO_VALUE || v === NIL || v === null || v === undefined) return false;
  if (typeof v === "boolean") return v;
  if (typeof v === "number") return v !== 0;
  if (typeof v === "string") return v.length > 0;
  if (v instanceof Map) return v.size > 0;
  if (Array.isArray(v)) return v.length > 0;
  return true;
}

// --- functions -------------------------------------------------------------------------------

interface Func {
  /** Parameter types; `rest` is the type of variadic parameters after them. */
  params: GoType[];
  rest?: GoType;
  ret: (args: GoType[]) => GoType;
  call: (args: TV[]) => TV;
}

function s(x: TV): string {
  return x.v as string;
}

function sprint(args: TV[], ln: boolean): string {
  let out = "";
  args.forEach((a, i) => {
    if (i > 0) {
      const prevString = args[i - 1]!.t.k === "string";
      if (ln || (!prevString && a.t.k !== "string")) out += " ";
    }
    out += formatValue(a.t, a.v);
  });
  return ln ? `${out}\n` : out;
}

function goQuote(v: string): string {
  let out = '"';
  for (const ch of v) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\r") out += "\\r";
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

const PRINTF_VERB = /%([-+# 0]*)(\d*)(?:\.(\d+))?([a-zA-Z%])/g;
const PRINTF_VERBS = new Set(["s", "v", "d", "q", "%"]);

function sprintf(format: string, args: TV[]): string {
  let i = 0;
  let out = format.replace(PRINTF_VERB, (whole, _flags: string, width: string, _prec, verb: string) => {
    if (verb === "%") return "%";
    if (!PRINTF_VERBS.has(verb)) throw new TemplateExecError(`printf verb %${verb} is not supported`);
    const a = args[i++];
    if (!a) return `%!${verb}(MISSING)`;
    let text: string;
    if (verb === "d") {
      text = a.t.k === "int" ? String(a.v) : `%!d(${typeName(a.t)}=${formatValue(a.t, a.v)})`;
    } else if (verb === "q") {
      text = a.t.k === "string" ? goQuote(s(a)) : `%!q(${typeName(a.t)}=${formatValue(a.t, a.v)})`;
    } else if (verb === "s" && (a.t.k === "int" || a.t.k === "bool")) {
      text = `%!s(${a.t.k}=${String(a.v)})`;
    } else {
      text = formatValue(a.t, a.v);
    }
    const w = Number(width || 0);
    if (whole.includes("-")) return text.padEnd(w);
    return text.padStart(w);
  });
  if (i < args.length) {
    out += `%!(EXTRA ${args
      .slice(i)
      .map((a) => `${typeName(a.t)}=${formatValue(a.t, a.v)}`)
      .join(", ")})`;
  }
  return out;
}

function strval(x: TV): string {
  return x.t.k === "string" ? s(x) : formatValue(x.t, x.v);
}

function lenOf(x: TV): number {
  if (typeof x.v === "string") return Buffer.byteLength(x.v);
  if (x.v instanceof Map) return x.v.size;
  if (Array.isArray(x.v)) return x.v.length;
  throw new TemplateExecError(`len of type ${typeName(x.t)}`);
}

function basicEqual(a: TV, b: TV): boolean {
  for (const x of [a, b]) {
    if (x.t.k !== "string" && x.t.k !== "int" && x.t.k !== "bool")
      throw new TemplateExecError(`eq/ne: ${typeName(x.t)} is not a basic type that can be compared`);
  }
  if (a.t.k !== b.t.k)
    throw new TemplateExecError(`eq/ne: incompatible types for comparison (${a.t.k}, ${b.t.k})`);
  return a.v === b.v;
}

const str1 = (f: (v: string) => string): Func => ({
  params: [STRING],
  ret: () => STRING,
  call: ([a]) => ({ t: STRING, v: f(s(a!)) }),
});
const str2 = (f: (a: string, b: string) => string): Func => ({
  params: [STRING, STRING],
  ret: () => STRING,
  call: ([a, b]) => ({ t: STRING, v: f(s(a!), s(b!)) }),
});
const pred2 = (f: (a: string, b: string) => boolean): Func => ({
  params: [STRING, STRING],
  ret: () => BOOL,
  call: ([a, b]) => ({ t: BOOL, v: f(s(a!), s(b!)) }),
});

const FUNCS: Record<string, Func> = {
  print: { params: [], rest: ANY, ret: () => STRING, call: (a) => ({ t: STRING, v: sprint(a, false) }) },
  println: { params: [], rest: ANY, ret: () => STRING, call: (a) => ({ t: STRING, v: sprint(a, true) }) },
  printf: {
    params: [STRING],
    rest: ANY,
    ret: () => STRING,
    call: ([f, ...a]) => ({ t: STRING, v: sprintf(s(f!), a) }),
  },
  len: { params: [ANY], ret: () => INT, call: ([a]) => ({ t: INT, v: lenOf(a!) }) },
  not: { params: [ANY], ret: () => BOOL, call: ([a]) => ({ t: BOOL, v: !isTrue(a!) }) },
  and: {
    params: [ANY],
    rest: ANY,
    ret: sameOrAny,
    call: (a) => a.find((x) => !isTrue(x)) ?? a[a.length - 1]!,
  },
  or: {
    params: [ANY],
    rest: ANY,
    ret: sameOrAny,
    call: (a) => a.find((x) => isTrue(x)) ?? a[a.length - 1]!,
  },
  eq: {
    params: [ANY, ANY],
    rest: ANY,
    ret: () => BOOL,
    call: ([a, ...rest]) => ({ t: BOOL, v: rest.some((b) => basicEqual(a!, b)) }),
  },
  ne: { params: [ANY, ANY], ret: () => BOOL, call: ([a, b]) => ({ t: BOOL, v: !basicEqual(a!, b!) }) },
  lower: str1((v) => v.toLowerCase()),
  upper: str1((v) => v.toUpperCase()),
  title: str1(goTitle),
  trim: str1((v) => v.replace(/^[\s\u0085\u00a0]+|[\s\u0085\u00a0]+$/gu, "")),
  trimPrefix: str2((prefix, v) => (v.startsWith(prefix) ? v.slice(prefix.length) : v)),
  trimSuffix: str2((suffix, v) => (suffix && v.endsWith(suffix) ? v.slice(0, v.length - suffix.length) : v)),
  replace: {
    params: [STRING, STRING, STRING],
    ret: () => STRING,
    call: ([o, n, v]) => ({ t: STRING, v: s(v!).replaceAll(s(o!), s(n!)) }),
  },
  contains: pred2((sub, v) => v.includes(sub)),
  hasPrefix: pred2((p, v) => v.startsWith(p)),
  hasSuffix: pred2((p, v) => v.endsWith(p)),
  quote: {
    params: [],
    rest: ANY,
    ret: () => STRING,
    call: (a) => ({
      t: STRING,
      v: a
        .filter((x) => x.v !== NIL)
        .map((x) => goQuote(strval(x)))
        .join(" "),
    }),
  },
  trunc: {
    params: [INT, STRING],
    ret: () => STRING,
    call: ([n, v]) => {
      const c = n!.v as number;
      const t = s(v!);
      if (c < 0 && t.length + c > 0) return { t: STRING, v: t.slice(t.length + c) };
      if (c >= 0 && t.length > c) return { t: STRING, v: t.slice(0, c) };
      return { t: STRING, v: t };
    },
  },
  toString: { params: [ANY], ret: () => STRING, call: (args: TV[]) => ({ t: STRING, v: strval(args[0]!) }) },
  sha256sum: str1((v) => createHash("sha256").update(v, "utf8").digest("hex")),
};

/** Go's strings.Title (Sprig's `title`): upper-cases the first letter of every word. */
function goTitle(v: string): string {
  let out = "";
  let prev = " ";
  for (const ch of v) {
    out += isSeparator(prev) ? ch.toUpperCase() : ch;
    prev = ch;
  }
  return out;
}

function isSeparator(ch: string): boolean {
  if (ch.charCodeAt(0) <= 0x7f) return !/[A-Za-z0-9_]/.test(ch);
  if (/[\p{L}\p{N}]/u.test(ch)) return false;
  return /\s/u.test(ch);
}

function sameOrAny(args: GoType[]): GoType {
  const first = args[0];
  return first && args.every((a) => a === first) ? first : ANY;
}

// --- lexer ----------------------------------------------------------------------------------

type TokType =
  | "field"
  | "dot"
  | "var"
  | "string"
  | "number"
  | "bool"
  | "nil"
  | "ident"
  | "keyword"
  | "lparen"
  | "rparen"
  | "pipe"
  | "declare"
  | "assign"
  | "comma";

interface Tok {
  type: TokType;
  value: string;
  pos: number;
  /** White space separates it from the previous token. */
  space: boolean;
}

const KEYWORDS = new Set([
  "if",
  "else",
  "end",
  "range",
  "with",
  "define",
  "template",
  "block",
  "break",
  "continue",
]);
const isSpace = (c: string | undefined) => c === " " || c === "\t" || c === "\r" || c === "\n";
const isAlnum = (c: string | undefined) => c !== undefined && /[\p{L}\p{N}_]/u.test(c);

type Piece = { kind: "text"; text: string; pos: number } | { kind: "action"; toks: Tok[]; pos: number };

/** A template that cannot be loaded: outside the subset, malformed, or ill-typed. */
export class TemplateSyntaxError extends Error {
  constructor(
    readonly line: number,
    readonly column: number,
    readonly problem: string,
  ) {
    super(`line ${line}, column ${column}: ${problem}`);
    this.name = "TemplateSyntaxError";
  }
}

/** A template that failed while running (a value of the wrong type reached through `any`). */
export class TemplateExecError extends Error {
  override name = "TemplateExecError";
}

/** The functions templates may call. */
export const FUNCTION_NAMES: readonly string[] = Object.keys(FUNCS);

function fail(src: string, pos: number, msg: string): never {
  const before = src.slice(0, pos);
  throw new TemplateSyntaxError(before.split("\n").length, pos - before.lastIndexOf("\n"), msg);
}

function decodeGoString(src: string, start: number, body: string): string {
  let out = "";
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== "\\") {
      out += c;
      continue;
    }
    const n = body[++i];
    const simple: Record<string, string> = {
      a: "\x07",
      b: "\b",
      f: "\f",
      n: "\n",
      r: "\r",
      t: "\t",
      v: "\v",
      "\\": "\\",
      '"': '"',
      "'": "'",
    };
    if (n !== undefined && simple[n] !== undefined) {
      out += simple[n];
    } else if (n === "x" || n === "u" || n === "U") {
      const len = n === "x" ? 2 : n === "u" ? 4 : 8;
      const hex = body.slice(i + 1, i + 1 + len);
      if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(hex)) fail(src, start, "invalid escape in string");
      out += String.fromCodePoint(Number.parseInt(hex, 16));
      i += len;
    } else if (n !== undefined && /[0-7]/.test(n)) {
      const oct = body.slice(i, i + 3);
      if (!/^[0-7]{3}$/.test(oct)) fail(src, start, "invalid escape in string");
      out += String.fromCharCode(Number.parseInt(oct, 8));
      i += 2;
    } else {
      fail(src, start, "invalid escape in string");
    }
  }
  return out;
}

function lex(src: string): Piece[] {
  const pieces: Piece[] = [];
  let i = 0;
  let trimNext = false;
  while (i <= src.length) {
    const open = src.indexOf("{{", i);
    let text = src.slice(i, open < 0 ? src.length : open);
    if (trimNext) text = text.replace(/^[ \t\r\n]+/, "");
    trimNext = false;
    if (open < 0) {
      if (text) pieces.push({ kind: "text", text, pos: i });
      break;
    }
    let j = open + 2;
    if (src[j] === "-" && isSpace(src[j + 1])) {
      text = text.replace(/[ \t\r\n]+$/, "");
      j += 2;
    }
    if (text) pieces.push({ kind: "text", text, pos: i });
    // Comment: {{/* … */}}, right after the delimiter (and trim marker), as Go requires.
    if (src.startsWith("/*", j)) {
      const end = src.indexOf("*/", j + 2);
      if (end < 0) fail(src, open, "unclosed comment");
      let m = end + 2;
      if (src.startsWith(" -}}", m) || (isSpace(src[m]) && src.startsWith("-}}", m + 1))) {
        trimNext = true;
        m = src.indexOf("}}", m) + 2;
      } else if (src.startsWith("}}", m)) {
        m += 2;
      } else {
        fail(src, end, "comment ends before closing delimiter");
      }
      i = m;
      continue;
    }
    const toks: Tok[] = [];
    let space = true;
    for (;;) {
      if (j >= src.length) fail(src, open, "unclosed action");
      const c = src[j]!;
      if (isSpace(c)) {
        if (src.startsWith("-}}", j + 1)) {
          trimNext = true;
          j += 4;
          break;
        }
        j++;
        space = true;
        continue;
      }
      if (src.startsWith("}}", j)) {
        j += 2;
        break;
      }
      const pos = j;
      const push = (type: TokType, value: string, len: number) => {
        toks.push({ type, value, pos, space });
        j += len;
        space = false;
      };
      if (c === '"') {
        let e = j + 1;
        while (e < src.length && src[e] !== '"') {
          if (src[e] === "\n") fail(src, pos, "unterminated quoted string");
          e += src[e] === "\\" ? 2 : 1;
        }
        if (e >= src.length) fail(src, pos, "unterminated quoted string");
        toks.push({ type: "string", value: decodeGoString(src, pos, src.slice(j + 1, e)), pos, space });
        j = e + 1;
        space = false;
      } else if (c === "`") {
        const e = src.indexOf("`", j + 1);
        if (e < 0) fail(src, pos, "unterminated raw quoted string");
        toks.push({ type: "string", value: src.slice(j + 1, e).replaceAll("\r", ""), pos, space });
        j = e + 1;
        space = false;
      } else if (c === "." && isAlnum(src[j + 1]) && !/[0-9]/.test(src[j + 1]!)) {
        let e = j + 1;
        while (isAlnum(src[e])) e++;
        push("field", src.slice(j + 1, e), e - j);
      } else if (c === ".") {
        push("dot", ".", 1);
      } else if (c === "$") {
        let e = j + 1;
        while (isAlnum(src[e])) e++;
        push("var", src.slice(j, e), e - j);
      } else if (/[0-9]/.test(c) || ((c === "-" || c === "+") && /[0-9]/.test(src[j + 1] ?? ""))) {
        const m = /^[+-]?(?:0[xX][0-9a-fA-F_]+|[0-9_]+(?:\.[0-9_]*)?(?:[eE][+-]?[0-9]+)?)/.exec(
          src.slice(j),
        )!;
        if (isAlnum(src[j + m[0].length]))
          fail(src, pos, `bad number syntax: ${src.slice(j, j + m[0].length + 1)}`);
        push("number", m[0], m[0].length);
      } else if (isAlnum(c)) {
        let e = j;
        while (isAlnum(src[e])) e++;
        const word = src.slice(j, e);
        const type: TokType =
          word === "true" || word === "false"
            ? "bool"
            : word === "nil"
              ? "nil"
              : KEYWORDS.has(word)
                ? "keyword"
                : "ident";
        push(type, word, e - j);
      } else if (c === "(") push("lparen", c, 1);
      else if (c === ")") push("rparen", c, 1);
      else if (c === "|") push("pipe", c, 1);
      else if (c === ",") push("comma", c, 1);
      else if (src.startsWith(":=", j)) push("declare", ":=", 2);
      else if (c === "=") push("assign", "=", 1);
      else if (c === "'") fail(src, pos, "character constants are not supported");
      else fail(src, pos, `unexpected ${JSON.stringify(c)} in action`);
    }
    pieces.push({ kind: "action", toks, pos: open });
    i = j;
  }
  return pieces;
}

// --- parser and type checker ---------------------------------------------------------------

type Arg =
  | { a: "field"; names: string[]; pos: number }
  | { a: "dot"; names: string[]; pos: number }
  | { a: "var"; name: string; names: string[]; pos: number }
  | { a: "literal"; value: TV; pos: number }
  | { a: "func"; name: string; pos: number }
  | { a: "pipe"; pipe: Pipe; names: string[]; pos: number };

interface Cmd {
  args: Arg[];
  pos: number;
}

interface Pipe {
  decl: string[];
  assign: boolean;
  cmds: Cmd[];
  pos: number;
}

type TNode =
  | { n: "text"; text: string }
  | { n: "action"; pipe: Pipe }
  | { n: "if" | "with"; pipe: Pipe; list: TNode[]; elseList: TNode[] }
  | { n: "range"; pipe: Pipe; list: TNode[]; elseList: TNode[] };

class Scope {
  readonly vars = new Map<string, GoType>();
  constructor(readonly parent?: Scope) {}
  lookup(name: string): GoType | undefined {
    return this.vars.get(name) ?? this.parent?.lookup(name);
  }
  set(name: string, t: GoType): void {
    if (this.vars.has(name)) this.vars.set(name, t);
    else if (this.parent?.lookup(name)) this.parent.set(name, t);
    else this.vars.set(name, t);
  }
}

class TemplateParser {
  private idx = 0;
  constructor(
    private readonly src: string,
    private readonly pieces: Piece[],
    private readonly root: GoType,
  ) {}

  parse(): TNode[] {
    const scope = new Scope();
    scope.vars.set("$", this.root);
    const { list, stop } = this.list(scope, this.root);
    if (stop) fail(this.src, stop.pos, `unexpected {{${stop.toks[0]?.value}}}`);
    return list;
  }

  /** Parses nodes until `{{end}}` or `{{else…}}` (returned as `stop`) or the end of input. */
  private list(scope: Scope, dot: GoType): { list: TNode[]; stop?: Piece & { kind: "action" } } {
    const list: TNode[] = [];
    while (this.idx < this.pieces.length) {
      const p = this.pieces[this.idx++]!;
      if (p.kind === "text") {
        list.push({ n: "text", text: p.text });
        continue;
      }
      const first = p.toks[0];
      if (!first) fail(this.src, p.pos, "missing value for command");
      if (first.type === "keyword") {
        switch (first.value) {
          case "end":
          case "else":
            return { list, stop: p };
          case "if":
          case "with":
            list.push(this.control(first.value, p.toks.slice(1), p.pos, scope, dot));
            continue;
          case "range":
            list.push(this.range(p.toks.slice(1), p.pos, scope, dot));
            continue;
          default:
            fail(this.src, first.pos, `{{${first.value}}} is not supported`);
        }
      }
      const pipe = this.pipeline(p.toks, p.pos, scope, dot, false);
      list.push({ n: "action", pipe: pipe.pipe });
    }
    return { list };
  }

  private endOf(stop: (Piece & { kind: "action" }) | undefined, pos: number, what: string): void {
    if (!stop) fail(this.src, pos, `unexpected EOF: {{${what}}} without {{end}}`);
    if (stop.toks[0]?.value === "end" && stop.toks.length > 1)
      fail(this.src, stop.pos, "unexpected text after end");
  }

  private control(kind: "if" | "with", toks: Tok[], pos: number, scope: Scope, dot: GoType): TNode {
    const inner = new Scope(scope);
    const { pipe, type } = this.pipeline(toks, pos, inner, dot, false);
    if (toks.length === 0) fail(this.src, pos, `missing value for ${kind}`);
    const body = this.list(inner, kind === "with" ? type : dot);
    this.endOf(body.stop, pos, kind);
    let elseList: TNode[] = [];
    const stop = body.stop!;
    if (stop.toks[0]!.value === "else") {
      const rest = stop.toks.slice(1);
      if (
        rest.length > 0 &&
        rest[0]!.type === "keyword" &&
        (rest[0]!.value === "if" || rest[0]!.value === "with")
      ) {
        // {{else if …}} / {{else with …}}: a nested control sharing this one's {{end}}.
        elseList = [this.control(rest[0]!.value as "if" | "with", rest.slice(1), stop.pos, inner, dot)];
        return { n: kind, pipe, list: body.list, elseList };
      }
      if (rest.length > 0) fail(this.src, stop.pos, "unexpected text after else");
      const e = this.list(new Scope(inner), dot);
      this.endOf(e.stop, pos, kind);
      if (e.stop!.toks[0]!.value !== "end") fail(this.src, e.stop!.pos, "expected end; found else");
      elseList = e.list;
    }
    return { n: kind, pipe, list: body.list, elseList };
  }

  private range(toks: Tok[], pos: number, scope: Scope, dot: GoType): TNode {
    const inner = new Scope(scope);
    if (toks.length === 0) fail(this.src, pos, "missing value for range");
    const { pipe, type } = this.pipeline(toks, pos, inner, dot, true);
    let keyT: GoType;
    let elemT: GoType;
    if (type.k === "slice") {
      keyT = INT;
      elemT = type.elem;
    } else if (type.k === "map") {
      keyT = type.key;
      elemT = type.elem;
    } else if (type.k === "any") {
      keyT = ANY;
      elemT = ANY;
    } else {
      fail(this.src, pos, `range can't iterate over ${typeName(type)}`);
    }
    if (pipe.decl.length === 1) inner.vars.set(pipe.decl[0]!, elemT);
    if (pipe.decl.length === 2) {
      inner.vars.set(pipe.decl[0]!, keyT);
      inner.vars.set(pipe.decl[1]!, elemT);
    }
    const body = this.list(inner, elemT);
    this.endOf(body.stop, pos, "range");
    let elseList: TNode[] = [];
    const stop = body.stop!;
    if (stop.toks[0]!.value === "else") {
      if (stop.toks.length > 1) fail(this.src, stop.pos, "unexpected text after else");
      const e = this.list(new Scope(scope), dot);
      this.endOf(e.stop, pos, "range");
      if (e.stop!.toks[0]!.value !== "end") fail(this.src, e.stop!.pos, "expected end; found else");
      elseList = e.list;
    }
    return { n: "range", pipe, list: body.list, elseList };
  }

  private pipeline(
    toks: Tok[],
    pos: number,
    scope: Scope,
    dot: GoType,
    isRange: boolean,
  ): { pipe: Pipe; type: GoType } {
    let i = 0;
    const decl: string[] = [];
    let assign = false;
    // Declarations: $x := / $x = / (range only) $k, $v :=
    if (toks[0]?.type === "var") {
      if (toks[1]?.type === "declare" || toks[1]?.type === "assign") {
        decl.push(toks[0].value);
        assign = toks[1].type === "assign";
        i = 2;
      } else if (
        isRange &&
        toks[1]?.type === "comma" &&
        toks[2]?.type === "var" &&
        toks[3]?.type === "declare"
      ) {
        decl.push(toks[0].value, toks[2].value);
        i = 4;
      } else if (toks[1]?.type === "comma") {
        fail(this.src, toks[1].pos, "too many declarations");
      }
    }
    if (assign && !scope.lookup(decl[0]!)) fail(this.src, toks[0]!.pos, `undefined variable: ${decl[0]}`);
    const cmds: Cmd[] = [];
    let type: GoType = ANY;
    let piped: GoType | undefined;
    const rest = toks.slice(i);
    if (rest.length === 0) fail(this.src, toks[0]?.pos ?? pos, "missing value for command");
    let start = 0;
    let depth = 0;
    const flush = (end: number) => {
      const part = rest.slice(start, end);
      if (part.length === 0) fail(this.src, rest[Math.max(0, end - 1)]?.pos ?? pos, "missing command");
      const { cmd, type: t } = this.command(part, scope, dot, piped);
      cmds.push(cmd);
      type = t;
      piped = t;
    };
    for (let k = 0; k < rest.length; k++) {
      const t = rest[k]!;
      if (t.type === "lparen") depth++;
      else if (t.type === "rparen") depth--;
      else if (t.type === "pipe" && depth === 0) {
        flush(k);
        start = k + 1;
      }
    }
    flush(rest.length);
    if (decl.length === 1 && !isRange) {
      if (assign) {
        const prev = scope.lookup(decl[0]!)!;
        scope.set(decl[0]!, prev === type ? type : ANY);
      } else {
        scope.vars.set(decl[0]!, type);
      }
    }
    return { pipe: { decl, assign, cmds, pos }, type };
  }

  private command(
    toks: Tok[],
    scope: Scope,
    dot: GoType,
    piped: GoType | undefined,
  ): { cmd: Cmd; type: GoType } {
    const args: Arg[] = [];
    const types: GoType[] = [];
    let k = 0;
    while (k < toks.length) {
      const t = toks[k]!;
      if (k > 0 && !t.space && t.type !== "field")
        fail(this.src, t.pos, `missing space before ${JSON.stringify(t.value)}`);
      const r = this.operand(toks, k, scope, dot);
      args.push(r.arg);
      types.push(r.type);
      k = r.next;
    }
    const head = args[0]!;
    const pos = head.pos;
    if (head.a === "func") {
      const f = own(FUNCS, head.name)!;
      const argTypes = types.slice(1);
      if (piped) argTypes.push(piped);
      this.checkCall(head.name, f, argTypes, pos);
      return { cmd: { args, pos }, type: f.ret(argTypes) };
    }
    if (args.length > 1 || piped) {
      fail(this.src, pos, `can't give argument to non-function ${describeArg(head)}`);
    }
    return { cmd: { args, pos }, type: types[0]! };
  }

  private checkCall(name: string, f: Func, argTypes: GoType[], pos: number): void {
    const min = f.params.length;
    if (argTypes.length < min || (!f.rest && argTypes.length > min)) {
      fail(
        this.src,
        pos,
        `wrong number of args for ${name}: want ${f.rest ? "at least " : ""}${min} got ${argTypes.length}`,
      );
    }
    argTypes.forEach((t, i) => {
      const want = f.params[i] ?? f.rest ?? ANY;
      if (want.k !== "any" && t.k !== "any" && t !== want && !(want.k === t.k && want.k !== "struct")) {
        fail(
          this.src,
          pos,
          `wrong type for value in ${name}; expected ${typeName(want)}; got ${typeName(t)}`,
        );
      }
    });
  }

  private operand(
    toks: Tok[],
    k: number,
    scope: Scope,
    dot: GoType,
  ): { arg: Arg; type: GoType; next: number } {
    const t = toks[k]!;
    let arg: Arg;
    let type: GoType;
    let next = k + 1;
    switch (t.type) {
      case "field":
        arg = { a: "field", names: [t.value], pos: t.pos };
        type = this.fieldType(dot, t.value, t.pos);
        break;
      case "dot":
        arg = { a: "dot", names: [], pos: t.pos };
        type = dot;
        break;
      case "var": {
        const vt = scope.lookup(t.value);
        if (!vt) fail(this.src, t.pos, `undefined variable: ${t.value}`);
        arg = { a: "var", name: t.value, names: [], pos: t.pos };
        type = vt;
        break;
      }
      case "string":
        arg = { a: "literal", value: { t: STRING, v: t.value }, pos: t.pos };
        type = STRING;
        break;
      case "number": {
        const n = Number(t.value.replaceAll("_", ""));
        if (!Number.isSafeInteger(n)) fail(this.src, t.pos, `only whole numbers are supported: ${t.value}`);
        arg = { a: "literal", value: { t: INT, v: n }, pos: t.pos };
        type = INT;
        break;
      }
      case "bool":
        arg = { a: "literal", value: { t: BOOL, v: t.value === "true" }, pos: t.pos };
        type = BOOL;
        break;
      case "nil":
        fail(this.src, t.pos, "nil is not a command");
        break;
      case "ident":
        if (!own(FUNCS, t.value))
          fail(this.src, t.pos, `function ${JSON.stringify(t.value)} not defined (or not supported)`);
        if (k > 0) {
          // A function used as an argument is called with no arguments.
          const f = own(FUNCS, t.value)!;
          this.checkCall(t.value, f, [], t.pos);
          arg = {
            a: "pipe",
            pipe: {
              decl: [],
              assign: false,
              cmds: [{ args: [{ a: "func", name: t.value, pos: t.pos }], pos: t.pos }],
              pos: t.pos,
            },
            names: [],
            pos: t.pos,
          };
          type = f.ret([]);
        } else {
          arg = { a: "func", name: t.value, pos: t.pos };
          type = ANY;
        }
        break;
      case "lparen": {
        let depth = 1;
        let e = k + 1;
        while (e < toks.length && depth > 0) {
          if (toks[e]!.type === "lparen") depth++;
          if (toks[e]!.type === "rparen") depth--;
          if (depth > 0) e++;
        }
        if (depth !== 0) fail(this.src, t.pos, "unclosed left paren");
        const inner = this.pipeline(toks.slice(k + 1, e), t.pos, scope, dot, false);
        if (inner.pipe.decl.length > 0)
          fail(this.src, t.pos, "declarations are not supported inside parentheses");
        arg = { a: "pipe", pipe: inner.pipe, names: [], pos: t.pos };
        type = inner.type;
        next = e + 1;
        break;
      }
      case "keyword":
        fail(this.src, t.pos, `unexpected {{${t.value}}} in command`);
        break;
      default:
        fail(this.src, t.pos, `unexpected ${JSON.stringify(t.value)} in operand`);
    }
    // Field chains: .A.B, $x.A, (pipe).A
    while (next < toks.length && toks[next]!.type === "field" && !toks[next]!.space) {
      const f = toks[next]!;
      if (arg.a === "literal" || arg.a === "func")
        fail(this.src, f.pos, `unexpected .${f.value} after ${t.value}`);
      arg.names.push(f.value);
      type = this.fieldType(type, f.value, f.pos);
      next++;
    }
    return { arg, type, next };
  }

  private fieldType(t: GoType, name: string, pos: number): GoType {
    if (t.k === "any") return ANY;
    if (t.k === "struct") {
      const f = own(t.fields, name);
      if (f) return f;
    }
    if (t.k === "map" && t.key.k === "string") return t.elem;
    fail(this.src, pos, `can't evaluate field ${name} in type ${typeName(t)}`);
  }
}

function describeArg(a: Arg): string {
  switch (a.a) {
    case "field":
      return `.${a.names.join(".")}`;
    case "var":
      return [a.name, ...a.names].join(".");
    case "literal":
      return formatValue(a.value.t, a.value.v);
    default:
      return a.a;
  }
}

// --- execution ------------------------------------------------------------------------------

class Vars {
  private readonly vars = new Map<string, TV>();
  constructor(private readonly parent?: Vars) {}
  get(name: string): TV {
    return this.vars.get(name) ?? this.parent!.get(name);
  }
  has(name: string): boolean {
    return this.vars.has(name) || (this.parent?.has(name) ?? false);
  }
  declare(name: string, v: TV): void {
    this.vars.set(name, v);
  }
  assign(name: string, v: TV): void {
    if (this.vars.has(name)) this.vars.set(name, v);
    else this.parent!.assign(name, v);
  }
}

function field(x: TV, name: string): TV {
  if (x.v === NO_VALUE || x.v === NIL)
    throw new TemplateExecError(`nil pointer evaluating ${typeName(x.t)}.${name}`);
  const t = x.t.k === "any" ? dynamicType(x.v) : x.t;
  if (t.k === "struct") {
    const ft = own(t.fields, name);
    if (!ft) throw new TemplateExecError(`can't evaluate field ${name} in type ${typeName(t)}`);
    return { t: ft, v: (x.v as GoStruct)[name] };
  }
  if (t.k === "map" && t.key.k === "string") {
    const m = x.v as Map<string, unknown>;
    return m.has(name) ? { t: t.elem, v: m.get(name) } : { t: t.elem, v: NO_VALUE };
  }
  throw new TemplateExecError(`can't evaluate field ${name} in type ${typeName(t)}`);
}

class Executor {
  private out = "";
  constructor(private readonly root: TV) {}

  run(nodes: TNode[]): string {
    const vars = new Vars();
    vars.declare("$", this.root);
    this.walk(nodes, this.root, vars);
    return this.out;
  }

  private walk(nodes: TNode[], dot: TV, vars: Vars): void {
    for (const node of nodes) {
      switch (node.n) {
        case "text":
          this.out += node.text;
          break;
        case "action": {
          const v = this.pipe(node.pipe, dot, vars);
          if (node.pipe.decl.length === 0) this.out += formatValue(v.t, v.v);
          break;
        }
        case "if":
        case "with": {
          const inner = new Vars(vars);
          const v = this.pipe(node.pipe, dot, inner);
          if (isTrue(v)) this.walk(node.list, node.n === "with" ? v : dot, inner);
          else this.walk(node.elseList, dot, new Vars(inner));
          break;
        }
        case "range": {
          const inner = new Vars(vars);
          const v = this.pipe({ ...node.pipe, decl: [] }, dot, inner);
          const items: [TV, TV][] = [];
          const t = v.t.k === "any" ? dynamicType(v.v) : v.t;
          if (v.v === NO_VALUE || v.v === NIL) {
            // nothing to range over
          } else if (t.k === "slice") {
            (v.v as unknown[]).forEach((e, i) => {
              items.push([
                { t: INT, v: i },
                { t: t.elem, v: e },
              ]);
            });
          } else if (t.k === "map") {
            for (const [k, e] of sortedEntries(t, v.v as Map<unknown, unknown>))
              items.push([
                { t: t.key, v: k },
                { t: t.elem, v: e },
              ]);
          } else {
            throw new TemplateExecError(`range can't iterate over ${formatValue(t, v.v)}`);
          }
          if (items.length === 0) {
            this.walk(node.elseList, dot, new Vars(vars));
            break;
          }
          for (const [k, e] of items) {
            const body = new Vars(vars);
            if (node.pipe.decl.length === 1) body.declare(node.pipe.decl[0]!, e);
            if (node.pipe.decl.length === 2) {
              body.declare(node.pipe.decl[0]!, k);
              body.declare(node.pipe.decl[1]!, e);
            }
            this.walk(node.list, e, body);
          }
          break;
        }
      }
    }
  }

  private pipe(p: Pipe, dot: TV, vars: Vars): TV {
    let v: TV | undefined;
    for (const c of p.cmds) v = this.command(c, dot, vars, v);
    const result = v!;
    if (p.decl.length === 1) {
      if (p.assign) vars.assign(p.decl[0]!, result);
      else vars.declare(p.decl[0]!, result);
    }
    return result;
  }

  private command(c: Cmd, dot: TV, vars: Vars, piped: TV | undefined): TV {
    const head = c.args[0]!;
    if (head.a === "func") {
      const f = own(FUNCS, head.name)!;
      const args = c.args.slice(1).map((a) => this.arg(a, dot, vars));
      if (piped) args.push(piped);
      return f.call(args.map((a, i) => convertArg(head.name, f.params[i] ?? f.rest ?? ANY, a)));
    }
    return this.arg(head, dot, vars);
  }

  private arg(a: Arg, dot: TV, vars: Vars): TV {
    let v: TV;
    switch (a.a) {
      case "field":
        v = dot;
        break;
      case "dot":
        v = dot;
        break;
      case "var":
        v = vars.get(a.name);
        break;
      case "literal":
        return a.value;
      case "pipe":
        v = this.pipe(a.pipe, dot, vars);
        break;
      case "func":
        throw new TemplateExecError(`${a.name} is not a value`);
    }
    for (const n of a.names) v = field(v, n);
    return v;
  }
}

function convertArg(fn: string, want: GoType, x: TV): TV {
  if (x.v === NO_VALUE || x.v === NIL) {
    if (want.k === "any") return { t: ANY, v: NIL };
    throw new TemplateExecError(`invalid value; expected ${typeName(want)} (in ${fn})`);
  }
  const actual = x.t.k === "any" ? dynamicType(x.v) : x.t;
  // Values keep their own type through `any` parameters (fmt and Sprig look at the dynamic type).
  if (want.k === "any") return { t: actual, v: x.v };
  if (actual.k !== want.k || (want.k === "struct" && actual !== want)) {
    throw new TemplateExecError(
      `wrong type for value; expected ${typeName(want)}; got ${typeName(actual)} (in ${fn})`,
    );
  }
  return { t: want, v: x.v };
}

export interface GoTemplate {
  /** @throws TemplateExecError */
  execute(root: TV): string;
}

/**
 * Parses and type-checks `src` for data of type `root`.
 * @throws TemplateSyntaxError naming the line and column of the first problem.
 */
export function compileGoTemplate(src: string, root: GoType): GoTemplate {
  const nodes = new TemplateParser(src, lex(src), root).parse();
  return { execute: (data) => new Executor(data).run(nodes) };
}
