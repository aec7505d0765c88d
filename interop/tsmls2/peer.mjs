// An MLS group member backed by ts-mls 2.0.0-rc.10 (the release current
// TypeScript Marmot clients build on), driven over stdin/stdout with the
// line-delimited JSON protocol of interop/README.md, like the ts-mls 1.6.4
// peer in ../tsmls. ts-mls 2 takes one params object per call, carries the
// ciphersuite, authentication service and external PSKs in an MlsContext,
// and uses numbers for wire formats, proposal and node types.
//
// One process holds at most one group and any number of pending KeyPackages.
// Diagnostics go to stderr; stdout carries protocol lines only.

import { createInterface } from "node:readline";
import {
  acceptAll,
  bytesToBase64,
  ciphersuites,
  createApplicationMessage,
  createCommit,
  createGroup,
  createGroupInfoWithExternalPubAndRatchetTree,
  createProposal,
  defaultCapabilities,
  defaultCredentialTypes,
  defaultExtensionTypes,
  defaultLifetime,
  defaultProposalTypes,
  encode,
  generateKeyPackage,
  generateKeyPackageWithKey,
  getCiphersuiteImpl,
  joinGroup,
  joinGroupExternal,
  keyPackageDecoder,
  keyPackageEncoder,
  makeCustomExtension,
  makeKeyPackageRef,
  mlsExporter,
  mlsMessageDecoder,
  mlsMessageEncoder,
  nodeTypes,
  processMessage,
  processPrivateMessage,
  protocolVersions,
  pskTypes,
  resumptionPSKUsages,
  unsafeTestingAuthenticationService,
  wireformats,
} from "ts-mls";
import { p256 } from "@noble/curves/nist.js";

const TOOL = "ts-mls 2.0.0-rc.10";

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
  return getCiphersuiteImpl(name);
}

function decodeWhole(decoder, bytes, what) {
  const r = decoder(bytes, 0);
  if (r === undefined) throw new Error(`cannot decode ${what}`);
  if (r[1] !== bytes.length) throw new Error(`${what}: ${bytes.length - r[1]} trailing bytes`);
  return r[0];
}

const wireformatName = new Map(Object.entries(wireformats).map(([name, v]) => [v, name]));

function decodeMessage(bytes, want, op) {
  const msg = decodeWhole(mlsMessageDecoder, bytes, "MLSMessage");
  if (!want.includes(msg.wireformat)) {
    throw new Error(`${op}: got ${wireformatName.get(msg.wireformat) ?? msg.wireformat}`);
  }
  return msg;
}

// A KeyPackage may arrive bare or framed as an MLSMessage: both start with
// 00 01, and bytes 2-3 are the wire format (00 05) only in the framed form.
function readKeyPackage(bytes) {
  if (bytes.length >= 4 && bytes[0] === 0 && bytes[1] === 1 && bytes[2] === 0 && bytes[3] === 5) {
    return decodeMessage(bytes, [wireformats.mls_key_package], "key_package").keyPackage;
  }
  return decodeWhole(keyPackageDecoder, bytes, "KeyPackage");
}

// customExtensions turns [{type, data (hex)}] into ts-mls extensions.
function customExtensions(list, field) {
  if (!Array.isArray(list)) throw new Error(`${field}: want a list of {type, data}`);
  return list.map((e) => makeCustomExtension({ extensionType: Number(e.type), extensionData: fromHex(e.data, field) }));
}

const frame = (wireformat, field, value) =>
  encode(mlsMessageEncoder, { version: protocolVersions.mls10, wireformat, [field]: value });

const contentTypeNames = { 1: "application", 2: "proposal", 3: "commit" };

class Peer {
  constructor() {
    this.pending = []; // {publicPackage, privatePackage, ref, cs}
    this.state = undefined;
    this.cs = undefined;
    // A commit made with hold: its state, adopted by merge_pending.
    this.held = undefined;
    // External PSKs by base64 id, as MlsContext.externalPsks wants them.
    this.psks = {};
    // Nanoseconds the previous op (other than elapsed) took inside this
    // process, so a benchmark can leave out the pipe and JSON.
    this.lastElapsed = 0n;
  }

  context(cs) {
    // Basic credentials carry no certificate to check; the tests compare
    // identities themselves.
    return { cipherSuite: cs ?? this.cs, authService: unsafeTestingAuthenticationService, externalPsks: this.psks };
  }

