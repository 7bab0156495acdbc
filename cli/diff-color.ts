/**
 * `pagewright diff JOB`'s colours, as `git diff` paints a unified diff (its default
 * color.diff slots): meta lines (diff --git, index, ---/+++, mode and rename lines) bold, the
 * hunk header's `@@ ... @@` cyan with the function context after it plain, added lines green,
 * removed lines red, each ended by a reset. Colour only when asked (--color=always), or on a
 * terminal that is not dumb with NO_COLOR unset or empty (--color=auto, the default), as
 * git and https://no-color.org say. Pure (test/unit/cli-logic.test.ts).
 */
import { UsageError } from './command.js';

const RESET = '\x1b[m';
const BOLD = '\x1b[1m';
const RED = '\x1b[31m';
const GREEN = '\x1b[32m';
const CYAN = '\x1b[36m';

export type ColorMode = 'always' | 'never' | 'auto';

export function colorMode(value: string | boolean | undefined): ColorMode {
  if (value === undefined || value === true) return value === true ? 'always' : 'auto';
  if (value === 'always' || value === 'never' || value === 'auto') return value;
  throw new UsageError(`--color must be always, never or auto, got ${JSON.stringify(value)}`);
}

export function shouldColor(mode: ColorMode, isTTY: boolean, env: NodeJS.ProcessEnv): boolean {
  if (mode !== 'auto') return mode === 'always';
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return isTTY && env.TERM !== 'dumb';
}

const META =
  /^(diff --git |index |--- |\+\+\+ |new file mode |deleted file mode |old mode |new mode |similarity index |dissimilarity index |rename from |rename to |copy from |copy to |Binary files )/;

/**
 * The patch with git's colours, its text otherwise unchanged. A hunk's lines are told from the
 * next file's header by the hunk's counts (`@@ -a,b +c,d @@`), so a removed line that starts
 * `-- ` is still red and a plain unified diff's `--- a/x` is still a header.
 */
export function colorDiff(patch: string): string {
  let oldLeft = 0;
  let newLeft = 0;
  return patch
    .split('\n')
    .map((line) => {
      if (line === '') return line;
      if (oldLeft > 0 || newLeft > 0) {
        if (line.startsWith('+')) {
          newLeft--;
          return `${GREEN}${line}${RESET}`;
        }
        if (line.startsWith('-')) {
          oldLeft--;
          return `${RED}${line}${RESET}`;
        }
        if (line.startsWith(' ')) {
          oldLeft--;
          newLeft--;
        }
        return line; // context, or "\ No newline at end of file"
      }
      const hunk = /^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@/.exec(line);
      if (hunk) {
        oldLeft = hunk[1] === undefined ? 1 : Number(hunk[1]);
        newLeft = hunk[2] === undefined ? 1 : Number(hunk[2]);
        return `${CYAN}${hunk[0]}${RESET}${line.slice(hunk[0].length)}`;
      }
      if (META.test(line)) return `${BOLD}${line}${RESET}`;
      return line;
    })
    .join('\n');
}
