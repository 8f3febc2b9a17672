/**
 * Source URL checks and redaction. A GitRepository URL comes from a repository, so it is untrusted
 * input: it must not reach git's `ext::` transport (command execution), must not point at cloud
 * metadata endpoints (SSRF that leaks instance credentials), and must never carry credentials into
 * a log line. Userinfo in a URL is accepted but moved into an Authorization header before git sees
 * the URL.
 */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { SluiceError } from "../core/index.js";

export interface ParsedSourceUrl {
  /** The URL git is given: userinfo removed. */
  gitUrl: string;
  scheme: "http" | "https" | "ssh" | "file";
  /** Host name or IP (brackets removed); empty for file URLs. */
  host: string;
  /** Credentials found in the URL's userinfo, if any. */
  username?: string;
  password?: string;
}

/** Replaces the userinfo of every URL in `text` with `***`. */
export function redactUrls(text: string): string {
  return text.replace(/([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^/\s@'"]*@/g, "$1***@");
}

/** Redacts one URL for messages (userinfo removed, also for scp-like ssh forms with a password). */
export function redactUrl(url: string): string {
  // scp-like `user:password@host:path` has no scheme for redactUrls to anchor on.
  return redactUrls(url).replace(/^[^@/\s:]+:[^@/\s]*@/, "***@");
}

function refuse(url: string, why: string, hint: string): SluiceError {
  return new SluiceError("ArtifactFailed", `source URL ${redactUrl(url)} refused: ${why}`, { hint });
}

const SCP_LIKE = /^(?:([^@/\s]+)@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?!\/\/)(.+)$/;

/** Parses and validates a source URL syntactically (no DNS). */
export function parseSourceUrl(url: string, opts: { allowFile: boolean }): ParsedSourceUrl {
  if (url.length === 0 || url.length > 2048) {
    throw refuse(url.slice(0, 80), "empty or longer than 2048 characters", "Set spec.url to a Git URL.");
  }
  // git's remote-helper syntax `<transport>::<address>` (ext::, fd::, …) runs arbitrary helpers.
  if (/^[A-Za-z0-9+.-]+::/.test(url)) {
    throw refuse(url, "the `<transport>::` helper syntax is not allowed", "Use an http(s), ssh or file URL.");
  }
  if (/[\s\0]/.test(url) || url.startsWith("-")) {
    throw refuse(url, "it contains whitespace or starts with '-'", "Set spec.url to a plain Git URL.");
  }
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(url);
  if (!m) {
    const scp = SCP_LIKE.exec(url);
    if (scp) {
      const host = (scp[2] ?? "").replace(/^\[|\]$/g, "");
      return { gitUrl: url, scheme: "ssh", host };
    }
    throw refuse(url, "not a URL git can fetch", "Use http://, https://, ssh:// or user@host:path.");
  }
  const scheme = (m[1] ?? "").toLowerCase();
  if (scheme !== "http" && scheme !== "https" && scheme !== "ssh" && scheme !== "file") {
    throw refuse(url, `scheme ${scheme}:// is not supported`, "Use http://, https://, ssh:// or file://.");
  }
  if (scheme === "file") {
    if (!opts.allowFile) {
      throw refuse(
        url,
        "file:// URLs are disabled",
        "Serve the repository over http(s) or ssh, or enable local file sources in the agent's configuration.",
      );
    }
    return { gitUrl: url, scheme, host: "" };
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw refuse(url, "it does not parse as a URL", "Check spec.url.");
  }
  const host = u.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (host === "") throw refuse(url, "it has no host", "Check spec.url.");
  const out: ParsedSourceUrl = { gitUrl: url, scheme, host };
  if (u.username !== "" || u.password !== "") {
    if (scheme === "ssh") {
      // ssh://git@host/… names the login user; a password there is never sent by ssh.
      if (u.password !== "") throw refuse(url, "ssh URLs cannot carry a password", "Use spec.secretRef.");
    } else {
      out.username = decodeURIComponent(u.username);
      out.password = decodeURIComponent(u.password);
      u.username = "";
      u.password = "";
      out.gitUrl = u.toString();
    }
  }
  return out;
}

/** True for link-local, cloud-metadata and other addresses a repository must not make us call. */
export function isMetadataAddress(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, "");
  if (h === "metadata.google.internal" || h === "metadata" || h === "instance-data") return true;
  const kind = isIP(h);
  if (kind === 4) return h.startsWith("169.254.");
  if (kind === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
    if (mapped) return isMetadataAddress(mapped[1] ?? "");
    const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(h);
    if (hex) {
      const hi = Number.parseInt(hex[1] ?? "0", 16);
      return hi >> 8 === 169 && (hi & 0xff) === 254;
    }
    if (/^fe[89ab][0-9a-f]:/.test(h)) return true; // fe80::/10
    return expandV6(h) === expandV6("fd00:ec2::254");
  }
  return false;
}

function expandV6(a: string): string {
  const [head = "", tail] = a.split("::");
  const hs = head === "" ? [] : head.split(":");
  const ts = tail === undefined || tail === "" ? [] : tail.split(":");
  const fill = tail === undefined ? [] : new Array(8 - hs.length - ts.length).fill("0");
  return [...hs, ...fill, ...ts].map((p) => p.padStart(4, "0")).join(":");
}

function hostAllowed(host: string, allowed: readonly string[]): boolean {
  return allowed.some((pattern) => {
    const p = pattern.toLowerCase();
    if (p.startsWith("*.")) return host.endsWith(p.slice(1));
    return host === p;
  });
}

/**
 * Full check: syntax, host allow-list, and the metadata/link-local refusal on the literal host and
 * on every address it resolves to (a DNS name pointing at 169.254.169.254 is refused too).
 */
export async function checkSourceUrl(
  url: string,
  opts: { allowFile: boolean; allowLinkLocal: boolean; allowedHosts?: readonly string[] },
): Promise<ParsedSourceUrl> {
  const parsed = parseSourceUrl(url, opts);
  if (parsed.scheme === "file") return parsed;
  if (opts.allowedHosts && !hostAllowed(parsed.host, opts.allowedHosts)) {
    throw refuse(
      url,
      `host ${parsed.host} is not in the allowed hosts`,
      "Add the host to the agent's allowedHosts, or use a permitted Git host.",
    );
  }
  if (opts.allowLinkLocal) return parsed;
  const linkLocalHint =
    "Link-local and cloud metadata addresses are refused to prevent SSRF; allow them explicitly (allowLinkLocal) if this is intended.";
  if (isMetadataAddress(parsed.host))
    throw refuse(url, "it points at a link-local/metadata address", linkLocalHint);
  if (isIP(parsed.host) === 0) {
    let addrs: { address: string }[] = [];
    try {
      addrs = await lookup(parsed.host, { all: true, verbatim: true });
    } catch {
      // Unresolvable: git will report the failure itself, with its own message.
    }
    for (const a of addrs) {
      if (isMetadataAddress(a.address)) {
        throw refuse(url, `host ${parsed.host} resolves to link-local address ${a.address}`, linkLocalHint);
      }
    }
  }
  return parsed;
}
