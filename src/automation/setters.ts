/**
 * Image setters: Flux's `# {"$imagepolicy": "<namespace>:<policy>[:tag|:name|:digest]"}` markers,
 * applied by splicing text so that every byte outside the rewritten scalars stays as it was.
 *
 * The algorithm, per file:
 * 1. Screen like Flux's ScreeningLocalReader: only `*.yaml`/`*.yml` files that contain the literal
 *    token `"$imagepolicy"` are parsed; a file that then fails to parse is skipped and reported
 *    (Flux records it as a "problem file" and carries on).
 * 2. Parse every document with `yaml` (source ranges, no value conversion) and list the comment
 *    tokens that mention `$imagepolicy` from the CST.
 * 3. A marker applies to the scalar it follows on the same line (kyaml's line comment): a mapping
 *    value or a sequence item, plain or quoted, block or flow style. The new text keeps the quote
 *    style; a plain scalar whose new value would read back as something other than the same string
 *    (a number, a boolean, YAML syntax) is written double-quoted.
 * 4. Markers elsewhere (commented-out lines, after a flow collection) are reported as ignored; a
 *    marker naming an unknown policy, a malformed marker, or one on a block scalar is an error.
 * 5. Edits are applied back to front, the text is parsed again and every rewritten scalar is checked
 *    to read back as its new value.
 *
 * Over a tree, every file is computed first and nothing is written if any file has an error.
 */
import { lstatSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from "node:fs";
import { extname, join, relative, sep } from "node:path";
import {
  isMap,
  isPair,
  isScalar,
  LineCounter,
  type Node,
  Parser,
  parse,
  parseAllDocuments,
  type Scalar,
  visit,
} from "yaml";
import { checkYamlNesting, defaultYamlLimits, SluiceError, secureResolve } from "../core/index.js";
import { parseImageRef } from "./imageref.js";
import type {
  IgnoredMarker,
  LatestImages,
  ObjectIdentifier,
  SetterKind,
  SetterRun,
  SetterUpdate,
} from "./types.js";

/** The token Flux screens files for (with its quotes). */
export const MARKER_TOKEN = '"$imagepolicy"';
const SHORTHAND = "$imagepolicy";
const DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024;

export interface SetterOptions {
  /**
   * The automation's namespace. When set, markers naming policies of another namespace are left
   * alone and reported as ignored (Flux lists only its own namespace's policies); when unset, every
   * marker must name a known policy.
   */
  namespace?: string;
}

/** A marker problem, with where it is. */
export interface SetterError {
  file: string;
  line: number;
  message: string;
}

export interface FileSetterResult {
  /** The new text (identical to the input when nothing changed). */
  text: string;
  updates: SetterUpdate[];
  ignored: IgnoredMarker[];
  errors: SetterError[];
}

interface Edit {
  start: number;
  end: number;
  replacement: string;
  value: string;
}

/**
 * Applies the markers of one file's text. Never throws for marker problems (they are returned in
 * `errors`); throws SluiceError YamlInvalid when the text is not YAML.
 */
export function applySetters(
  text: string,
  file: string,
  latest: LatestImages,
  opts: SetterOptions = {},
): FileSetterResult {
  // Before parsing: megabytes of nesting would be built into gigabytes first.
  checkYamlNesting(text, file, defaultYamlLimits.maxDepth);
  const lc = new LineCounter();
  const docList = [...parseAllDocuments(text, { lineCounter: lc })];
  for (const d of docList) {
    const err = d.errors[0];
    if (err) {
      throw new SluiceError("YamlInvalid", `${file}: not valid YAML: ${err.message.split("\n")[0]}`, {
        detail: { file },
      });
    }
  }
  const lineOf = (offset: number) => lc.linePos(offset).line;
  const markerComments = markerCommentOffsets(text);
  const used = new Set<number>();
  const result: FileSetterResult = { text, updates: [], ignored: [], errors: [] };
  const edits: Edit[] = [];

  for (const doc of docList) {
    const object = objectIdentifier(doc.contents);
    visit(doc, {
      Scalar(key, node) {
        if (key === "key" || key === null || !node.range) return;
        const [start, valueEnd] = node.range;
        const isBlock = node.type === "BLOCK_LITERAL" || node.type === "BLOCK_FOLDED";
        if (isBlock) {
          const headerEnd = lineEnd(text, start);
          for (const c of markerComments) {
            if (c > start && c < headerEnd) {
              used.add(c);
              result.errors.push({
                file,
                line: lineOf(c),
                message: "a marker on a block scalar (| or >) is not supported; write the image on one line",
              });
            }
          }
          return;
        }
        const comment = trailingComment(text, start, valueEnd);
        if (comment === undefined || !markerComments.has(comment)) return;
        used.add(comment);
        const line = lineOf(start);
        const body = text.slice(comment + 1, lineEnd(text, comment)).replace(/\r$/, "");
        const marker = parseMarker(body);
        if ("error" in marker) {
          result.errors.push({ file, line, message: marker.error });
          return;
        }
        const { setter, policy, namespace, kind } = marker;
        if (opts.namespace !== undefined && namespace !== opts.namespace) {
          result.ignored.push({
            file,
            line,
            setter,
            reason: `policy namespace ${namespace} is not the automation's namespace ${opts.namespace}`,
          });
          return;
        }
        const pol = latest.get(policy);
        if (!pol) {
          result.errors.push({
            file,
            line,
            message: `marker names image policy ${policy}, which is not known`,
          });
          return;
        }
        let value: string;
        try {
          value = setterValue(pol.image, kind, policy);
        } catch (e) {
          result.errors.push({ file, line, message: (e as Error).message });
          return;
        }
        const from = scalarText(node, text);
        if (from === value) return;
        edits.push({ start, end: valueEnd, replacement: render(node, value, text, start, valueEnd), value });
        result.updates.push({
          file,
          line,
          from,
          to: value,
          policy,
          setter,
          kind,
          image: pol.image,
          object,
        });
      },
    });
  }
  for (const c of [...markerComments].sort((a, b) => a - b)) {
    if (used.has(c)) continue;
    const body = text.slice(c + 1, lineEnd(text, c)).replace(/\r$/, "");
    const braces = /\{[^{}]*\$imagepolicy[^{}]*\}/.exec(body)?.[0] ?? body.trim();
    const m = parseMarker(braces);
    result.ignored.push({
      file,
      line: lineOf(c),
      setter: "error" in m ? braces : m.setter,
      reason:
        "not on the same line after a scalar value (a commented-out line, or after a key or collection)",
    });
  }
  result.ignored.sort((a, b) => a.line - b.line);
  if (edits.length === 0 || result.errors.length > 0) return result;

  let out = text;
  for (const e of [...edits].sort((a, b) => b.start - a.start)) {
    out = out.slice(0, e.start) + e.replacement + out.slice(e.end);
  }
  verify(out, file, edits);
  result.text = out;
  return result;
}

/** Applies setters to every marked YAML file under `path` (a file or directory inside `root`). */
export function updateWithSetters(opts: {
  root: string;
  /** Relative to root; default the whole repository (`update.path`). */
  path?: string;
  latest: LatestImages;
  namespace?: string;
  /** Compute only; write nothing. */
  dryRun?: boolean;
  maxFileBytes?: number;
}): SetterRun {
  const root = realpathSync(opts.root);
  const rel = opts.path === undefined || opts.path === "" ? "." : opts.path;
  const base = secureResolve(root, rel);
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(base);
  } catch {
    throw new SluiceError(
      "ConfigInvalid",
      `update.path ${JSON.stringify(rel)} does not exist in the repository`,
      {
        detail: { path: rel },
        hint: "point spec.update.path at a directory or file of the repository",
      },
    );
  }
  const maxBytes = opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const run: SetterRun = { updates: [], changedFiles: [], skipped: [], ignored: [] };
  const errors: SetterError[] = [];
  const writes: [string, string][] = [];
  const setterOpts: SetterOptions = opts.namespace === undefined ? {} : { namespace: opts.namespace };

  const visitFile = (abs: string) => {
    const file = relative(root, abs).split(sep).join("/");
    if (!/\.ya?ml$/.test(extname(abs))) return;
    const ls = lstatSync(abs);
    if (ls.isSymbolicLink()) {
      run.skipped.push({ file, reason: "symbolic link (not followed)" });
      return;
    }
    if (!ls.isFile()) return;
    if (ls.size > maxBytes) {
      run.skipped.push({ file, reason: `larger than ${maxBytes} bytes` });
      return;
    }
    const text = readFileSync(abs, "utf8");
    if (!text.includes(MARKER_TOKEN)) return;
    let r: FileSetterResult;
    try {
      r = applySetters(text, file, opts.latest, setterOpts);
    } catch (e) {
      if (e instanceof SluiceError && e.code === "YamlInvalid") {
        run.skipped.push({ file, reason: e.message.slice(file.length + 2) });
        return;
      }
      throw e;
    }
    errors.push(...r.errors);
    run.ignored.push(...r.ignored);
    if (r.errors.length === 0 && r.text !== text) {
      run.updates.push(...r.updates);
      run.changedFiles.push(file);
      writes.push([abs, r.text]);
    }
  };
  const walk = (dir: string) => {
    const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      const abs = join(dir, e.name);
      if (e.isDirectory()) {
        if (e.name !== ".git") walk(abs);
      } else {
        visitFile(abs);
      }
    }
  };
  if (st.isDirectory()) walk(base);
  else visitFile(base);

  if (errors.length > 0) {
    const shown = errors.slice(0, 5).map((e) => `${e.file}:${e.line}: ${e.message}`);
    if (errors.length > 5) shown.push(`and ${errors.length - 5} more`);
    throw new SluiceError("ConfigInvalid", `image setters: ${shown.join("; ")}; nothing was written`, {
      detail: { errors },
      hint: 'a marker reads # {"$imagepolicy": "<namespace>:<policy>"} (or …:tag, …:name) and must name an ImagePolicy with a latest image',
    });
  }
  if (!opts.dryRun) for (const [abs, text] of writes) writeFileSync(abs, text);
  run.changedFiles.sort();
  return run;
}

