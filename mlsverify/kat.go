package mlsverify

import (
	"bytes"
	"encoding/hex"
	"fmt"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/keyschedule"
	"github.com/burrow-relay/burrow/mls/secrettree"
)

// The known answers below are facts taken from RFC 9420's official test
// vectors: github.com/mlswg/mls-implementations, folder test-vectors/, at
// commit cfd450286d1bfd9cd2519b95c80f9771f94a5b1a (the files read from
// ../shared/mls-test-vectors by the engine's tests). Each value says which
// file and which entry it comes from; all are cipher suite 1
// (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, the suite Marmot uses).

// welcome.json, the entry with cipher_suite 1: its key_package, and the
// new_member field of the first EncryptedGroupSecrets of its welcome,
// which is that KeyPackage's KeyPackageRef (RFC 9420 section 5.2).
const (
	katKeyPackage    = "00010005000100012028b2cd6417984dc4708c61a1cce7c0f11d181bd36d6f7a610ea21cb96f79ba6020275d9e6337b11a5e21ba755f2353053a500103efa1c5ac7c07d3a78f8817ad2d203de79c7e370156ce25a88d897a8ea7c8f90fea1f71fbeb5f31855312d8750007000120b640fbb0df8e646b29c83c5ed08aea89f72ab108922827ea76cd3b917d6d99420200010c00010002000300040005000600000400010002010000000000000000ffffffffffffffff004040fd81837a40a9ba774bb44db665081f4d0ff2a8f680ce5c902b17acc4ae6d9a14b9d4e9b4f8e7d74af8ff42032ec9caadf267e85931b550eebbe480150d4b9b0a0040401ec696ab731d5a7b1092b0db9912fe35086e188ce2946996bdf3cec463849f1a32f653b6e246b8b85a486ce3f604891501052c3d7bbee2155fff6a367e5a1f03"
	katKeyPackageRef = "8e1faada70f08b91ef7f7f79ed1da917d9ce3cea5e5ce22e4a8b10f4311559dd"
)

// key-schedule.json, the entry with cipher_suite 1: initial_init_secret,
// and from its epochs[0] the inputs (commit_secret, psk_secret,
// group_context) and some of the secrets the key schedule derives
// (RFC 9420 section 8), with its exporter check.
const (
	katInitSecret   = "a897b53575b4dd35fed4466e4e714bfa949eaa72e616a9c68a47b39cb7a60d2e"
	katCommitSecret = "a22606222e350fd7f0937168fe7548fb06626ab143cba7611d641693b1447509"
	katPSKSecret    = "e871b247379522395689182736cb3d1e7b108d6ae934b802223975de8dc3f80b"
	katGroupContext = "0001000120a897b53575b4dd35fed4466e4e714bfa949eaa72e616a9c68a47b39cb7a60d2e0000000000000000209769e302a99c457350a8e636009b12a2fee068664004606d6318eb3a1977d818205e57c9364dc71f0f71b19ffe561ab77257c490708a47e29f8f73f2b318201d2f00"

	katJoinerSecret       = "4fb996ba26b29a70f3ce6c310151ce8701cb812d027f4d4bbf5cc4e9f884638d"
	katEncryptionSecret   = "01588615c93d02c83bda0b587473303b1637a92bf80783206d963f9197c40a13"
	katExporterSecret     = "5a097e149f2a375d0b9e1d1f4dc3a9c6c1788df888e5441f41a8791f4dc56cea"
	katEpochAuthenticator = "7375d449cde2c5a856c13c8eb52c16bf9ef29eceef59b09d1f946bd1bac24643"
	katMembershipKey      = "970744ba7edd21700a3e106cb4e2b4c657cef6b41a1fe5b5a1418f86e76e037e"
	katInitSecretNext     = "505be2ce2ff922aa11e0a03d76346dda2981f1d9edf5cf98ecfc8757f69b00c9"
	// exporter.label (a string that happens to look like hex),
	// exporter.context and the 32-byte exporter.secret of the same epoch.
	katExporterLabel   = "9ba13d54ecdec7cbefcb47b4268d7b1990fabc6d6e67681e167959389d84e4e4"
	katExporterContext = "884f1af892ab002f5be4c5d5081ade9e0e6418c6ea7a9a92e90534f19dcef785"
	katExported        = "dbce4e25e59ab4dfa6f6200f113ed08393cf6e7286d024811141c6a4dd11c0cb"
)

