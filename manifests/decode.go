package manifests

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Decode decodes every document of one manifest file. Placeholder: one
// strict document, no validation; replaced by the full decoder.
func Decode(file string, data []byte) ([]*Pod, error) {
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(data, &pod); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return []*Pod{{Pod: &pod, File: file}}, nil
}
