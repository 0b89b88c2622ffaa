package main

import (
	"strings"
	"testing"
)

const deployment = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: b}
spec:
  selector: {matchLabels: {app: b}}
  template:
    metadata: {labels: {app: b}}
    spec:
      %s
      containers:
        - name: c
          image: i
          ports: [{name: grpc, containerPort: 50051}]
          readinessProbe: {grpc: {port: 50051}}
`

func check(t *testing.T, docs ...string) []string {
	t.Helper()
	_, problems := Check(map[string][]byte{"t.yaml": []byte(strings.Join(docs, "\n---\n"))})
	return problems
}

func TestWellFormedPasses(t *testing.T) {
	if p := check(t, strings.Replace(deployment, "%s", "terminationGracePeriodSeconds: 30", 1)); len(p) > 0 {
		t.Fatalf("unexpected problems: %v", p)
	}
}

func TestMisspeltFieldFails(t *testing.T) {
	for _, field := range []string{
		"terminationGracePeriodSecond: 30",    // misspelt
		"TerminationGracePeriodSeconds: 30",   // wrong case (encoding/json would accept it)
		"terminationGracePeriodSeconds: soon", // wrong type
	} {
		p := check(t, strings.Replace(deployment, "%s", field, 1))
		if len(p) == 0 {
			t.Errorf("%q: no problem reported", field)
		}
	}
}

func TestCustomResourceWhitelist(t *testing.T) {
	scaled := `
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: b}
spec:
  scaleTargetRef: {name: b}
  maxReplicaCount: 3
  %s
  triggers: [{type: prometheus, metadata: {serverAddress: "http://p:9090", query: "1", threshold: "6"}}]
`
	ok := strings.Replace(deployment, "%s", "", 1)
	if p := check(t, ok, strings.Replace(scaled, "%s", "minReplicaCount: 1", 1)); len(p) > 0 {
		t.Fatalf("unexpected problems: %v", p)
	}
	for _, field := range []string{"minReplicasCount: 1", "minReplicaCount: one"} {
		if p := check(t, ok, strings.Replace(scaled, "%s", field, 1)); len(p) == 0 {
			t.Errorf("%q: no problem reported", field)
		}
	}
}

func TestReferencesChecked(t *testing.T) {
	broken := strings.Replace(deployment, "readinessProbe: {grpc: {port: 50051}}",
		"readinessProbe: {grpc: {port: 50052}}\n          volumeMounts: [{name: nowhere, mountPath: /x}]", 1)
	p := check(t, strings.Replace(broken, "%s", "", 1))
	if len(p) != 2 {
		t.Fatalf("want the probe port and the mount reported, got %v", p)
	}
}