// tree-validation.json, entry 0 (cipher_suite 1, two leaves): the
// serialized ratchet tree and tree_hashes[1], the hash of its root node
// (RFC 9420 section 7.8).
const (
	katTree     = "41a5010120c699b3cad02afaee6c9a0ea2a35f078482e53c830ebba510dc349b2a945ff96b20d9c893be859ac2c6a4ee95820ab1ffc63f8ef371054ae8165225886e6898026a000105416c6963650200010e00010002000300040005000600070000020001032091b43a9ebdd181fc2a368e05627b009a64591ed7bb29d78dcd6bef620351edb7004040efb4542a4364d9ce223ddcd170e0a1889f53ef10b7399b0ccfb0b01127189aeee93ee83810425827e8231f504055a8c41e7b6a3be7b062abdc67272533c66f0a010220566e1f1bddcf6b9a3415e3022c316cb09ba33733f6a307a42c7db653ff6ead7b0000010120129388082a7660bda213aaa17e7d6cd5e2b08b37cfa46e2fa0184cceb340ee2520a0ba7c18b0faa49f7cb51d9e8e76dc18efbadec946ba1a17b946ef2b4453550a000106416c696365310200010e00010002000300040005000600070000020001010000000063f31e410000000065d45fd1004040499a320a53322e9f9dd948128d46880d86e37b7905b963b66b22b4135412ef758a27fd31a5ef1bbad2927eda2c3b43d11b5e4ade1a8de36f4606373bddc01502"
	katTreeHash = "b30fe5a7fce94e0d267f3f8d3e1628c695587370833efcd11584b32978c23dd2"
)

// message-protection.json, the entry with cipher_suite 1: the group
// context fields, the sender's signature_pub, the epoch's
// encryption_secret and sender_data_secret, the application data and its
// PrivateMessage application_priv, sent by leaf 1 of two (RFC 9420
// section 6.3).
const (
	katMPGroupID          = "42e4c3a73738d838cb4f9dc550cb81406206943f9e6870ee150f2000ae8aa780"
	katMPEpoch            = 1184274
	katMPTreeHash         = "a257a326c7b632ce7ccdea8d3a3b5c3c2daa53a21029b3673ee05e9a3cea5934"
	katMPTranscript       = "59b10f7a137e853c4ef7ce43d2fe0a481bb80652f648c5efab11c3141a1ba60c"
	katMPSignaturePub     = "62087f5b047e5292d5d29ded0977442788633c196a607988238b8c4374b4b4be"
	katMPEncryptionSecret = "4db33574f514024e61e2a15e71527182f62561d84b4d8230501b623d848df998"
	katMPSenderDataSecret = "b21dfbbf69da2fec93299d8bd0795ad0aec22b42d83ff10a2e5e3f997672b8b3"
	katMPApplication      = "a1ab266714fdb6d121f4c7f248271fb824a3e61dd3f91835e68fc8789f17f754a86233781fb59d23811b"
	katMPApplicationPriv  = "000100022042e4c3a73738d838cb4f9dc550cb81406206943f9e6870ee150f2000ae8aa780000000000012121201001cf18ad2e0ad4462390d72714d68b2a845ba336c3e8d398d21334f8d0f407dab47ce77c5fff3107b2f4e4bf99936c0ec680364333403663b7a955708a73d91e921a4fb3ffd50292a51ec31d4ec684231eb6f765cfbd5cca5b78fbe42bbf1b04dd1682fc87678b3a4f1599770839b171caff15e5e264957f3d16c31ba3ca16416f4665115244291536ddb438528cdb8502de654be9ca093915d36b1ab"
)

// knownAnswers runs the engine's known-answer checks.
func knownAnswers() []Check {
	suite, err := cipher.New(mls.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		return []Check{{Name: "cipher suite 1", Status: StatusFail, Detail: err.Error()}}
	}
	var out []Check
	for _, k := range []struct {
		name, detail string
		run          func(*cipher.Suite) error
	}{
		{"KeyPackageRef (welcome.json)", "the KeyPackage's ref is the Welcome's new_member " + katKeyPackageRef[:16] + "…", katRef},
		{"key schedule, epoch 0 (key-schedule.json)", "joiner, encryption, exporter, membership and next init secrets, epoch authenticator, MLS-Exporter", katKeySchedule},
		{"tree hash (tree-validation.json)", "root tree hash " + katTreeHash[:16] + "… of a two-leaf tree", katTreeHashCheck},
		{"message protection round trip (message-protection.json)", "the vector's PrivateMessage opens and verifies; the same content protected here opens again", katMessageProtection},
	} {
		c := Check{Name: "known answer: " + k.name, Status: StatusPass, Detail: k.detail}
		if err := k.run(suite); err != nil {
			c.Status, c.Detail = StatusFail, err.Error()
		}
		out = append(out, c)
	}
	return out
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic("mlsverify: a known-answer constant is not hex: " + err.Error())
	}
	return b
}

