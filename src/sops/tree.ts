/**
 * An ordered, typed document tree (the equivalent of sops' TreeBranch): what sops walks to encrypt,
 * decrypt and compute the MAC. Plain JavaScript objects reorder integer-like keys, and the MAC covers
 * values in document order, so the text formats are read into this tree rather than into objects.
 * Builders read YAML, JSON, dotenv and plain values; emitters write YAML, JSON, dotenv and binary.
 */
import { isAlias, isMap, isScalar, isSeq, type Node, parseAllDocuments, Scalar, stringify } from "yaml";
import { checkYamlNesting, SluiceError } from "../core/index.js";

export type Leaf =
  | { t: "str"; v: string }
  | { t: "int"; v: bigint }
  | { t: "float"; v: number }
  | { t: "bool"; v: boolean }
  | { t: "null" }
  /** A timestamp, kept as the text Go's time.MarshalText produces (RFC 3339 with nanoseconds). */
  | { t: "time"; v: string }
  | { t: "bytes"; v: Buffer };

export type MapEntry = { key: string; node: TNode } | { comment: string };
export type TNode =
  | { k: "map"; entries: MapEntry[] }
  | { k: "seq"; items: TNode[] }
  | { k: "leaf"; leaf: Leaf };
/** One document of a file: its top-level mapping. */
export type Branch = MapEntry[];

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const MAX_DEPTH = 100;
const MAX_BYTES = 8 * 1024 * 1024;
const MAX_ALIASES = 100;

export function leafNode(leaf: Leaf): TNode {
  return { k: "leaf", leaf };
}

// ---------------------------------------------------------------------------------------------
// Go-compatible scalar formatting (what sops hashes and writes)

