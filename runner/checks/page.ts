/**
 * One HTML page, read once by parse5 (the WHATWG HTML5 parser browsers follow, with source
 * locations): the parse errors that change how the page renders, and every reference it makes
 * to another resource (links, images, scripts, stylesheets, frames, media), with its line.
 *
 * Which parse errors count: those after which the DOM is not what the markup's author evidently
 * meant (an element left open by `<div/>`, a stray end tag, an attribute dropped as a duplicate,
 * a tag or comment that swallows the rest of the page, content moved out of <head>), and quirks
 * mode, the one document-wide switch that changes layout. Errors whose result renders the same
 * (`&copy` without its semicolon, a missing space between attributes, a control character) are
 * not reported: a check that flags half of the web's pages gets turned off. A missing or odd
 * doctype is reported once, as quirks mode, only when the parser actually chose quirks.
 *
 * parse5 reports the tokenizer's errors but few of tree construction's (a stray `</section>`, a
 * misnested `</b></i>` pass silently: pinned in test/unit/site-checks.test.ts). Those are found
 * by comparing the page's end tag tokens (recorded in the same parse) with the tree: an end tag
 * that closed no element was ignored, and an element that needs an end tag and got none
 * swallowed what followed it.
 *
 * What is not checked: URLs inside CSS (`url()`, `@import`), inline scripts, `<template>`
 * contents (often filled in by script), `srcdoc`, and fragments (`#id`, which script may create).
 */
import { type DefaultTreeAdapterMap, Parser, type ParserError, type Token } from 'parse5';

type Node = DefaultTreeAdapterMap['node'];
type Element = DefaultTreeAdapterMap['element'];

interface HtmlProblem {
  code: string;
  line: number;
  column: number;
  message: string;
}

interface PageReference {
  /** The attribute's value (one candidate of a srcset). */
  url: string;
  /** `img src`, `link href`, ...: what the message names. */
  attribute: string;
  line: number;
  column: number;
}

export interface ParsedPage {
  problems: HtmlProblem[];
  references: PageReference[];
  /** `<base href>`, when the page has one. */
  baseHref: string | null;
}

/** Parse errors whose DOM renders as written, or that quirks mode reports better. */
const SAME_RENDERING = new Set<string>([
  'missing-doctype',
  'non-conforming-doctype',
  'missing-semicolon-after-character-reference',
  'unknown-named-character-reference',
  'end-tag-with-trailing-solidus',
  'missing-whitespace-between-attributes',
  'missing-whitespace-after-doctype-public-keyword',
  'missing-whitespace-between-doctype-public-and-system-identifiers',
  'missing-whitespace-after-doctype-system-keyword',
  'missing-whitespace-before-doctype-name',
  'control-character-in-input-stream',
  'noncharacter-in-input-stream',
  'surrogate-in-input-stream',
  'unexpected-null-character',
  'null-character-reference',
  'surrogate-character-reference',
  'character-reference-outside-unicode-range',
  'control-character-reference',
  'noncharacter-character-reference',
  'absence-of-digits-in-numeric-character-reference',
  'nested-comment',
  'unexpected-question-mark-instead-of-tag-name',
]);

const MESSAGES: Record<string, string> = {
  'non-void-html-element-start-tag-with-trailing-solidus': 'a self-closing tag on an element that is not void ("<div/>") leaves it open',
  'end-tag-without-matching-open-element': 'an end tag with no open element of that name is ignored',
  'closing-of-element-with-open-child-elements': 'an element closed while its children were still open',
  'open-elements-left-after-eof': 'elements are still open at the end of the page',
  'duplicate-attribute': 'a duplicate attribute is dropped (the first one wins)',
  'eof-in-tag': 'the page ends inside a tag',
  'eof-in-comment': 'a comment is never closed: the rest of the page is hidden',
  'eof-in-element-that-can-contain-only-text':
    'a <title>, <textarea>, <style> or <script> is never closed: the rest of the page is its text',
  'abrupt-closing-of-empty-comment': '"<!-->" or "<!--->" ends the comment at once',
  'incorrectly-closed-comment': 'a comment closed with "--!>"',
  'misplaced-start-tag-for-head-element': 'a <head> element after the head is moved',
  'abandoned-head-element-child': 'a <head> element outside the head',
  'misplaced-doctype': 'a doctype in the middle of the page is ignored',
  'cdata-in-html-content': 'CDATA outside SVG or MathML becomes a comment: its text is hidden',
};

