// Package mls is Burrow's own implementation of the Messaging Layer Security
// protocol (RFC 9420) for ciphersuites 0x0001-0x0003, with the extension
// points Marmot groups use from the MLS extensions draft (SelfRemove,
// AppDataUpdate, app_data_dictionary, last_resort).
//
// So far it owns:
//   - the wire structures: every struct of RFC 9420 that travels or is
//     signed, with a decoder and an encoder built on mls/codec. Decoding
//     followed by encoding reproduces the input bytes exactly: unknown
//     extension, proposal and credential types are kept. Decoded byte slices
//     alias the input buffer, and structures whose signatures are checked
//     keep the exact bytes they were decoded from (their Raw field);
//   - the ratchet tree (Tree): resolutions, tree hashes, parent-hash and
//     unmerged-leaves verification, a joiner's integrity checks, adding,
//     updating and removing leaves;
//   - TreeKEM: creating an UpdatePath; merging one, locating and
//     decrypting the receiver's path secret, deriving the commit secret;
//   - message protection: content signatures, membership tags, and
//     PrivateMessage encryption and decryption over mls/secrettree;
//   - opening a Welcome (GroupSecrets, GroupInfo, its signature);
//   - group-independent KeyPackage and LeafNode checks, and KeyPackage
//     creation;
//   - the group state machine (Group): creating a group, proposing,
//     committing with Welcomes, processing received proposals and commits
//     with every check of RFC 9420 section 12.2 (a rejected commit leaves
//     the state as it was), joining from a Welcome or by external commit,
//     application message protection, the exporter, and deletion of each
//     old epoch's secrets when a commit is accepted.
//
// Structs are plain and exported so that tests can build deliberately
// invalid values; encoding does not validate semantics, only what the wire
// format itself cannot express.
package mls
