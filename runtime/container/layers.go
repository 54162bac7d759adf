package container

import (
	"encoding/json"
	"fmt"
)

// Layers are an image's layer directories, the base layer first.
//
// The agent sends a Spec to the pod's shim as JSON, and a shim started by
// an older agent, from before images had layers, reads "Lower" as one
// directory. So a single layer is written as a string, which such a shim
// still runs after an agent upgrade; more layers are written as a list,
// and both forms are read.
type Layers []string

// MarshalJSON implements json.Marshaler.
func (l Layers) MarshalJSON() ([]byte, error) {
	if len(l) == 1 {
		return json.Marshal(l[0])
	}
	return json.Marshal([]string(l))
}

// UnmarshalJSON implements json.Unmarshaler.
func (l *Layers) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = Layers{one}
		if one == "" {
			*l = nil
		}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("container layers: %w", err)
	}
	*l = many
	return nil
}
