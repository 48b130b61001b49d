// lib.mjs — what the interop scripts share: a TCP proxy that cuts the connection (RST) once
// after K bytes went up, a small valid JPEG, BLAKE2b-256, and pendata's Pd-Auth request
// signature (server/PROTOCOL.md §4) for a device enrolled from JavaScript.
import crypto from 'node:crypto';
import net from 'node:net';
import { blake2b } from '@noble/hashes/blake2.js';

export function hex(bytes) {
  return Buffer.from(bytes).toString('hex');
}

export function blake2b256Hex(bytes) {
  return hex(blake2b(bytes, { dkLen: 32 }));
}

// A proxy on 127.0.0.1 to targetPort. The first connection that carries the byte number
// `cutAfter` (counted from the start, all connections together) is reset right after it;
// onCut(stats), if given, runs at the cut, before the reset, so that whoever records the cut
// has done so before the client can even notice it (a timer could miss a quick resume).
export function cutProxy(targetPort, cutAfter, onCut) {
  const stats = { up: 0, down: 0, cuts: 0, connections: 0 };
  let left = cutAfter > 0 ? cutAfter : 0;
  const server = net.createServer((client) => {
    stats.connections++;
    const upstream = net.connect(targetPort, '127.0.0.1');
    let dead = false; // after the cut nothing more passes, either way
    const kill = () => {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    };
    client.on('data', (d) => {
      if (dead) return;
      if (left > 0 && d.length >= left) {
        dead = true;
        upstream.write(d.subarray(0, left));
        stats.up += left;
        left = 0;
        stats.cuts++;
        if (onCut) onCut(stats);
        setImmediate(kill);
        return;
      }
      if (left > 0) left -= d.length;
      stats.up += d.length;
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (dead) return;
      stats.down += d.length;
      client.write(d);
    });
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ port: server.address().port, stats, server }));
  });
}

// SOI, a frame header (16x16, 1 component), a scan header, scan bytes without 0xFF, EOI.
export function jpeg(size, seed) {
  const head = [0xff, 0xd8, 0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x10, 0x00, 0x10, 0x01, 0x01,
    0x11, 0x00, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00];
  const b = Buffer.alloc(size);
  Buffer.from(head).copy(b);
  let x = (seed * 2654435761 + 1) >>> 0;
  for (let i = head.length; i < size - 2; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = (x >>> 16) % 255;
  }
  b[size - 2] = 0xff;
  b[size - 1] = 0xd9;
  return b;
}

// A device identity made here and enrolled with a one-time code.
export async function enrol(serverUrl, code) {
  const device = crypto.generateKeyPairSync('ed25519');
  const user = crypto.generateKeyPairSync('ed25519');
  const raw = (k) => Buffer.from(k.publicKey.export({ format: 'jwk' }).x, 'base64url').toString('hex');
  const id = crypto.randomBytes(8).toString('hex');
  const body = JSON.stringify({ code, device_id: id, device_pk: raw(device), user_pk: raw(user) });
  const res = await fetch(`${serverUrl}/v1/enroll`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body,
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`enrolment refused: ${res.status} ${text}`);
  return { id, key: device.privateKey };
}

// The Pd-Auth header of one request.
export function pdAuth(device, method, url, body) {
  const u = new URL(url);
  const target = u.pathname + u.search;
  const time = Math.floor(Date.now() / 1000);
  const nonce = crypto.randomBytes(16).toString('hex');
  const bodyHash = blake2b256Hex(body && body.length ? body : new Uint8Array(0));
  const msg = `PD1\n${device.id}\n${method}\n${target}\n${time}\n${nonce}\n${bodyHash}`;
  const sig = crypto.sign(null, Buffer.from(msg), device.key).toString('hex');
  return `PD1 device=${device.id},time=${time},nonce=${nonce},sig=${sig}`;
}
