package runtime

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/peapod/peapod/runtime/shim"
)

// imageFile, in an attempt's record directory, names the image the
// attempt runs, so that a restarted agent reports the same imageID.
const imageFile = "image.json"

// imageRecord is the content of imageFile.
type imageRecord struct {
	// StatusID is the attempt's imageID (see imageID).
	StatusID string `json:"imageID"`
	// ID is the store's image ID, for garbage collection; empty for a
	// rootfs: image.
	ID string `json:"id,omitempty"`
}

// recordImage writes the image record of an attempt before it starts.
func recordImage(attemptDir string, rec imageRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode image record: %w", err)
	}
	if err := os.MkdirAll(attemptDir, 0o700); err != nil {
		return err
	}
	return shim.WriteFileAtomic(filepath.Join(attemptDir, imageFile), b, 0o600)
}

// readImageRecord returns the image record of an attempt, empty when
// there is none (an attempt started by an agent that did not record it).
func readImageRecord(attemptDir string) imageRecord {
	var rec imageRecord
	b, err := os.ReadFile(filepath.Join(attemptDir, imageFile))
	if err != nil || json.Unmarshal(b, &rec) != nil {
		return imageRecord{}
	}
	return rec
}

// ImagesInUse returns the store IDs of the images of every container
// attempt the host keeps, running or exited (an exited container may be
// restarted), for image garbage collection.
func (r *Runtime) ImagesInUse() (map[string]bool, error) {
	files, err := filepath.Glob(filepath.Join(r.podsDir(), "*", "containers", "*", "*", imageFile))
	if err != nil {
		return nil, fmt.Errorf("list image records: %w", err)
	}
	inUse := make(map[string]bool)
	for _, f := range files {
		if rec := readImageRecord(filepath.Dir(f)); rec.ID != "" {
			inUse[rec.ID] = true
		}
	}
	return inUse, nil
}
