package evidence

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"

	"camvault/format/manifest"
)

// NodeKeys are the public keys that checkpoints are verified with,
// obtained out of band, never from the bundle being verified. A
// checkpoint that names its node (manifest.Checkpoint.Node) is checked
// against that node's key in ByNode when ByNode has it; one that names no
// node, or a node ByNode does not know, must verify with one of Any (keys
// given without their node: a node.pub file), or for one that names no
// node, with any key of ByNode.
type NodeKeys struct {
	ByNode map[string]ed25519.PublicKey
	Any    []ed25519.PublicKey
}

// KeysOf is the set of keys given without their node.
func KeysOf(pub ...ed25519.PublicKey) NodeKeys { return NodeKeys{Any: pub} }

// unnamedSigner is how Report.Signers lists the signer of checkpoints
// that name no node.
const unnamedSigner = "(unnamed)"

// check verifies cp and returns the key that did.
func (k NodeKeys) check(cp *manifest.Checkpoint) (ed25519.PublicKey, error) {
	if pub, ok := k.ByNode[cp.Node]; ok && cp.Node != "" {
		return pub, cp.Verify(pub)
	}
	candidates := k.Any
	if cp.Node == "" {
		for _, pub := range k.ByNode {
			candidates = append(candidates[:len(candidates):len(candidates)], pub)
		}
	}
	if len(candidates) == 0 {
		return nil, fmt.Errorf("checkpoint at record %d: no public key of node %q was given", cp.Index, cp.Node)
	}
	var err error
	for _, pub := range candidates {
		if err = cp.Verify(pub); err == nil {
			return pub, nil
		}
	}
	return nil, err
}

// noteSigner records in the report which key verified a checkpoint of
// which node: the export lists them (BundleNodeKeys) for its reader to
// compare with the keys obtained out of band.
func (r *Report) noteSigner(node string, pub ed25519.PublicKey) {
	if node == "" {
		node = unnamedSigner
	}
	if r.Signers == nil {
		r.Signers = map[string]string{}
	}
	r.Signers[node] = base64.StdEncoding.EncodeToString(pub)
}
