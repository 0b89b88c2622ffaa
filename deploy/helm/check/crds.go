package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The custom resources have no Go types in this module (their operators' modules would bring
// whole dependency trees). Each is held to a whitelist: the fields of its API that the chart may
// write, with their shapes. A field that is not listed fails, as an unknown field of a built-in
// kind does; a field the chart starts to use is added here, from the operator's API reference.

type shape interface{}

type (
	str      struct{}                  // a string
	num      struct{}                  // an integer or a number
	boolean  struct{}                  // true or false
	strMap   struct{}                  // string keys to string values (labels, annotations)
	fields   map[string]shape          // an object with exactly these optional fields
	listOf   struct{ item shape }      // a list whose items have this shape
	typed    struct{ into func() any } // decoded strictly into a Kubernetes Go type
	oneOfStr []string                  // one of these strings
)

var labelSelector = fields{
	"matchLabels": strMap{},
	"matchExpressions": listOf{fields{
		"key": str{}, "operator": oneOfStr{"In", "NotIn", "Exists", "DoesNotExist"},
		"values": listOf{str{}},
	}},
}

// monitoring.coreos.com/v1 ServiceMonitor (prometheus-operator API reference).
var serviceMonitor = fields{
	"jobLabel":          str{},
	"selector":          labelSelector,
	"namespaceSelector": fields{"any": boolean{}, "matchNames": listOf{str{}}},
	"endpoints": listOf{fields{
		"port": str{}, "path": str{}, "scheme": oneOfStr{"http", "https", "HTTP", "HTTPS"},
		"interval": str{}, "scrapeTimeout": str{}, "honorLabels": boolean{},
		"relabelings": listOf{fields{
			"action": str{}, "sourceLabels": listOf{str{}}, "separator": str{},
			"targetLabel": str{}, "regex": str{}, "replacement": str{}, "modulus": num{},
		}},
	}},
}

// keda.sh/v1alpha1 ScaledObject (KEDA's ScaledObject specification and prometheus scaler).
var scaledObject = fields{
	"scaleTargetRef": fields{
		"apiVersion": str{}, "kind": str{}, "name": str{}, "envSourceContainerName": str{},
	},
	"pollingInterval":       num{},
	"cooldownPeriod":        num{},
	"initialCooldownPeriod": num{},
	"idleReplicaCount":      num{},
	"minReplicaCount":       num{},
	"maxReplicaCount":       num{},
	"fallback":              fields{"failureThreshold": num{}, "replicas": num{}},
	"advanced": fields{
		"restoreToOriginalReplicaCount": boolean{},
		"horizontalPodAutoscalerConfig": fields{
			"name":     str{},
			"behavior": typed{func() any { return &autoscalingv2.HorizontalPodAutoscalerBehavior{} }},
		},
	},
	"triggers": listOf{fields{
		"type": oneOfStr{"prometheus"}, "name": str{}, "useCachedMetrics": boolean{},
		"metricType":        oneOfStr{"AverageValue", "Value", "Utilization"},
		"authenticationRef": fields{"name": str{}, "kind": str{}},
		// KEDA reads trigger metadata as strings only.
		"metadata": fields{
			"serverAddress": str{}, "query": str{}, "threshold": str{},
			"activationThreshold": str{}, "namespace": str{}, "customHeaders": str{},
			"ignoreNullValues": str{}, "unsafeSsl": str{}, "queryParameters": str{},
			"authModes": str{},
		},
	}},
}

// cert-manager.io/v1 Certificate (cert-manager's API reference).
var certificate = fields{
	"secretName":  str{},
	"commonName":  str{},
	"dnsNames":    listOf{str{}},
	"ipAddresses": listOf{str{}},
	"uris":        listOf{str{}},
	"duration":    str{},
	"renewBefore": str{},
	"isCA":        boolean{},
	"usages":      listOf{str{}},
	"issuerRef":   fields{"name": str{}, "kind": str{}, "group": str{}},
	"privateKey": fields{
		"algorithm": oneOfStr{"RSA", "ECDSA", "Ed25519"}, "size": num{},
		"encoding": oneOfStr{"PKCS1", "PKCS8"}, "rotationPolicy": oneOfStr{"Never", "Always"},
	},
	"secretTemplate": fields{"labels": strMap{}, "annotations": strMap{}},
}

var customKinds = map[schema.GroupVersionKind]shape{
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}: serviceMonitor,
	{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}:           scaledObject,
	{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"}:          certificate,
}

func decodeCustom(gvk schema.GroupVersionKind, doc []byte) (map[string]any, error) {
	spec, known := customKinds[gvk]
	if !known {
		return nil, fmt.Errorf("kind %s is neither a built-in kind nor a custom resource this check knows", gvk)
	}
	raw, err := yaml.YAMLToJSONStrict(doc) // duplicate keys fail
	if err != nil {
		return nil, err
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, err
	}
	var problems []string
	for key, value := range body {
		switch key {
		case "apiVersion", "kind":
		case "metadata":
			var meta metav1.ObjectMeta
			if err := strictInto(value, &meta); err != nil {
				problems = append(problems, "metadata: "+err.Error())
			}
		case "spec":
			problems = append(problems, conform("spec", value, spec)...)
		default:
			problems = append(problems, fmt.Sprintf("unknown field %q", key))
		}
	}
	if _, ok := body["spec"]; !ok {
		problems = append(problems, "no spec")
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("strict decoding error: %s", strings.Join(problems, ", "))
	}
	return body, nil
}

// strictInto decodes a JSON value into a Go type as the API server does: case-sensitive field
// names, unknown and duplicate fields refused.
func strictInto(value any, into any) error {
	raw, err := json.Marshal(value)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(raw, into)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		messages := make([]string, len(strict))
		for i, e := range strict {
			messages[i] = e.Error()
		}
		return fmt.Errorf("%s", strings.Join(messages, ", "))
	}
	return nil
}

