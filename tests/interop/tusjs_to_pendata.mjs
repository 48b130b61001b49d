// tusjs_to_pendata.mjs — tus-js-client (unchanged, its Node HTTP stack wrapped only to add
// pendata's Pd-Auth signature over each request's exact body) uploads a photo to pendata-server
// through a proxy that cuts the connection once after --cut bytes, and must resume and finish.
//   node tusjs_to_pendata.mjs --server http://127.0.0.1:PORT --code CODE --size N --cut K
// Prints one JSON line: {"ok":true,"url":…,"size":N,"hash":…,"cuts":1,"up":bytes via the proxy}.
import { Upload, DefaultHttpStack } from 'tus-js-client';
import { cutProxy, enrol, jpeg, blake2b256Hex, pdAuth } from './lib.mjs';

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

class SigningStack {
  constructor(device) {
    this.inner = new DefaultHttpStack();
    this.device = device;
  }
  getName() {
    return 'PendataSigning+' + this.inner.getName();
  }
  createRequest(method, url) {
    const req = this.inner.createRequest(method, url);
    const device = this.device;
    const send = req.send.bind(req);
    req.send = (body = null) => {
      req.setHeader('Pd-Auth', pdAuth(device, method, url, body));
      return send(body);
    };
    return req;
  }
}

const server = arg('--server');
const size = Number(arg('--size', '200000'));
const cut = Number(arg('--cut', '50000'));
const device = await enrol(server, arg('--code'));
const target = new URL(server);
const proxy = await cutProxy(Number(target.port), cut);
const bytes = jpeg(size, 7);
const hash = blake2b256Hex(bytes);
const url = await new Promise((resolve, reject) => {
  const up = new Upload(bytes, {
    endpoint: `http://127.0.0.1:${proxy.port}/v1/uploads`,
    chunkSize: 16384,
    // ~25 s in all: a loaded machine may take seconds to notice the cut connection; a longer
    // list does not make the test weaker (the cut happens once, every byte is counted)
    retryDelays: [0, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800],
    uploadSize: bytes.length,
    metadata: { kind: 'photo', hash },
    httpStack: new SigningStack(device),
    storeFingerprintForResuming: false,
    onError: reject,
    onSuccess: () => resolve(up.url),
  });
  up.start();
});
proxy.server.close();
console.log(JSON.stringify({ ok: true, url, size, hash, cuts: proxy.stats.cuts, up: proxy.stats.up }));
process.exit(0);
