package main

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// CheckReferences checks what strict decoding cannot see: that the objects fit together.
func CheckReferences(objects []Object) []string {
	var problems []string
	report := func(obj Object, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s (%s): %s", obj.Source, obj, fmt.Sprintf(format, args...)))
	}
	seen := map[string]Object{}
	pods := map[string]corev1.PodTemplateSpec{}
	secrets := map[string]map[string]bool{}
	configMaps := map[string]map[string]bool{}
	services := map[string]*corev1.Service{}
	for _, obj := range objects {
		key := obj.GVK.String() + "/" + obj.Name
		if first, dup := seen[key]; dup {
			report(obj, "rendered twice (first at %s)", first.Source)
		}
		seen[key] = obj
		switch typed := obj.Typed.(type) {
		case *appsv1.Deployment:
			pods[obj.Name] = typed.Spec.Template
			selector, err := metav1.LabelSelectorAsSelector(typed.Spec.Selector)
			if err != nil || selector.Empty() || !selector.Matches(labels.Set(typed.Spec.Template.Labels)) {
				report(obj, "spec.selector does not select the pod template's labels")
			}
		case *corev1.Secret:
			keys := map[string]bool{}
			for k := range typed.Data {
				keys[k] = true
			}
			for k := range typed.StringData {
				keys[k] = true
			}
			secrets[obj.Name] = keys
		case *corev1.ConfigMap:
			keys := map[string]bool{}
			for k := range typed.Data {
				keys[k] = true
			}
			configMaps[obj.Name] = keys
		case *corev1.Service:
			services[obj.Name] = typed
		}
	}
	for _, obj := range objects {
		if d, ok := obj.Typed.(*appsv1.Deployment); ok {
			for _, p := range checkPod(d.Spec.Template.Spec, secrets, configMaps) {
				report(obj, "%s", p)
			}
		}
	}
	selects := func(selector labels.Selector) []corev1.PodTemplateSpec {
		var found []corev1.PodTemplateSpec
		for _, pod := range pods {
			if !selector.Empty() && selector.Matches(labels.Set(pod.Labels)) {
				found = append(found, pod)
			}
		}
		return found
	}
	for _, obj := range objects {
		switch typed := obj.Typed.(type) {
		case *corev1.Service:
			selected := selects(labels.SelectorFromSet(typed.Spec.Selector))
			if len(selected) == 0 {
				report(obj, "spec.selector selects no pod the chart renders")
			}
			for _, port := range typed.Spec.Ports {
				for _, pod := range selected {
					if !hasPort(pod.Spec, port.TargetPort) {
						report(obj, "port %q: targetPort %s is no container port of the selected pods", port.Name, port.TargetPort.String())
					}
				}
			}
		case *policyv1.PodDisruptionBudget:
			if selector, err := metav1.LabelSelectorAsSelector(typed.Spec.Selector); err != nil || len(selects(selector)) == 0 {
				report(obj, "spec.selector selects no pod the chart renders")
			}
		case *networkingv1.NetworkPolicy:
			if selector, err := metav1.LabelSelectorAsSelector(&typed.Spec.PodSelector); err != nil || len(selects(selector)) == 0 {
				report(obj, "spec.podSelector selects no pod the chart renders")
			}
		}
		if obj.Custom != nil {
			for _, p := range checkCustom(obj, pods, services) {
				report(obj, "%s", p)
			}
		}
	}
	return problems
}

