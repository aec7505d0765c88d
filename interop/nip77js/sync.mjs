// A NIP-77 (negentropy) client run against Burrow: the reconciliation is
// nostr-tools' own (its nip77 NegentropySync over its Relay), an
// implementation independent of the relay's (go-nostr's negentropy).
//
//   node sync.mjs ws://127.0.0.1:3334 < job.json
//
// job.json: {"filter": {...NIP-01 filter...},
//            "items": [{"id": "<64 hex>", "created_at": <seconds>}, ...]}
// (the events the client holds). It prints one JSON line:
//   {"have": [ids the client holds and the relay lacks],
//    "need": [ids the relay holds and the client lacks],
//    "rounds": <NEG-MSG messages received from the relay>,
//    "sent": [<byte length of each message the client sent>],
//    "received": [<byte length of each message the relay sent>]}
// ("have" and "need" in the order nostr-tools reported them), or
// {"error": "..."} and exit 1 on NEG-ERR, a reconcile error, a dropped
// connection or a timeout.

import { nip77 } from 'nostr-tools';
import { Relay, useWebSocketImplementation } from 'nostr-tools/relay';
import WebSocket from 'ws';

useWebSocketImplementation(WebSocket); // node 20 has no global WebSocket

const url = process.argv[2];
if (!url) {
  console.error('usage: node sync.mjs <ws url> < job.json');
  process.exit(2);
}

// Writes one line and exits once it is written: stdout to a pipe is
// asynchronous, and process.exit would cut a long line short.
function finish(result, code) {
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code));
}

function fail(error) {
  finish({ error }, 1);
}

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const job = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const storage = new nip77.NegentropyStorageVector();
for (const it of job.items) storage.insert(it.created_at, it.id);
storage.seal();

const timer = setTimeout(() => fail('timeout: the reconciliation did not finish in 120 s'), 120_000);

let relay;
try {
  relay = await Relay.connect(url);
} catch (err) {
  fail(`connect: ${err}`);
}
relay.onclose = () => fail('the relay closed the connection');
relay.onnotice = (msg) => console.error(`NOTICE: ${msg}`);

const have = [];
const need = [];
const sent = [];
const received = [];
let negErr = null;

// Count what goes out (NEG-OPEN and NEG-MSG carry a negentropy message).
const send = relay.send.bind(relay);
relay.send = (msg) => {
  const m = /^\["NEG-(?:OPEN|MSG)",.*"([0-9a-f]*)"\]$/s.exec(msg);
  if (m) sent.push(m[1].length / 2);
  return send(msg);
};

const done = new Promise((resolve) => {
  const sync = new nip77.NegentropySync(relay, storage, job.filter, {
    onhave: (id) => have.push(id),
    onneed: (id) => need.push(id),
    onclose: (reason) => resolve(reason),
  });
  // NegentropySync's onclose is called with no reason on NEG-ERR (and on
  // success): read the messages first to tell the two apart.
  const sub = sync.subscription;
  const inner = sub.oncustom;
  sub.oncustom = (data) => {
    if (data[0] === 'NEG-MSG' && typeof data[2] === 'string') received.push(data[2].length / 2);
    if (data[0] === 'NEG-ERR') negErr = String(data[2]);
    inner(data);
  };
  sync.start();
});

const reason = await done;
clearTimeout(timer);
relay.onclose = null;
if (negErr !== null) fail(`NEG-ERR: ${negErr}`);
else if (reason) fail(reason);
else {
  relay.close();
  finish({ have, need, rounds: received.length, sent, received }, 0);
}
