{{/* Names: <release> when it already holds the chart name, else <release>-postbay. */}}
{{- define "postbay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "postbay.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object; call with (dict "ctx" $ "component" "smtp"). */}}
{{- define "postbay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: postbay
{{ include "postbay.selectorLabels" . }}
{{- end }}

{{- define "postbay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postbay.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "postbay.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The Secret holding the database URL: an existing one, or the chart's. */}}
{{- define "postbay.databaseSecret" -}}
{{- if .Values.mariadb.enabled }}
{{- fail "postbay.databaseSecret is not used with mariadb.enabled" }}
{{- else if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else if .Values.database.url }}
{{- include "postbay.fullname" . }}-database
{{- else }}
{{- fail "set database.existingSecret (a Secret with the URL under database.secretKey) or database.url: Postbay needs a MariaDB database (mysql://USER:PASSWORD@HOST/DB)" }}
{{- end }}
{{- end }}

{{/* The kubernetes.io/tls Secret the roles mount: an existing one, cert-manager's, or
the self-signed one the chart generates. */}}
{{- define "postbay.tlsSecret" -}}
{{- if .Values.tls.existingSecret }}
{{- .Values.tls.existingSecret }}
{{- else if .Values.tls.certManager.enabled }}
{{- include "postbay.fullname" . }}-tls
{{- else }}
{{- include "postbay.fullname" . }}-tls-self-signed
{{- end }}
{{- end }}

{{- define "postbay.selfSigned" -}}
{{- if not (or .Values.tls.existingSecret .Values.tls.certManager.enabled) }}true{{ end }}
{{- end }}

{{/* The names certificates are made for: hostname and the dns hosts. */}}
{{- define "postbay.tlsNames" -}}
{{- concat (list .Values.hostname) .Values.dns.mx (compact (list .Values.dns.submission .Values.dns.imap)) | uniq | toJson }}
{{- end }}

{{- define "postbay.scramSecret" -}}
{{- if .Values.auth.scramSecret.existingSecret }}
{{- .Values.auth.scramSecret.existingSecret }}
{{- else if .Values.auth.scramSecret.generate }}
{{- include "postbay.fullname" . }}-auth
{{- end }}
{{- end }}

{{- define "postbay.mariadbSecret" -}}
{{ .Values.mariadb.auth.existingSecret | default (printf "%s-mariadb" (include "postbay.fullname" .)) }}
{{- end }}

{{/* POSTBAY_DATABASE_URL from a Secret, or built from the bundled MariaDB's password. */}}
{{- define "postbay.databaseEnv" }}
{{- if .Values.mariadb.enabled }}
- name: MARIADB_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ include "postbay.mariadbSecret" . }}, key: password}}
- name: POSTBAY_DATABASE_URL
  value: mysql://postbay:$(MARIADB_PASSWORD)@{{ include "postbay.fullname" . }}-mariadb.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:3306/postbay
{{- else }}
- name: POSTBAY_DATABASE_URL
  valueFrom: {secretKeyRef: {name: {{ include "postbay.databaseSecret" . }}, key: {{ .Values.database.secretKey }}}}
{{- end }}
{{- end }}

{{- define "postbay.dkimSecret" -}}
{{ include "postbay.fullname" . }}-dkim-keys
{{- end }}

{{- define "postbay.lmtpTarget" -}}
{{ include "postbay.fullname" . }}-lmtp.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:24
{{- end }}

{{/* Environment of a mail role's container; call with (dict "ctx" $ "role" .Values.smtp). */}}
{{- define "postbay.mailEnv" -}}
{{- $ := .ctx }}
# Replica identity = pod name: names this replica's queue on the shared volume.
- name: POSTBAY_NODE_ID
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
{{- include "postbay.databaseEnv" $ }}
# A mounted kubernetes.io/tls Secret, reloaded when it is renewed.
- name: POSTBAY_TLS__CERT
  value: /etc/postbay/tls
{{- if include "postbay.scramSecret" $ }}
- name: POSTBAY_AUTH__SCRAM_UNKNOWN_USER_SECRET
  valueFrom: {secretKeyRef: {name: {{ include "postbay.scramSecret" $ }}, key: {{ $.Values.auth.scramSecret.key }}, optional: {{ $.Values.auth.scramSecret.optional }}}}
{{- end }}
{{- if $.Values.admin.enabled }}
- name: POSTBAY_ADMIN__LISTEN
  value: 0.0.0.0:{{ $.Values.admin.port }}
{{- end }}
- name: POSTBAY_LOG
  value: {{ $.Values.logLevel | quote }}
{{- with $.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with .role.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Probes of a mail role: httpGet on the admin port when it exists, else tcpSocket. */}}
{{- define "postbay.probes" -}}
{{- if .ctx.Values.admin.enabled }}
readinessProbe: {httpGet: {path: /readyz, port: admin}, periodSeconds: 5}
livenessProbe: {httpGet: {path: /healthz, port: admin}, periodSeconds: 20, failureThreshold: 3}
{{- else }}
readinessProbe: {tcpSocket: {port: {{ .port }}}, periodSeconds: 5}
livenessProbe: {tcpSocket: {port: {{ .port }}}, periodSeconds: 20, failureThreshold: 3}
{{- end }}
{{- end }}

{{- define "postbay.adminPort" -}}
{{- if .Values.admin.enabled }}
- {name: admin, containerPort: {{ .Values.admin.port }}}
{{- end }}
{{- end }}

{{/* Volumes every mail role mounts. */}}
{{- define "postbay.mailVolumeMounts" -}}
- {name: mail, mountPath: /var/lib/postbay}
- {name: config, mountPath: /etc/postbay/config, readOnly: true}
- {name: tmp, mountPath: /tmp}
- {name: tls, mountPath: /etc/postbay/tls, readOnly: true}
{{- end }}

{{- define "postbay.mailVolumes" -}}
- name: mail
  persistentVolumeClaim: {claimName: {{ .Values.persistence.existingClaim | default (printf "%s-mail" (include "postbay.fullname" .)) }}}
- name: config
  configMap: {name: {{ include "postbay.fullname" . }}-config}
- name: tmp
  emptyDir: {sizeLimit: 64Mi}
- name: tls
  secret: {secretName: {{ include "postbay.tlsSecret" . }}}
{{- end }}

{{/* Scheduling keys shared by the roles; call with (dict "ctx" $ "role" .Values.smtp "component" "smtp"). */}}
{{- define "postbay.scheduling" -}}
{{- with .role.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
topologySpreadConstraints:
{{- if .role.topologySpreadConstraints }}
{{- toYaml .role.topologySpreadConstraints | nindent 2 }}
{{- else }}
  # Spread replicas over nodes and zones when the cluster allows it.
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels: {{- include "postbay.selectorLabels" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels: {{- include "postbay.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end }}

{{- define "postbay.podMeta" -}}
labels:
  {{- include "postbay.selectorLabels" . | nindent 2 }}
  app.kubernetes.io/part-of: postbay
  {{- with .ctx.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  # Restart the pods when their settings change.
  checksum/config: {{ .checksum }}
  {{- with .ctx.Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
