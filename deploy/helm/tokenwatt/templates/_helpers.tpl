{{/* Name of the chart, overridable. */}}
{{- define "tokenwatt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified name: the release name, unless it already contains the chart name. Cut to 55
characters, not 63: the Services append -ingest and -metrics, and a Service name is a DNS label
of at most 63.
*/}}
{{- define "tokenwatt.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Labels on every object. No app.kubernetes.io/managed-by: deploy/kubernetes/ is this chart's output
and is applied with kubectl, where "Helm" would be untrue.
*/}}
{{- define "tokenwatt.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tokenwatt.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: tokenwatt
{{- end -}}

{{/* Labels that select the agent's pods. */}}
{{- define "tokenwatt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokenwatt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tokenwatt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tokenwatt.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tokenwatt.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The recording proxy is on when an upstream is set. */}}
{{- define "tokenwatt.proxyEnabled" -}}
{{- if .Values.proxy.upstream -}}true{{- end -}}
{{- end -}}

{{/*
Relabelings shared by the ServiceMonitor and the PodMonitor: job="tokenwatt" whichever way the
agents are discovered (the alert rules select on it) and the node each agent runs on.
*/}}
{{- define "tokenwatt.relabelings" -}}
- targetLabel: job
  replacement: tokenwatt
- sourceLabels: [__meta_kubernetes_pod_node_name]
  targetLabel: node
{{- end -}}
