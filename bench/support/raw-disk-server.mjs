// The baseline for storage throughput: the least a Node HTTP server can do to store and serve
// bytes durably (stream to a temp file, fsync, rename; stream the file back). Plain JS, no deps.
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rename, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

const dir = process.env.DIR;
const server = createServer(async (req, res) => {
  const path = join(dir, 'object');
  try {
    if (req.method === 'PUT') {
      const tmp = `${path}.tmp`;
      await pipeline(req, createWriteStream(tmp));
      const fh = await open(tmp, 'r');
      await fh.sync();
      await fh.close();
      await rename(tmp, path);
      res.writeHead(201).end();
    } else {
      const { size } = await stat(path);
      res.writeHead(200, { 'content-length': size });
      await pipeline(createReadStream(path), res);
    }
  } catch (err) {
    res.writeHead(500).end(String(err));
  }
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'));