func katRef(suite *cipher.Suite) error {
	m, err := mls.DecodeMLSMessage(unhex(katKeyPackage))
	if err != nil || m.KeyPackage == nil {
		return fmt.Errorf("decode the KeyPackage: %v", err)
	}
	b, err := m.KeyPackage.Bytes()
	if err != nil {
		return err
	}
	ref, err := suite.KeyPackageRef(b)
	if err != nil {
		return err
	}
	if !bytes.Equal(ref, unhex(katKeyPackageRef)) {
		return fmt.Errorf("KeyPackageRef %x, want %s", ref, katKeyPackageRef)
	}
	return nil
}

func katKeySchedule(suite *cipher.Suite) error {
	e, err := keyschedule.Derive(suite, unhex(katInitSecret), unhex(katCommitSecret), unhex(katPSKSecret), unhex(katGroupContext))
	if err != nil {
		return err
	}
	defer e.Drop()
	for _, c := range []struct {
		name      string
		got, want []byte
	}{
		{"joiner_secret", e.JoinerSecret(), unhex(katJoinerSecret)},
		{"encryption_secret", e.EncryptionSecret(), unhex(katEncryptionSecret)},
		{"exporter_secret", e.ExporterSecret(), unhex(katExporterSecret)},
		{"epoch_authenticator", e.EpochAuthenticator(), unhex(katEpochAuthenticator)},
		{"membership_key", e.MembershipKey(), unhex(katMembershipKey)},
		{"init_secret", e.InitSecret(), unhex(katInitSecretNext)},
	} {
		if !bytes.Equal(c.got, c.want) {
			return fmt.Errorf("%s differs from the vector", c.name)
		}
	}
	x, err := e.Exporter(katExporterLabel, unhex(katExporterContext), 32)
	if err != nil {
		return err
	}
	if !x.Equal(unhex(katExported)) {
		return fmt.Errorf("MLS-Exporter output differs from the vector")
	}
	return nil
}

func katTreeHashCheck(suite *cipher.Suite) error {
	rt, err := mls.DecodeRatchetTree(unhex(katTree))
	if err != nil {
		return err
	}
	tree, err := mls.NewTree(rt)
	if err != nil {
		return err
	}
	h, err := tree.TreeHash(suite)
	if err != nil {
		return err
	}
	if !bytes.Equal(h, unhex(katTreeHash)) {
		return fmt.Errorf("tree hash %x, want %s", h, katTreeHash)
	}
	return nil
}

// katMessageProtection opens the vector's PrivateMessage, checks the
// content and its signature, then protects the same content itself and
// opens that too.
func katMessageProtection(suite *cipher.Suite) error {
	ctx := &mls.GroupContext{Version: mls.MLS10, CipherSuite: mls.X25519AES128GCMSHA256Ed25519, GroupID: unhex(katMPGroupID),
		Epoch: katMPEpoch, TreeHash: unhex(katMPTreeHash), ConfirmedTranscriptHash: unhex(katMPTranscript)}
	newTree := func() (*secrettree.Tree, error) {
		return secrettree.New(suite, unhex(katMPEncryptionSecret), 2, secrettree.Config{})
	}
	m, err := mls.DecodeMLSMessage(unhex(katMPApplicationPriv))
	if err != nil || m.PrivateMessage == nil {
		return fmt.Errorf("decode the PrivateMessage: %v", err)
	}
	st, err := newTree()
	if err != nil {
		return err
	}
	content, auth, err := mls.DecryptPrivateMessage(suite, st, unhex(katMPSenderDataSecret), m.PrivateMessage)
	if err != nil {
		return fmt.Errorf("open the vector's message: %w", err)
	}
	if content.Sender.Index != 1 || !bytes.Equal(content.ApplicationData, unhex(katMPApplication)) {
		return fmt.Errorf("the vector's message opened to other content")
	}
	if err := mls.VerifyContentSignature(suite, unhex(katMPSignaturePub), mls.WireFormatPrivateMessage, content, auth.Signature, ctx); err != nil {
		return fmt.Errorf("the vector's signature: %w", err)
	}
	if st, err = newTree(); err != nil {
		return err
	}
	own, err := mls.EncryptPrivateMessage(suite, st, unhex(katMPSenderDataSecret), content, auth, 7, nil)
	if err != nil {
		return fmt.Errorf("protect: %w", err)
	}
	if st, err = newTree(); err != nil {
		return err
	}
	back, backAuth, err := mls.DecryptPrivateMessage(suite, st, unhex(katMPSenderDataSecret), own)
	if err != nil {
		return fmt.Errorf("open its own message: %w", err)
	}
	if !bytes.Equal(back.ApplicationData, unhex(katMPApplication)) || !bytes.Equal(backAuth.Signature, auth.Signature) {
		return fmt.Errorf("the round trip changed the content")
	}
	return nil
}
