/**
 * Test support (not part of the public API): a recorder that answers on 127.0.0.1 as the GitHub
 * REST API (`/api/v3`, GitHub Enterprise's layout) and the GitLab REST API (`/api/v4`) do for the
 * endpoints Sluice uses, with their payload shapes, status codes, pagination headers and auth
 * errors, and records every call (method, path, query, body). It keeps the state those calls
 * change (comments, notes, statuses, pull and merge requests), so the official clients can be
 * pointed at it and the calls they make asserted. It is the project's only stand-in for a forge.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedCall {
  forge: "github" | "gitlab";
  method: string;
  /** Path after the API prefix, URL-decoded per segment (`/repos/o/r/issues/1/comments`). */
  path: string;
  query: Record<string, string>;
  body: unknown;
  headers: Record<string, string | undefined>;
}

type Send = (status: number, payload: unknown, extra?: Record<string, string>) => true;

interface Failure {
  method: string;
  path: RegExp;
  status: number;
  times: number;
}

const GH_USER = {
  login: "sluice-bot",
  id: 4242,
  node_id: "MDQ6VXNlcjQyNDI=",
  avatar_url: "https://avatars.githubusercontent.com/u/4242?v=4",
  type: "Bot",
  site_admin: false,
};
const GL_USER = {
  id: 7,
  username: "sluice-bot",
  name: "Sluice",
  state: "active",
  avatar_url: "https://secure.gravatar.com/avatar/0?s=80&d=identicon",
  web_url: "http://127.0.0.1/sluice-bot",
};

interface GhComment {
  id: number;
  issue: number;
  body: string;
  created_at: string;
  updated_at: string;
}
interface GhPull {
  number: number;
  title: string;
  body: string;
  head: string;
  base: string;
  state: "open" | "closed";
}
interface GlNote {
  id: number;
  iid: number;
  body: string;
  system: boolean;
  created_at: string;
  updated_at: string;
}
interface GlMr {
  id: number;
  iid: number;
  title: string;
  description: string;
  source_branch: string;
  target_branch: string;
  state: "opened" | "closed" | "merged";
}

export interface Status {
  sha: string;
  state: string;
  context: string;
  description: string | null;
  target_url: string | null;
}

export class ForgeRecorder {
  readonly calls: RecordedCall[] = [];
  readonly githubComments: GhComment[] = [];
  readonly githubStatuses: Status[] = [];
  readonly githubPulls: GhPull[] = [];
  readonly gitlabNotes: GlNote[] = [];
  readonly gitlabStatuses: Status[] = [];
  readonly gitlabMrs: GlMr[] = [];
  private failures: Failure[] = [];
  private nextId = 1000;
  private server!: Server;
  url = "";

  private constructor(
    readonly githubToken: string,
    readonly gitlabToken: string,
  ) {}

