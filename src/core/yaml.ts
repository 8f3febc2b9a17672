/**
 * Bounded YAML loading. Everything Sluice reads from a repository goes through here, so that a
 * hostile file cannot hang or exhaust the agent: the text size is capped before parsing, alias
 * expansion is capped while converting (the "billion laughs" bomb, CVE-2019-11253), and nesting
 * depth is capped after. Errors name the file, the document index and the line.
 */
import { type Document, isMap, isSeq, Lexer, LineCounter, parseAllDocuments } from "yaml";
import { SluiceError } from "./errors.js";

export interface YamlLimits {
  /** Largest accepted text, in bytes. */
  maxBytes: number;
  /** Largest number of alias expansions per document. */
  maxAliases: number;
  /** Deepest nesting of maps and sequences. */
  maxDepth: number;
}

export const defaultYamlLimits: YamlLimits = { maxBytes: 8 * 1024 * 1024, maxAliases: 100, maxDepth: 100 };

export interface YamlDoc {
  /** Zero-based position of the document in its file. */
  index: number;
  /** The plain JavaScript value (null for an empty document). */
  value: unknown;
  /** One-based line the document starts on. */
  line: number;
  /** One-based line of the node at `path`, or the nearest ancestor that exists. */
  lineOf(path: readonly (string | number)[]): number;
}

/** A parsed but not yet converted document, for callers that edit nodes before conversion. */
export interface YamlNodeDoc {
  index: number;
  doc: Document;
  line: number;
  lineOf(path: readonly (string | number)[]): number;
  /** Converts to a plain value, enforcing the alias and depth limits. */
  toValue(): unknown;
}

