package container

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLayersJSON: one layer travels as the string an older shim reads,
// more as a list; both decode.
func TestLayersJSON(t *testing.T) {
	for _, tt := range []struct {
		layers Layers
		json   string
	}{
		{Layers{"/img"}, `{"Lower":"/img"}`},
		{Layers{"/base", "/top"}, `{"Lower":["/base","/top"]}`},
		{nil, `{"Lower":null}`},
	} {
		b, err := json.Marshal(struct{ Lower Layers }{tt.layers})
		if err != nil || string(b) != tt.json {
			t.Errorf("marshal %q = %s, %v; want %s", tt.layers, b, err, tt.json)
		}
		var got struct{ Lower Layers }
		if err := json.Unmarshal([]byte(tt.json), &got); err != nil {
			t.Errorf("unmarshal %s: %v", tt.json, err)
		}
		if diff := cmp.Diff(tt.layers, got.Lower); diff != "" {
			t.Errorf("round trip of %s (-want +got):\n%s", tt.json, diff)
		}
	}
	var old struct{ Lower string }
	if err := json.Unmarshal([]byte(`{"Lower":"/img"}`), &old); err != nil || old.Lower != "/img" {
		t.Errorf("a shim of the single-directory format reads %q, %v", old.Lower, err)
	}
}
