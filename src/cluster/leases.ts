/**
 * Member Leases (`coordination.k8s.io/v1`): one per replica, `sluice-member-<id>`, renewed every
 * few seconds. The Lease's resourceVersion is what observers watch: each renewal changes it, and
 * an observer judges a member dead by its own clock (no clock is compared across machines), as
 * client-go's leader election does.
 */
import { createHash } from "node:crypto";
import { apiError, type KubeRequester, type KubeResponse } from "./kube.js";

export const LABEL_MEMBER = "sluice.dev/member";
export const ANNOTATION_REPLICA = "sluice.dev/replica-id";
export const ANNOTATION_ENVIRONMENTS = "sluice.dev/environments";
export const MEMBER_PREFIX = "sluice-member-";

export interface LeaseObject {
  apiVersion: "coordination.k8s.io/v1";
  kind: "Lease";
  metadata: {
    name: string;
    namespace: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** `sluice-member-<id>` as a valid object name (ids that are not get a hash suffix). */
export function memberLeaseName(id: string): string {
  const clean = id
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, "-")
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, "");
  const base = `${MEMBER_PREFIX}${clean}`;
  if (clean === id && base.length <= 253) return base;
  const h = createHash("sha256").update(id).digest("hex").slice(0, 8);
  return `${base.slice(0, 240)}-${h}`;
}

/** RFC 3339 with microseconds, as the API's MicroTime wants it. */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

export function leasesPath(namespace: string, name?: string): string {
  const base = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`;
  return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
}

/** The replica id a member Lease stands for; undefined when released (holder cleared). */
export function holderOf(l: LeaseObject): string | undefined {
  return l.spec.holderIdentity || undefined;
}

export function replicaOf(l: LeaseObject): string {
  return l.metadata.annotations?.[ANNOTATION_REPLICA] ?? l.spec.holderIdentity ?? l.metadata.name;
}

export async function listMemberLeases(api: KubeRequester, namespace: string, timeoutMs: number) {
  const res = await api.request("GET", `${leasesPath(namespace)}?labelSelector=${LABEL_MEMBER}%3Dtrue`, {
    timeoutMs,
  });
  if (res.status !== 200) throw apiError(res, `listing member Leases in ${namespace}`);
  return (res.body?.items ?? []) as LeaseObject[];
}

export function newMemberLease(namespace: string, id: string, durationMs: number, now: Date): LeaseObject {
  return {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: {
      name: memberLeaseName(id),
      namespace,
      labels: { [LABEL_MEMBER]: "true", "app.kubernetes.io/name": "sluice" },
      annotations: { [ANNOTATION_REPLICA]: id },
    },
    spec: {
      holderIdentity: id,
      leaseDurationSeconds: Math.max(1, Math.ceil(durationMs / 1000)),
      acquireTime: microTime(now),
      renewTime: microTime(now),
      leaseTransitions: 0,
    },
  };
}

/** PUT (update, with the resourceVersion as precondition) or POST (create). */
export async function writeLease(
  api: KubeRequester,
  lease: LeaseObject,
  create: boolean,
  timeoutMs: number,
): Promise<KubeResponse> {
  const { namespace, name } = lease.metadata;
  return create
    ? api.request("POST", leasesPath(namespace), { body: lease, timeoutMs })
    : api.request("PUT", leasesPath(namespace, name), { body: lease, timeoutMs });
}

/** Deletes a Lease only if it is still at `resourceVersion`. */
export async function deleteLease(
  api: KubeRequester,
  namespace: string,
  name: string,
  resourceVersion: string | undefined,
  timeoutMs: number,
): Promise<KubeResponse> {
  return api.request("DELETE", leasesPath(namespace, name), {
    timeoutMs,
    body: {
      apiVersion: "v1",
      kind: "DeleteOptions",
      ...(resourceVersion ? { preconditions: { resourceVersion } } : {}),
    },
  });
}