// --- markers ---------------------------------------------------------------------------------

type Marker = { setter: string; policy: string; namespace: string; kind: SetterKind } | { error: string };

function parseMarker(body: string): Marker {
  const trimmed = body.trim();
  let parsed: unknown;
  try {
    parsed = parse(trimmed);
  } catch {
    parsed = undefined;
  }
  const raw =
    parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)[SHORTHAND]
      : undefined;
  if (typeof raw !== "string") {
    return {
      error: `malformed marker ${JSON.stringify(trimmed)}; expected {"$imagepolicy": "<namespace>:<policy>"}`,
    };
  }
  const parts = raw.split(":");
  const suffix = parts[2] ?? "";
  const kinds: Record<string, SetterKind> = { "": "image", tag: "tag", name: "name", digest: "digest" };
  const kind = kinds[suffix];
  if (
    parts.length < 2 ||
    parts.length > 3 ||
    !parts[0] ||
    !parts[1] ||
    kind === undefined ||
    (parts.length === 3 && !suffix)
  ) {
    const hint = raw.includes("/") ? " (namespace and policy are separated by a colon, not a slash)" : "";
    return {
      error: `malformed marker value ${JSON.stringify(raw)}; expected "<namespace>:<policy>" optionally followed by ":tag", ":name" or ":digest"${hint}`,
    };
  }
  return { setter: raw, policy: `${parts[0]}:${parts[1]}`, namespace: parts[0], kind };
}

function setterValue(image: string, kind: SetterKind, policy: string): string {
  const p = parseImageRef(image, `latest image of policy ${policy}`);
  switch (kind) {
    case "image":
      return p.ref;
    case "name":
      return p.name;
    case "tag":
      if (!p.tag) throw new Error(`latest image ${image} of policy ${policy} has no tag for a :tag marker`);
      return p.tag;
    case "digest":
      if (!p.digest)
        throw new Error(`latest image ${image} of policy ${policy} has no digest for a :digest marker`);
      return p.digest;
  }
}

