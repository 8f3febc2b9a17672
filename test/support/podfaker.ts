/**
 * A stand-in kubelet for the test control plane (kube-apiserver + etcd + kube-controller-manager,
 * no nodes): the real controllers create ReplicaSets and Pods, and this marks each Pod's status
 * the way a kubelet reports it, through the `pods/status` subresource — Running and Ready, or,
 * for an image it "cannot pull", Pending with the container waiting in `ImagePullBackOff`. The
 * ReplicaSet and Deployment controllers then compute the Deployment's status themselves
 * (readyReplicas, availableReplicas, conditions, ProgressDeadlineExceeded).
 *
 * Pods are never bound to a node, so the API server deletes them at once when a controller
 * scales a ReplicaSet down: no kubelet is needed to finish a deletion.
 */
import { KubeClient } from "../../src/targets/kubernetes/client.js";
import type { ControlPlane } from "./controlplane.js";

export interface PodStatusFaker {
  /** Pods marked Ready so far. */
  readonly ready: number;
  /** Pods marked as failing to pull their image so far. */
  readonly failing: number;
  stop(): Promise<void>;
}

export interface PodStatusFakerOptions {
  /** Namespaces to watch (by polling). */
  namespaces: string[];
  /** Images that never pull; by default any image whose tag is `unpullable`. */
  unpullable?: (image: string) => boolean;
  /** Polling interval; 200 ms by default. */
  intervalMs?: number;
}

type Dict = Record<string, any>;

export function podStatusFaker(cp: ControlPlane, opts: PodStatusFakerOptions): PodStatusFaker {
  const kube = new KubeClient(cp.kubeconfigPath);
  const unpullable = opts.unpullable ?? ((image: string) => image.endsWith(":unpullable"));
  const done = new Set<string>();
  let ready = 0;
  let failing = 0;
  let stopped = false;

  const mark = async (pod: Dict): Promise<void> => {
    const containers = (pod.spec?.containers ?? []) as Dict[];
    const bad = containers.some((c) => unpullable(String(c.image)));
    const now = new Date().toISOString();
    const cond = (type: string, ok: boolean, reason?: string) => ({
      type,
      status: ok ? "True" : "False",
      lastTransitionTime: now,
      ...(reason ? { reason } : {}),
    });
    const status = bad
      ? {
          phase: "Pending",
          startTime: now,
          conditions: [
            cond("PodScheduled", true),
            cond("Initialized", true),
            cond("ContainersReady", false, "ContainersNotReady"),
            cond("Ready", false, "ContainersNotReady"),
          ],
          containerStatuses: containers.map((c) => ({
            name: c.name,
            image: c.image,
            imageID: "",
            ready: false,
            started: false,
            restartCount: 0,
            state: unpullable(String(c.image))
              ? {
                  waiting: {
                    reason: "ImagePullBackOff",
                    message: `Back-off pulling image "${c.image}"`,
                  },
                }
              : { waiting: { reason: "PodInitializing" } },
          })),
        }
      : {
          phase: "Running",
          startTime: now,
          podIP: "10.244.0.10",
          conditions: [
            cond("PodScheduled", true),
            cond("Initialized", true),
            cond("ContainersReady", true),
            cond("Ready", true),
          ],
          containerStatuses: containers.map((c) => ({
            name: c.name,
            image: c.image,
            imageID: `${c.image}@sha256:${"0".repeat(64)}`,
            ready: true,
            started: true,
            restartCount: 0,
            state: { running: { startedAt: now } },
          })),
        };
    const res = await kube.request(
      "PATCH",
      `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/status?fieldManager=fake-kubelet`,
      { body: { status }, contentType: "application/merge-patch+json", timeoutMs: 5000 },
    );
    if (res.status === 200) {
      done.add(pod.metadata.uid);
      if (bad) failing++;
      else ready++;
    }
  };

  const loop = (async () => {
    while (!stopped) {
      for (const ns of opts.namespaces) {
        if (stopped) break;
        try {
          const res = await kube.request("GET", `/api/v1/namespaces/${ns}/pods`, { timeoutMs: 5000 });
          for (const pod of (res.body?.items ?? []) as Dict[]) {
            if (stopped) break;
            if (pod.metadata.deletionTimestamp || done.has(pod.metadata.uid)) continue;
            await mark(pod);
          }
        } catch {
          // The API server may be restarting; try again next round.
        }
      }
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 200));
    }
  })();

  return {
    get ready() {
      return ready;
    },
    get failing() {
      return failing;
    },
    async stop() {
      stopped = true;
      await loop;
      kube.close();
    },
  };
}
