package manifests

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// TestFieldRulesNameRealFields keeps the table honest: a misspelt path
// would never match, and the field it meant would fall to notListed.
func TestFieldRulesNameRealFields(t *testing.T) {
	for pattern, r := range fieldRules {
		if err := resolve(reflect.TypeFor[corev1.Pod](), pattern); err != nil {
			t.Errorf("%s: %v", pattern, err)
		}
		if (r.use == honoured) != (r.reason == "") {
			t.Errorf("%s: a reason is given exactly for ignored and rejected fields", pattern)
		}
		if r.allow != nil && r.use == honoured {
			t.Errorf("%s: allow is for ignored and rejected fields", pattern)
		}
	}
}

// resolve follows a table pattern through the Go type of a Pod.
func resolve(t reflect.Type, pattern string) error {
	for rest := pattern; rest != ""; {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		var step string
		step, rest = nextStep(rest)
		parent := t
		var ok bool
		switch {
		case step == "[]" && t.Kind() == reflect.Slice:
			t, ok = t.Elem(), true
		case strings.HasPrefix(step, "[") && t.Kind() == reflect.Map:
			t, ok = t.Elem(), true
		case step == "*" && t.Kind() == reflect.Struct:
			return nil
		case t.Kind() == reflect.Struct:
			t, ok = jsonField(t, step)
		}
		if !ok {
			return fmt.Errorf("no %q in %s", step, parent)
		}
	}
	return nil
}

// nextStep splits the first step off a pattern: a field name, "[]" or
// "[key]".
func nextStep(pattern string) (step, rest string) {
	pattern = strings.TrimPrefix(pattern, ".")
	if strings.HasPrefix(pattern, "[") {
		i := strings.Index(pattern, "]")
		return pattern[:i+1], pattern[i+1:]
	}
	if i := strings.IndexAny(pattern, ".["); i >= 0 {
		return pattern[:i], pattern[i:]
	}
	return pattern, ""
}

// jsonField finds the field that encoding/json names name, looking into
// inlined structs (TypeMeta, VolumeSource).
func jsonField(t reflect.Type, name string) (reflect.Type, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == name {
			return f.Type, true
		}
		if tag == "" && f.Anonymous || strings.Contains(f.Tag.Get("json"), ",inline") {
			if ft, ok := jsonField(f.Type, name); ok {
				return ft, true
			}
		}
	}
	return nil, false
}

func TestFieldRulesUnlistedFieldIsRejected(t *testing.T) {
	f := &findings{}
	checkFields(f, map[string]any{"spec": map[string]any{"futureField": true}}, nil)
	want := []*Error{{Field: "spec.futureField", Msg: "not supported: peapod does not implement this field"}}
	if diff := cmp.Diff(want, f.errs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}
