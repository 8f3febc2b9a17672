import semver from "semver";
import { SluiceError } from "../core/index.js";

const STRICT = /^v?(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

/** Masterminds-style range → node-semver range: `,` means AND; pre-releases only when the range has one. */
function translate(range: string): { range: string; includePrerelease: boolean } {
  const r = range.trim().replace(/\s*,\s*/g, " ");
  return { range: r, includePrerelease: /[0-9xX*]-[0-9A-Za-z]/.test(r) };
}

/**
 * The highest tag matching a semver range (Flux `ref.semver`): tags are parsed strictly
 * (X.Y.Z[-pre][+build], one optional leading `v`), others ignored; the original tag string is returned.
 * @throws SluiceError ConfigInvalid when the range does not parse.
 */
export function pickSemverTag(tags: Iterable<string>, range: string): string | undefined {
  const t = translate(range);
  if (t.range === "" || semver.validRange(t.range) === null) {
    throw new SluiceError(
      "ConfigInvalid",
      `invalid semver range ${JSON.stringify(range)} in spec.ref.semver`,
      {
        hint: "Use a range such as '>=1.0.0', '1.2.x', '^1.0' or '~1.2.3'.",
      },
    );
  }
  let best: { tag: string; v: semver.SemVer } | undefined;
  for (const tag of tags) {
    const m = STRICT.exec(tag);
    if (!m) continue;
    const v = semver.parse(tag.replace(/^v/, ""));
    if (!v) continue;
    if (!semver.satisfies(v, t.range, { includePrerelease: t.includePrerelease })) continue;
    if (!best || semver.compare(v, best.v) > 0 || (semver.compare(v, best.v) === 0 && tag < best.tag)) {
      best = { tag, v };
    }
  }
  return best?.tag;
}