  async newKeyPackage(args) {
    const identity = fromHex(required(args, "identity"), "identity");
    if (identity.length === 0) throw new Error("identity is empty");
    const cs = await suiteImpl(args.suite);
    // ts-mls's default lifetime is 0 .. 2^63-1 (no expiry) unless one is given.
    const lifetime = args.lifetime
      ? { notBefore: BigInt(args.lifetime.not_before), notAfter: BigInt(args.lifetime.not_after) }
      : defaultLifetime();
    const capabilities = defaultCapabilities();
    // Marmot (marmot/ interop): extra capability values, leaf and
    // KeyPackage extensions as {type, data} with hex data, and the
    // signature key made by new_signature_key (its public key is what an
    // account identity proof binds, so it must be known in advance).
    capabilities.extensions.push(...(args.capability_extensions ?? []));
    capabilities.proposals.push(...(args.capability_proposals ?? []));
    const params = {
      credential: { credentialType: defaultCredentialTypes.basic, identity },
      capabilities,
      lifetime,
      cipherSuite: cs,
    };
    if (args.leaf_extensions) params.leafNodeExtensions = customExtensions(args.leaf_extensions, "leaf_extensions");
    if (args.extensions) params.extensions = customExtensions(args.extensions, "extensions");
    let kp;
    if (args.use_signature_key) {
      if (this.nextSignatureKey === undefined) throw new Error("use_signature_key: call new_signature_key first");
      kp = await generateKeyPackageWithKey({ ...params, signatureKeyPair: this.nextSignatureKey });
      this.nextSignatureKey = undefined;
    } else if (cs.id === ciphersuites[P256_SUITE] && !args.default_signature_key) {
      kp = await generateKeyPackageWithKey({ ...params, signatureKeyPair: await uncompressedP256(cs) });
    } else {
      kp = await generateKeyPackage(params);
    }
    const ref = await makeKeyPackageRef(kp.publicPackage, cs.hash);
    return { ...kp, ref, cs };
  }

  needGroup() {
    if (this.state === undefined) throw new Error("no group: create_group or join first");
  }

  findPending(welcome, op) {
    const refs = welcome.secrets.map((s) => toHex(s.newMember));
    const i = this.pending.findIndex((e) => refs.includes(toHex(e.ref)));
    if (i < 0) throw new Error(`${op}: no pending KeyPackage matches the Welcome`);
    return i;
  }

  // commit makes a Commit of every proposal received in this epoch (by
  // reference) plus extra ones by value, and applies it unless hold is set:
  // then the new state waits for merge_pending or discard_pending.
  async commit(extraProposals, hold, publicMessage, libraryPskLookup) {
    this.needGroup();
    if (this.held !== undefined) throw new Error("a held commit is pending: merge_pending or discard_pending first");
    const res = await createCommit({
      context: this.context(),
      state: this.state,
      extraProposals,
      ratchetTreeExtension: true,
      wireAsPublicMessage: Boolean(publicMessage),
      // Known bug of ts-mls 2.0.0-rc.10: createCommit looks resumption PSKs
      // up in params.resumingFromState (set only by branch and reinit), not
      // in the group's own state, so a commit with a resumption PSK of this
      // group fails ("Could not find pskId referenced in proposal"). createCommit
      // passes its params through, so this peer names the state itself unless
      // library_psk_lookup asks for the library's path
      // (TestTSMLSResumptionPSKCommit pins the bug).
      ...(libraryPskLookup ? {} : { resumingFromState: this.state }),
    });
    if (hold) this.held = res.newState;
    else this.state = res.newState;
    const out = { commit: toHex(encode(mlsMessageEncoder, res.commit)), epoch: Number(res.newState.groupContext.epoch) };
    if (res.welcome !== undefined) out.welcome = toHex(encode(mlsMessageEncoder, res.welcome));
    return out;
  }

  // pskNonce is a fresh nonce of the KDF's output length (RFC 9420 section 8.4).
  pskNonce() {
    return crypto.getRandomValues(new Uint8Array(this.cs.kdf.size));
  }

  async propose(proposal) {
    this.needGroup();
    const res = await createProposal({ context: this.context(), state: this.state, wireAsPublicMessage: true, proposal });
    this.state = res.newState;
    return { message: toHex(encode(mlsMessageEncoder, res.message)) };
  }

