package chart

import (
	"errors"
	"io"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// decodeAll decodes every non-empty YAML document.
func decodeAll(t *testing.T, manifests string) []map[string]any {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	var out []map[string]any
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("decoding rendered manifests: %v", err)
		}
		if len(m) > 0 {
			out = append(out, m)
		}
	}
}
