// Command check decodes every object of a rendered Helm chart strictly, the way the API server
// would read it, so that a misspelt or misplaced field fails here instead of being dropped
// silently (or refused) by a cluster.
//
//	helm template deploy/helm/browser-broker | check -
//	check rendered.yaml ...
//
// Kinds of Kubernetes itself are decoded into k8s.io/api types with apimachinery's strict
// serializer: unknown fields, duplicate fields, wrong types and unparsable quantities fail.
// The custom resources the chart may render (ServiceMonitor, ScaledObject, Certificate) have no
// Go types here; their metadata is decoded strictly into ObjectMeta and the rest is held to a
// whitelist of the fields the chart may write (crds.go). Then the objects are checked against
// each other: every mount names a volume, every probe port and Service targetPort names a
// container port, every selector selects the chart's pods, every reference names an object the
// chart renders (refs.go).
//
// Exit status 0 when every object passes; 1 with one line per problem otherwise.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Object is one decoded document: a typed Kubernetes object, or a custom resource as a map.
type Object struct {
	Source string // file and document number, for messages
	GVK    schema.GroupVersionKind
	Name   string
	Typed  runtime.Object
	Custom map[string]any
}

func (o Object) String() string { return o.GVK.Kind + "/" + o.Name }

func newScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme,
		autoscalingv2.AddToScheme, rbacv1.AddToScheme, batchv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return scheme
}

// Documents splits a YAML stream into its non-empty documents.
func Documents(data []byte) ([][]byte, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

func stripComments(doc []byte) []byte {
	var kept [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			kept = append(kept, line)
		}
	}
	return bytes.Join(kept, []byte("\n"))
}

// Decode reads one document strictly. Its error names the source and what is wrong.
func Decode(scheme *runtime.Scheme, source string, doc []byte) (Object, error) {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return Object{}, fmt.Errorf("%s: not YAML: %w", source, err)
	}
	gv, err := schema.ParseGroupVersion(meta.APIVersion)
	if err != nil || meta.Kind == "" {
		return Object{}, fmt.Errorf("%s: no apiVersion/kind (%q, %q)", source, meta.APIVersion, meta.Kind)
	}
	obj := Object{Source: source, GVK: gv.WithKind(meta.Kind), Name: meta.Metadata.Name}
	label := fmt.Sprintf("%s (%s)", source, obj)
	if scheme.Recognizes(obj.GVK) {
		strict := json.NewSerializerWithOptions(
			json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true},
		)
		typed, _, err := strict.Decode(doc, nil, nil)
		if err != nil {
			return obj, fmt.Errorf("%s: %w", label, err)
		}
		obj.Typed = typed
	} else {
		custom, err := decodeCustom(obj.GVK, doc)
		if err != nil {
			return obj, fmt.Errorf("%s: %w", label, err)
		}
		obj.Custom = custom
	}
	if problems := validation.IsDNS1123Subdomain(obj.Name); len(problems) > 0 {
		return obj, fmt.Errorf("%s: metadata.name %q: %s", label, obj.Name, strings.Join(problems, "; "))
	}
	return obj, nil
}

// Check decodes every document of every stream and checks the objects against each other.
func Check(streams map[string][]byte) ([]Object, []string) {
	scheme := newScheme()
	var objects []Object
	var problems []string
	names := make([]string, 0, len(streams))
	for name := range streams {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		docs, err := Documents(streams[name])
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		for i, doc := range docs {
			obj, err := Decode(scheme, fmt.Sprintf("%s#%d", name, i+1), doc)
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			objects = append(objects, obj)
		}
	}
	problems = append(problems, CheckReferences(objects)...)
	return objects, problems
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: check FILE... (- reads stdin)")
		os.Exit(2)
	}
	streams := map[string][]byte{}
	for _, path := range os.Args[1:] {
		var data []byte
		var err error
		if path == "-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(path)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		streams[path] = data
	}
	objects, problems := Check(streams)
	for _, problem := range problems {
		fmt.Println("FAIL", problem)
	}
	if len(objects) == 0 && len(problems) == 0 {
		problems = append(problems, "no objects")
		fmt.Println("FAIL no objects in the input")
	}
	kinds := map[string]int{}
	for _, obj := range objects {
		kinds[obj.GVK.Kind]++
	}
	var summary []string
	for kind, n := range kinds {
		summary = append(summary, fmt.Sprintf("%s=%d", kind, n))
	}
	sort.Strings(summary)
	fmt.Printf("%d objects decoded strictly (%s), %d problems\n",
		len(objects), strings.Join(summary, " "), len(problems))
	if len(problems) > 0 {
		os.Exit(1)
	}
}
