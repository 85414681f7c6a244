// k8scheck decodes Kubernetes manifests into the Kubernetes API types
// (k8s.io/api) the way the API server's strict decoding does: YAML to JSON
// (duplicate keys refused), then sigs.k8s.io/json's case-sensitive strict
// unmarshal. An unknown, misspelt (`clusterIp`) or duplicated field, a wrong
// type or an unknown kind is an error. It prints one JSON line per object (the decoded
// object re-encoded, for the test to assert on) and exits 1 on any error.
//
//	k8scheck FILE.yaml...
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// newObject returns an empty object of the kind, or nil for a kind this tool does not know.
func newObject(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}
	case "v1/Service":
		return &corev1.Service{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Namespace":
		return &corev1.Namespace{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	}
	return nil
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

func main() {
	failed := false
	for _, file := range os.Args[1:] {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
			failed = true
			continue
		}
		for i, doc := range docSep.Split(string(data), -1) {
			if len(bytes.TrimSpace([]byte(doc))) == 0 {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				fmt.Fprintf(os.Stderr, "%s[%d]: %v\n", file, i, err)
				failed = true
				continue
			}
			if tm.Kind == "Kustomization" {
				continue
			}
			obj := newObject(tm.APIVersion, tm.Kind)
			if obj == nil {
				fmt.Fprintf(os.Stderr, "%s[%d]: unknown kind %s/%s\n", file, i, tm.APIVersion, tm.Kind)
				failed = true
				continue
			}
			j, err := yaml.YAMLToJSONStrict([]byte(doc))
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s[%d] %s: %v\n", file, i, tm.Kind, err)
				failed = true
				continue
			}
			strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
			if err == nil && len(strict) > 0 {
				err = fmt.Errorf("%v", strict)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s[%d] %s: %v\n", file, i, tm.Kind, err)
				failed = true
				continue
			}
			out, _ := json.Marshal(map[string]any{"file": file, "doc": i, "kind": tm.Kind, "object": obj})
			fmt.Println(string(out))
		}
	}
	if failed {
		os.Exit(1)
	}
}
