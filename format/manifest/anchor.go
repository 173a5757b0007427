package manifest

import "fmt"

// AnchorDir is the directory, under an incident's key prefix in the chunk
// store, of its checkpoint anchors.
const AnchorDir = "checkpoints/"

// AnchorPrefix is the store prefix under which an incident's checkpoint
// anchors are listed.
func AnchorPrefix(incident string) string {
	return incident + "/" + AnchorDir
}

// AnchorKey is the store key of an incident's checkpoint at index: 12
// digits, so a listing sorts by index.
func AnchorKey(incident string, index uint64) string {
	return fmt.Sprintf("%s%012d.json", AnchorPrefix(incident), index)
}
