package manifests

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	yamlv2 "go.yaml.in/yaml/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// MaxFileSize is the largest manifest file DecodeFile reads.
const MaxFileSize = 1 << 20

// Error is one problem with a manifest document. Decode returns them joined
// with errors.Join; find them with errors.As or by unwrapping the join.
type Error struct {
	// File is the manifest's path.
	File string
	// Doc is the document's index in the file, from 0 like Pod.Doc, or -1
	// when the problem concerns the whole file. Error prints it from 1, as
	// an editor counts.
	Doc int
	// Field is the kubectl-style path of the field at fault
	// (spec.containers[0].image), or empty.
	Field string
	Msg   string
}

// Error formats the problem as
// "/etc/peapod/manifests/web.yaml: document 1: spec.contianers: unknown field".
func (e *Error) Error() string {
	parts := make([]string, 0, 4)
	if e.File != "" {
		parts = append(parts, e.File)
	}
	if e.Doc >= 0 {
		parts = append(parts, fmt.Sprintf("document %d", e.Doc+1))
	}
	if e.Field != "" {
		parts = append(parts, e.Field)
	}
	return strings.Join(append(parts, e.Msg), ": ")
}

// findings collects the errors and warnings about one document.
type findings struct {
	errs     []*Error
	warnings []string
}

func (f *findings) fail(path *field.Path, format string, args ...any) {
	f.errs = append(f.errs, &Error{Field: pathString(path), Msg: fmt.Sprintf(format, args...)})
}

func (f *findings) warn(path *field.Path, reason string) {
	f.warnings = append(f.warnings, fmt.Sprintf("%s: ignored: %s", pathString(path), reason))
}

// check records the messages of a k8s.io/apimachinery validation helper.
func (f *findings) check(path *field.Path, msgs []string) {
	if len(msgs) > 0 {
		f.fail(path, "%s", strings.Join(msgs, "; "))
	}
}

// addAll records the errors of a k8s.io/apimachinery validation helper,
// sorted: the label and annotation checks range over maps.
func (f *findings) addAll(errs field.ErrorList) {
	slices.SortFunc(errs, func(a, b *field.Error) int {
		return cmp.Or(strings.Compare(a.Field, b.Field), strings.Compare(a.ErrorBody(), b.ErrorBody()))
	})
	for _, e := range errs {
		f.errs = append(f.errs, &Error{Field: e.Field, Msg: e.ErrorBody()})
	}
}

func pathString(path *field.Path) string {
	if path == nil {
		return ""
	}
	return path.String()
}

// DecodeFile reads the manifest at path and decodes it with Decode, naming
// the file by its absolute path. It refuses anything but a regular file and
// files over MaxFileSize.
func DecodeFile(path string) ([]*Pod, error) {
	return Policy{}.DecodeFile(path)
}

// DecodeFile is the package's DecodeFile under policy.
func (policy Policy) DecodeFile(path string) ([]*Pod, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve manifest path: %w", err)
	}
	data, err := readManifest(abs)
	if err != nil {
		return nil, err
	}
	return policy.Decode(abs, data)
}

// readManifest reads a regular file of at most MaxFileSize bytes.
func readManifest(path string) ([]byte, error) {
	// O_NONBLOCK keeps a FIFO dropped into the directory from blocking the
	// open; it does not change reads of a regular file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, &Error{File: path, Doc: -1, Msg: "not a regular file"}
	}
	return readLimited(f, path)
}

// readLimited reads f, the manifest at path, refusing it over MaxFileSize.
func readLimited(f *os.File, path string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: path, Doc: -1, Msg: "file is over the 1 MiB limit"}
	}
	return data, nil
}

// Decode decodes, defaults and validates every document of one manifest
// file; file names it in errors and in the pods. Documents are separated by
// "---" lines; empty ones (blank or only comments) are skipped and not
// counted in Pod.Doc and Error.Doc, so an empty file yields no pods and no
// error. A file is all or nothing: if any document is invalid, Decode
// returns no pods and the join of one *Error per problem. The pods are new
// and owned by the caller.
func Decode(file string, data []byte) ([]*Pod, error) {
	return Policy{}.Decode(file, data)
}

// Decode is the package's Decode under policy.
func (policy Policy) Decode(file string, data []byte) ([]*Pod, error) {
	var pods []*Pod
	var errs []error
	seen := make(map[string]int)
	index := 0
	for _, doc := range splitDocuments(data) {
		pod, f := decodePod(doc, policy)
		if pod == nil && len(f.errs) == 0 {
			continue
		}
		for _, e := range f.errs {
			e.File, e.Doc = file, index
			errs = append(errs, e)
		}
		if pod != nil {
			p := newPod(file, index, pod, f.warnings)
			if first, ok := seen[p.Key()]; ok {
				errs = append(errs, &Error{File: file, Doc: index, Field: "metadata.name",
					Msg: fmt.Sprintf("pod %s is already defined in document %d", p.Key(), first+1)})
			} else {
				seen[p.Key()] = index
				pods = append(pods, p)
			}
		}
		index++
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return pods, nil
}

// document is one part of a file.
type document struct {
	data []byte
	line int // the line of the file it starts on, from 1
}

// splitDocuments splits a file at its "---" lines (a comment may follow
// the marker). The documents keep their line numbers for error messages.
func splitDocuments(data []byte) []document {
	var docs []document
	start, line, startLine := 0, 1, 1
	for off := 0; off < len(data); line++ {
		end := len(data)
		if i := bytes.IndexByte(data[off:], '\n'); i >= 0 {
			end = off + i + 1
		}
		if isSeparator(data[off:end]) {
			docs = append(docs, document{data: data[start:off], line: startLine})
			start, startLine = end, line+1
		}
		off = end
	}
	return append(docs, document{data: data[start:], line: startLine})
}

func isSeparator(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("---"))
	if !ok {
		return false
	}
	rest = bytes.TrimSpace(rest)
	return len(rest) == 0 || rest[0] == '#'
}

