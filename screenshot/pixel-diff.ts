/**
 * The pixel-difference figure of two screenshots of one page (base and output), by pixelmatch
 * (the comparison Playwright's and many visual-testing tools' own is built on: anti-aliasing
 * is told apart from a change) on PNGs read by pngjs.
 *
 * Two screenshots of different sizes (the change made the page taller) are compared on the
 * larger canvas: the pixels only one of them has count as different. The figure is the count, its share of the canvas, the box that holds every
 * different pixel (where the page changed, for the review page to point at), and an image
 * of the differences alone (pixelmatch's diff mask).
 */
import pixelmatch from 'pixelmatch';
import { PNG } from 'pngjs';

export interface PixelDiff {
  width: number;
  height: number;
  differentPixels: number;
  /** differentPixels / (width * height), 0..1. */
  ratio: number;
  /** The smallest rectangle with every different pixel in it; null when none differ. */
  box: { x: number; y: number; width: number; height: number } | null;
  /** The differences alone, red on transparent, as a PNG. */
  png: Buffer;
}

/** pixelmatch's own default: the colour distance (0..1) under which two pixels count as the same. */
const THRESHOLD = 0.1;
/** pixelmatch's diff colour, opaque. */
const DIFF_COLOUR = [255, 0, 0, 255];

export function pixelDiff(a: Buffer, b: Buffer): PixelDiff {
  const [left, right] = [PNG.sync.read(a), PNG.sync.read(b)];
  const width = Math.max(left.width, right.width);
  const height = Math.max(left.height, right.height);
  const [pa, pb] = [padded(left, width, height), padded(right, width, height)];
  const out = new PNG({ width, height });
  let differentPixels = pixelmatch(pa, pb, out.data, width, height, { threshold: THRESHOLD, diffMask: true });
  // pixelmatch blends transparency onto white, so the padding would equal a white page: the
  // pixels only one screenshot has are different whatever their colour
  const [w, h] = [Math.min(left.width, right.width), Math.min(left.height, right.height)];
  for (let y = 0; y < height; y++) {
    for (let x = y < h ? w : 0; x < width; x++) {
      const i = (y * width + x) * 4;
      if (out.data[i + 3] !== 0) continue; // pixelmatch counted it
      out.data.set(DIFF_COLOUR, i);
      differentPixels++;
    }
  }
  return {
    width,
    height,
    differentPixels,
    ratio: width * height === 0 ? 0 : differentPixels / (width * height),
    box: differentPixels === 0 ? null : boxOf(out.data, width, height),
    png: PNG.sync.write(out),
  };
}

function padded(img: PNG, width: number, height: number): Buffer {
  if (img.width === width && img.height === height) return img.data;
  const data = Buffer.alloc(width * height * 4); // transparent
  for (let y = 0; y < img.height; y++) img.data.copy(data, y * width * 4, y * img.width * 4, (y + 1) * img.width * 4);
  return data;
}

/** With diffMask, pixelmatch draws only the different pixels (alpha > 0). */
function boxOf(mask: Buffer, width: number, height: number): NonNullable<PixelDiff['box']> {
  let [x0, y0, x1, y1] = [width, height, -1, -1];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (mask[(y * width + x) * 4 + 3] === 0) continue;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  }
  return { x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1 };
}
