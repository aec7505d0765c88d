// An MLS group member backed by ts-mls 1.6.4, driven over stdin/stdout with
// the line-delimited JSON protocol described in interop/README.md: one request
// per line, one response line per request, bytes as lowercase hex. Burrow's
// interop tests start it as a subprocess (interop/peer.go), so the bytes it
// makes and reads cross a process boundary exactly as another client's would.
//
// One process holds at most one group and any number of pending KeyPackages.
// Diagnostics go to stderr; stdout carries protocol lines only.

import { createInterface } from "node:readline";
import {
  acceptAll,
  ciphersuites,
  createApplicationMessage,
  createCommit,
  createGroup,
  createGroupInfoWithExternalPubAndRatchetTree,
  decodeMlsMessage,
  defaultCapabilities,
  defaultLifetime,
  encodeMlsMessage,
  generateKeyPackage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  bytesToBase64,
  createProposal,
  joinGroup,
  joinGroupExternal,
  makePskIndex,
  mlsExporter,
  processMessage,
  processPrivateMessage,
} from "ts-mls";
import { decodeKeyPackage, encodeKeyPackage, generateKeyPackageWithKey, makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { p256 } from "@noble/curves/nist.js";
import { decodeRatchetTree } from "ts-mls/ratchetTree.js";

const TOOL = "ts-mls 1.6.4";

const toHex = (b) => Buffer.from(b).toString("hex");

function fromHex(s, field) {
  if (typeof s !== "string" || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new Error(`${field}: want a hex string`);
  }
  return new Uint8Array(Buffer.from(s, "hex"));
}

function required(args, field) {
  if (args[field] === undefined || args[field] === null) throw new Error(`${field} is required`);
  return args[field];
}

// Known bug (ts-mls 1.6.4 and 2.0.0-rc.10): for suite 0x0002 ts-mls makes
// P-256 signature keys with @noble/curves' getPublicKey, whose default is
// the 33-byte compressed point; RFC 9420 section 5.1.1 requires the
// uncompressed point (65 bytes). Burrow and mls-go refuse such keys. This
// peer therefore makes the key pair itself, with the uncompressed encoding
// (ts-mls's own verify accepts either), unless the request asks for
// default_signature_key, which TestTSMLSCompressedP256Key uses to pin the
// bug.
const P256_SUITE = "MLS_128_DHKEMP256_AES128GCM_SHA256_P256";

async function uncompressedP256(cs) {
  const { signKey } = await cs.signature.keygen();
  return { signKey, publicKey: p256.getPublicKey(signKey, false) };
}

const suiteNames = new Map(Object.entries(ciphersuites).map(([name, id]) => [id, name]));

async function suiteImpl(id) {
  const name = suiteNames.get(id ?? 1);
  if (name === undefined) throw new Error(`unknown ciphersuite ${id}`);
  return getCiphersuiteImpl(getCiphersuiteFromName(name));
}

function decodeWhole(decoder, bytes, what) {
  const r = decoder(bytes, 0);
  if (r === undefined) throw new Error(`cannot decode ${what}`);
  if (r[1] !== bytes.length) throw new Error(`${what}: ${bytes.length - r[1]} trailing bytes`);
  return r[0];
}

// A KeyPackage may arrive bare or framed as an MLSMessage: both start with
// 00 01, and bytes 2-3 are the wire format (00 05) only in the framed form.
function readKeyPackage(bytes) {
  if (bytes.length >= 4 && bytes[0] === 0 && bytes[1] === 1 && bytes[2] === 0 && bytes[3] === 5) {
    const msg = decodeWhole(decodeMlsMessage, bytes, "MLSMessage");
    if (msg.wireformat === "mls_key_package") return msg.keyPackage;
  }
  return decodeWhole(decodeKeyPackage, bytes, "KeyPackage");
}

const frame = (wireformat, field, value) => encodeMlsMessage({ version: "mls10", wireformat, [field]: value });

class Peer {
  constructor() {
    this.pending = []; // {publicPackage, privatePackage, ref, cs}
    this.state = undefined;
    this.cs = undefined;
    // A commit made with hold: its state, adopted by merge_pending.
    this.held = undefined;
    // External PSKs by base64 id, as makePskIndex wants them.
    this.psks = {};
    // Nanoseconds the previous op (other than elapsed) took inside this
    // process, so a benchmark can leave out the pipe and JSON.
    this.lastElapsed = 0n;
  }

  async newKeyPackage(args) {
    const identity = fromHex(required(args, "identity"), "identity");
    if (identity.length === 0) throw new Error("identity is empty");
    const cs = await suiteImpl(args.suite);
    // ts-mls's default lifetime is 0 .. 2^63-1 (no expiry) unless one is given.
    const lifetime = args.lifetime
      ? { notBefore: BigInt(args.lifetime.not_before), notAfter: BigInt(args.lifetime.not_after) }
      : defaultLifetime;
    const credential = { credentialType: "basic", identity };
    const kp = cs.name === P256_SUITE && !args.default_signature_key
      ? await generateKeyPackageWithKey(credential, defaultCapabilities(), lifetime, [], await uncompressedP256(cs), cs)
      : await generateKeyPackage(credential, defaultCapabilities(), lifetime, [], cs);
    const ref = await makeKeyPackageRef(kp.publicPackage, cs.hash);
    return { ...kp, ref, cs };
  }

  needGroup() {
    if (this.state === undefined) throw new Error("no group: create_group or join first");
  }

  pskIndex() {
    return makePskIndex(this.state, this.psks);
  }

  // commit makes a Commit of every proposal received in this epoch (by
  // reference) plus extra ones by value, and applies it unless hold is set:
  // then the new state waits for merge_pending or discard_pending, and the
  // group stays where it was (ts-mls states are values, so nothing else
  // changes).
  async commit(extraProposals, hold, publicMessage) {
    this.needGroup();
    if (this.held !== undefined) throw new Error("a held commit is pending: merge_pending or discard_pending first");
    const res = await createCommit(
      { state: this.state, cipherSuite: this.cs, pskIndex: this.pskIndex() },
      { ratchetTreeExtension: true, extraProposals, wireAsPublicMessage: Boolean(publicMessage) },
    );
    if (hold) this.held = res.newState;
    else this.state = res.newState;
    const out = { commit: toHex(encodeMlsMessage(res.commit)), epoch: Number(res.newState.groupContext.epoch) };
    if (res.welcome !== undefined) out.welcome = toHex(frame("mls_welcome", "welcome", res.welcome));
    return out;
  }

  // pskNonce is a fresh nonce of the KDF's output length (RFC 9420 section 8.4).
  pskNonce() {
    return crypto.getRandomValues(new Uint8Array(this.cs.kdf.size));
  }

  async propose(proposal) {
    this.needGroup();
    const res = await createProposal(this.state, true, proposal, this.cs);
    this.state = res.newState;
    return { message: toHex(encodeMlsMessage(res.message)) };
  }

  async handle(op, args) {
    switch (op) {
      case "hello":
        return { tool: TOOL };
      case "quit":
        return {};
      case "create_key_package": {
        const e = await this.newKeyPackage(args);
        this.pending.push(e);
        const lt = e.publicPackage.leafNode.lifetime;
        return {
          key_package: toHex(frame("mls_key_package", "keyPackage", e.publicPackage)),
          key_package_bare: toHex(encodeKeyPackage(e.publicPackage)),
          key_package_ref: toHex(e.ref),
          // Lifetimes are uint64; 2^63-1 does not fit a JSON number exactly.
          not_before: lt.notBefore.toString(),
          not_after: lt.notAfter.toString(),
        };
      }
      case "create_group": {
        if (this.state !== undefined) throw new Error("this peer already holds a group");
        const groupId = fromHex(required(args, "group_id"), "group_id");
        const e = await this.newKeyPackage(args);
        this.state = await createGroup(groupId, e.publicPackage, e.privatePackage, [], e.cs);
        this.cs = e.cs;
        return { epoch: Number(this.state.groupContext.epoch) };
      }
      case "join": {
        if (this.state !== undefined) throw new Error("this peer already holds a group");
        const msg = decodeWhole(decodeMlsMessage, fromHex(required(args, "welcome"), "welcome"), "MLSMessage");
        if (msg.wireformat !== "mls_welcome") throw new Error(`join: got ${msg.wireformat}, want mls_welcome`);
        const refs = msg.welcome.secrets.map((s) => toHex(s.newMember));
        const i = this.pending.findIndex((e) => refs.includes(toHex(e.ref)));
        if (i < 0) throw new Error("join: no pending KeyPackage matches the Welcome");
        const e = this.pending[i];
        const tree = args.ratchet_tree ? decodeWhole(decodeRatchetTree, fromHex(args.ratchet_tree, "ratchet_tree"), "ratchet tree") : undefined;
        // Known quirk of ts-mls 1.6.4: joinGroup validates the tree and rejects
        // it when a leaf appears in the unmerged_leaves of several parent nodes
        // whose lists are not identical ("non-blank intermediate node must list
        // leaf node in its unmerged_leaves"). RFC 9420 section 12.4.3.1 only asks
        // that each intermediate list contain the leaf, and section 7.7 makes
        // successive Add commits without a path produce differing lists. The
        // refusal surfaces here as a failed join; TestTSMLSUnmergedLeavesQuirk
        // in interop/peer_test.go builds such a tree.
        this.state = await joinGroup(msg.welcome, e.publicPackage, e.privatePackage, makePskIndex(undefined, this.psks), e.cs, tree);
        this.cs = e.cs;
        this.pending.splice(i, 1);
        return { epoch: Number(this.state.groupContext.epoch) };
      }
      case "bench_join": {
        // Joins from one Welcome `repeat` times with the matching pending
        // KeyPackage, timing each join (decoding included). joinGroup returns
        // a new state and consumes nothing, so the repeats do the same work;
        // the first state is kept, as join would.
        if (this.state !== undefined) throw new Error("this peer already holds a group");
        const repeat = Number(required(args, "repeat"));
        if (!(repeat >= 1)) throw new Error("bench_join: repeat must be at least 1");
        const bytes = fromHex(required(args, "welcome"), "welcome");
        const times = [];
        const cpu = [];
        let first;
        let index = -1;
        for (let r = 0; r < repeat; r++) {
          const start = process.hrtime.bigint();
          const cpuStart = process.cpuUsage();
          const msg = decodeWhole(decodeMlsMessage, bytes, "MLSMessage");
          if (msg.wireformat !== "mls_welcome") throw new Error(`bench_join: got ${msg.wireformat}, want mls_welcome`);
          const refs = msg.welcome.secrets.map((s) => toHex(s.newMember));
          const i = this.pending.findIndex((e) => refs.includes(toHex(e.ref)));
          if (i < 0) throw new Error("bench_join: no pending KeyPackage matches the Welcome");
          const e = this.pending[i];
          const state = await joinGroup(msg.welcome, e.publicPackage, e.privatePackage, makePskIndex(undefined, this.psks), e.cs, undefined);
          times.push((process.hrtime.bigint() - start).toString());
          const c = process.cpuUsage(cpuStart);
          cpu.push(((c.user + c.system) * 1000).toString());
          if (first === undefined) {
            first = state;
            index = i;
          }
        }
        this.state = first;
        this.cs = this.pending[index].cs;
        this.pending.splice(index, 1);
        return { epoch: Number(this.state.groupContext.epoch), elapsed_ns: times, cpu_ns: cpu };
      }
      case "add_member": {
        const keyPackage = readKeyPackage(fromHex(required(args, "key_package"), "key_package"));
        return this.commit([{ proposalType: "add", add: { keyPackage } }], args.hold);
      }
      case "commit_update":
        // An empty Commit carries an UpdatePath, which refreshes our leaf.
        return this.commit([], args.hold);
      case "remove_member": {
        const removed = Number(required(args, "leaf_index"));
        return this.commit([{ proposalType: "remove", remove: { removed } }], args.hold);
      }
      case "commit": {
        this.needGroup();
        const extra = [];
        for (const kp of args.add ?? []) extra.push({ proposalType: "add", add: { keyPackage: readKeyPackage(fromHex(kp, "add")) } });
        for (const removed of args.remove ?? []) extra.push({ proposalType: "remove", remove: { removed: Number(removed) } });
        for (const id of args.external_psks ?? []) {
          const pskId = fromHex(id, "external_psks");
          extra.push({ proposalType: "psk", psk: { preSharedKeyId: { psktype: "external", pskId, pskNonce: this.pskNonce() } } });
        }
        for (const epoch of args.resumption_psk_epochs ?? []) {
          const pskGroupId = this.state.groupContext.groupId;
          extra.push({
            proposalType: "psk",
            psk: { preSharedKeyId: { psktype: "resumption", usage: "application", pskGroupId, pskEpoch: BigInt(epoch), pskNonce: this.pskNonce() } },
          });
        }
        return this.commit(extra, args.hold, args.public_message);
      }
      case "merge_pending": {
        if (this.held === undefined) throw new Error("no held commit");
        this.state = this.held;
        this.held = undefined;
        return { epoch: Number(this.state.groupContext.epoch) };
      }
      case "discard_pending":
        if (this.held === undefined) throw new Error("no held commit");
        this.held = undefined;
        return {};
      case "propose_add": {
        const keyPackage = readKeyPackage(fromHex(required(args, "key_package"), "key_package"));
        return this.propose({ proposalType: "add", add: { keyPackage } });
      }
      case "propose_remove":
        return this.propose({ proposalType: "remove", remove: { removed: Number(required(args, "leaf_index")) } });
      case "propose_update":
        // ts-mls 1.6.4 has no call that makes an Update proposal with a fresh
        // leaf key and keeps that key for when the proposal is committed.
        throw new Error("propose_update: unsupported by ts-mls 1.6.4 (no API for an Update proposal)");
      case "propose_self_remove":
        // defaultProposalTypes stops at group_context_extensions (7); a
        // SelfRemove (0x000a) would be skipped as a custom proposal.
        throw new Error("propose_self_remove: unsupported by ts-mls 1.6.4 (no SelfRemove proposal type)");
      case "add_external_psk":
        this.psks[bytesToBase64(fromHex(required(args, "psk_id"), "psk_id"))] = fromHex(required(args, "secret"), "secret");
        return {};
      case "external_join": {
        if (this.state !== undefined) throw new Error("this peer already holds a group");
        const msg = decodeWhole(decodeMlsMessage, fromHex(required(args, "group_info"), "group_info"), "MLSMessage");
        if (msg.wireformat !== "mls_group_info") throw new Error(`external_join: got ${msg.wireformat}, want mls_group_info`);
        const suite = ciphersuites[msg.groupInfo.groupContext.cipherSuite];
        const e = await this.newKeyPackage({ ...args, suite });
        const res = await joinGroupExternal(msg.groupInfo, e.publicPackage, e.privatePackage, false, e.cs);
        this.state = res.newState;
        this.cs = e.cs;
        return {
          commit: toHex(frame("mls_public_message", "publicMessage", res.publicMessage)),
          epoch: Number(this.state.groupContext.epoch),
        };
      }
      case "process": {
        this.needGroup();
        const msg = decodeWhole(decodeMlsMessage, fromHex(required(args, "message"), "message"), "MLSMessage");
        if (msg.wireformat !== "mls_private_message" && msg.wireformat !== "mls_public_message") {
          throw new Error(`process: got ${msg.wireformat}`);
        }
        const contentType =
          msg.wireformat === "mls_private_message" ? msg.privateMessage.contentType : msg.publicMessage.content.contentType;
        // Known bug of ts-mls 1.6.4: processMessage hands PrivateMessages to
        // processPrivateMessage with emptyPskIndex instead of the index it was
        // given, so a PrivateMessage commit with a PreSharedKey proposal fails
        // ("Could not find pskId referenced in proposal"). This peer calls
        // processPrivateMessage itself unless process_message_api asks for
        // the library's path (TestTSMLSPrivatePSKCommit pins the bug).
        const res =
          msg.wireformat === "mls_private_message" && !args.process_message_api
            ? await processPrivateMessage(this.state, msg.privateMessage, this.pskIndex(), this.cs, acceptAll)
            : await processMessage(msg, this.state, this.pskIndex(), acceptAll, this.cs);
        this.state = res.newState;
        // Another member's commit ends the epoch a held commit was made in.
        if (contentType === "commit") this.held = undefined;
        const out = { kind: contentType, epoch: Number(this.state.groupContext.epoch) };
        if (res.kind === "applicationMessage") out.plaintext = toHex(res.message);
        return out;
      }
      case "protect": {
        this.needGroup();
        const res = await createApplicationMessage(this.state, fromHex(required(args, "plaintext"), "plaintext"), this.cs);
        this.state = res.newState;
        return { message: toHex(frame("mls_private_message", "privateMessage", res.privateMessage)) };
      }
      case "export": {
        this.needGroup();
        const context = fromHex(args.context ?? "", "context");
        const secret = await mlsExporter(this.state.keySchedule.exporterSecret, required(args, "label"), context, Number(required(args, "length")), this.cs);
        return { secret: toHex(secret) };
      }
      case "epoch_authenticator":
        this.needGroup();
        return { value: toHex(this.state.keySchedule.epochAuthenticator) };
      case "state": {
        this.needGroup();
        const members = [];
        this.state.ratchetTree.forEach((n, i) => {
          if (i % 2 === 0 && n?.nodeType === "leaf") {
            members.push({ leaf_index: i / 2, identity: toHex(n.leaf.credential.identity) });
          }
        });
        return { epoch: Number(this.state.groupContext.epoch), members, own_leaf_index: this.state.privatePath.leafIndex };
      }
      case "group_info": {
        this.needGroup();
        const gi = await createGroupInfoWithExternalPubAndRatchetTree(this.state, [], this.cs);
        return { group_info: toHex(frame("mls_group_info", "groupInfo", gi)) };
      }
      case "heap": {
        // Bytes of JavaScript heap in use after a full collection (node must
        // run with --expose-gc), for memory-per-member figures.
        if (typeof globalThis.gc !== "function") throw new Error("heap: start node with --expose-gc");
        globalThis.gc();
        return { heap_bytes: process.memoryUsage().heapUsed };
      }
      default:
        throw new Error(`"${op}": unknown op`);
    }
  }
}

async function main() {
  const peer = new Peer();
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  // Requests are handled strictly one after another: each op may replace the
  // group state the next one reads.
  for await (const line of rl) {
    if (line.trim() === "") continue;
    let req;
    let resp;
    try {
      req = JSON.parse(line);
      const { id, op, ...args } = req;
      if (op === "elapsed") {
        resp = { id, ok: true, elapsed_ns: peer.lastElapsed.toString() };
      } else {
        const start = process.hrtime.bigint();
        const result = await peer.handle(op, args);
        peer.lastElapsed = process.hrtime.bigint() - start;
        resp = { id, ok: true, ...result };
      }
    } catch (err) {
      resp = { id: req?.id ?? null, ok: false, error: String(err?.message ?? err) };
    }
    process.stdout.write(JSON.stringify(resp) + "\n");
    if (req?.op === "quit") break;
  }
  rl.close();
}

main().catch((err) => {
  process.stderr.write(`peer stopped: ${err?.stack ?? err}\n`);
  process.exit(1);
});