/** Parses every document of a YAML stream into nodes, checking size and syntax. */
export function parseYamlDocuments(
  text: string,
  file: string,
  limits: Partial<YamlLimits> = {},
): YamlNodeDoc[] {
  const lim = { ...defaultYamlLimits, ...limits };
  const bytes = text.length > lim.maxBytes / 4 ? Buffer.byteLength(text) : text.length;
  if (bytes > lim.maxBytes) {
    throw new SluiceError(
      "YamlTooLarge",
      `${file}: ${bytes} bytes is over the limit of ${lim.maxBytes} bytes`,
      {
        detail: { file },
        hint: "split the file, or raise the limit (--max-file-bytes)",
      },
    );
  }
  checkYamlNesting(text, file, lim.maxDepth);
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  // `parseAllDocuments` returns an EmptyStream (not an array) for empty input.
  if (!Array.isArray(docs)) return [];
  const lineAt = (offset: number | undefined) => (offset === undefined ? 1 : lc.linePos(offset).line);
  return docs.map((doc, index) => {
    const firstErr = doc.errors[0];
    if (firstErr) {
      const line = lineAt(firstErr.pos[0]);
      // The commonest cause in manifests: an unquoted ${VAR} inside {…} or […], where braces are
      // YAML syntax.
      const source = textLine(text, line) ?? "";
      // (Linear: a `{` or `[` before the last `${`. The regex /[{[].*\$\{/ took quadratic time
      // on a long line, e.g. minutes for a 2 MB line of `[`.)
      const lastPlaceholder = source.lastIndexOf("${");
      const flowPlaceholder = lastPlaceholder > 0 && /[{[]/.test(source.slice(0, lastPlaceholder));
      throw new SluiceError(
        "YamlInvalid",
        `${file}: document ${index}, line ${line}: ${firstLine(firstErr.message)}`,
        {
          detail: { file, document: index, line },
          ...(flowPlaceholder
            ? { hint: "quote ${VAR} placeholders inside {…} or […] (flow collections), or use block style" }
            : {}),
        },
      );
    }
    return {
      index,
      doc,
      line: lineAt(doc.contents?.range?.[0] ?? doc.range?.[0]),
      lineOf: (path) => lineAt(nodeOffset(doc, path)),
      toValue: () => {
        let value: unknown;
        try {
          value = doc.toJS({ maxAliasCount: lim.maxAliases });
        } catch (e) {
          const msg = e instanceof Error ? e.message : String(e);
          throw new SluiceError(
            "YamlInvalid",
            `${file}: document ${index}: ${firstLine(msg)} (alias expansion is limited to ${lim.maxAliases}; a YAML bomb?)`,
            { detail: { file, document: index } },
          );
        }
        if (depthOf(value, lim.maxDepth + 1) > lim.maxDepth) {
          throw new SluiceError(
            "YamlInvalid",
            `${file}: document ${index}: nesting deeper than ${lim.maxDepth} levels`,
            {
              detail: { file, document: index },
            },
          );
        }
        return value;
      },
    };
  });
}

/**
 * Refuses text whose nesting is surely deeper than `maxDepth`, before it is parsed: the parser
 * builds about 1 KB per level, so 8 MB of `[` would take gigabytes and crash the process. Counts
 * open flow collections (`[`, `{`) and, outside them, the block indicators of one line (`- - x`,
 * `? - x`): never more than the real depth, so nothing the depth limit accepts is refused.
 * Linear (the lexer alone), and it stops at the first excess.
 * @throws SluiceError YamlInvalid naming the file and line.
 */
export function checkYamlNesting(text: string, file: string, maxDepth: number): void {
  let flow = 0;
  let onLine = 0;
  let offset = 0;
  for (const tok of new Lexer().lex(text)) {
    // The lexer's control tokens (document, flow end, scalar markers) are not source text.
    if (!(tok.length === 1 && (tok === "\x02" || tok === "\x18" || tok === "\x1f"))) offset += tok.length;
    if (tok === "[" || tok === "{") flow++;
    else if (tok === "]" || tok === "}") flow = Math.max(0, flow - 1);
    else if ((tok === "-" || tok === "?") && flow === 0) onLine++;
    else if (tok === "\n" || tok === "\r\n") onLine = 0;
    else continue;
    // Levels counted include the outermost collection, which the depth limit does not.
    if (flow + onLine > maxDepth + 1) {
      const line = text.slice(0, offset).split("\n").length;
      throw new SluiceError("YamlInvalid", `${file}: line ${line}: nesting deeper than ${maxDepth} levels`, {
        detail: { file, line },
      });
    }
  }
}

/** Parses every document of a YAML stream. Empty documents are returned with value null. */
export function parseYamlStream(text: string, file: string, limits: Partial<YamlLimits> = {}): YamlDoc[] {
  return parseYamlDocuments(text, file, limits).map((d) => ({
    index: d.index,
    value: d.toValue(),
    line: d.line,
    lineOf: d.lineOf,
  }));
}

/** Parses a single-document YAML (or JSON) file; more than one document is an error. */
export function parseYamlOne(
  text: string,
  file: string,
  limits: Partial<YamlLimits> = {},
): YamlDoc | undefined {
  const docs = parseYamlStream(text, file, limits);
  if (docs.length > 1) {
    throw new SluiceError("YamlInvalid", `${file}: expected one YAML document, found ${docs.length}`, {
      detail: { file },
    });
  }
  return docs[0];
}

function textLine(text: string, line: number): string | undefined {
  return text.split("\n")[line - 1];
}

function firstLine(s: string): string {
  return s.split("\n")[0] ?? s;
}

function nodeOffset(doc: Document, path: readonly (string | number)[]): number | undefined {
  let node: unknown = doc.contents;
  let offset = (node as { range?: [number] } | null)?.range?.[0];
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (p.key as { value?: unknown } | null)?.value === key);
      if (!pair) break;
      offset = (pair.key as { range?: [number] }).range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof key === "number") {
      node = node.items[key];
      offset = (node as { range?: [number] } | undefined)?.range?.[0] ?? offset;
    } else break;
  }
  return offset;
}

/** Depth of a plain value, stopping early once `stop` is reached; iterative, so no stack overflow. */
function depthOf(v: unknown, stop: number): number {
  let max = 0;
  const stack: [unknown, number][] = [[v, 0]];
  while (stack.length) {
    const [x, d] = stack.pop()!;
    if (d > max) max = d;
    if (max >= stop) return max;
    if (x && typeof x === "object") {
      for (const c of Object.values(x as object)) if (c && typeof c === "object") stack.push([c, d + 1]);
    }
  }
  return max;
}
