{{/* Names and labels. */}}
{{- define "browser-broker.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "browser-broker.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "browser-broker.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: browser-broker
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "browser-broker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "browser-broker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: broker
{{- end -}}

{{- define "browser-broker.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "browser-broker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{- define "browser-broker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "browser-broker.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "browser-broker.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret holding tenants, the cluster secret and the internal Redis password. */}}
{{- define "browser-broker.secretName" -}}
{{- include "browser-broker.fullname" . -}}
{{- end -}}

{{- define "browser-broker.tenantsSecret" -}}
{{- default (include "browser-broker.secretName" .) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "browser-broker.clusterSecret" -}}
{{- default (include "browser-broker.secretName" .) .Values.cluster.existingSecret -}}
{{- end -}}

{{- define "browser-broker.tlsSecret" -}}
{{- if .Values.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "browser-broker.fullname" .) -}}
{{- else -}}
{{- required "tls.enabled needs tls.existingSecret or tls.certManager.enabled" .Values.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The name every pod's certificate carries: verified by the probes, and on calls between pods. */}}
{{- define "browser-broker.tlsServerName" -}}
{{- default (printf "%s.%s.svc" (include "browser-broker.fullname" .) .Release.Namespace) .Values.tls.serverName -}}
{{- end -}}

{{- define "browser-broker.redisHost" -}}
{{- printf "%s-redis" (include "browser-broker.fullname" .) -}}
{{- end -}}

{{/*
A value that is generated once: kept from the release's Secret on upgrades (lookup), made on
install. (Under `helm template` there is no cluster, so a new one each render.)
*/}}
{{- define "browser-broker.keep" -}}
{{- $ctx := index . 0 -}}{{- $key := index . 1 -}}{{- $given := index . 2 -}}
{{- if $given -}}
{{- $given -}}
{{- else -}}
{{- $old := lookup "v1" "Secret" $ctx.Release.Namespace (include "browser-broker.secretName" $ctx) -}}
{{- if and $old (hasKey $old.data $key) -}}
{{- index $old.data $key | b64dec -}}
{{- else -}}
{{- randAlphaNum 40 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: the pod is SIGKILLed only after the preStop sleep, the whole
drain (drain_timeout_s), the grace of Runs at its deadline (shutdown_grace_s) and a margin for
closing browsers and writing outcomes.
*/}}
{{- define "browser-broker.terminationGracePeriodSeconds" -}}
{{- $b := .Values.broker -}}
{{- add (int $b.preStopSleepSeconds) (ceil $b.drainTimeoutSeconds | int) (ceil $b.shutdownGraceSeconds | int) (int $b.terminationMarginSeconds) -}}
{{- end -}}

{{/* Memory request in MiB: the broker and its shared browser, and every lease and warm session. */}}
{{- define "browser-broker.memoryMb" -}}
{{- $b := .Values.broker -}}
{{- add (int .Values.sizing.baseMemoryMb) (mul (add (int $b.capacity) (int $b.warmPoolSize)) (ceil $b.sessionMemoryMb | int)) -}}
{{- end -}}

{{/* /dev/shm's sizeLimit in MiB (it is memory, and counts in the limit). */}}
{{- define "browser-broker.shmMb" -}}
{{- $q := toString .Values.shm.sizeLimit -}}
{{- if hasSuffix "Gi" $q -}}{{ mul (trimSuffix "Gi" $q | int) 1024 }}
{{- else if hasSuffix "Mi" $q -}}{{ trimSuffix "Mi" $q | int }}
{{- else -}}{{ fail (printf "shm.sizeLimit %q: write it in Mi or Gi" $q) }}
{{- end -}}
{{- end -}}

{{- define "browser-broker.resources" -}}
{{- if .Values.resources -}}
{{- toYaml .Values.resources -}}
{{- else -}}
{{- $mem := include "browser-broker.memoryMb" . | int -}}
{{- $limit := add (mulf $mem .Values.sizing.memoryLimitFactor | ceil | int) (include "browser-broker.shmMb" . | int) -}}
requests:
  cpu: {{ add (int .Values.sizing.baseCpuMillis) (mul (int .Values.broker.capacity) (int .Values.sizing.cpuPerLeaseMillis)) }}m
  memory: {{ $mem }}Mi
limits:
  memory: {{ $limit }}Mi
{{- end -}}
{{- end -}}

{{/* The gRPC probes: Kubernetes' own where the port is plaintext; over TLS (which kubelet's
grpc probe cannot speak) a small Python check with the pod's certificates. */}}
{{- define "browser-broker.probe" -}}
{{- $ctx := index . 0 -}}{{- $service := index . 1 -}}
{{- if $ctx.Values.tls.enabled }}
exec:
  command: [python, /etc/browser-broker/probe.py, {{ $service | quote }}]
{{- else }}
grpc:
  port: {{ $ctx.Values.broker.port }}
  service: {{ $service | quote }}
{{- end }}
{{- end -}}