/** Offsets of the `#` of every comment token that mentions `$imagepolicy`. */
function markerCommentOffsets(text: string): Set<number> {
  const out = new Set<number>();
  const seen = new Set<unknown>();
  const walk = (v: unknown) => {
    if (v === null || typeof v !== "object" || seen.has(v)) return;
    seen.add(v);
    if (Array.isArray(v)) {
      for (const x of v) walk(x);
      return;
    }
    const o = v as { type?: unknown; offset?: unknown; source?: unknown };
    if (o.type === "comment" && typeof o.offset === "number" && typeof o.source === "string") {
      if (o.source.includes(SHORTHAND)) out.add(o.offset);
      return;
    }
    for (const x of Object.values(o)) walk(x);
  };
  for (const token of new Parser().parse(text)) walk(token);
  return out;
}

function lineEnd(text: string, from: number): number {
  const nl = text.indexOf("\n", from);
  return nl < 0 ? text.length : nl;
}

/** Offset of a `#` comment following a scalar on its line, if any. */
function trailingComment(text: string, start: number, valueEnd: number): number | undefined {
  let i = valueEnd;
  while (i < text.length && (text[i] === " " || text[i] === "\t")) i++;
  if (text[i] !== "#") return undefined;
  // A comment needs white space before it, unless the scalar is empty (`image: # {…}`).
  if (i === valueEnd && valueEnd !== start) return undefined;
  return i;
}

// --- values ----------------------------------------------------------------------------------

function scalarText(node: Scalar, text: string): string {
  if (typeof node.value === "string") return node.value;
  if (node.value === null && node.range && node.range[0] === node.range[1]) return "";
  return node.source !== undefined ? String(node.source) : text.slice(node.range![0], node.range![1]);
}

function render(node: Scalar, value: string, text: string, start: number, end: number): string {
  if (node.type === "QUOTE_SINGLE") return `'${value.replaceAll("'", "''")}'`;
  if (node.type === "QUOTE_DOUBLE") return JSON.stringify(value);
  const plain = plainSafe(value) ? value : JSON.stringify(value);
  // An empty value followed directly by its comment needs a space before the `#`.
  return start === end && text[end] === "#" ? `${plain} ` : plain;
}

/** True when `v` written as a plain scalar reads back as the same string in YAML 1.1 and 1.2. */
function plainSafe(v: string): boolean {
  if (!/^[A-Za-z0-9_./][A-Za-z0-9_./:@+~-]*$/.test(v) || v.endsWith(":")) return false;
  for (const version of ["1.1", "1.2"] as const) {
    try {
      if (parse(`k: ${v}`, { version }).k !== v) return false;
      if (parse(`[${v}]`, { version })[0] !== v) return false;
    } catch {
      return false;
    }
  }
  return true;
}

function verify(out: string, file: string, edits: Edit[]): void {
  const starts = new Map<number, string>();
  let delta = 0;
  for (const e of [...edits].sort((a, b) => a.start - b.start)) {
    starts.set(e.start + delta, e.value);
    delta += e.replacement.length - (e.end - e.start);
  }
  const found = new Set<number>();
  for (const doc of parseAllDocuments(out)) {
    if (doc.errors.length > 0) break;
    visit(doc, {
      Scalar(_k, node) {
        const at = node.range?.[0];
        if (at !== undefined && starts.has(at) && node.value === starts.get(at)) found.add(at);
      },
    });
  }
  if (found.size !== starts.size) {
    throw new SluiceError("Internal", `${file}: rewriting the marked fields would not read back as written`, {
      detail: { file },
      hint: "please report this file; nothing was written",
    });
  }
}

// --- objects ---------------------------------------------------------------------------------

function str(n: unknown): string {
  if (isScalar(n) && n.value !== null && n.value !== undefined) return String(n.value);
  return "";
}

function objectIdentifier(contents: Node | null): ObjectIdentifier {
  const id: ObjectIdentifier = { apiVersion: "", kind: "", name: "", namespace: "" };
  if (!isMap(contents)) return id;
  for (const item of contents.items) {
    if (!isPair(item)) continue;
    const key = str(item.key);
    if (key === "apiVersion") id.apiVersion = str(item.value);
    else if (key === "kind") id.kind = str(item.value);
    else if (key === "metadata" && isMap(item.value)) {
      for (const m of item.value.items) {
        const mk = str(m.key);
        if (mk === "name") id.name = str(m.value);
        else if (mk === "namespace") id.namespace = str(m.value);
      }
    }
  }
  return id;
}
