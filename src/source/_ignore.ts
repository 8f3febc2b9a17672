/**
 * The common subset of gitignore syntax, for Flux's `spec.ignore` and `.sourceignore` files:
 * comments (`#`), negation (`!`), escapes (`\#`, `\!`, `\ `), directory-only patterns (`dir/`),
 * anchoring (a pattern with a `/` other than a trailing one is relative to the file declaring it),
 * `*`, `?`, `[a-z]`/`[!a-z]` classes, and `**` (leading `**​/`, trailing `/**`, inner `/**​/`).
 * The last matching rule wins, and nothing inside an ignored directory can be re-included, as in git.
 * Not supported: trailing-space preservation nuances beyond `\ `, and `core.ignoreCase`.
 */

interface Rule {
  base: string; // "" or "dir/sub/" (with trailing slash)
  regex: RegExp;
  negate: boolean;
  dirOnly: boolean;
}

function globToRegex(glob: string): string {
  let re = "";
  let i = 0;
  while (i < glob.length) {
    const c = glob[i] as string;
    if (c === "*") {
      if (glob[i + 1] === "*") {
        const prevSlash = i === 0 || glob[i - 1] === "/";
        const next = glob[i + 2];
        if (prevSlash && next === "/") {
          re += "(?:.*/)?";
          i += 3;
          continue;
        }
        if (prevSlash && next === undefined) {
          re += ".*";
          i += 2;
          continue;
        }
        re += "[^/]*";
        i += 2;
        continue;
      }
      re += "[^/]*";
      i += 1;
    } else if (c === "?") {
      re += "[^/]";
      i += 1;
    } else if (c === "[") {
      const end = glob.indexOf("]", i + 2);
      if (end === -1) {
        re += "\\[";
        i += 1;
        continue;
      }
      let body = glob.slice(i + 1, end);
      let neg = false;
      if (body.startsWith("!") || body.startsWith("^")) {
        neg = true;
        body = body.slice(1);
      }
      body = body.replace(/\\/g, "\\\\").replace(/\]/g, "\\]");
      re += `[${neg ? "^" : ""}${body}]`;
      i = end + 1;
    } else if (c === "\\" && i + 1 < glob.length) {
      re += (glob[i + 1] as string).replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
      i += 2;
    } else {
      re += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
      i += 1;
    }
  }
  return re;
}

function parseLine(raw: string, base: string): Rule | undefined {
  let line = raw.replace(/\r$/, "");
  // Trailing spaces are dropped unless escaped.
  line = line.replace(/(?<!\\)\s+$/, "");
  if (line === "" || line.startsWith("#")) return undefined;
  let negate = false;
  if (line.startsWith("!")) {
    negate = true;
    line = line.slice(1);
  } else if (line.startsWith("\\!") || line.startsWith("\\#")) {
    line = line.slice(1);
  }
  let dirOnly = false;
  if (line.endsWith("/")) {
    dirOnly = true;
    line = line.replace(/\/+$/, "");
  }
  if (line === "") return undefined;
  const anchored = line.includes("/");
  if (line.startsWith("/")) line = line.slice(1);
  const body = globToRegex(line);
  const regex = anchored ? new RegExp(`^${body}$`) : new RegExp(`^(?:.*/)?${body}$`);
  return { base, regex, negate, dirOnly };
}

export class IgnoreMatcher {
  private readonly rules: Rule[] = [];
  private readonly dirCache = new Map<string, boolean>();

  /** Adds the patterns of one ignore file (or `spec.ignore`) declared in directory `base` ("" = root). */
  add(text: string, base = ""): this {
    const b = base === "" || base.endsWith("/") ? base : `${base}/`;
    for (const raw of text.split("\n")) {
      const r = parseLine(raw, b);
      if (r) this.rules.push(r);
    }
    this.dirCache.clear();
    return this;
  }

  get size(): number {
    return this.rules.length;
  }

  private matchSelf(path: string, isDir: boolean): boolean | undefined {
    let verdict: boolean | undefined;
    for (const r of this.rules) {
      if (r.dirOnly && !isDir) continue;
      if (r.base !== "" && !path.startsWith(r.base)) continue;
      const rel = path.slice(r.base.length);
      if (r.regex.test(rel)) verdict = !r.negate;
    }
    return verdict;
  }

  private dirIgnored(dir: string): boolean {
    const cached = this.dirCache.get(dir);
    if (cached !== undefined) return cached;
    const slash = dir.lastIndexOf("/");
    const parentIgnored = slash > 0 ? this.dirIgnored(dir.slice(0, slash)) : false;
    const result = parentIgnored || this.matchSelf(dir, true) === true;
    this.dirCache.set(dir, result);
    return result;
  }

  /** Whether `path` (slash-separated, relative to the repository root) is excluded. */
  ignores(path: string, isDir = false): boolean {
    const slash = path.lastIndexOf("/");
    if (slash > 0 && this.dirIgnored(path.slice(0, slash))) return true;
    return isDir ? this.dirIgnored(path) : this.matchSelf(path, false) === true;
  }
}
