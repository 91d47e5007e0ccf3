{{/* Names: the release's full name, as the Go chart made it. */}}
{{- define "falco-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "falco-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The mode: as set, or, left empty, what an old Go-chart values file meant: gRPC over TCP
when it names falco.grpcHostname, the node's unix socket otherwise.
*/}}
{{- define "falco-exporter.mode" -}}
{{- if .Values.mode }}
{{- .Values.mode }}
{{- else if .Values.falco.grpcHostname }}
{{- "grpc" }}
{{- else }}
{{- "socket" }}
{{- end }}
{{- end }}

{{- define "falco-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "falco-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "falco-exporter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "falco-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: falco-exporter
{{- end }}

{{- define "falco-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "falco-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image, refusing the Go exporter's: its program reads other flags, and running it with
these arguments would crash-loop far from the cause.
*/}}
{{- define "falco-exporter.image" -}}
{{- $image := .Values.image }}
{{- if hasSuffix "falcosecurity/falco-exporter" $image.repository }}
{{- fail (printf "image %s:%s is the archived Go falco-exporter, which cannot run this chart. Set image.registry (the old values' docker.io would stay), image.repository and image.tag to the falco-exporter image built from this repository's Dockerfile (docs/migrating.md, \"From the Go exporter's Helm chart\")." $image.repository (toString $image.tag)) }}
{{- end }}
{{- $name := $image.repository }}
{{- if $image.registry }}
{{- $name = printf "%s/%s" $image.registry $image.repository }}
{{- end }}
{{- if $image.digest }}
{{- printf "%s@%s" $name $image.digest }}
{{- else }}
{{- printf "%s:%s" $name (toString (default .Chart.AppVersion $image.tag)) }}
{{- end }}
{{- end }}

{{/* Where each mode's pods get their certificate Secrets. */}}
{{- define "falco-exporter.clientSecret" -}}
{{- default (printf "%s-client" (include "falco-exporter.fullname" .)) .Values.certs.existingSecret }}
{{- end }}
{{- define "falco-exporter.serverSecret" -}}
{{- default (printf "%s-server" (include "falco-exporter.fullname" .)) .Values.service.mTLS.existingSecret }}
{{- end }}

{{/* The host part of every listen address: empty is every address of both families (an IPv6
literal is bracketed). */}}
{{- define "falco-exporter.listenHost" -}}
{{- $host := .Values.exporter.listenHost | default "" }}
{{- if contains ":" $host }}[{{ $host }}]{{ else }}{{ $host }}{{ end }}
{{- end }}

{{/* The exporter's arguments for the mode. */}}
{{- define "falco-exporter.args" -}}
{{- $v := .Values }}
{{- $host := include "falco-exporter.listenHost" . }}
- --listen-address={{ $host }}:{{ $v.service.targetPort }}
- --probes-listen-address={{ $host }}:{{ $v.healthChecks.livenessProbe.probesPort }}
{{- if eq (include "falco-exporter.mode" .) "socket" }}
- --client-socket={{ $v.falco.grpcUnixSocketPath }}
- --timeout={{ $v.falco.grpcTimeout }}
{{- else if eq (include "falco-exporter.mode" .) "grpc" }}
{{- if $v.discovery.dns }}
- --discover-dns={{ $v.discovery.dns }}
- --discover-interval={{ $v.discovery.interval }}
{{- else }}
- --client-hostname={{ required "grpc mode needs falco.grpcHostname or discovery.dns" $v.falco.grpcHostname }}
{{- end }}
- --client-port={{ $v.falco.grpcPort }}
- --client-cert=/etc/falco-exporter/client/client.crt
- --client-key=/etc/falco-exporter/client/client.key
- --client-ca=/etc/falco-exporter/client/ca.crt
- --timeout={{ $v.falco.grpcTimeout }}
{{- else if eq (include "falco-exporter.mode" .) "http-input" }}
- --http-input-address={{ $host }}:{{ $v.httpInput.port }}
- --http-input-max-body={{ $v.httpInput.maxBody }}
{{- if $v.httpInput.tls.existingSecret }}
- --http-input-cert=/etc/falco-exporter/input/tls.crt
- --http-input-key=/etc/falco-exporter/input/tls.key
{{- if $v.httpInput.tls.clientCA }}
- --http-input-ca=/etc/falco-exporter/input/ca.crt
{{- end }}
{{- end }}
{{- if gt (int $v.httpInput.replicas) 1 }}
{{- /* Replicas share each Falco's posts: none can tell a loss alone (docs/delivery.md). */}}
- --delivery-accounting=false
{{- end }}
{{- end }}
{{- if $v.service.mTLS.enabled }}
- --server-cert=/etc/falco-exporter/server/server.crt
- --server-key=/etc/falco-exporter/server/server.key
- --server-ca=/etc/falco-exporter/server/ca.crt
{{- end }}
- --max-series={{ $v.exporter.maxSeries }}
- --series-ttl={{ $v.exporter.seriesTTL }}
{{- range $name, $field := $v.exporter.extraLabels }}
- --extra-labels={{ $name }}={{ $field }}
{{- end }}
{{- if $v.exporter.dropLabels }}
- --drop-labels={{ join "," $v.exporter.dropLabels }}
{{- end }}
{{- if $v.exporter.priorityNameLabel }}
- --priority-name-label
{{- end }}
- --log-level={{ $v.exporter.logLevel }}
- --log-format={{ $v.exporter.logFormat }}
{{- range $v.exporter.extraArgs }}
- {{ . }}
{{- end }}
{{- end }}

{{/* Requests and limits from the measured figures of each mode, unless given: a copy of
deploy/resources.yaml, which tests/test_helm.py holds it to in every mode. */}}
{{- define "falco-exporter.resources" -}}
{{- if .Values.resources }}
{{- toYaml .Values.resources }}
{{- else if eq (include "falco-exporter.mode" .) "http-input" }}
requests:
  cpu: 50m
  memory: 48Mi
limits:
  cpu: "1"
  memory: 128Mi
{{- else }}
requests:
  cpu: {{ ternary "30m" "50m" (eq (include "falco-exporter.mode" .) "socket") }}
  memory: 64Mi
limits:
  cpu: {{ ternary "500m" "1" (eq (include "falco-exporter.mode" .) "socket") }}
  memory: 160Mi
{{- end }}
{{- end }}

{{/* The pod's security context: uid 0 without capabilities only where the socket needs it. */}}
{{- define "falco-exporter.podSecurityContext" -}}
{{- if .Values.podSecurityContext }}
{{- toYaml .Values.podSecurityContext }}
{{- else if eq (include "falco-exporter.mode" .) "socket" }}
runAsNonRoot: false
runAsUser: 0
runAsGroup: 0
seccompProfile:
  type: RuntimeDefault
{{- else }}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}
{{- end }}

{{/* The pod's affinity: the values' own, with the image's architectures required of the node
(image.architectures, ANDed into each of the values' node selector terms). */}}
{{- define "falco-exporter.affinity" -}}
{{- $affinity := deepCopy (.Values.affinity | default dict) }}
{{- with .Values.image.architectures }}
{{- $arch := dict "key" "kubernetes.io/arch" "operator" "In" "values" . }}
{{- $node := get $affinity "nodeAffinity" | default dict }}
{{- $required := get $node "requiredDuringSchedulingIgnoredDuringExecution" | default dict }}
{{- $terms := list }}
{{- range get $required "nodeSelectorTerms" | default (list dict) }}
{{- $expressions := append (get . "matchExpressions" | default list) $arch }}
{{- $terms = append $terms (set (deepCopy .) "matchExpressions" $expressions) }}
{{- end }}
{{- $_ := set $required "nodeSelectorTerms" $terms }}
{{- $_ = set $node "requiredDuringSchedulingIgnoredDuringExecution" $required }}
{{- $_ = set $affinity "nodeAffinity" $node }}
{{- end }}
{{- with $affinity }}{{ toYaml . }}{{ end }}
{{- end }}