/** [element, attribute, how the attribute's value is read]. */
const REFERENCE_ATTRIBUTES: ReadonlyArray<readonly [string, string, 'url' | 'srcset']> = [
  ['a', 'href', 'url'],
  ['area', 'href', 'url'],
  ['link', 'href', 'url'],
  ['img', 'src', 'url'],
  ['img', 'srcset', 'srcset'],
  ['source', 'src', 'url'],
  ['source', 'srcset', 'srcset'],
  ['script', 'src', 'url'],
  ['iframe', 'src', 'url'],
  ['frame', 'src', 'url'],
  ['video', 'src', 'url'],
  ['video', 'poster', 'url'],
  ['audio', 'src', 'url'],
  ['track', 'src', 'url'],
  ['embed', 'src', 'url'],
  ['object', 'data', 'url'],
  ['input', 'src', 'url'],
];
const BY_ELEMENT = new Map<string, Array<readonly [string, 'url' | 'srcset']>>();
for (const [el, attr, kind] of REFERENCE_ATTRIBUTES) BY_ELEMENT.set(el, [...(BY_ELEMENT.get(el) ?? []), [attr, kind]]);

/** Elements whose end tag may be left out (HTML's "optional tags"), and void ones. */
const END_TAG_OPTIONAL = new Set<string>(
  'html head body p li dt dd option optgroup rb rt rp rtc tr td th thead tbody tfoot colgroup caption'.split(' '),
);
const VOID = new Set<string>(
  'area base br col embed hr img input link meta source track wbr param keygen frame basefont bgsound'.split(' '),
);

interface EndTag {
  tagName: string;
  offset: number;
  line: number;
  column: number;
}

/**
 * parse5's parser, recording every end tag token it is handed (with its place) on the way: the
 * tokens and the tree of one pass. `Parser` and its `onEndTag` are parse5's own (exported,
 * marked internal; parse5 is pinned exactly, and test/unit/site-checks.test.ts fails if a new
 * version stops calling it). A second tokenizer pass (parse5-sax-parser) cost a third of the
 * checks' time (BENCHMARKS.md "checks").
 */
class EndTagRecorder extends Parser<DefaultTreeAdapterMap> {
  readonly endTags: EndTag[] = [];

  override onEndTag(token: Token.TagToken): void {
    const loc = token.location;
    if (loc) this.endTags.push({ tagName: token.tagName, offset: loc.startOffset, line: loc.startLine, column: loc.startCol });
    super.onEndTag(token);
  }
}

