/**
 * Two rendered object sets → per-object create/update/delete with a unified diff of their YAML.
 * Secret `data`/`stringData` values never appear: both sides show `***`, and the head side shows
 * `*** (changed)` where the value differs, so a changed Secret reads as changed although neither
 * value is visible (the same convention as the targets' masked diffs).
 */
import { createTwoFilesPatch } from "diff";
import { type KubeObject, type ObjectRef, objectKey, refOf, subject } from "../core/index.js";
import { toYamlStream } from "../render/index.js";

export type ObjectAction = "create" | "update" | "delete";

export interface SecretKeyChange {
  field: "data" | "stringData";
  key: string;
  change: "added" | "removed" | "changed" | "unchanged";
}

export interface ObjectPlan {
  /** `Kind/namespace/name`. */
  subject: string;
  ref: ObjectRef;
  action: ObjectAction;
  /** Unified diff of the object's YAML (base → head), Secret values masked. */
  diff: string;
  /** For Secrets: which keys changed (never their values). */
  secretKeys?: SecretKeyChange[];
}

export interface ObjectSetDiff {
  objects: ObjectPlan[];
  counts: { create: number; update: number; delete: number; unchanged: number };
}

type Dict = Record<string, unknown>;

function isSecret(o: KubeObject | undefined): boolean {
  return !!o && o.kind === "Secret" && o.apiVersion === "v1";
}

/** JSON with sorted keys: equal for objects that differ only in key order. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, val) =>
    val && typeof val === "object" && !Array.isArray(val)
      ? Object.fromEntries(Object.entries(val as Dict).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : val,
  );
}

function secretMap(o: KubeObject | undefined, field: "data" | "stringData"): Dict {
  const m = o?.[field];
  return m && typeof m === "object" && !Array.isArray(m) ? (m as Dict) : {};
}

/** Masks Secret values of a base/head pair; returns the masked copies and the per-key changes. */
export function maskSecretPair(
  base: KubeObject | undefined,
  head: KubeObject | undefined,
): { base: KubeObject | undefined; head: KubeObject | undefined; keys: SecretKeyChange[] } {
  if (!isSecret(base) && !isSecret(head)) return { base, head, keys: [] };
  const keys: SecretKeyChange[] = [];
  const b = base ? (structuredClone(base) as KubeObject) : undefined;
  const h = head ? (structuredClone(head) as KubeObject) : undefined;
  for (const field of ["data", "stringData"] as const) {
    const bv = secretMap(base, field);
    const hv = secretMap(head, field);
    const all = [...new Set([...Object.keys(bv), ...Object.keys(hv)])].sort();
    for (const key of all) {
      const inB = key in bv;
      const inH = key in hv;
      const change: SecretKeyChange["change"] =
        inB && inH
          ? canonicalJson(bv[key]) === canonicalJson(hv[key])
            ? "unchanged"
            : "changed"
          : inH
            ? "added"
            : "removed";
      keys.push({ field, key, change });
    }
    if (b?.[field] && typeof b[field] === "object")
      b[field] = Object.fromEntries(Object.keys(bv).map((k) => [k, "***"]));
    if (h?.[field] && typeof h[field] === "object")
      h[field] = Object.fromEntries(
        Object.keys(hv).map((k) => [
          k,
          k in bv && canonicalJson(bv[k]) !== canonicalJson(hv[k]) ? "*** (changed)" : "***",
        ]),
      );
  }
  return { base: b, head: h, keys };
}

function yamlOf(o: KubeObject | undefined): string {
  return o ? toYamlStream([o]) : "";
}

/** The masked unified diff of one object between base and head (empty string when equal). */
export function objectDiff(subj: string, base: KubeObject | undefined, head: KubeObject | undefined): string {
  const m = maskSecretPair(base, head);
  return createTwoFilesPatch(
    base ? `base/${subj}` : "/dev/null",
    head ? `head/${subj}` : "/dev/null",
    yamlOf(m.base),
    yamlOf(m.head),
    undefined,
    undefined,
    { context: 3 },
  ).replace(/^=+\n/, "");
}

/** Compares two object sets by identity (group, kind, namespace, name). Order: head's, then deletions. */
export function diffObjectSets(base: readonly KubeObject[], head: readonly KubeObject[]): ObjectSetDiff {
  const byKey = new Map(base.map((o) => [objectKey(o), o]));
  const headKeys = new Set<string>();
  const objects: ObjectPlan[] = [];
  const counts = { create: 0, update: 0, delete: 0, unchanged: 0 };
  for (const h of head) {
    const key = objectKey(h);
    headKeys.add(key);
    const b = byKey.get(key);
    const subj = subject(h);
    if (b && canonicalJson(b) === canonicalJson(h)) {
      counts.unchanged++;
      continue;
    }
    const action: ObjectAction = b ? "update" : "create";
    counts[action]++;
    const keys = maskSecretPair(b, h).keys;
    objects.push({
      subject: subj,
      ref: refOf(h),
      action,
      diff: objectDiff(subj, b, h),
      ...(keys.length ? { secretKeys: keys } : {}),
    });
  }
  for (const b of base) {
    if (headKeys.has(objectKey(b))) continue;
    counts.delete++;
    const subj = subject(b);
    const keys = maskSecretPair(b, undefined).keys;
    objects.push({
      subject: subj,
      ref: refOf(b),
      action: "delete",
      diff: objectDiff(subj, b, undefined),
      ...(keys.length ? { secretKeys: keys } : {}),
    });
  }
  return { objects, counts };
}
