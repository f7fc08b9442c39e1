{{/* The name every object is based on. */}}
{{- define "podcreds.fullname" -}}
{{- .Values.fullnameOverride | default "podcreds" | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object: the name kustomize's manifests carry, plus Helm's bookkeeping. */}}
{{- define "podcreds.labels" -}}
app.kubernetes.io/name: podcreds
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The agent's selector: the same as deploy/daemonset.yaml's, so a DaemonSet
installed with kubectl apply -k can be taken over by the chart. */}}
{{- define "podcreds.agentSelector" -}}
app.kubernetes.io/name: podcreds
app.kubernetes.io/component: agent
{{- end -}}

{{- define "podcreds.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "podcreds.fullname" .) -}}
{{- end -}}

{{- define "podcreds.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository ($img.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* One flag value as the command line takes it: whole numbers without an
exponent (YAML numbers arrive as float64). */}}
{{- define "podcreds.flagValue" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) -}}
{{- int64 . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* A component's flags (a map of name to value) as arguments, by name: a
list repeats the flag, true is --name, false --name=false, null leaves the
flag out. */}}
{{- define "podcreds.flags" -}}
{{- range $name, $value := . }}
{{- if kindIs "slice" $value }}
{{- range $value }}
- --{{ $name }}={{ include "podcreds.flagValue" . }}
{{- end }}
{{- else if kindIs "bool" $value }}
- --{{ $name }}{{ if not $value }}=false{{ end }}
{{- else if not (kindIs "invalid" $value) }}
- --{{ $name }}={{ include "podcreds.flagValue" $value }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The agent's flags: the values', plus the metrics address the
ServiceMonitor scrapes. */}}
{{- define "podcreds.agentFlags" -}}
{{- $flags := deepCopy .Values.agent.flags -}}
{{- if and .Values.serviceMonitor.enabled (not (hasKey $flags "metrics-listen")) -}}
{{- $_ := set $flags "metrics-listen" (printf "$(HOST_IP):%v" .Values.serviceMonitor.metricsPort) -}}
{{- end -}}
{{- include "podcreds.flags" $flags -}}
{{- end -}}

{{/* host and port of the agent's --health-listen, which the probes use. */}}
{{- define "podcreds.healthHost" -}}
{{- $addr := index .Values.agent.flags "health-listen" | default "127.0.0.1:8090" -}}
{{- regexReplaceAll ":[0-9]+$" $addr "" | trimPrefix "[" | trimSuffix "]" -}}
{{- end -}}
{{- define "podcreds.healthPort" -}}
{{- $addr := index .Values.agent.flags "health-listen" | default "127.0.0.1:8090" -}}
{{- regexFind "[0-9]+$" $addr -}}
{{- end -}}
