/**
 * The Kubernetes object model as the rest of Sluice sees it: plain JSON objects with
 * apiVersion/kind/metadata, identified by their subject `Kind/namespace/name` (Flux's form).
 */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

/** Identity of an object, independent of its content. */
export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
}

export function refOf(o: KubeObject): ObjectRef {
  const ref: ObjectRef = { apiVersion: o.apiVersion, kind: o.kind, name: o.metadata.name };
  if (o.metadata.namespace) ref.namespace = o.metadata.namespace;
  return ref;
}

/** `Kind/namespace/name`, or `Kind/name` for cluster-scoped objects. */
export function subject(o: KubeObject | ObjectRef): string {
  const r = "metadata" in o ? refOf(o as KubeObject) : (o as ObjectRef);
  return r.namespace ? `${r.kind}/${r.namespace}/${r.name}` : `${r.kind}/${r.name}`;
}

/** The API group of an apiVersion (`apps/v1` → `apps`, `v1` → ``). */
export function groupOf(apiVersion: string): string {
  const i = apiVersion.lastIndexOf("/");
  return i < 0 ? "" : apiVersion.slice(0, i);
}

/** A stable key that ignores the version, so `apps/v1` and `apps/v1beta1` Deployments collide. */
export function objectKey(o: KubeObject | ObjectRef): string {
  const r = "metadata" in o ? refOf(o as KubeObject) : (o as ObjectRef);
  return `${groupOf(r.apiVersion)}|${r.kind}|${r.namespace ?? ""}|${r.name}`;
}

export function isKubeObject(v: unknown): v is KubeObject {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  const md = o.metadata as Record<string, unknown> | undefined;
  return (
    typeof o.apiVersion === "string" &&
    typeof o.kind === "string" &&
    typeof md === "object" &&
    md !== null &&
    typeof md.name === "string"
  );
}
