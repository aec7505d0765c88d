// A second implementation of the client side of docs/commit-slots.md,
// written from that document alone (not from Burrow's code), with
// nostr-tools for events and @noble for the key derivation. It checks the
// document's vectors, then every relay rule of sections 4 and 5.1 against
// the relays given as arguments (two URLs: two instances sharing storage;
// claims and checks alternate between them).
//
//   node client.mjs ws://127.0.0.1:3334 [ws://127.0.0.1:3335]
//
// It prints one JSON line per check ({"check": ..., "ok": true|false,
// "detail": ...}) and exits 1 if any check failed.

import { hkdf, expand } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, hexToBytes, randomBytes } from '@noble/hashes/utils.js';
import { schnorr, secp256k1 } from '@noble/curves/secp256k1.js';
import { finalizeEvent, generateSecretKey } from 'nostr-tools/pure';
import WebSocket from 'ws';

void hkdf; // expand is HKDF-Expand; hkdf (extract+expand) is not needed here

const relays = process.argv.slice(2);
if (relays.length === 0) {
  console.error('usage: node client.mjs <ws url> [<ws url of a second instance>]');
  process.exit(2);
}
const relayAt = (i) => relays[i % relays.length];
let failures = 0;
function report(check, ok, detail) {
  if (!ok) failures++;
  console.log(JSON.stringify({ check, ok, detail }));
}

// ---- Section 2: slot key derivation -------------------------------------

const enc = new TextEncoder();

// RFC 9420's variable-length integer (section 2.1.2).
function varint(n) {
  if (n < 64) return Uint8Array.of(n);
  if (n < 16384) return Uint8Array.of(0x40 | (n >> 8), n & 0xff);
  return Uint8Array.of(0x80 | (n >>> 24), (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

// ExpandWithLabel(secret, label, context, length) =
//   HKDF-Expand(secret, KDFLabel, length), suite 0x0001: SHA-256.
function expandWithLabel(secret, label, context, length) {
  const full = enc.encode('MLS 1.0 ' + label);
  const kdfLabel = concat(Uint8Array.of(length >> 8, length & 0xff), varint(full.length), full, varint(context.length), context);
  return expand(sha256, secret, kdfLabel, length);
}

const Nh = 32;
function slotExport(exporterSecret) {
  const derived = expandWithLabel(exporterSecret, 'nostr-commit-slot', new Uint8Array(0), Nh);
  const x = expandWithLabel(derived, 'exported', sha256(enc.encode('v1')), 32);
  return { derived, x };
}

const n = secp256k1.Point.CURVE().n;
// sk = x mod n; null when it is 0 (no key for this epoch).
function slotKey(x) {
  const v = BigInt('0x' + bytesToHex(x)) % n;
  if (v === 0n) return null;
  const sk = hexToBytes(v.toString(16).padStart(64, '0'));
  return { sk, slot: bytesToHex(schnorr.getPublicKey(sk)) };
}

function checkVectors() {
  const es = hexToBytes('a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf');
  const { derived, x } = slotExport(es);
  const k = slotKey(x);
  report('vector: exporter secret to x', bytesToHex(derived) === 'dd28fb40b0cc4b52e817bcfc62b87ccfefb6aa50f7953008ee60bdff1a298145'
    && bytesToHex(sha256(enc.encode('v1'))) === '3bfc269594ef649228e9a74bab00f042efc91d5acc6fbee31a382e80d42388fe'
    && bytesToHex(x) === 'ad9c3971e0644d6ce556d0f86c95abdb7c758f319a93d8f6ac72bfc1260e752b'
    && k.slot === '4a2a2d854ae7fa41408c138ef5c5e2e0faefddbfac2b84ceb9d20327b051b246', bytesToHex(x));
  const rows = [
    ['0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20', '84bf7562262bbd6940085748f3be6afa52ae317155181ece31b66351ccffa4b0'],
    ['ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff', '9166c289b9f905e55f9e3df9f69d7f356b4a22095f894f4715714aa4b56606af'],
    ['fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364142', '79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798'],
    ['fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140', '79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798'],
  ];
  for (const [x, slot] of rows) {
    const got = slotKey(hexToBytes(x));
    report('vector: x to slot ' + x.slice(0, 8), got !== null && got.slot === slot, got && got.slot);
  }
  for (const x of ['00'.repeat(32), 'fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141']) {
    report('vector: no key for x = ' + x.slice(0, 8), slotKey(hexToBytes(x)) === null, null);
  }
}

// ---- A small NIP-01 client ------------------------------------------------

class Conn {
  constructor(url) {
    this.url = url;
    this.queue = [];
    this.waiters = [];
  }
  open() {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(this.url);
      this.ws.on('open', resolve);
      this.ws.on('error', reject);
      this.ws.on('message', (data) => {
        const msg = JSON.parse(data.toString());
        const i = this.waiters.findIndex((w) => w.match(msg));
        if (i >= 0) this.waiters.splice(i, 1)[0].resolve(msg);
        else this.queue.push(msg);
      });
    });
  }
  next(match, ms = 10000) {
    const i = this.queue.findIndex(match);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const w = { match, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        const j = this.waiters.indexOf(w);
        if (j >= 0) { this.waiters.splice(j, 1); reject(new Error('timeout waiting on ' + this.url)); }
      }, ms);
    });
  }
  send(msg) { this.ws.send(JSON.stringify(msg)); }
  async publish(ev) {
    this.send(['EVENT', ev]);
    const ok = await this.next((m) => m[0] === 'OK' && m[1] === ev.id);
    return { ok: ok[2], msg: ok[3] };
  }
  close() { this.ws.close(); }
}

