/**
 * Local drift check: would server-side applying `desired` as field manager `manager` change the
 * live object? Decided without a request, from the live object's `metadata.managedFields`.
 *
 * The fields an Apply manager owns are exactly the fields of its last applied configuration. So
 * the live object projected onto the fields `manager` owns (its `fieldsV1` set) must equal the
 * desired object: then the owned fields are the desired ones with the desired values, and a new
 * apply changes nothing. Every case this cannot decide with certainty (a value the API server
 * normalizes, such as the quantity `1000m` → `1`, a list element in another order, an unknown
 * path element) answers "differs", and the caller asks the API server (a server-side dry-run),
 * which stays the authority. A false "differs" costs one dry-run; a false "equal" is impossible
 * by construction, except for fields the server rewrites on every write (none in the core API).
 */

type Dict = Record<string, unknown>;
const ABSENT: unique symbol = Symbol("absent");
type Projected = unknown | typeof ABSENT;

export type Verdict = { equal: true } | { equal: false; why: string };

class Undecidable extends Error {}

const isDict = (v: unknown): v is Dict => typeof v === "object" && v !== null && !Array.isArray(v);

/** Fields server-side apply never records (as in the API server's field manager). */
function strip(desired: Dict): Dict {
  const c = structuredClone(desired);
  delete c.apiVersion;
  delete c.kind;
  delete c.status;
  const md = c.metadata;
  if (isDict(md)) {
    for (const k of [
      "name",
      "namespace",
      "creationTimestamp",
      "selfLink",
      "uid",
      "generation",
      "managedFields",
      "resourceVersion",
    ])
      delete md[k];
    if (Object.keys(md).length === 0) delete c.metadata;
  }
  return c;
}

/** JSON equality of two path-element keys' values (`k:{"name":"web"}` against a list element). */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => sameJson(x, b[i]));
  }
  if (isDict(a) && isDict(b)) {
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => k in b && sameJson(a[k], b[k]));
  }
  return false;
}

/** The part of `value` covered by the fieldsV1 `set`; ABSENT for an owned field not in `value`. */
function project(value: unknown, set: Dict): Projected {
  const keys = Object.keys(set).filter((k) => k !== ".");
  if (keys.length === 0) return value === undefined ? ABSENT : value;
  if (value === undefined || value === null) return ABSENT;
  const listKeys = keys.filter((k) => k.startsWith("k:") || k.startsWith("v:"));
  if (listKeys.length > 0) {
    if (listKeys.length !== keys.length || !Array.isArray(value)) throw new Undecidable("list shape");
    const picked: { index: number; item: Projected }[] = [];
    for (const k of keys) {
      const id = JSON.parse(k.slice(2)) as unknown;
      const sub = set[k];
      if (!isDict(sub)) throw new Undecidable("fieldsV1 shape");
      let index: number;
      if (k.startsWith("v:")) {
        index = value.findIndex((e) => sameJson(e, id));
      } else {
        if (!isDict(id)) throw new Undecidable("list key");
        index = value.findIndex((e) => isDict(e) && Object.entries(id).every(([f, v]) => sameJson(e[f], v)));
      }
      if (index < 0) throw new Undecidable(`owned list element ${k} is gone`);
      picked.push({ index, item: k.startsWith("v:") ? value[index] : project(value[index], sub) });
    }
    return picked.sort((a, b) => a.index - b.index).map((p) => p.item);
  }
  if (!isDict(value)) throw new Undecidable("map shape");
  const out: Dict = {};
  for (const k of keys) {
    if (!k.startsWith("f:")) throw new Undecidable(`path element ${k}`);
    const sub = set[k];
    if (!isDict(sub)) throw new Undecidable("fieldsV1 shape");
    const name = k.slice(2);
    out[name] = project(value[name], sub);
  }
  return out;
}

/** Nothing, as far as a server-side apply is concerned: absent, null, {} or []. */
function empty(v: unknown): boolean {
  return (
    v === ABSENT ||
    v === undefined ||
    v === null ||
    (Array.isArray(v) && v.length === 0) ||
    (isDict(v) && Object.keys(v).length === 0)
  );
}

function equal(projected: Projected, want: unknown, path: string): string | undefined {
  if (projected === ABSENT || want === undefined) {
    return empty(projected) && empty(want) ? undefined : `${path || "."} differs`;
  }
  if (Array.isArray(want)) {
    if (!Array.isArray(projected)) return `${path} differs`;
    if (projected.length !== want.length)
      return `${path} has ${projected.length} owned items, desired ${want.length}`;
    for (let i = 0; i < want.length; i++) {
      const d = equal(projected[i], want[i], `${path}[${i}]`);
      if (d) return d;
    }
    return undefined;
  }
  if (isDict(want)) {
    if (!isDict(projected)) return empty(want) && empty(projected) ? undefined : `${path} differs`;
    for (const k of new Set([...Object.keys(want), ...Object.keys(projected)])) {
      if (!(k in projected)) {
        if (want[k] === null) continue; // applying null owns nothing
        return `${path}.${k} is not owned`;
      }
      const d = equal(projected[k], want[k], `${path}.${k}`);
      if (d) return d;
    }
    return undefined;
  }
  if (want === null) return empty(projected) ? undefined : `${path} differs`;
  return projected === want ? undefined : `${path} differs`;
}

/** A Secret's `stringData` is write-only: the live object holds it base64-encoded in `data`. */
function withStringData(live: Dict, owned: Dict): Dict {
  const sd = owned["f:stringData"];
  if (live.kind !== "Secret" || !isDict(sd)) return live;
  const data = (isDict(live.data) ? live.data : {}) as Record<string, unknown>;
  const stringData: Record<string, string> = {};
  for (const k of Object.keys(sd)) {
    if (!k.startsWith("f:")) continue;
    const b64 = data[k.slice(2)];
    if (typeof b64 !== "string") continue;
    const text = Buffer.from(b64, "base64").toString("utf8");
    // Only when the text encodes back to the very same bytes (valid UTF-8).
    if (Buffer.from(text, "utf8").toString("base64") === b64) stringData[k.slice(2)] = text;
  }
  return { ...live, stringData };
}

/** The Apply entry of `manager` in the live object's managedFields (main resource only). */
export function appliedFields(live: Dict, manager: string): Dict | undefined {
  const mf = (live.metadata as Dict | undefined)?.managedFields;
  if (!Array.isArray(mf)) return undefined;
  return (mf as Dict[]).find(
    (e) => e.manager === manager && e.operation === "Apply" && !e.subresource && e.fieldsType === "FieldsV1",
  );
}

/** Does applying `desired` (as sent: labels set, namespace set) as `manager` leave `live` as it is? */
export function ownedFieldsEqual(desired: Dict, live: Dict, manager: string): Verdict {
  const entry = appliedFields(live, manager);
  if (!entry) return { equal: false, why: `no fields applied by ${manager}` };
  if (entry.apiVersion !== desired.apiVersion)
    return { equal: false, why: `fields recorded for ${String(entry.apiVersion)}` };
  const owned = entry.fieldsV1;
  if (!isDict(owned)) return { equal: false, why: "no fieldsV1" };
  try {
    const projected = project(withStringData(live, owned), owned);
    const d = equal(projected, strip(desired), "");
    return d ? { equal: false, why: d } : { equal: true };
  } catch (e) {
    if (e instanceof Undecidable) return { equal: false, why: e.message };
    throw e;
  }
}
