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