  async handle(op, args) {
    switch (op) {
      case "hello":
        return { tool: TOOL };
      case "quit":
        return {};
      case "new_signature_key": {
        // A signature key pair for the next create_key_package or
        // create_group with use_signature_key.
        const cs = await suiteImpl(args.suite);
        this.nextSignatureKey = await cs.signature.keygen();
        return { public_key: toHex(this.nextSignatureKey.publicKey) };
      }
      case "create_key_package": {
        const e = await this.newKeyPackage(args);
        this.pending.push(e);
        const lt = e.publicPackage.leafNode.lifetime;
        return {
          key_package: toHex(frame(wireformats.mls_key_package, "keyPackage", e.publicPackage)),
          key_package_bare: toHex(encode(keyPackageEncoder, e.publicPackage)),
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
        // Optional GroupContext extensions (marmot/ interop): custom ones
        // as {type, data}, and required_capabilities given by its lists.
        const extensions = args.group_extensions ? customExtensions(args.group_extensions, "group_extensions") : [];
        if (args.required_capabilities) {
          const rc = args.required_capabilities;
          extensions.unshift({
            extensionType: defaultExtensionTypes.required_capabilities,
            extensionData: { extensionTypes: rc.extensions ?? [], proposalTypes: rc.proposals ?? [], credentialTypes: rc.credentials ?? [] },
          });
        }
        this.state = await createGroup({
          context: this.context(e.cs),
          groupId,
          keyPackage: e.publicPackage,
          privateKeyPackage: e.privatePackage,
          ...(extensions.length > 0 ? { extensions } : {}),
        });
        this.cs = e.cs;
        return { epoch: Number(this.state.groupContext.epoch) };
      }
      case "join": {
        if (this.state !== undefined) throw new Error("this peer already holds a group");
        if (args.ratchet_tree) throw new Error("join: this peer joins only with the ratchet_tree extension in the Welcome's GroupInfo");
        const msg = decodeMessage(fromHex(required(args, "welcome"), "welcome"), [wireformats.mls_welcome], "join");
        const i = this.findPending(msg.welcome, "join");
        const e = this.pending[i];
        this.state = await joinGroup({
          context: this.context(e.cs),
          welcome: msg.welcome,
          keyPackage: e.publicPackage,
          privateKeys: e.privatePackage,
        });
        this.cs = e.cs;
        this.pending.splice(i, 1);
        return { epoch: Number(this.state.groupContext.epoch) };
      }
      case "bench_join": {
        // As in the ts-mls 1.6.4 peer: joins from one Welcome `repeat` times,
        // timing each (decoding included), and keeps the first state.
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
          const msg = decodeMessage(bytes, [wireformats.mls_welcome], "bench_join");
          const i = this.findPending(msg.welcome, "bench_join");
          const e = this.pending[i];
          const state = await joinGroup({
            context: this.context(e.cs),
            welcome: msg.welcome,
            keyPackage: e.publicPackage,
            privateKeys: e.privatePackage,
          });
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
        return this.commit([{ proposalType: defaultProposalTypes.add, add: { keyPackage } }], args.hold);
      }
      case "commit_update":
        // An empty Commit carries an UpdatePath, which refreshes our leaf.
        return this.commit([], args.hold);
      case "remove_member": {
        const removed = Number(required(args, "leaf_index"));
        return this.commit([{ proposalType: defaultProposalTypes.remove, remove: { removed } }], args.hold);
      }
      case "commit": {
        this.needGroup();
        const extra = [];
        for (const kp of args.add ?? []) {
          extra.push({ proposalType: defaultProposalTypes.add, add: { keyPackage: readKeyPackage(fromHex(kp, "add")) } });
        }
        for (const removed of args.remove ?? []) {
          extra.push({ proposalType: defaultProposalTypes.remove, remove: { removed: Number(removed) } });
        }
        for (const id of args.external_psks ?? []) {
          const pskId = fromHex(id, "external_psks");
          extra.push({
            proposalType: defaultProposalTypes.psk,
            psk: { preSharedKeyId: { psktype: pskTypes.external, pskId, pskNonce: this.pskNonce() } },
          });
        }
        for (const epoch of args.resumption_psk_epochs ?? []) {
          extra.push({
            proposalType: defaultProposalTypes.psk,
            psk: {
              preSharedKeyId: {
                psktype: pskTypes.resumption,
                usage: resumptionPSKUsages.application,
                pskGroupId: this.state.groupContext.groupId,
                pskEpoch: BigInt(epoch),
                pskNonce: this.pskNonce(),
              },
            },
          });
        }
        return this.commit(extra, args.hold, args.public_message, args.library_psk_lookup);
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
        return this.propose({ proposalType: defaultProposalTypes.add, add: { keyPackage } });
      }
      case "propose_remove":
        return this.propose({ proposalType: defaultProposalTypes.remove, remove: { removed: Number(required(args, "leaf_index")) } });
      case "propose_update":
        // As in 1.6.4: no call makes an Update proposal with a fresh leaf key
        // and keeps that key for when the proposal is committed.
        throw new Error("propose_update: unsupported by ts-mls 2.0.0-rc.10 (no API for an Update proposal)");
      case "propose_self_remove":
        // defaultProposalTypes stops at group_context_extensions (7); custom
        // proposals are skipped when a commit is applied.
        throw new Error("propose_self_remove: unsupported by ts-mls 2.0.0-rc.10 (no SelfRemove proposal type)");
      case "add_external_psk":
        this.psks[bytesToBase64(fromHex(required(args, "psk_id"), "psk_id"))] = fromHex(required(args, "secret"), "secret");
        return {};
      case "external_join": {
        if (this.state !== undefined) throw new Error("this peer already holds a group");
        const msg = decodeMessage(fromHex(required(args, "group_info"), "group_info"), [wireformats.mls_group_info], "external_join");
        const e = await this.newKeyPackage({ ...args, suite: msg.groupInfo.groupContext.cipherSuite });
        const res = await joinGroupExternal({
          context: this.context(e.cs),
          groupInfo: msg.groupInfo,
          keyPackage: e.publicPackage,
          privateKeys: e.privatePackage,
          resync: false,
        });
        this.state = res.newState;
        this.cs = e.cs;
        return {
          commit: toHex(frame(wireformats.mls_public_message, "publicMessage", res.publicMessage)),
          epoch: Number(this.state.groupContext.epoch),
        };
      }
      case "process": {
        this.needGroup();
        const msg = decodeMessage(
          fromHex(required(args, "message"), "message"),
          [wireformats.mls_private_message, wireformats.mls_public_message],
          "process",
        );
        const contentType =
          msg.wireformat === wireformats.mls_private_message ? msg.privateMessage.contentType : msg.publicMessage.content.contentType;
        // Known bug of ts-mls 2.0.0-rc.10 (as in 1.6.4): processMessage hands
        // PrivateMessages to processPrivateMessage with externalPsks {}, so a
        // PrivateMessage commit with an external PSK fails ("Could not find
        // pskId referenced in proposal"). This peer calls processPrivateMessage
        // itself unless process_message_api asks for the library's path
        // (TestTSMLSPrivatePSKCommit pins the bug).
        const res =
          msg.wireformat === wireformats.mls_private_message && !args.process_message_api
            ? await processPrivateMessage({ context: this.context(), state: this.state, privateMessage: msg.privateMessage, callback: acceptAll })
            : await processMessage({ context: this.context(), state: this.state, message: msg, callback: acceptAll });
        this.state = res.newState;
        const kind = contentTypeNames[contentType] ?? String(contentType);
        // Another member's commit ends the epoch a held commit was made in.
        if (kind === "commit") this.held = undefined;
        const out = { kind, epoch: Number(this.state.groupContext.epoch) };
        if (res.kind === "applicationMessage") out.plaintext = toHex(res.message);
        return out;
      }
      case "protect": {
        this.needGroup();
        const res = await createApplicationMessage({
          context: this.context(),
          state: this.state,
          message: fromHex(required(args, "plaintext"), "plaintext"),
        });
        this.state = res.newState;
        return { message: toHex(encode(mlsMessageEncoder, res.message)) };
      }
      case "export": {
        this.needGroup();
        const context = fromHex(args.context ?? "", "context");
        const secret = await mlsExporter(
          this.state.keySchedule.exporterSecret,
          required(args, "label"),
          context,
          Number(required(args, "length")),
          this.cs,
        );
        return { secret: toHex(secret) };
      }
      case "epoch_authenticator":
        this.needGroup();
        return { value: toHex(this.state.keySchedule.epochAuthenticator) };
      case "state": {
        this.needGroup();
        const members = [];
        this.state.ratchetTree.forEach((n, i) => {
          if (i % 2 === 0 && n?.nodeType === nodeTypes.leaf) {
            members.push({ leaf_index: i / 2, identity: toHex(n.leaf.credential.identity) });
          }
        });
        return { epoch: Number(this.state.groupContext.epoch), members, own_leaf_index: this.state.privatePath.leafIndex };
      }
      case "group_info": {
        this.needGroup();
        const gi = await createGroupInfoWithExternalPubAndRatchetTree(this.state, [], this.cs);
        return { group_info: toHex(frame(wireformats.mls_group_info, "groupInfo", gi)) };
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
