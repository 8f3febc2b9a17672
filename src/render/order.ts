/**
 * Kustomize's legacy output order (its default), so a plain directory renders in the same order
 * a kustomization would: namespaces and CRDs before what lives in them, webhooks last, the rest
 * by group/version/kind with the core group written `~G`, then namespace and name.
 */
import { groupOf, type KubeObject } from "../core/index.js";

const FIRST = [
  "Namespace",
  "ResourceQuota",
  "StorageClass",
  "CustomResourceDefinition",
  "ServiceAccount",
  "PodSecurityPolicy",
  "Role",
  "ClusterRole",
  "RoleBinding",
  "ClusterRoleBinding",
  "ConfigMap",
  "Secret",
  "Endpoints",
  "Service",
  "LimitRange",
  "PriorityClass",
  "PersistentVolume",
  "PersistentVolumeClaim",
  "Deployment",
  "StatefulSet",
  "CronJob",
  "PodDisruptionBudget",
];
const LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"];

function rank(kind: string): number {
  const f = FIRST.indexOf(kind);
  if (f >= 0) return f;
  const l = LAST.indexOf(kind);
  if (l >= 0) return FIRST.length + 1 + l;
  return FIRST.length;
}

function gvk(o: KubeObject): string {
  const g = groupOf(o.apiVersion) || "~G";
  const v = o.apiVersion.includes("/") ? o.apiVersion.slice(o.apiVersion.lastIndexOf("/") + 1) : o.apiVersion;
  return `${g}_${v}_${o.kind}`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function compareLegacy(a: KubeObject, b: KubeObject): number {
  const ra = rank(a.kind);
  const rb = rank(b.kind);
  if (ra !== rb) return ra - rb;
  if (ra === FIRST.length) {
    const c = cmp(gvk(a), gvk(b));
    if (c) return c;
  }
  return cmp(a.metadata.namespace ?? "", b.metadata.namespace ?? "") || cmp(a.metadata.name, b.metadata.name);
}

/** Sorts a copy in kustomize's legacy order (stable). */
export function sortLegacy(objects: readonly KubeObject[]): KubeObject[] {
  return [...objects].sort(compareLegacy);
}