/** strconv.FormatFloat(v, 'f', -1, 64): shortest round-trip digits, never an exponent. */
export function goFormatFloat(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Number.POSITIVE_INFINITY) return "+Inf";
  if (n === Number.NEGATIVE_INFINITY) return "-Inf";
  if (Object.is(n, -0)) return "-0";
  const s = String(n);
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (!m) return s;
  const [, sign, int, frac = "", expS] = m;
  const digits = `${int}${frac}`;
  const exp = Number(expS);
  const point = 1 + exp; // position of the decimal point within `digits`
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${"0".repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** The bytes sops feeds into the MAC for a leaf (sops.ToBytes). */
export function leafBytes(l: Leaf): Buffer | null {
  switch (l.t) {
    case "str":
      return Buffer.from(l.v, "utf8");
    case "int":
      return Buffer.from(l.v.toString(), "utf8");
    case "float":
      return Buffer.from(goFormatFloat(l.v), "utf8");
    case "bool":
      return Buffer.from(l.v ? "True" : "False", "utf8");
    case "time":
      return Buffer.from(l.v, "utf8");
    case "bytes":
      return l.v;
    case "null":
      return null;
  }
}

const TIMESTAMP_RE =
  /^(\d{4})-(\d\d?)-(\d\d?)(?:(?:[Tt]|[ \t]+)(\d\d?):(\d\d):(\d\d)(?:\.(\d*))?(?:[ \t]*(Z|[+-]\d\d?(?::?\d\d)?))?)?$/;

/**
 * The Go time.MarshalText form of a YAML timestamp as yaml.v3 reads it (sops decodes unquoted
 * timestamps into time.Time), or null when `s` is not a timestamp.
 */
export function goTimestamp(s: string): string | null {
  const m = TIMESTAMP_RE.exec(s);
  if (!m) return null;
  const [, y, mo, d, hh = "0", mi = "0", ss = "0", frac = "", zone] = m;
  const p2 = (x: string) => x.padStart(2, "0");
  let out = `${y}-${p2(mo!)}-${p2(d!)}T${p2(hh)}:${mi}:${ss}`;
  const f = frac.slice(0, 9).replace(/0+$/, "");
  if (f) out += `.${f}`;
  if (!zone || zone === "Z") return `${out}Z`;
  const zm = /^([+-])(\d\d?)(?::?(\d\d))?$/.exec(zone)!;
  const zh = p2(zm[2]!);
  const zmin = zm[3] ?? "00";
  return zh === "00" && zmin === "00" ? `${out}Z` : `${out}${zm[1]}${zh}:${zmin}`;
}

// ---------------------------------------------------------------------------------------------
// Builders

function fail(file: string, message: string): never {
  throw new SluiceError("DecryptionFailed", `${file}: ${message}`, { detail: { file } });
}

function intLeaf(v: bigint): Leaf {
  // Go decodes integers outside int64 as float64.
  return v < INT64_MIN || v > INT64_MAX ? { t: "float", v: Number(v) } : { t: "int", v };
}

/** A tree from an already parsed JavaScript value (numbers that are integers count as ints). */
export function fromValue(value: unknown, file: string, depth = 0): TNode {
  if (depth > MAX_DEPTH) fail(file, `nesting deeper than ${MAX_DEPTH} levels`);
  if (value === null || value === undefined) return leafNode({ t: "null" });
  if (typeof value === "string") return leafNode({ t: "str", v: value });
  if (typeof value === "boolean") return leafNode({ t: "bool", v: value });
  if (typeof value === "bigint") return leafNode(intLeaf(value));
  if (typeof value === "number") {
    return leafNode(Number.isSafeInteger(value) ? { t: "int", v: BigInt(value) } : { t: "float", v: value });
  }
  if (value instanceof Date) return leafNode({ t: "time", v: value.toISOString().replace(/\.000Z$/, "Z") });
  if (Buffer.isBuffer(value) || value instanceof Uint8Array)
    return leafNode({ t: "str", v: Buffer.from(value).toString("utf8") });
  if (Array.isArray(value)) return { k: "seq", items: value.map((v) => fromValue(v, file, depth + 1)) };
  if (typeof value === "object") {
    return {
      k: "map",
      entries: Object.entries(value as Record<string, unknown>).map(([key, v]) => ({
        key,
        node: fromValue(v, file, depth + 1),
      })),
    };
  }
  fail(file, `unsupported value of type ${typeof value}`);
}

/** Parses YAML (or JSON, a subset of it) into branches, one per document, keeping order and types. */
export function fromYamlText(text: string, file: string, what = "YAML"): Branch[] {
  if (Buffer.byteLength(text) > MAX_BYTES) fail(file, `larger than ${MAX_BYTES} bytes`);
  // Before parsing: the parser would build megabytes of nesting (gigabytes of memory) first.
  checkYamlNesting(text, file, MAX_DEPTH);
  const docs = parseAllDocuments(text, {
    schema: "core",
    intAsBigInt: true,
    uniqueKeys: true,
    prettyErrors: false,
  });
  if (!Array.isArray(docs)) return [];
  const out: Branch[] = [];
  docs.forEach((doc, index) => {
    const err = doc.errors[0];
    if (err) fail(file, `document ${index} is not valid ${what}: ${err.message.split("\n")[0]}`);
    let aliases = 0;
    const conv = (node: unknown, depth: number): TNode => {
      if (depth > MAX_DEPTH) fail(file, `document ${index}: nesting deeper than ${MAX_DEPTH} levels`);
      if (node === null || node === undefined) return leafNode({ t: "null" });
      if (isAlias(node)) {
        if (++aliases > MAX_ALIASES) fail(file, `document ${index}: more than ${MAX_ALIASES} aliases`);
        return conv(node.resolve(doc), depth + 1);
      }
      if (isMap(node)) {
        const entries: MapEntry[] = [];
        for (const pair of node.items) {
          const k = isAlias(pair.key) ? pair.key.resolve(doc) : pair.key;
          const key = isScalar(k) ? k.value : k;
          if (key !== null && typeof key === "object")
            fail(file, `document ${index}: only scalar keys are supported`);
          entries.push({ key: String(key ?? ""), node: conv(pair.value, depth + 1) });
        }
        return { k: "map", entries };
      }
      if (isSeq(node)) return { k: "seq", items: node.items.map((i) => conv(i, depth + 1)) };
      if (isScalar(node)) {
        const v = node.value;
        if (v === null || v === undefined) return leafNode({ t: "null" });
        if (typeof v === "bigint") return leafNode(intLeaf(v));
        if (typeof v === "number") return leafNode({ t: "float", v });
        if (typeof v === "boolean") return leafNode({ t: "bool", v });
        const s = String(v);
        if (node.type === Scalar.PLAIN && what === "YAML") {
          const ts = goTimestamp(s);
          if (ts !== null) return leafNode({ t: "time", v: ts });
        }
        return leafNode({ t: "str", v: s });
      }
      fail(file, `document ${index}: unsupported YAML node`);
    };
    const root = conv(doc.contents as Node | null, 0);
    if (root.k === "leaf" && root.leaf.t === "null") {
      out.push([]);
      return;
    }
    if (root.k !== "map") fail(file, `document ${index}: sops documents must be mappings at the top level`);
    out.push(root.entries);
  });
  return out;
}

/** sops' dotenv reader: `KEY=value` lines (`\n` escapes a newline), `#` comment lines, blank lines skipped. */
export function fromDotenvText(text: string, file: string): Branch {
  if (Buffer.byteLength(text) > MAX_BYTES) fail(file, `larger than ${MAX_BYTES} bytes`);
  const out: Branch = [];
  text.split("\n").forEach((line, i) => {
    if (line.length === 0) return;
    if (line.startsWith("#")) {
      out.push({ comment: line.slice(1) });
      return;
    }
    const pos = line.indexOf("=");
    if (pos < 0) fail(file, `line ${i + 1} is not a KEY=value line`);
    out.push({
      key: line.slice(0, pos),
      node: leafNode({ t: "str", v: line.slice(pos + 1).replaceAll("\\n", "\n") }),
    });
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Conversions and emitters

function defineKey(o: Record<string, unknown>, key: string, value: unknown): void {
  // defineProperty, so that a key named `__proto__` stays an ordinary key.
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

/** A plain JavaScript value; `bigints` keeps integers as bigint (for exact YAML output). */
export function toValue(node: TNode, bigints = false): unknown {
  switch (node.k) {
    case "map": {
      const o: Record<string, unknown> = {};
      for (const e of node.entries) if ("key" in e) defineKey(o, e.key, toValue(e.node, bigints));
      return o;
    }
    case "seq":
      return node.items.map((i) => toValue(i, bigints));
    case "leaf":
      return leafValue(node.leaf, bigints);
  }
}

function leafValue(l: Leaf, bigints: boolean): unknown {
  switch (l.t) {
    case "null":
      return null;
    case "int":
      return bigints ? l.v : Number(l.v);
    case "bytes":
      return l.v.toString("utf8");
    default:
      return l.v;
  }
}

export function branchToValue(b: Branch, bigints = false): Record<string, unknown> {
  return toValue({ k: "map", entries: b }, bigints) as Record<string, unknown>;
}

export function emitYaml(branches: Branch[]): string {
  return branches
    .map((b) => {
      const v = branchToValue(b, true);
      return Object.keys(v).length === 0
        ? "{}\n"
        : stringify(v, { lineWidth: 0, indent: 4, indentSeq: true });
    })
    .join("---\n");
}

function jsonLeaf(l: Leaf): string {
  switch (l.t) {
    case "null":
      return "null";
    case "int":
      return l.v.toString();
    case "float":
      return Number.isFinite(l.v) ? JSON.stringify(l.v) : JSON.stringify(goFormatFloat(l.v));
    case "bool":
      return String(l.v);
    case "bytes":
      return JSON.stringify(l.v.toString("utf8"));
    default:
      return JSON.stringify(l.v);
  }
}

function jsonNode(node: TNode, indent: string): string {
  const inner = `${indent}    `;
  if (node.k === "leaf") return jsonLeaf(node.leaf);
  if (node.k === "seq") {
    if (node.items.length === 0) return "[]";
    return `[\n${node.items.map((i) => inner + jsonNode(i, inner)).join(",\n")}\n${indent}]`;
  }
  const entries = node.entries.filter((e): e is { key: string; node: TNode } => "key" in e);
  if (entries.length === 0) return "{}";
  return `{\n${entries.map((e) => `${inner}${JSON.stringify(e.key)}: ${jsonNode(e.node, inner)}`).join(",\n")}\n${indent}}`;
}

export function emitJson(branch: Branch): string {
  return `${jsonNode({ k: "map", entries: branch }, "")}\n`;
}

/** stores.ValToString for the dotenv writer. */
function dotenvValue(l: Leaf): string {
  switch (l.t) {
    case "str":
      return l.v.replaceAll("\n", "\\n");
    case "int":
      return l.v.toString();
    case "float": {
      if (!Number.isFinite(l.v)) return goFormatFloat(l.v);
      // strconv.FormatFloat(v, 'G', -1, 64), with ".0" added when it could be read as an integer.
      const [mant = "0", expS = "0"] = l.v.toExponential().split("e");
      const exp = Number(expS);
      if (l.v !== 0 && (exp < -4 || exp >= 6)) {
        return `${mant}E${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
      }
      const s = goFormatFloat(l.v);
      return s.includes(".") ? s : `${s}.0`;
    }
    case "bool":
      return String(l.v);
    case "null":
      return "<nil>";
    case "time":
      return l.v.replace(/\.\d+(?=Z|[+-])/, "");
    case "bytes":
      return l.v.toString("utf8");
  }
}

export function emitDotenv(branch: Branch, file: string): string {
  let out = "";
  for (const e of branch) {
    if ("comment" in e) {
      out += `#${e.comment}\n`;
      continue;
    }
    if (e.node.k !== "leaf") fail(file, `cannot write nested value of key '${e.key}' as dotenv`);
    out += `${e.key}=${dotenvValue(e.node.leaf)}\n`;
  }
  return out;
}

/** The binary store: the whole file is the string value of the `data` key. */
export function emitBinary(branch: Branch, file: string): Buffer {
  for (const e of branch) {
    if ("key" in e && e.key === "data") {
      if (e.node.k === "leaf" && e.node.leaf.t === "str") return Buffer.from(e.node.leaf.v, "utf8");
      if (e.node.k === "leaf" && e.node.leaf.t === "bytes") return e.node.leaf.v;
      fail(file, "the 'data' key of a binary sops file does not hold a string");
    }
  }
  fail(file, "no 'data' key in binary sops file");
}
