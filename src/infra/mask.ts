/**
 * Sensitive values (outputs with `sensitive = true`) are kept only where substitution needs them;
 * every text that leaves the engine (progress, summary, errors, API answers) goes through a Masker
 * that knows every sensitive value the run has seen.
 */
export const MASK = "***";
export const SENSITIVE = "(sensitive)";

export class Masker {
  private readonly secrets = new Set<string>();

  /** Remembers a sensitive value (and, for lists and maps, every string inside it). */
  add(value: unknown): void {
    if (value === null || value === undefined) return;
    if (typeof value === "string") {
      // Very short values would mask ordinary words; they are still never printed as outputs.
      if (value.length >= 3) this.secrets.add(value);
      const json = JSON.stringify(value).slice(1, -1);
      if (json !== value && json.length >= 3) this.secrets.add(json);
      return;
    }
    if (typeof value === "number" || typeof value === "boolean") {
      if (String(value).length >= 3) this.secrets.add(String(value));
      return;
    }
    if (Array.isArray(value)) for (const v of value) this.add(v);
    else if (typeof value === "object") for (const v of Object.values(value)) this.add(v);
    const json = JSON.stringify(value);
    if (json.length >= 3) this.secrets.add(json);
  }

  /** The text with every known secret replaced by ***. Longest first, so parts never leak. */
  text(s: string): string {
    if (this.secrets.size === 0) return s;
    let out = s;
    for (const v of [...this.secrets].sort((a, b) => b.length - a.length)) {
      if (out.includes(v)) out = out.split(v).join(MASK);
    }
    return out;
  }
}
