// Package mls is Burrow's own implementation of the Messaging Layer Security
// protocol (RFC 9420) for ciphersuites 0x0001-0x0003, with the extension
// points Marmot groups use from the MLS extensions draft (SelfRemove,
// AppDataUpdate, app_data_dictionary, last_resort).
//
// It owns:
//   - the wire structures: every struct of RFC 9420 that travels or is
//     signed, with a decoder and an encoder built on mls/codec. Decoding is
//     strict (one encoding per value), so decoding followed by encoding
//     reproduces the input exactly, unknown extension, proposal and
//     credential types included, and a signature is always checked over
//     the received bytes. Decoded byte slices alias the input buffer.
//     Structures are signed through their constructors and Sign methods
//     (NewKeyPackage, LeafNode.Sign, KeyPackage.Sign); no cached bytes
//     need clearing after a field is edited;
//   - the ratchet tree (Tree): resolutions, tree hashes, parent-hash and
//     unmerged-leaves verification, a joiner's integrity checks, adding,
//     updating and removing leaves;
//   - TreeKEM: creating an UpdatePath; merging one, locating and
//     decrypting the receiver's path secret, deriving the commit secret;
//   - message protection: content signatures, membership tags, and
//     PrivateMessage encryption and decryption over mls/secrettree, whose
//     keys are consumed only when a message is accepted;
//   - opening a Welcome (GroupSecrets, GroupInfo, its signature);
//   - group-independent KeyPackage and LeafNode checks, and KeyPackage
//     creation;
//   - the group state machine (Group): creating a group, proposing in the
//     wire format chosen per message, committing with Welcomes, staging
//     received and created commits to inspect and then merge or discard
//     them, processing proposals and commits with every check of RFC 9420
//     section 12.2 and the application's credential validator (a rejected
//     message leaves the state unchanged, byte for byte), joining from a
//     Welcome or by external commit, application messages of the current
//     and the last few epochs, the exporter, deletion of each old epoch's
//     secrets, injectable randomness and clock, and the serialization of
//     the whole state (MarshalState, RestoreGroup).
//
// Structs are plain and exported so that tests can build deliberately
// invalid values; encoding does not validate semantics, only what the wire
// format itself cannot express.
package mls
