// tus_server.mjs — @tus/server with @tus/file-store (the reference tus implementation) in
// --dir, behind a proxy that cuts the connection once after --cut bytes. Prints one JSON line
// {"port": the proxy's port} and serves until SIGTERM; every cut is appended to --dir/cuts.log.
// With --cert PEM --key PEM it serves https (through the same proxy, which only forwards bytes).
//   node tus_server.mjs --dir DIR --cut K [--cert PEM --key PEM]
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';
import { cutProxy } from './lib.mjs';

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

const dir = arg('--dir');
const cert = arg('--cert');
const tus = new Server({
  path: '/files',
  datastore: new FileStore({ directory: dir }),
  // behind TLS @tus/server cannot tell; its Locations must say https
  ...(cert ? { generateUrl: (req, { host, path, id }) => `https://${host}${path}/${id}` } : {}),
});
const handler = (req, res) => tus.handle(req, res);
const httpServer = cert
  ? https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(arg('--key')) }, handler)
  : http.createServer(handler);
await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
// written at the cut itself: the client cannot finish before the line is in the file
const proxy = await cutProxy(httpServer.address().port, Number(arg('--cut', '0')), (stats) =>
  fs.appendFileSync(`${dir}/cuts.log`, `cut ${stats.cuts} up ${stats.up}\n`));
console.log(JSON.stringify({ port: proxy.port }));
process.on('SIGTERM', () => process.exit(0));