func checkPod(spec corev1.PodSpec, secrets, configMaps map[string]map[string]bool) []string {
	var problems []string
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		if volumes[v.Name] {
			problems = append(problems, fmt.Sprintf("volume %q declared twice", v.Name))
		}
		volumes[v.Name] = true
		if v.ConfigMap != nil {
			problems = append(problems, keyRefs("configMap", v.ConfigMap.Name, configMaps, v.ConfigMap.Items)...)
		}
		if v.Secret != nil {
			problems = append(problems, keyRefs("secret", v.Secret.SecretName, secrets, v.Secret.Items)...)
		}
	}
	containers := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for _, c := range containers {
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				problems = append(problems, fmt.Sprintf("container %q mounts volume %q, which the pod does not declare", c.Name, m.Name))
			}
		}
		for _, probe := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if probe == nil {
				continue
			}
			if probe.GRPC != nil && !hasPort(corev1.PodSpec{Containers: []corev1.Container{c}}, intstr.FromInt32(probe.GRPC.Port)) {
				problems = append(problems, fmt.Sprintf("container %q: grpc probe port %d is not one of its ports", c.Name, probe.GRPC.Port))
			}
			if probe.TCPSocket != nil && !hasPort(corev1.PodSpec{Containers: []corev1.Container{c}}, probe.TCPSocket.Port) {
				problems = append(problems, fmt.Sprintf("container %q: tcpSocket probe port %s is not one of its ports", c.Name, probe.TCPSocket.Port.String()))
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if ref := e.ValueFrom.SecretKeyRef; ref != nil {
				problems = append(problems, keyRef("secret", ref.Name, ref.Key, secrets, e.Name)...)
			}
			if ref := e.ValueFrom.ConfigMapKeyRef; ref != nil {
				problems = append(problems, keyRef("configMap", ref.Name, ref.Key, configMaps, e.Name)...)
			}
		}
	}
	return problems
}

// keyRef: a key of a Secret or ConfigMap the chart renders must be in it. (One the chart does
// not render is the operator's, an existingSecret: it cannot be seen here.)
func keyRef(kind, name, key string, rendered map[string]map[string]bool, env string) []string {
	keys, ok := rendered[name]
	if kind == "configMap" && !ok {
		return []string{fmt.Sprintf("env %s: configMap %q is not rendered", env, name)}
	}
	if ok && !keys[key] {
		return []string{fmt.Sprintf("env %s: %s %q has no key %q", env, kind, name, key)}
	}
	return nil
}

func keyRefs(kind, name string, rendered map[string]map[string]bool, items []corev1.KeyToPath) []string {
	var problems []string
	keys, ok := rendered[name]
	if kind == "configMap" && !ok {
		return []string{fmt.Sprintf("volume from configMap %q, which is not rendered", name)}
	}
	for _, item := range items {
		if ok && !keys[item.Key] {
			problems = append(problems, fmt.Sprintf("volume from %s %q: no key %q", kind, name, item.Key))
		}
	}
	return problems
}

func hasPort(spec corev1.PodSpec, port intstr.IntOrString) bool {
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if (port.Type == intstr.String && p.Name == port.StrVal) ||
				(port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
				return true
			}
		}
	}
	return false
}

func checkCustom(obj Object, pods map[string]corev1.PodTemplateSpec, services map[string]*corev1.Service) []string {
	spec, _ := obj.Custom["spec"].(map[string]any)
	switch obj.GVK.Kind {
	case "ScaledObject":
		target, _ := spec["scaleTargetRef"].(map[string]any)
		name, _ := target["name"].(string)
		if kind, _ := target["kind"].(string); kind != "" && kind != "Deployment" {
			return []string{fmt.Sprintf("scaleTargetRef.kind %q: the chart scales its Deployment", kind)}
		}
		if _, ok := pods[name]; !ok {
			return []string{fmt.Sprintf("scaleTargetRef.name %q is no Deployment the chart renders", name)}
		}
	case "ServiceMonitor":
		selector, _ := spec["selector"].(map[string]any)
		match, _ := selector["matchLabels"].(map[string]any)
		want := labels.Set{}
		for k, v := range match {
			want[k], _ = v.(string)
		}
		var ports []string
		for _, svc := range services {
			if len(want) > 0 && labels.SelectorFromSet(want).Matches(labels.Set(svc.Labels)) {
				for _, p := range svc.Spec.Ports {
					ports = append(ports, p.Name)
				}
			}
		}
		if len(ports) == 0 {
			return []string{"selector selects no Service the chart renders"}
		}
		endpoints, _ := spec["endpoints"].([]any)
		var problems []string
		for _, e := range endpoints {
			endpoint, _ := e.(map[string]any)
			port, _ := endpoint["port"].(string)
			if !contains(ports, port) {
				problems = append(problems, fmt.Sprintf("endpoint port %q is no port of the selected Services %v", port, ports))
			}
		}
		return problems
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
