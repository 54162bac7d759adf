package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// setUID sets the pod's UID to the hash of its content. It must run after
// setDefaults, so that spelling a default out does not change the UID, and
// before the decoder's annotations are added, so that renaming the file
// does not either. A UID or a status in the manifest is ignored (and
// warned about) and does not count.
func setUID(pod *corev1.Pod) error {
	pod.UID = ""
	pod.Status = corev1.PodStatus{}
	uid, err := contentUID(pod)
	if err != nil {
		return err
	}
	pod.UID = uid
	return nil
}

// contentUID hashes the pod's JSON form. encoding/json writes struct fields
// in a fixed order and map keys sorted, and quantities in canonical form,
// so the hash depends on the content only, not on comments, key order,
// YAML or JSON, or a quantity's spelling within its format (0.5 and 500m).
// The hash is formatted as an RFC 9562 version 8 (custom) UUID.
func contentUID(pod *corev1.Pod) (types.UID, error) {
	data, err := json.Marshal(pod)
	if err != nil {
		return "", fmt.Errorf("hash pod: %w", err)
	}
	sum := sha256.Sum256(data)
	u := sum[:16]
	u[6] = u[6]&0x0f | 0x80 // version 8
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	h := hex.EncodeToString(u)
	return types.UID(h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]), nil
}