export function parsePage(html: string): ParsedPage {
  const problems: HtmlProblem[] = [];
  const onParseError = (e: ParserError) => {
    if (SAME_RENDERING.has(e.code)) return;
    problems.push({ code: e.code, line: e.startLine, column: e.startCol, message: MESSAGES[e.code] ?? e.code.replaceAll('-', ' ') });
  };
  const parser = new EndTagRecorder({ sourceCodeLocationInfo: true, onParseError });
  parser.tokenizer.write(html, true);
  const { document } = parser;
  if (document.mode === 'quirks')
    problems.push({
      code: 'quirks-mode',
      line: 1,
      column: 1,
      message: 'no standard doctype ("<!DOCTYPE html>"): the page renders in quirks mode',
    });
  const references: PageReference[] = [];
  let baseHref: string | null = null;
  const closedAt = new Set<number>();
  const selfClosed = new Set(
    problems.filter((p) => p.code === 'non-void-html-element-start-tag-with-trailing-solidus').map((p) => `${p.line}:${p.column}`),
  );
  const unclosed: HtmlProblem[] = [];
  // iterative, so a page nested 100,000 deep cannot overflow the stack. A <template>'s content
  // (a fragment apart from childNodes) is walked for its end tags only: its links may be
  // filled in by script
  const stack: Array<{ node: Node; inTemplate: boolean }> = [{ node: document, inTemplate: false }];
  while (stack.length > 0) {
    const { node, inTemplate } = stack.pop()!;
    if (!('childNodes' in node)) continue;
    if ('tagName' in node) {
      const el = node as Element;
      const loc = el.sourceCodeLocation;
      if (loc?.endTag) closedAt.add(loc.endTag.startOffset);
      else if (
        loc?.startTag &&
        !END_TAG_OPTIONAL.has(el.tagName) &&
        !VOID.has(el.tagName) &&
        !selfClosed.has(`${loc.startLine}:${loc.startCol}`)
      )
        unclosed.push({
          code: 'element-not-closed',
          line: loc.startLine,
          column: loc.startCol,
          message: `<${el.tagName}> is never closed by its own end tag: the parser closed it elsewhere`,
        });
      if (el.tagName === 'template') stack.push({ node: (el as DefaultTreeAdapterMap['template']).content, inTemplate: true });
    }
    if ('tagName' in node && !inTemplate) {
      const el = node as Element;
      if (el.tagName === 'base' && baseHref === null) baseHref = attribute(el, 'href')?.value ?? null;
      for (const [name, kind] of BY_ELEMENT.get(el.tagName) ?? []) {
        const attr = attribute(el, name);
        if (!attr) continue;
        const loc = el.sourceCodeLocation?.attrs?.[name] ?? el.sourceCodeLocation;
        const at = { line: loc?.startLine ?? 1, column: loc?.startCol ?? 1 };
        const urls = kind === 'srcset' ? srcsetUrls(attr.value) : [attr.value];
        for (const url of urls) references.push({ url, attribute: `${el.tagName} ${name}`, ...at });
      }
    }
    for (let i = node.childNodes.length - 1; i >= 0; i--) stack.push({ node: node.childNodes[i]!, inTemplate });
  }
  const reported = new Set(problems.map((p) => `${p.line}:${p.column}`));
  for (const tag of parser.endTags) {
    if (closedAt.has(tag.offset) || VOID.has(tag.tagName) || reported.has(`${tag.line}:${tag.column}`)) continue;
    problems.push({
      code: 'stray-end-tag',
      line: tag.line,
      column: tag.column,
      message: `</${tag.tagName}> closes no open <${tag.tagName}>: it is ignored`,
    });
  }
  problems.push(...unclosed);
  problems.sort((a, b) => a.line - b.line || a.column - b.column);
  return { problems, references, baseHref };
}

function attribute(el: Element, name: string) {
  return el.attrs.find((a) => a.name === name && !a.namespace);
}

/**
 * The URLs of a srcset (HTML's "parse a srcset attribute": a URL is a run of non-space
 * characters; trailing commas end it; descriptors run to the next comma outside parentheses).
 */
export function srcsetUrls(value: string): string[] {
  const urls: string[] = [];
  let i = 0;
  const space = (c: string | undefined) => c === ' ' || c === '\t' || c === '\n' || c === '\f' || c === '\r';
  while (i < value.length) {
    while (i < value.length && (space(value[i]) || value[i] === ',')) i++;
    if (i >= value.length) break;
    const start = i;
    while (i < value.length && !space(value[i])) i++;
    let url = value.slice(start, i);
    if (url.endsWith(',')) {
      url = url.replace(/,+$/, '');
    } else {
      let depth = 0;
      while (i < value.length && (depth > 0 || value[i] !== ',')) {
        if (value[i] === '(') depth++;
        else if (value[i] === ')') depth = Math.max(0, depth - 1);
        i++;
      }
    }
    if (url) urls.push(url);
  }
  return urls;
}
