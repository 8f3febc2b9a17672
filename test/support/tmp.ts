/** Temporary directory trees for tests, removed after the test file. */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after } from "node:test";

/** Creates a fresh directory with `files` (path → content; content `->target` makes a symlink). */
export function tree(files: Record<string, string>, prefix = "sluice-test-"): string {
  const root = mkdtempSync(join(tmpdir(), prefix));
  for (const [p, content] of Object.entries(files)) {
    const abs = join(root, p);
    mkdirSync(dirname(abs), { recursive: true });
    if (content.startsWith("->")) symlinkSync(content.slice(2), abs);
    else writeFileSync(abs, content);
  }
  after(() => rmSync(root, { recursive: true, force: true }));
  return root;
}
