{{/*
Names and labels shared by every template. The full name is the release name
when it already contains "apiwarden", else "<release>-apiwarden".
*/}}
{{- define "apiwarden.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "apiwarden.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: apiwarden
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: apiwarden
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component's pods: (dict "root" $ "component" "manager"). */}}
{{- define "apiwarden.selectorLabels" -}}
app.kubernetes.io/name: apiwarden
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "apiwarden.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The roles the manager Deployment runs. */}}
{{- define "apiwarden.managerRoles" -}}
{{- $roles := list -}}
{{- if .Values.roles.controllers }}{{ $roles = append $roles "controllers" }}{{ end -}}
{{- if .Values.roles.webhook }}{{ $roles = append $roles "webhook" }}{{ end -}}
{{- if and .Values.roles.authz (not .Values.authz.separateDeployment) }}{{ $roles = append $roles "authz" }}{{ end -}}
{{- join "," $roles -}}
{{- end -}}

{{/* Whether some Deployment serves authz, and which component's pods do. */}}
{{- define "apiwarden.authzComponent" -}}
{{- if .Values.authz.separateDeployment }}authz{{ else }}manager{{ end -}}
{{- end -}}

{{- define "apiwarden.webhookCertDir" -}}/tmp/k8s-webhook-server/serving-certs{{- end -}}

{{/*
One Deployment of the manager binary: (dict "root" $ "component" "manager"
"roles" "controllers,webhook" "replicas" 2 "resources" dict). Both the manager
and the separate authz Deployment are made from it, so their pod security,
probes and shutdown are the same.
*/}}
{{- define "apiwarden.deployment" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $roles := splitList "," .roles -}}
{{- $webhook := has "webhook" $roles -}}
{{- $authz := has "authz" $roles -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "apiwarden.fullname" $root }}-{{ .component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "apiwarden.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  replicas: {{ .replicas }}
  selector:
    matchLabels:
      {{- include "apiwarden.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "apiwarden.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "apiwarden.fullname" $root }}{{ if eq .component "authz" }}-authz{{ end }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      # Longer than --graceful-shutdown-timeout, so in-flight admission and
      # authz requests drain before SIGKILL.
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile:
          type: RuntimeDefault
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 100
              podAffinityTerm:
                topologyKey: kubernetes.io/hostname
                labelSelector:
                  matchLabels:
                    {{- include "apiwarden.selectorLabels" . | nindent 20 }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "apiwarden.selectorLabels" . | nindent 14 }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: manager
          image: {{ include "apiwarden.image" $root }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            - --roles={{ .roles }}
            - --leader-elect={{ $v.leaderElection }}
            - --leader-election-namespace=$(POD_NAMESPACE)
            - --metrics-bind-address={{ if $v.metrics.enabled }}:{{ include "apiwarden.metricsPort" $root }}{{ else }}0{{ end }}
            {{- if $v.metrics.enabled }}
            - --metrics-secure={{ $v.metrics.secure }}
            {{- end }}
            - --health-probe-bind-address=:8081
            - --shutdown-delay={{ $v.shutdownDelay }}
            - --graceful-shutdown-timeout={{ $v.gracefulShutdownTimeout }}
            - --gateway={{ $v.gateway }}
            - --authz-service={{ include "apiwarden.fullname" $root }}-authz
            - --zap-log-level={{ $v.logLevel }}
            {{- if has "controllers" $roles }}
            - --policy-reports={{ $v.policyReports.enabled }}
            - --install-policyreport-crd={{ and $v.policyReports.enabled $v.policyReports.installCRD }}
            {{- end }}
            {{- if $webhook }}
            - --webhook-port=9443
            {{- if eq $v.webhook.certificate.mode "self-managed" }}
            - --webhook-cert-mode=self-managed
            - --webhook-secret={{ include "apiwarden.fullname" $root }}-webhook-cert
            - --webhook-configuration={{ include "apiwarden.fullname" $root }}
            - --webhook-service={{ include "apiwarden.fullname" $root }}-webhook
            - --webhook-cert-validity={{ $v.webhook.certificate.duration }}
            - --webhook-ca-validity={{ $v.webhook.certificate.caDuration }}
            {{- else }}
            - --webhook-cert-dir={{ include "apiwarden.webhookCertDir" $root }}
            {{- end }}
            {{- end }}
            {{- if $authz }}
            - --authz-grpc-bind-address=:9001
            - --authz-http-bind-address=:9002
            {{- end }}
            {{- range $v.extraArgs }}
            - {{ . }}
            {{- end }}
          env:
            - name: POD_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
          ports:
            {{- if $webhook }}
            - name: webhook
              containerPort: 9443
              protocol: TCP
            {{- end }}
            {{- if $authz }}
            - name: authz-grpc
              containerPort: 9001
              protocol: TCP
            - name: authz-http
              containerPort: 9002
              protocol: TCP
            {{- end }}
            {{- if $v.metrics.enabled }}
            - name: metrics
              containerPort: {{ include "apiwarden.metricsPort" $root }}
              protocol: TCP
            {{- end }}
            - name: probes
              containerPort: 8081
              protocol: TCP
          livenessProbe:
            httpGet:
              path: /healthz
              port: probes
            initialDelaySeconds: 15
            periodSeconds: 20
          readinessProbe:
            httpGet:
              path: /readyz
              port: probes
            periodSeconds: 5
          resources:
            {{- toYaml .resources | nindent 12 }}
          securityContext:
            runAsNonRoot: true
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
            seccompProfile:
              type: RuntimeDefault
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if and $webhook (eq $v.webhook.certificate.mode "cert-manager") }}
            - name: webhook-certs
              mountPath: {{ include "apiwarden.webhookCertDir" $root }}
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- if and $webhook (eq $v.webhook.certificate.mode "cert-manager") }}
        - name: webhook-certs
          secret:
            secretName: {{ include "apiwarden.fullname" $root }}-webhook-cert
        {{- end }}
{{- end -}}

{{/*
The metrics port: 8443 when served over HTTPS with token authorisation
(metrics.secure), 8080 when plain HTTP.
*/}}
{{- define "apiwarden.metricsPort" -}}
{{- if .Values.metrics.secure }}8443{{ else }}8080{{ end }}
{{- end }}
