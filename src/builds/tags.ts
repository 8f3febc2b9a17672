/**
 * The seed's tag rule (seed 003): a commit with a release tag `v1.0.2` is tagged `1.0.2` (the
 * `v` dropped, like docker/metadata-action's `{{version}}`); any other commit is tagged with the
 * first 10 characters of its id. Every build is also tagged `latest`.
 */
const SEMVER_TAG = /^v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)$/;

export function imageTags(opts: { commit: string; gitTag?: string | undefined }): string[] {
  if (!/^[0-9a-f]{40}$/.test(opts.commit)) throw new Error(`not a full commit id: ${opts.commit}`);
  const m = opts.gitTag ? SEMVER_TAG.exec(opts.gitTag) : null;
  // A '+' is not allowed in image tags; build metadata becomes '_' as Flux and Helm do.
  const primary = m ? m[1]!.replace(/\+/g, "_") : opts.commit.slice(0, 10);
  return [primary, "latest"];
}

const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/**
 * A Build's `tags` templates for one commit: `{{sha}}`, `{{sha.short}}` (10 characters),
 * `{{tag}}` (the Git tag), `{{tag.semver}}` (its version without `v`), `{{branch.slug}}`. A
 * template using a field this build lacks (a tag on a branch build) gives no tag. Without
 * templates: the seed's rule ({@link imageTags}).
 * @throws Error for an unknown field or a result that is not a valid image tag.
 */
export function expandTags(
  templates: string[] | undefined,
  ctx: { commit: string; gitTag?: string; branch?: string },
): string[] {
  if (!templates) return imageTags({ commit: ctx.commit, gitTag: ctx.gitTag });
  const semver = ctx.gitTag ? SEMVER_TAG.exec(ctx.gitTag)?.[1]?.replace(/\+/g, "_") : undefined;
  const out: string[] = [];
  for (const t of templates) {
    let missing = false;
    const v = t.replace(/\{\{\s*([a-z.]+)\s*\}\}/g, (_m, f: string) => {
      const val =
        f === "sha"
          ? ctx.commit
          : f === "sha.short"
            ? ctx.commit.slice(0, 10)
            : f === "tag"
              ? ctx.gitTag
              : f === "tag.semver"
                ? semver
                : f === "branch.slug"
                  ? ctx.branch
                      ?.toLowerCase()
                      .replace(/[^a-z0-9_.-]+/g, "-")
                      .replace(/^[-.]+|-+$/g, "")
                  : (() => {
                      throw new Error(`unknown tag template field {{${f}}} in ${JSON.stringify(t)}`);
                    })();
      if (!val) missing = true;
      return val ?? "";
    });
    if (missing) continue;
    if (!TAG.test(v))
      throw new Error(`tag template ${JSON.stringify(t)} gives ${JSON.stringify(v)}, not a valid image tag`);
    if (!out.includes(v)) out.push(v);
  }
  if (!out.length) throw new Error(`no tag template gives a tag for ${ctx.commit.slice(0, 10)}`);
  return out;
}
