/**
 * Filesystem access confined to a root, like Flux's securejoin: every path a repository names is
 * resolved (`..`, absolute paths and symlink chains included) and must stay inside the root.
 * A path that escapes is an error naming it, never a silent clamp: a manifest that points outside
 * the repository is a bug or an attack, and either way the user must see it.
 */
import { readFileSync, realpathSync, statSync } from "node:fs";
import { isAbsolute, relative, resolve, sep } from "node:path";
import { SluiceError } from "./errors.js";

/** Resolves `rel` (relative to `base`, itself inside `root`) and checks it stays under `root`. */
export function secureResolve(root: string, rel: string, base: string = root): string {
  const realRoot = realpathSync(root);
  const wanted = isAbsolute(rel) ? rel : resolve(base, rel);
  // Lexical check first: `..` that climbs out is refused even when the target does not exist.
  const lexical = resolve(wanted);
  if (!isInside(resolve(root), lexical) && !isInside(realRoot, lexical)) {
    throw escapeError(root, rel, "it climbs out of the repository");
  }
  let real: string;
  try {
    real = realpathSync(lexical);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return lexical;
    // A symlink loop is hostile content too: a SluiceError naming the path, not a raw ELOOP.
    if (code === "ELOOP")
      throw new SluiceError("PathEscape", `path ${JSON.stringify(rel)} in ${root} is a symlink loop`, {
        detail: { path: rel },
        hint: "remove the symlink loop from the repository",
      });
    throw e;
  }
  if (!isInside(realRoot, real)) throw escapeError(root, rel, `it resolves to ${real} through a symlink`);
  return real;
}

export function isInside(root: string, p: string): boolean {
  const r = relative(root, p);
  return r === "" || (!r.startsWith(`..${sep}`) && r !== ".." && !isAbsolute(r));
}

/** Reads a file inside `root`, refusing escapes and files over `maxBytes`. */
export function secureReadFile(root: string, rel: string, maxBytes: number, base: string = root): string {
  const p = secureResolve(root, rel, base);
  const st = statSync(p);
  if (st.size > maxBytes) {
    throw new SluiceError(
      "FileTooLarge",
      `${relative(root, p) || p}: ${st.size} bytes is over the limit of ${maxBytes} bytes`,
      {
        detail: { file: relative(root, p) },
        hint: "split the file, or raise the limit (--max-file-bytes)",
      },
    );
  }
  return readFileSync(p, "utf8");
}

function escapeError(root: string, rel: string, why: string): SluiceError {
  return new SluiceError(
    "PathEscape",
    `path ${JSON.stringify(rel)} is outside the repository root ${root}: ${why}`,
    {
      detail: { path: rel },
      hint: "keep every path inside the repository; symlinks must point inside it too",
    },
  );
}
