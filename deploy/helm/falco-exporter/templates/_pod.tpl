{{/* The pod of every mode that runs a workload. */}}
{{- define "falco-exporter.pod" -}}
{{- $v := .Values }}
metadata:
  labels:
    {{- include "falco-exporter.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/part-of: falco-exporter
    {{- with merge (dict) $v.podLabels $v.daemonset.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- /* Restart the pods when a certificate given inline changes. */}}
    checksum/secrets: {{ include (print $.Template.BasePath "/secrets.yaml") . | sha256sum }}
    {{- with merge (dict) $v.podAnnotations $v.daemonset.annotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "falco-exporter.serviceAccountName" . }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: 15
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "falco-exporter.podSecurityContext" . | nindent 4 }}
  containers:
    - name: falco-exporter
      image: {{ include "falco-exporter.image" . }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args:
        {{- include "falco-exporter.args" . | nindent 8 }}
      ports:
        - name: metrics
          containerPort: {{ $v.service.targetPort }}
          protocol: TCP
        - name: probes
          containerPort: {{ $v.healthChecks.livenessProbe.probesPort }}
          protocol: TCP
        {{- if eq (include "falco-exporter.mode" .) "http-input" }}
        - name: http-input
          containerPort: {{ $v.httpInput.port }}
          protocol: TCP
        {{- end }}
      livenessProbe:
        httpGet:
          path: /liveness
          port: probes
        initialDelaySeconds: {{ $v.healthChecks.livenessProbe.initialDelaySeconds }}
        timeoutSeconds: {{ $v.healthChecks.livenessProbe.timeoutSeconds }}
        periodSeconds: {{ $v.healthChecks.livenessProbe.periodSeconds }}
      readinessProbe:
        httpGet:
          path: /readiness
          port: probes
        initialDelaySeconds: {{ $v.healthChecks.readinessProbe.initialDelaySeconds }}
        timeoutSeconds: {{ $v.healthChecks.readinessProbe.timeoutSeconds }}
        periodSeconds: {{ $v.healthChecks.readinessProbe.periodSeconds }}
      {{- if eq (include "falco-exporter.mode" .) "http-input" }}
      lifecycle:
        # Leave the Service's endpoints before the listener closes: no post is refused.
        preStop:
          sleep:
            seconds: 5
      {{- end }}
      resources:
        {{- include "falco-exporter.resources" . | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        {{- if eq (include "falco-exporter.mode" .) "socket" }}
        - name: falco-socket-dir
          mountPath: {{ dir (trimPrefix "unix://" $v.falco.grpcUnixSocketPath) }}
          readOnly: true
        {{- end }}
        {{- if eq (include "falco-exporter.mode" .) "grpc" }}
        - name: client-certs
          mountPath: /etc/falco-exporter/client
          readOnly: true
        {{- end }}
        {{- if and (eq (include "falco-exporter.mode" .) "http-input") $v.httpInput.tls.existingSecret }}
        - name: input-certs
          mountPath: /etc/falco-exporter/input
          readOnly: true
        {{- end }}
        {{- if $v.service.mTLS.enabled }}
        - name: server-certs
          mountPath: /etc/falco-exporter/server
          readOnly: true
        {{- end }}
  volumes:
    {{- if eq (include "falco-exporter.mode" .) "socket" }}
    - name: falco-socket-dir
      hostPath:
        path: {{ dir (trimPrefix "unix://" $v.falco.grpcUnixSocketPath) }}
        type: Directory
    {{- end }}
    {{- if eq (include "falco-exporter.mode" .) "grpc" }}
    - name: client-certs
      secret:
        secretName: {{ include "falco-exporter.clientSecret" . }}
    {{- end }}
    {{- if and (eq (include "falco-exporter.mode" .) "http-input") $v.httpInput.tls.existingSecret }}
    - name: input-certs
      secret:
        secretName: {{ $v.httpInput.tls.existingSecret }}
    {{- end }}
    {{- if $v.service.mTLS.enabled }}
    - name: server-certs
      secret:
        secretName: {{ include "falco-exporter.serverSecret" . }}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with include "falco-exporter.affinity" . | fromYaml }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if and (eq (include "falco-exporter.mode" .) "http-input") (not $v.affinity) }}
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "falco-exporter.selectorLabels" . | nindent 10 }}
  {{- end }}
{{- end }}
