/**
 * The fast path of parsing and substitution, with js-yaml (about five times faster than the
 * `yaml` document API on large streams). Plain (unquoted) scalars holding a `$` are resolved by an
 * implicit tag to a `Placeholder`, so after substitution we know which values to re-type, exactly
 * as the node-level path in substitute.ts does. Aliases are refused here (js-yaml shares aliased
 * objects, and walking a YAML bomb would explode): any document with an alias, or any parse
 * error, goes to the `yaml` path, which bounds alias expansion and reports positions our way.
 */
import { CORE_SCHEMA, defineScalarTag, loadAll, NOT_RESOLVED } from "js-yaml";
import { SluiceError } from "../core/index.js";
import { envsubst } from "./envsubst.js";
import {
  formatSegments,
  isStringField,
  type Missing,
  resolveCore,
  type Segment,
  SUBSTITUTE_KEY,
} from "./substitute.js";

/** An unquoted scalar that contains `$`, before substitution. */
export class Placeholder {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const placeholderTag = defineScalarTag("tag:sluice.dev,2026:placeholder", {
  implicit: true,
  implicitFirstChars: null,
  resolve: (source: string) => (source.includes("$") ? new Placeholder(source) : NOT_RESOLVED),
  identify: () => false,
});
const schema = CORE_SCHEMA.withTags(placeholderTag);

/** Parses a stream (empty documents are null), or returns undefined when the `yaml` path must take it (alias, error). */
export function fastParse(text: string, file: string, maxDepth: number): unknown[] | undefined {
  try {
    return loadAll(text, { schema, maxAliases: 0, maxDepth, filename: file });
  } catch {
    return undefined;
  }
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : v instanceof Placeholder ? v.text : undefined;
}

/** True when the value has apiVersion, kind and metadata.name (before substitution). */
export function looksLikeObjectValue(v: unknown): boolean {
  if (!v || typeof v !== "object" || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  const md = o.metadata as Record<string, unknown> | undefined;
  return (
    str(o.apiVersion) !== undefined &&
    str(o.kind) !== undefined &&
    !!md &&
    typeof md === "object" &&
    str(md.name) !== undefined
  );
}

export function objectNameOf(v: unknown, file: string, index: number): string {
  const o = v as Record<string, unknown>;
  const md = (o.metadata ?? {}) as Record<string, unknown>;
  const kind = str(o.kind);
  const name = str(md.name);
  const ns = str(md.namespace);
  if (kind && name) return ns ? `${kind}/${ns}/${name}` : `${kind}/${name}`;
  return `${file} document ${index}`;
}

function disabled(v: unknown): boolean {
  const md = ((v as Record<string, unknown>).metadata ?? {}) as Record<
    string,
    Record<string, unknown> | undefined
  >;
  return md.labels?.[SUBSTITUTE_KEY] === "disabled" || md.annotations?.[SUBSTITUTE_KEY] === "disabled";
}

/** Substitutes every placeholder of a parsed document; returns the plain value and what was missing. */
export function substituteValue(
  doc: unknown,
  vars: ReadonlyMap<string, string>,
  strict: boolean,
  objectName: string,
): { value: unknown; missing: Missing[] } {
  const missing: Missing[] = [];
  const off = disabled(doc);
  const kind = str((doc as Record<string, unknown>).kind) ?? "";
  const path: Segment[] = [];
  const sub = (text: string, isKey: boolean): string => {
    let res: { output: string; missing: string[] };
    try {
      res = envsubst(text, vars, { strict });
    } catch (e) {
      const field = formatSegments(path) + (isKey ? " (key)" : "");
      const inner = e instanceof SluiceError ? e : undefined;
      throw new SluiceError(
        "SubstitutionFailed",
        `${objectName}: field ${field}: ${e instanceof Error ? e.message : String(e)}`,
        {
          detail: { ...inner?.detail, object: objectName, field },
          ...(inner?.hint ? { hint: inner.hint } : {}),
          cause: e,
        },
      );
    }
    for (const name of res.missing)
      missing.push({ name, object: objectName, field: formatSegments(path) + (isKey ? " (key)" : "") });
    return res.output;
  };
  const walk = (v: unknown): unknown => {
    if (v instanceof Placeholder) {
      if (off) return v.text;
      const out = sub(v.text, false);
      return isStringField(path, kind) ? out : resolveCore(out);
    }
    if (typeof v === "string") return off || !v.includes("$") ? v : sub(v, false);
    if (Array.isArray(v)) {
      const out = new Array(v.length);
      for (let i = 0; i < v.length; i++) {
        path.push(i);
        out[i] = walk(v[i]);
        path.pop();
      }
      return out;
    }
    if (v && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, val] of Object.entries(v)) {
        path.push(k);
        const key = off || !k.includes("$") ? k : sub(k, true);
        // defineProperty: a `__proto__` key must stay a key, not replace the prototype.
        Object.defineProperty(out, key, {
          value: walk(val),
          enumerable: true,
          writable: true,
          configurable: true,
        });
        path.pop();
      }
      return out;
    }
    return v;
  };
  return { value: walk(doc), missing };
}
