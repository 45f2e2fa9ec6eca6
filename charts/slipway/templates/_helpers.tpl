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

{{- /* Tenants run apart from the platform: their own namespaces unless told otherwise. */}}
{{- define "slipway.appsNamespace" -}}
{{- .Values.agent.appsNamespace | default (printf "%s-apps" .Release.Namespace) -}}
{{- end -}}

{{- define "slipway.buildsNamespace" -}}
{{- .Values.control.builds.namespace | default (printf "%s-builds" .Release.Namespace) -}}
{{- end -}}

{{- /* The logs service's URL for clients (build output streams): its ingress host if any. */}}
{{- define "slipway.logsPublicUrl" -}}
{{- if and .Values.ingress.enabled .Values.ingress.logsHost -}}
{{- printf "%s://%s" (ternary "https" "http" (not (empty .Values.ingress.platformTlsSecret))) .Values.ingress.logsHost -}}
{{- else -}}
{{- include "slipway.url" (list . "logs" .Values.logs.port) -}}
{{- end -}}
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

{{- /* The Fluent forward shared key, from the Secret agent-token.yaml keeps (logs, Fluent Bit). */}}
{{- define "slipway.logsSharedKeyEnv" -}}
- name: SLIPWAY_LOGS_SHARED_KEY
  valueFrom:
    secretKeyRef: {name: {{ .Values.logs.sharedKeySecret | default (include "slipway.name" (list . "logs-shared-key")) }}, key: key}
{{- end -}}

{{- /* The URL of a component's Service inside the cluster. Call with (list $ "logs" port). */}}
{{- define "slipway.url" -}}
{{- printf "http://%s.%s.svc:%v" (include "slipway.name" (list (index . 0) (index . 1))) (index . 0).Release.Namespace (index . 2) -}}
{{- end -}}

{{- /*
A secret the pods of several components share, stable under `helm template` and GitOps
(where lookup sees nothing, so a generated value would change on every render and pods
started at different times would refuse each other). Call with
(list $ "<object name>" "<value>" "<values key>" "<data key>"): the value the operator gave, else the one
a previous install stored (lookup, on `helm install/upgrade`), else a failure saying what to set.
*/}}
{{- define "slipway.keptSecretData" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $given := index . 2 -}}
{{- $key := index . 3 -}}
{{- $dataKey := index . 4 -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace $name -}}
{{- if $given -}}
{{ $given | b64enc }}
{{- else if and $existing $existing.data (index $existing.data $dataKey) -}}
{{ index $existing.data $dataKey }}
{{- else -}}
{{- fail (printf "%s is required: a random string of 32+ characters (openssl rand -hex 32) shared by the pods that use it, or the name of an existing Secret with key %q in %sSecret" $key $dataKey $key) -}}
{{- end -}}
{{- end -}}

{{- /* The pull secret of app pods: given, else the builds' push secret (copied to the apps namespace). */}}
{{- define "slipway.appsPullSecret" -}}
{{- if .Values.agent.imagePullSecret -}}
{{- .Values.agent.imagePullSecret -}}
{{- else if and .Values.control.enabled .Values.control.builds.kubernetes (not .Values.control.builds.inClusterRegistry.enabled) -}}
{{- .Values.control.builds.registrySecret -}}
{{- end -}}
{{- end -}}

{{- /* Whether the in-cluster registry is on; refused unless builds run on the cluster. */}}
{{- define "slipway.inClusterRegistry" -}}
{{- if .Values.control.builds.inClusterRegistry.enabled -}}
{{- if not (and .Values.control.enabled .Values.control.builds.kubernetes) -}}
{{- fail "control.builds.inClusterRegistry.enabled holds the output of builds on the cluster: also set control.enabled and control.builds.kubernetes, or leave it off" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{- /* Where builds push: the registry given, else the in-cluster registry's Service. */}}
{{- define "slipway.buildsRegistry" -}}
{{- if .Values.control.builds.registry -}}
{{- .Values.control.builds.registry -}}
{{- else if include "slipway.inClusterRegistry" . -}}
{{- printf "%s.%s.svc:5000" (include "slipway.name" (list . "registry")) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- /* Extension points every component has. Call with the component's values. */}}
{{- define "slipway.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- /* ServiceAccount annotations: IRSA (eks.amazonaws.com/role-arn), GKE workload identity. */}}
{{- define "slipway.saAnnotations" -}}
{{- with (.serviceAccount | default dict).annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- /*
The Prometheus operator's kinds exist only with its CRDs: without them the install would
fail half-way on an unknown kind. `helm template` knows no CRDs: pass
--api-versions monitoring.coreos.com/v1, or set crdCheck false.
*/}}
{{- define "slipway.requireMonitoringApi" -}}
{{- $root := index . 0 -}}
{{- $kind := index . 1 -}}
{{- if and (index . 2) (not ($root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" $kind))) -}}
{{- fail (printf "%s needs the Prometheus operator's CRDs (monitoring.coreos.com/v1), which this cluster does not have: install kube-prometheus-stack first, or under `helm template` pass --api-versions monitoring.coreos.com/v1/%s" $kind $kind) -}}
{{- end -}}
{{- end -}}