  static async start(opts: { githubToken?: string; gitlabToken?: string } = {}): Promise<ForgeRecorder> {
    const r = new ForgeRecorder(opts.githubToken ?? "ghp_test", opts.gitlabToken ?? "glpat-test");
    r.server = createServer((req, res) => {
      r.handle(req, res).catch((e) => {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ message: String(e) }));
      });
    });
    await new Promise<void>((resolve) => r.server.listen(0, "127.0.0.1", resolve));
    r.url = `http://127.0.0.1:${(r.server.address() as AddressInfo).port}`;
    return r;
  }

  /** GitHub Enterprise-style API root. */
  get githubApi(): string {
    return `${this.url}/api/v3`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The next `times` calls matching answer `status` (a forge outage or a permission error). */
  fail(method: string, path: RegExp, status: number, times = 1): void {
    this.failures.push({ method, path, status, times });
  }

  callsOf(forge: "github" | "gitlab", method?: string, path?: RegExp): RecordedCall[] {
    return this.calls.filter(
      (c) => c.forge === forge && (!method || c.method === method) && (!path || path.test(c.path)),
    );
  }

  /** Every call as `METHOD path`, for order assertions. */
  trail(forge: "github" | "gitlab"): string[] {
    return this.callsOf(forge).map((c) => `${c.method} ${c.path}`);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<true> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString("utf8");
    const u = new URL(req.url ?? "/", this.url);
    const forge = u.pathname.startsWith("/api/v4/") ? "gitlab" : "github";
    const prefix = forge === "gitlab" ? "/api/v4" : u.pathname.startsWith("/api/v3/") ? "/api/v3" : "";
    const segs = u.pathname
      .slice(prefix.length)
      .split("/")
      .filter(Boolean)
      .map((s) => decodeURIComponent(s));
    const path = `/${segs.join("/")}`;
    let body: unknown = raw;
    const ctype = String(req.headers["content-type"] ?? "");
    if (raw && ctype.includes("json")) body = JSON.parse(raw);
    else if (raw && ctype.includes("x-www-form-urlencoded"))
      body = Object.fromEntries(new URLSearchParams(raw));
    else if (!raw) body = undefined;
    const headers: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v.join(", ") : v;
    const call: RecordedCall = {
      forge,
      method: req.method ?? "GET",
      path,
      query: Object.fromEntries(u.searchParams),
      body,
      headers,
    };
    this.calls.push(call);
    const send: Send = (status, payload, extra = {}) => {
      res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...extra });
      res.end(payload === undefined ? "" : JSON.stringify(payload));
      return true;
    };
    const f = this.failures.find((x) => x.times > 0 && x.method === call.method && x.path.test(path));
    if (f) {
      f.times--;
      return send(f.status, { message: f.status >= 500 ? "Server Error" : "Forbidden" });
    }
    if (forge === "github") return this.github(call, segs, send);
    return this.gitlab(call, segs, send);
  }

  private now(): string {
    return new Date().toISOString().replace(/\.\d+Z$/, "Z");
  }

  // --- GitHub ---------------------------------------------------------------------------------

  private ghComment(o: string, r: string, c: GhComment) {
    return {
      url: `${this.githubApi}/repos/${o}/${r}/issues/comments/${c.id}`,
      html_url: `${this.url}/${o}/${r}/pull/${c.issue}#issuecomment-${c.id}`,
      issue_url: `${this.githubApi}/repos/${o}/${r}/issues/${c.issue}`,
      id: c.id,
      node_id: `IC_kwDO${c.id}`,
      user: GH_USER,
      created_at: c.created_at,
      updated_at: c.updated_at,
      author_association: "NONE",
      body: c.body,
      reactions: { url: "", total_count: 0 },
      performed_via_github_app: null,
    };
  }

  private ghPull(o: string, r: string, p: GhPull) {
    return {
      url: `${this.githubApi}/repos/${o}/${r}/pulls/${p.number}`,
      id: 100000 + p.number,
      node_id: `PR_kwDO${p.number}`,
      html_url: `${this.url}/${o}/${r}/pull/${p.number}`,
      number: p.number,
      state: p.state,
      locked: false,
      title: p.title,
      user: GH_USER,
      body: p.body,
      created_at: this.now(),
      updated_at: this.now(),
      draft: false,
      head: { label: `${o}:${p.head}`, ref: p.head, sha: "0".repeat(40), user: GH_USER, repo: null },
      base: { label: `${o}:${p.base}`, ref: p.base, sha: "0".repeat(40), user: GH_USER, repo: null },
      merged: false,
      mergeable: null,
    };
  }

  private github(call: RecordedCall, s: string[], send: Send): true {
    const auth = call.headers.authorization ?? "";
    if (auth !== `token ${this.githubToken}` && auth !== `Bearer ${this.githubToken}`)
      return send(401, {
        message: "Bad credentials",
        documentation_url: "https://docs.github.com/rest",
        status: "401",
      });
    const b = (call.body ?? {}) as Record<string, unknown>;
    if (s[0] !== "repos" || s.length < 4) return send(404, { message: "Not Found", status: "404" });
    const [, o, r] = s as [string, string, string];
    const m = call.method;
    // GET/POST /repos/o/r/issues/:n/comments
    if (s[3] === "issues" && s[5] === "comments" && s.length === 6) {
      const issue = Number(s[4]);
      if (m === "GET") {
        const all = this.githubComments.filter((c) => c.issue === issue);
        const per = Math.min(100, Number(call.query.per_page ?? 30));
        const page = Number(call.query.page ?? 1);
        const items = all.slice((page - 1) * per, page * per);
        const last = Math.max(1, Math.ceil(all.length / per));
        const link: Record<string, string> =
          page < last
            ? {
                link: `<${this.githubApi}/repos/${o}/${r}/issues/${issue}/comments?per_page=${per}&page=${page + 1}>; rel="next", <${this.githubApi}/repos/${o}/${r}/issues/${issue}/comments?per_page=${per}&page=${last}>; rel="last"`,
              }
            : {};
        return send(
          200,
          items.map((c) => this.ghComment(o, r, c)),
          link,
        );
      }
      if (m === "POST") {
        if (typeof b.body !== "string") return send(422, { message: "Validation Failed" });
        const c: GhComment = {
          id: this.nextId++,
          issue,
          body: b.body,
          created_at: this.now(),
          updated_at: this.now(),
        };
        this.githubComments.push(c);
        return send(201, this.ghComment(o, r, c));
      }
    }
    // PATCH /repos/o/r/issues/comments/:id
    if (s[3] === "issues" && s[4] === "comments" && s.length === 6 && m === "PATCH") {
      const c = this.githubComments.find((x) => x.id === Number(s[5]));
      if (!c) return send(404, { message: "Not Found" });
      if (typeof b.body !== "string") return send(422, { message: "Validation Failed" });
      c.body = b.body;
      c.updated_at = this.now();
      return send(200, this.ghComment(o, r, c));
    }
    // POST /repos/o/r/statuses/:sha
    if (s[3] === "statuses" && s.length === 5 && m === "POST") {
      const state = String(b.state);
      if (!["error", "failure", "pending", "success"].includes(state))
        return send(422, { message: "Validation Failed", errors: [{ field: "state", code: "invalid" }] });
      const st: Status = {
        sha: s[4]!,
        state,
        context: typeof b.context === "string" ? b.context : "default",
        description: typeof b.description === "string" ? b.description : null,
        target_url: typeof b.target_url === "string" ? b.target_url : null,
      };
      this.githubStatuses.push(st);
      return send(201, {
        url: `${this.githubApi}/repos/${o}/${r}/statuses/${st.sha}`,
        avatar_url: GH_USER.avatar_url,
        id: this.nextId++,
        node_id: "SC_kwDO",
        state: st.state,
        description: st.description,
        target_url: st.target_url,
        context: st.context,
        created_at: this.now(),
        updated_at: this.now(),
        creator: GH_USER,
      });
    }
    // GET/POST /repos/o/r/pulls
    if (s[3] === "pulls" && s.length === 4) {
      if (m === "GET") {
        const head = call.query.head;
        const list = this.githubPulls.filter(
          (p) =>
            (call.query.state === "all" || p.state === (call.query.state ?? "open")) &&
            (!head || `${o}:${p.head}` === head) &&
            (!call.query.base || p.base === call.query.base),
        );
        return send(
          200,
          list.map((p) => this.ghPull(o, r, p)),
        );
      }
      if (m === "POST") {
        if (this.githubPulls.some((p) => p.state === "open" && p.head === b.head && p.base === b.base))
          return send(422, {
            message: "Validation Failed",
            errors: [
              {
                resource: "PullRequest",
                code: "custom",
                message: `A pull request already exists for ${o}:${b.head}.`,
              },
            ],
          });
        const p: GhPull = {
          number: this.githubPulls.length + 1,
          title: String(b.title),
          body: String(b.body ?? ""),
          head: String(b.head),
          base: String(b.base),
          state: "open",
        };
        this.githubPulls.push(p);
        return send(201, this.ghPull(o, r, p));
      }
    }
    // PATCH /repos/o/r/pulls/:n
    if (s[3] === "pulls" && s.length === 5 && m === "PATCH") {
      const p = this.githubPulls.find((x) => x.number === Number(s[4]));
      if (!p) return send(404, { message: "Not Found" });
      if (typeof b.title === "string") p.title = b.title;
      if (typeof b.body === "string") p.body = b.body;
      return send(200, this.ghPull(o, r, p));
    }
    return send(404, { message: "Not Found", documentation_url: "https://docs.github.com/rest" });
  }

  // --- GitLab ---------------------------------------------------------------------------------

  private glNote(n: GlNote) {
    return {
      id: n.id,
      type: null,
      body: n.body,
      author: GL_USER,
      created_at: n.created_at,
      updated_at: n.updated_at,
      system: n.system,
      noteable_id: 5000 + n.iid,
      noteable_type: "MergeRequest",
      project_id: 14,
      resolvable: false,
      confidential: false,
      internal: false,
      noteable_iid: n.iid,
      commands_changes: {},
    };
  }

  private glMr(project: string, m: GlMr) {
    return {
      id: m.id,
      iid: m.iid,
      project_id: 14,
      title: m.title,
      description: m.description,
      state: m.state,
      created_at: this.now(),
      updated_at: this.now(),
      target_branch: m.target_branch,
      source_branch: m.source_branch,
      author: GL_USER,
      source_project_id: 14,
      target_project_id: 14,
      draft: false,
      merge_status: "can_be_merged",
      detailed_merge_status: "mergeable",
      sha: "0".repeat(40),
      web_url: `${this.url}/${project}/-/merge_requests/${m.iid}`,
    };
  }

  private gitlab(call: RecordedCall, s: string[], send: Send): true {
    if (call.headers["private-token"] !== this.gitlabToken) return send(401, { message: "401 Unauthorized" });
    const b = (call.body ?? {}) as Record<string, unknown>;
    const q = call.query;
    if (s[0] !== "projects" || s.length < 3) return send(404, { message: "404 Not Found" });
    const project = s[1]!;
    const m = call.method;
    // /projects/:id/merge_requests/:iid/notes[/:note_id]
    if (s[2] === "merge_requests" && s[4] === "notes") {
      const iid = Number(s[3]);
      if (s.length === 5 && m === "GET") {
        let all = this.gitlabNotes.filter((n) => n.iid === iid);
        if (q.sort === "desc") all = [...all].reverse();
        const per = Math.min(100, Number(q.per_page ?? 20));
        const page = Number(q.page ?? 1);
        const pages = Math.max(1, Math.ceil(all.length / per));
        return send(
          200,
          all.slice((page - 1) * per, page * per).map((n) => this.glNote(n)),
          {
            "x-page": String(page),
            "x-per-page": String(per),
            "x-total": String(all.length),
            "x-total-pages": String(pages),
            "x-next-page": page < pages ? String(page + 1) : "",
            "x-prev-page": page > 1 ? String(page - 1) : "",
          },
        );
      }
      if (s.length === 5 && m === "POST") {
        if (typeof b.body !== "string") return send(400, { message: "400 Bad request - body is missing" });
        const n: GlNote = {
          id: this.nextId++,
          iid,
          body: b.body,
          system: false,
          created_at: this.now(),
          updated_at: this.now(),
        };
        this.gitlabNotes.push(n);
        return send(201, this.glNote(n));
      }
      if (s.length === 6 && m === "PUT") {
        const n = this.gitlabNotes.find((x) => x.id === Number(s[5]) && x.iid === iid);
        if (!n) return send(404, { message: "404 Not found" });
        if (typeof b.body === "string") n.body = b.body;
        n.updated_at = this.now();
        return send(200, this.glNote(n));
      }
    }
    // POST /projects/:id/statuses/:sha
    if (s[2] === "statuses" && s.length === 4 && m === "POST") {
      const state = String(b.state);
      if (!["pending", "running", "success", "failed", "canceled", "skipped"].includes(state))
        return send(400, { message: "state does not have a valid value" });
      const st: Status = {
        sha: s[3]!,
        state,
        context: typeof b.name === "string" ? b.name : typeof b.context === "string" ? b.context : "default",
        description: typeof b.description === "string" ? b.description : null,
        target_url: typeof b.target_url === "string" ? b.target_url : null,
      };
      this.gitlabStatuses.push(st);
      return send(201, {
        id: this.nextId++,
        sha: st.sha,
        ref: null,
        status: st.state,
        name: st.context,
        target_url: st.target_url,
        description: st.description,
        created_at: this.now(),
        started_at: null,
        finished_at: null,
        allow_failure: false,
        coverage: null,
        pipeline_id: 1,
        author: GL_USER,
      });
    }
    // GET/POST /projects/:id/merge_requests
    if (s[2] === "merge_requests" && s.length === 3) {
      if (m === "GET") {
        const list = this.gitlabMrs.filter(
          (x) =>
            (!q.state || q.state === "all" || x.state === q.state) &&
            (!q.source_branch || x.source_branch === q.source_branch) &&
            (!q.target_branch || x.target_branch === q.target_branch),
        );
        return send(
          200,
          list.map((x) => this.glMr(project, x)),
          {
            "x-page": "1",
            "x-per-page": "20",
            "x-total": String(list.length),
            "x-total-pages": "1",
            "x-next-page": "",
          },
        );
      }
      if (m === "POST") {
        if (
          this.gitlabMrs.some(
            (x) =>
              x.state === "opened" &&
              x.source_branch === b.source_branch &&
              x.target_branch === b.target_branch,
          )
        )
          return send(409, { message: ["Another open merge request already exists for this source branch"] });
        const mr: GlMr = {
          id: this.nextId++,
          iid: this.gitlabMrs.length + 1,
          title: String(b.title),
          description: String(b.description ?? ""),
          source_branch: String(b.source_branch),
          target_branch: String(b.target_branch),
          state: "opened",
        };
        this.gitlabMrs.push(mr);
        return send(201, this.glMr(project, mr));
      }
    }
    // PUT /projects/:id/merge_requests/:iid
    if (s[2] === "merge_requests" && s.length === 4 && m === "PUT") {
      const mr = this.gitlabMrs.find((x) => x.iid === Number(s[3]));
      if (!mr) return send(404, { message: "404 Not found" });
      if (typeof b.title === "string") mr.title = b.title;
      if (typeof b.description === "string") mr.description = b.description;
      return send(200, this.glMr(project, mr));
    }
    return send(404, { error: "404 Not Found" });
  }
}