// newPod wraps a valid pod and adds the decoder's annotations.
func newPod(file string, index int, pod *corev1.Pod, warnings []string) *Pod {
	if pod.Annotations == nil {
		pod.Annotations = make(map[string]string, 3)
	}
	pod.Annotations[AnnotationSource] = "file"
	pod.Annotations[AnnotationHash] = string(pod.UID)
	pod.Annotations[AnnotationManifest] = file
	return &Pod{Pod: pod, File: file, Doc: index, Warnings: warnings}
}

// decodePod decodes, checks, defaults and validates one document, and sets
// the pod's UID. It returns a nil pod when the document is empty or invalid.
func decodePod(doc document, policy Policy) (*corev1.Pod, *findings) {
	f := &findings{}
	data, raw := parseDocument(f, doc)
	if raw == nil || !checkKind(f, raw) {
		return nil, f
	}
	pod := decodeChecked(f, data, raw)
	if pod == nil {
		return nil, f
	}
	setDefaults(pod)
	validate(f, pod, policy)
	if len(f.errs) > 0 {
		return nil, f
	}
	if err := setUID(pod); err != nil {
		f.fail(nil, "%v", err)
		return nil, f
	}
	return pod, f
}

// parseDocument converts a YAML or JSON document to JSON, strictly (no
// duplicate keys), and returns that JSON and its generic form. It returns
// a nil map for an empty document or an error.
func parseDocument(f *findings, doc document) ([]byte, map[string]any) {
	data, err := yaml.YAMLToJSONStrict(doc.data)
	if err != nil {
		f.fail(nil, "%v (lines counted from line %d, where the document starts)", err, doc.line)
		return nil, nil
	}
	if hasSecondDocument(doc.data) {
		f.fail(nil, "holds more than one YAML document: separate documents with a line of ---")
		return nil, nil
	}
	raw, err := decodeRaw(data)
	if err != nil {
		f.fail(nil, "%v", err)
		return nil, nil
	}
	return data, raw
}

// decodeChecked decodes a Pod and applies fieldRules. It returns nil if the
// document does not fit the Pod type; a pod with unknown or unsupported
// fields is returned, with those recorded in f, so that its values are
// validated too and one pass reports every problem of the document.
func decodeChecked(f *findings, data []byte, raw map[string]any) *corev1.Pod {
	pod, unknown, err := decodeStrict(f, data)
	checkFields(f, raw, unknown)
	// checkFields names the field of a malformed quantity; the decoder's
	// error does not.
	if err != nil && (!isQuantityError(err) || len(f.errs) == 0) {
		f.fail(nil, "%v", err)
	}
	if err != nil {
		return nil
	}
	return pod
}

// hasSecondDocument reports whether YAML that splitDocuments left whole
// holds a second document (after a "..." line, or "--- x"), which
// YAMLToJSON would drop without a word.
func hasSecondDocument(data []byte) bool {
	d := yamlv2.NewDecoder(bytes.NewReader(data))
	// Decoding into an empty struct parses the document without building
	// it. It fails for a document that is not a mapping, which is
	// rejected anyway.
	var skip struct{}
	if err := d.Decode(&skip); err != nil {
		return false
	}
	return !errors.Is(d.Decode(&skip), io.EOF)
}

// decodeRaw decodes the document's JSON form as written, for checkFields.
// It returns nil for an empty document.
func decodeRaw(data []byte) (map[string]any, error) {
	var v any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode document: %w", err)
	}
	switch v := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return v, nil
	default:
		return nil, errors.New("not a mapping: peapod runs kind Pod, apiVersion v1 only")
	}
}

// checkKind reports whether the document is a v1 Pod.
func checkKind(f *findings, raw map[string]any) bool {
	kind, apiVersion := fieldText(raw["kind"]), fieldText(raw["apiVersion"])
	if kind == "Pod" && apiVersion == "v1" {
		return true
	}
	if kind == "" {
		f.fail(field.NewPath("kind"), "missing: peapod runs kind Pod, apiVersion v1 only")
		return false
	}
	f.fail(nil, "unsupported kind %s (%s): peapod runs kind Pod, apiVersion v1 only", kind, apiVersion)
	return false
}

// fieldText returns a scalar field's value as written, or "" when unset.
func fieldText(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// decodeStrict decodes the document into a Pod, case-sensitively, and
// reports every unknown or duplicate field by its path. It returns the paths
// of the unknown fields, and an error when the document does not fit the
// Pod type at all (a string where a number goes).
func decodeStrict(f *findings, data []byte) (*corev1.Pod, map[string]bool, error) {
	pod := &corev1.Pod{}
	strictErrs, err := sigsjson.UnmarshalStrict(data, pod)
	unknown := make(map[string]bool)
	for _, se := range strictErrs {
		var fe sigsjson.FieldError
		if !errors.As(se, &fe) {
			f.fail(nil, "%v", se)
			continue
		}
		// The message is `unknown field "path"`; the path goes to Field.
		msg := strings.TrimSuffix(se.Error(), " "+strconv.Quote(fe.FieldPath()))
		f.errs = append(f.errs, &Error{Field: fe.FieldPath(), Msg: msg})
		unknown[fe.FieldPath()] = true
	}
	return pod, unknown, err
}

// isQuantityError reports whether err is resource.Quantity refusing a
// value, which checkFields reports with its path.
func isQuantityError(err error) bool {
	return errors.Is(err, resource.ErrFormatWrong) || errors.Is(err, resource.ErrNumeric) || errors.Is(err, resource.ErrSuffix)
}