// ---- Events ---------------------------------------------------------------

const b64 = (bytes) => Buffer.from(bytes).toString('base64');

// A kind 445 group event with a fresh key (a stand-in for an encrypted
// Commit: the relay cannot tell it from one).
function groupEvent(h) {
  return finalizeEvent({ kind: 445, created_at: Math.floor(Date.now() / 1000), tags: [['h', h]], content: b64(randomBytes(64)) }, generateSecretKey());
}

// A slot for a random epoch: a random exporter secret, derived as in
// section 2.
function newSlot() {
  for (;;) {
    const k = slotKey(slotExport(randomBytes(32)).x);
    if (k) return k;
  }
}

// A claim (section 3): kind 20445 signed with sk, tags [h] (+ release).
function claim(key, h, commit, release) {
  const tags = [['h', h]];
  if (release) tags.push(['release', release]);
  return finalizeEvent({ kind: 20445, created_at: Math.floor(Date.now() / 1000), tags, content: JSON.stringify(commit) }, key.sk);
}

const seqOf = (msg) => Number(/^seq:(\d+)/.exec(msg ?? '')?.[1]);

// ---- Section 4 and 5.1 against the relay(s) --------------------------------

async function main() {
  checkVectors();

  const info = await fetch(relays[0].replace(/^ws/, 'http'), { headers: { Accept: 'application/nostr+json' } }).then((r) => r.json());
  const ext = info.supported_extensions ?? [];
  report('NIP-11 supported_extensions lists commit_slots/1 and since_seq/1', ext.includes('commit_slots/1') && ext.includes('since_seq/1'), ext);

  const conns = await Promise.all(relays.map(async (u) => { const c = new Conn(u); await c.open(); return c; }));
  const at = (i) => conns[i % conns.length];
  const h = bytesToHex(randomBytes(32));

  // Live ordered readers, one per instance, open before anything happens.
  const readers = await Promise.all(relays.map(async (u) => { const c = new Conn(u); await c.open(); return c; }));
  for (const r of readers) {
    r.send(['REQ', 'live', { '#h': [h], since_seq: 0 }]);
    const eose = await r.next((m) => m[0] === 'EOSE' && m[1] === 'live');
    report('an empty group\'s page ends with EOSE ["finish"]', JSON.stringify(eose[2]) === '["finish"]', eose);
  }

  // Rule 6: a free slot.
  const s1 = newSlot();
  const holder = groupEvent(h);
  let r = await at(0).publish(claim(s1, h, holder));
  report('rule 6: a claim on a free slot is OK true seq:<n>', r.ok === true && seqOf(r.msg) === 1, r);
  const holderSeq = seqOf(r.msg);

  // Rule 3: a retry, on the other instance.
  r = await at(1).publish(claim(s1, h, holder));
  report('rule 3: a retry answers the same seq', r.ok === true && seqOf(r.msg) === holderSeq, r);

  // Rule 8: a loser, then its bare re-send on either instance.
  const loser = groupEvent(h);
  r = await at(1).publish(claim(s1, h, loser));
  report('rule 8: a losing claim is blocked: slot taken by <holder>', r.ok === false && r.msg === 'blocked: slot taken by ' + holder.id, r);
  for (let i = 0; i < conns.length; i++) {
    r = await at(i).publish(loser);
    report('rule 8: the loser re-sent bare is refused, instance ' + i, r.ok === false && r.msg === 'blocked: slot taken by ' + holder.id, r);
  }

  // Rule 4: a Commit stored bare that loses is final, also as a release's
  // replacement and on a free slot.
  const bare = groupEvent(h);
  r = await at(0).publish(bare);
  const bareSeq = seqOf(r.msg);
  report('a bare 445 is stored with its seq', r.ok === true && bareSeq === holderSeq + 1, r);
  r = await at(1).publish(claim(s1, h, bare));
  report('rule 8: a stored bare Commit loses a held slot', r.ok === false && r.msg === 'blocked: slot taken by ' + holder.id, r);
  r = await at(0).publish(claim(s1, h, bare, holder.id));
  report('rule 4: the lost Commit cannot take its slot through a release', r.ok === false && r.msg === 'blocked: slot taken by ' + holder.id, r);
  const free = newSlot();
  r = await at(1).publish(claim(free, h, bare));
  report('rule 4: the lost Commit cannot take a free slot', r.ok === false && r.msg === `blocked: commit lost slot ${s1.slot} to ${holder.id}`, r);
  r = await at(0).publish(claim(free, h, loser));
  report('rule 4: nor can the unstored loser', r.ok === false && r.msg === `blocked: commit lost slot ${s1.slot} to ${holder.id}`, r);
  r = await at(1).publish(bare);
  report('the bare loser stays a plain event of the log', r.ok === true && seqOf(r.msg) === bareSeq, r);

  // Rule 5: one Commit, at most one slot.
  r = await at(0).publish(claim(free, h, holder));
  report('rule 5: a holder claiming a second slot is blocked: commit holds slot <slot>', r.ok === false && r.msg === 'blocked: commit holds slot ' + s1.slot, r);

  // Rule 7: a release, seen live by ordered readers on every instance.
  const replacement = groupEvent(h);
  r = await at(1).publish(claim(s1, h, replacement, holder.id));
  const replacementSeq = seqOf(r.msg);
  report('rule 7: a release answers seq:<n> released:<holder>', r.ok === true && r.msg === `seq:${replacementSeq} released:${holder.id}`, r);
  r = await at(0).publish(claim(s1, h, replacement, holder.id));
  report('rule 3: a retried release answers the same', r.ok === true && r.msg === `seq:${replacementSeq} released:${holder.id}`, r);
  for (const [i, rd] of readers.entries()) {
    const seen = new Map();
    while (!seen.has(replacement.id)) {
      const m = await rd.next((m) => m[0] === 'EVENT' && m[1] === 'live');
      seen.set(m[2].id, m[3]);
    }
    const meta = seen.get(replacement.id);
    report('5.1: a live reader learns of the release, instance ' + i,
      meta.seq === replacementSeq && meta.releases?.id === holder.id && meta.releases?.seq === holderSeq, meta);
    report('5.1: live events arrive in seq order, instance ' + i,
      [...seen.values()].every((m, j, all) => j === 0 || all[j - 1].seq < m.seq), [...seen.values()]);
  }

  // Rules 4 and 8 after the release: the released holder lost the slot,
  // the refused release's replacement is a loser, answers name the
  // replacement.
  const late = groupEvent(h);
  r = await at(0).publish(claim(s1, h, late, holder.id));
  report('rule 8: a release naming a released holder names the current holder', r.ok === false && r.msg === 'blocked: slot taken by ' + replacement.id, r);
  const other = newSlot();
  r = await at(1).publish(claim(other, h, late));
  report('rule 8: the refused release\'s replacement is a loser', r.ok === false && r.msg === `blocked: commit lost slot ${s1.slot} to ${replacement.id}`, r);
  r = await at(1).publish(claim(other, h, holder));
  report('rule 4: the released holder never holds a slot again', r.ok === false && r.msg === `blocked: commit lost slot ${s1.slot} to ${replacement.id}`, r);
  r = await at(0).publish(holder);
  report('a released holder re-sent bare answers its old seq', r.ok === true && seqOf(r.msg) === holderSeq, r);

  // 5.1: a later read flags both, and pages end with the right hint.
  for (let i = 0; i < conns.length; i++) {
    const c = at(i);
    c.send(['REQ', 'page', { '#h': [h], since_seq: 0, limit: 2 }]);
    const metas = new Map();
    let closing;
    for (;;) {
      const m = await c.next((m) => (m[0] === 'EVENT' || m[0] === 'EOSE') && m[1] === 'page');
      if (m[0] === 'EOSE') { closing = m; break; }
      metas.set(m[2].id, m[3]);
    }
    report('5.1: a cut page ends with EOSE ["more"], instance ' + i, JSON.stringify(closing[2]) === '["more"]', closing);
    const closed = await c.next((m) => m[0] === 'CLOSED' && m[1] === 'page');
    report('5.1: then CLOSED more: after seq <m>', closed[2] === 'more: after seq 2', closed);
    c.send(['REQ', 'rest', { '#h': [h], since_seq: 2 }]);
    for (;;) {
      const m = await c.next((m) => (m[0] === 'EVENT' || m[0] === 'EOSE') && m[1] === 'rest');
      if (m[0] === 'EOSE') { closing = m; break; }
      metas.set(m[2].id, m[3]);
    }
    report('5.1: the last page ends with EOSE ["finish"], instance ' + i, JSON.stringify(closing[2]) === '["finish"]', closing);
    c.send(['CLOSE', 'rest']);
    report('5.1: a later read flags the released holder, instance ' + i, metas.get(holder.id)?.released === true, metas.get(holder.id));
    const rm = metas.get(replacement.id);
    report('5.1: a later read names what the replacement released, instance ' + i, rm?.releases?.id === holder.id && rm?.releases?.seq === holderSeq, rm);
  }

  for (const c of [...conns, ...readers]) c.close();
}

main().then(() => process.exit(failures ? 1 : 0), (err) => {
  report('run', false, String(err && err.stack || err));
  process.exit(1);
});
