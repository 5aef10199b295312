/**
 * HTML built from tagged templates: every interpolated value is escaped unless it is already {@link Html} (the
 * output of another template or of {@link raw}), so attacker-controlled keys, values and tags can only ever be
 * text. Attribute values in the templates are always double-quoted.
 */

const HtmlTypeId = "~effect-cacheme/admin/Html" as const

/** A fragment of trusted HTML. */
export interface Html {
  readonly [HtmlTypeId]: typeof HtmlTypeId
  readonly value: string
}

/** What a template accepts: text (escaped), numbers, fragments, lists of them; `undefined`, `null`, `false` print nothing. */
export type Part = Html | string | number | boolean | null | undefined | ReadonlyArray<Part>

const entities: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
  "`": "&#96;"
}

/** Escapes text for an HTML text node or a quoted attribute value. */
export const escapeHtml = (text: string): string => text.replace(/[&<>"'`]/g, (char) => entities[char]!)

const isHtml = (u: unknown): u is Html => typeof u === "object" && u !== null && HtmlTypeId in u

/** Marks a string as trusted HTML. Only for constants of this package, never for data. */
export const raw = (value: string): Html => ({ [HtmlTypeId]: HtmlTypeId, value })

const render = (part: Part): string => {
  if (part === undefined || part === null || part === false) return ""
  if (isHtml(part)) return part.value
  if (Array.isArray(part)) return part.map(render).join("")
  return escapeHtml(String(part))
}

/** The HTML template tag. */
export const html = (strings: TemplateStringsArray, ...parts: ReadonlyArray<Part>): Html => {
  let out = strings[0]!
  for (let i = 0; i < parts.length; i++) out += render(parts[i]) + strings[i + 1]!
  return raw(out)
}

/** A query string from a record, every name and value URI-encoded; absent values are left out. */
export const query = (params: Readonly<Record<string, string | number | undefined>>): string => {
  const pairs = Object.entries(params).filter((entry): entry is [string, string | number] => entry[1] !== undefined)
  return pairs.length === 0
    ? ""
    : `?${pairs.map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(String(value))}`).join("&")}`
}
