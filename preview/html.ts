/**
 * HTML built by a tagged template that escapes every interpolated value unless it is already
 * Html: the review page shows text the agent wrote (the summary, diff lines, file names) and
 * the user wrote (the prompt), so escaping is the default and raw markup needs a type.
 *
 *   html`<p>${summary}</p>`            summary is escaped
 *   html`<ul>${items.map(li)}</ul>`    arrays are joined, each element by the same rule
 *
 * Values go into element content and into double-quoted attribute values only (never into a
 * URL, a script, a style or an unquoted attribute: those need more than escaping, and the page
 * has no such place for agent text).
 */

export class Html {
  readonly value: string;
  constructor(value: string) {
    this.value = value;
  }
  toString(): string {
    return this.value;
  }
}

type Part = Html | string | number | boolean | null | undefined | readonly Part[];

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text made safe for element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

function render(part: Part): string {
  if (part instanceof Html) return part.value;
  if (Array.isArray(part)) return part.map(render).join('');
  if (part === null || part === undefined || part === false || part === true) return '';
  return escapeHtml(String(part));
}

export function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new Html(out);
}
