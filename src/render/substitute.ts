/**
 * Post-build variable substitution over YAML nodes. Flux substitutes each object's serialized
 * text and re-parses it; we substitute each scalar (values and keys) of the parsed document and
 * re-resolve the type of plain (unquoted) scalars with the YAML 1.2 core schema. The result is
 * the same for every realistic manifest — `containerPort: ${PORT}` with PORT=8000 becomes the
 * integer 8000, `value: "${PORT}"` stays the string "8000" — but a value can never inject YAML
 * structure (a value `{a: 1}` stays a string), and we know the field path of every variable,
 * which is what lets a strict render name the object and field of each undefined variable.
 */
import { type Document, isPair, isScalar, isSeq, Scalar, visit } from "yaml";
import { SluiceError } from "../core/index.js";
import { envsubst } from "./envsubst.js";

export const SUBSTITUTE_KEY = "kustomize.toolkit.fluxcd.io/substitute";

export interface Missing {
  name: string;
  /** `Kind/namespace/name` of the object, or `file document N` when it has no identity. */
  object: string;
  field: string;
}

/** True when the object opts out with the Flux label or annotation. */
export function substitutionDisabled(doc: Document): boolean {
  for (const where of ["labels", "annotations"]) {
    if (doc.getIn(["metadata", where, SUBSTITUTE_KEY]) === "disabled") return true;
  }
  return false;
}

/**
 * Substitutes in place. Returns the undefined variables found (always empty when `strict` is
 * false: those become empty strings, as in Flux).
 */
export function substituteDocument(
  doc: Document,
  vars: ReadonlyMap<string, string>,
  strict: boolean,
  objectName: string,
): Missing[] {
  const missing: Missing[] = [];
  const kind = String(doc.get("kind") ?? "");
  visit(doc, {
    Scalar(key, node, path) {
      if (typeof node.value !== "string" || !node.value.includes("$")) return;
      let res: { output: string; missing: string[] };
      try {
        res = envsubst(node.value, vars, { strict });
      } catch (e) {
        const field = fieldPath(path, key);
        const inner = e instanceof SluiceError ? e : undefined;
        const msg = e instanceof Error ? e.message : String(e);
        throw new SluiceError("SubstitutionFailed", `${objectName}: field ${field}: ${msg}`, {
          detail: { ...inner?.detail, object: objectName, field },
          ...(inner?.hint ? { hint: inner.hint } : {}),
          cause: e,
        });
      }
      for (const name of res.missing) missing.push({ name, object: objectName, field: fieldPath(path, key) });
      if (res.output === node.value) return;
      // Only an unquoted value is re-typed; keys, quoted values and fields Kubernetes defines as
      // strings stay strings. kustomize drops the quotes of `value: "${PORT}"`, so without the
      // last rule an env value would become a number and the API server would reject it.
      const retype = key !== "key" && node.type === Scalar.PLAIN && !isStringField(segments(path, key), kind);
      node.value = retype ? resolveCore(res.output) : res.output;
      if (node.type === Scalar.PLAIN) node.type = undefined;
    },
  });
  return missing;
}

const INT = /^[-+]?[0-9]+$/;
const HEX = /^0x[0-9a-fA-F]+$/;
const OCT = /^0o[0-7]+$/;
const FLOAT = /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$/;

/** The YAML 1.2 core schema's reading of a plain scalar's text (null becomes ""). */
export function resolveCore(s: string): string | number | boolean {
  if (s === "true" || s === "True" || s === "TRUE") return true;
  if (s === "false" || s === "False" || s === "FALSE") return false;
  if (INT.test(s)) {
    const n = Number(s);
    return Number.isSafeInteger(n) ? n : s;
  }
  if (HEX.test(s)) return Number.parseInt(s.slice(2), 16);
  if (OCT.test(s)) return Number.parseInt(s.slice(2), 8);
  if (FLOAT.test(s)) return Number(s);
  return s;
}

export type Segment = string | number;

function segments(path: readonly unknown[], key: unknown): Segment[] {
  const out: Segment[] = [];
  for (let i = 0; i < path.length; i++) {
    const n = path[i];
    const next = path[i + 1];
    if (isPair(n)) out.push(isScalar(n.key) ? String(n.key.value) : "?");
    else if (isSeq(n) && next !== undefined) out.push(n.items.indexOf(next as never));
  }
  if (typeof key === "number") out.push(key);
  return out;
}

/** Fields the Kubernetes API defines as strings, where a number-looking value must stay text. */
export function isStringField(seg: readonly Segment[], kind: string): boolean {
  const n = seg.length;
  const last = seg[n - 1];
  const parent = seg[n - 2];
  if (
    (kind === "ConfigMap" || kind === "Secret") &&
    (seg[0] === "data" || seg[0] === "stringData" || seg[0] === "binaryData")
  )
    return true;
  if ((parent === "labels" || parent === "annotations") && seg[n - 3] === "metadata") return true;
  if (last === "value" && typeof parent === "number" && seg[n - 3] === "env") return true;
  if (typeof last === "number" && (parent === "args" || parent === "command")) return true;
  if (last === "image" || last === "name" || last === "namespace") return true;
  return false;
}

function fieldPath(path: readonly unknown[], key: unknown): string {
  const out = formatSegments(segments(path, key));
  return key === "key" ? `${out} (key)` : out;
}

/** `spec.template.spec.containers[0].image` */
export function formatSegments(seg: readonly Segment[]): string {
  const s = seg
    .map((k) =>
      typeof k === "number" ? `[${k}]` : /^[A-Za-z0-9_-]+$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`,
    )
    .join("");
  return s.startsWith(".") ? s.slice(1) : s || "(document)";
}