func conform(path string, value any, want shape) []string {
	bad := func(what string) []string { return []string{fmt.Sprintf("%s: %s, got %T", path, what, value)} }
	switch want := want.(type) {
	case str:
		if _, ok := value.(string); !ok {
			return bad("want a string")
		}
	case oneOfStr:
		s, ok := value.(string)
		if !ok {
			return bad("want a string")
		}
		for _, allowed := range want {
			if s == allowed {
				return nil
			}
		}
		return []string{fmt.Sprintf("%s: %q is not one of %v", path, s, []string(want))}
	case num:
		if _, ok := value.(float64); !ok {
			return bad("want a number")
		}
	case boolean:
		if _, ok := value.(bool); !ok {
			return bad("want true or false")
		}
	case strMap:
		m, ok := value.(map[string]any)
		if !ok {
			return bad("want a map of strings")
		}
		for k, v := range m {
			if _, ok := v.(string); !ok {
				return []string{fmt.Sprintf("%s.%s: want a string, got %T", path, k, v)}
			}
		}
	case listOf:
		items, ok := value.([]any)
		if !ok {
			return bad("want a list")
		}
		var problems []string
		for i, item := range items {
			problems = append(problems, conform(fmt.Sprintf("%s[%d]", path, i), item, want.item)...)
		}
		return problems
	case fields:
		m, ok := value.(map[string]any)
		if !ok {
			return bad("want an object")
		}
		var problems []string
		for k, v := range m {
			sub, known := want[k]
			if !known {
				problems = append(problems, fmt.Sprintf("unknown field %q", path+"."+k))
				continue
			}
			problems = append(problems, conform(path+"."+k, v, sub)...)
		}
		return problems
	case typed:
		if err := strictInto(value, want.into()); err != nil {
			return []string{fmt.Sprintf("%s: %v", path, err)}
		}
	default:
		panic(fmt.Sprintf("unknown shape %T", want))
	}
	return nil
}
