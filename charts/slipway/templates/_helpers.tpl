{{/* The release-scoped name prefix of every object. */}}
{{- define "slipway.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects: <fullname>-<component>. Call with (list $ "router"). */}}
{{- define "slipway.name" -}}
{{- printf "%s-%s" (include "slipway.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{- define "slipway.selectorLabels" -}}
app.kubernetes.io/name: slipway
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "slipway.labels" -}}
{{ include "slipway.selectorLabels" . }}
app.kubernetes.io/version: {{ (index . 0).Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ (index . 0).Release.Service }}
app.kubernetes.io/part-of: slipway
helm.sh/chart: {{ printf "%s-%s" (index . 0).Chart.Name (index . 0).Chart.Version }}
{{- end -}}

{{- define "slipway.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "slipway.appsNamespace" -}}
{{- .Values.agent.appsNamespace | default .Release.Namespace -}}
{{- end -}}

{{/* The pod spec fields every component shares. */}}
{{- define "slipway.podCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* /tmp as a writable emptyDir: the root filesystem is read-only. */}}
{{- define "slipway.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{- define "slipway.probes" -}}
readinessProbe:
  httpGet: {path: /readyz, port: {{ . }}}
  periodSeconds: 5
  failureThreshold: 2
livenessProbe:
  httpGet: {path: /healthz, port: {{ . }}}
  periodSeconds: 10
  failureThreshold: 3
  timeoutSeconds: 2
{{- end -}}

{{- /* The agent API's bearer token, from the Secret agent-token.yaml keeps (agent, routers, control). */}}
{{- define "slipway.agentTokenEnv" -}}
- name: SLIPWAY_AGENT_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ .Values.agent.tokenSecret | default (include "slipway.name" (list . "agent-token")) }}, key: token}
{{- end -}}
