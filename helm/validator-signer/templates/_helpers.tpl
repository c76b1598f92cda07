{{/* Names and labels. */}}
{{- define "signer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "signer.fullname" -}}
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

{{- define "signer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "signer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "signer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "signer.labels" -}}
helm.sh/chart: {{ include "signer.chart" . }}
{{ include "signer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: signer
{{- end }}

{{- define "signer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "signer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "signer.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The port of a "host:port" listen address. */}}
{{- define "signer.listenPort" -}}
{{- splitList ":" . | last }}
{{- end }}

{{/* The host of a "host:port" / "[v6]:port" listen address. */}}
{{- define "signer.listenHost" -}}
{{- $parts := splitList ":" . }}
{{- join ":" (initial $parts) | trimPrefix "[" | trimSuffix "]" }}
{{- end }}

{{/* Secret names: an existing one, the one the chart creates, or the conventional default. */}}
{{- define "signer.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "signer.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{- define "signer.pinSecretName" -}}
{{- default (printf "%s-pin" (include "signer.fullname" .)) .Values.secrets.modulePin.existingSecret }}
{{- end }}

{{- define "signer.postgresSecretName" -}}
{{- default (printf "%s-postgres" (include "signer.fullname" .)) .Values.secrets.postgresPassword.existingSecret }}
{{- end }}

{{- define "signer.auditHmacSecretName" -}}
{{- default (printf "%s-audit-hmac" (include "signer.fullname" .)) .Values.secrets.auditHmacKey.existingSecret }}
{{- end }}

{{- define "signer.usesAuditHmacKey" -}}
{{- if or .Values.secrets.auditHmacKey.existingSecret .Values.secrets.auditHmacKey.value }}true{{- end }}
{{- end }}

{{- define "signer.usesPostgresPassword" -}}
{{- if and (eq .Values.config.protection.backend "postgres") (or .Values.secrets.postgresPassword.existingSecret .Values.secrets.postgresPassword.value) }}true{{- end }}
{{- end }}

{{- define "signer.operatorsSecretName" -}}
{{- default (printf "%s-operators" (include "signer.fullname" .)) .Values.secrets.operators.existingSecret }}
{{- end }}

{{/*
The operator names of config.clients[].operators, each once, sorted (a JSON list).
*/}}
{{- define "signer.operatorNames" -}}
{{- $names := list }}
{{- range .Values.config.clients }}
{{- range (default (list) .operators) }}
{{- $names = append $names .name }}
{{- end }}
{{- end }}
{{- $names | uniq | sortAlpha | toJson }}
{{- end }}

{{- define "signer.isSqlite" -}}
{{- if eq .Values.config.protection.backend "sqlite" }}true{{- end }}
{{- end }}

{{/*
Checks that values.schema.json cannot express. Each fails rendering with a message that says why.
*/}}
{{- define "signer.validate" -}}
{{- if and (include "signer.isSqlite" .) (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "replicaCount=%d with config.protection.backend=sqlite: several replicas require the PostgreSQL store (set config.protection.backend=postgres and config.protection.dsn). The embedded SQLite store protects one pod only; two pods on two stores would each sign and could get the validators slashed." (int .Values.replicaCount)) }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (eq .Values.config.keys.module "emulated") (not .Values.persistence.existingClaim) }}
{{- fail "replicaCount > 1 with config.keys.module=emulated needs persistence.existingClaim (a ReadWriteMany claim holding the sealed module file), so that every replica loads the same keys; or use config.keys.module=pkcs11" }}
{{- end }}
{{- if and (include "signer.isSqlite" .) (not .Values.persistence.enabled) }}
{{- fail "config.protection.backend=sqlite needs persistence.enabled=true: the slashing-protection history must survive a restart" }}
{{- end }}
{{- range $key := list "grpc_listen" "metrics_listen" "http_listen" }}
{{- if get $.Values.config.server $key }}
{{- $host := include "signer.listenHost" (get $.Values.config.server $key) }}
{{- if or (hasPrefix "127." $host) (eq $host "::1") (eq $host "localhost") }}
{{- fail (printf "config.server.%s=%s listens on loopback only: in a pod it must listen on all interfaces (0.0.0.0:PORT or [::]:PORT) so that clients, probes and Prometheus reach it" $key (get $.Values.config.server $key)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (not .Values.tls.enabled) (not .Values.config.server.allow_insecure_plaintext) }}
{{- fail "tls.enabled=false serves plaintext gRPC to the network: set config.server.allow_insecure_plaintext=true to accept that (development only), or enable TLS" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) (or .Values.tls.certificate .Values.tls.privateKey .Values.tls.clientCA) (not (and .Values.tls.certificate .Values.tls.privateKey .Values.tls.clientCA)) }}
{{- fail "tls: give all three of tls.certificate, tls.privateKey and tls.clientCA, or tls.existingSecret" }}
{{- end }}
{{- range $name := include "signer.operatorNames" . | fromJsonArray }}
{{- if and (not $.Values.secrets.operators.existingSecret) (not (hasKey $.Values.secrets.operators.values $name)) }}
{{- fail (printf "operator %s of config.clients has no secret: set secrets.operators.existingSecret (a Secret with one key per operator) or secrets.operators.values.%s" $name $name) }}
{{- end }}
{{- end }}
{{- if and .Values.config.audit.rotate_bytes (eq (toString .Values.config.audit.path) "-") }}
{{- fail "config.audit.rotate_bytes needs config.audit.path to be a file under /var/lib/signer (stdout cannot be rotated)" }}
{{- end }}
{{- if and (eq .Values.config.keys.module "pkcs11") (not .Values.pkcs11.volume) (not .Values.pkcs11.sidecars) }}
{{- fail "config.keys.module=pkcs11 needs pkcs11.volume (hostPath, csi, persistentVolumeClaim) holding the HSM library, or pkcs11.sidecars with an emptyDir volume it fills" }}
{{- end }}
{{- end }}

{{/*
Whole numbers as TOML integers: values from -f files arrive as float64 (256 would render as 256.0,
which an integer key of signer/config.py must not get). Walks maps and lists of maps in place.
*/}}
{{- define "signer.wholeNumbersAsIntegers" -}}
{{- $m := . }}
{{- range $k, $v := $m }}
{{- if and (kindIs "float64" $v) (eq $v (floor $v)) }}
{{- $_ := set $m $k (int64 $v) }}
{{- else if kindIs "map" $v }}
{{- include "signer.wholeNumbersAsIntegers" $v }}
{{- else if kindIs "slice" $v }}
{{- range $v }}{{ if kindIs "map" . }}{{ include "signer.wholeNumbersAsIntegers" . }}{{ end }}{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The signer's configuration: .Values.config plus what the chart owns (paths of volumes and secrets).
*/}}
{{- define "signer.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $server := $cfg.server }}
{{- if .Values.tls.enabled }}
{{- $tls := merge (dict "cert_file" "/etc/signer/tls/tls.crt" "key_file" "/etc/signer/tls/tls.key" "client_ca_file" "/etc/signer/tls/ca.crt") (default (dict) $server.tls) }}
{{- $_ := set $server "tls" $tls }}
{{- else }}
{{- $_ := unset $server "tls" }}
{{- end }}
{{- $keys := $cfg.keys }}
{{- $_ := set $keys "data_dir" "/var/lib/signer" }}
{{- $pin := dict "file" "/var/run/signer/pin" }}
{{- if eq $keys.module "pkcs11" }}
{{- $_ := set $keys.pkcs11 "pin" $pin }}
{{- else }}
{{- $_ := set $keys "pin" $pin }}
{{- end }}
{{- $protection := $cfg.protection }}
{{- if eq $protection.backend "sqlite" }}
{{- $_ := set $protection "sqlite_path" "/var/lib/signer/protection.sqlite" }}
{{- else if include "signer.usesPostgresPassword" . }}
{{- $_ := set $protection "password" (dict "file" "/var/run/signer/postgres-password") }}
{{- end }}
{{- range $cfg.clients }}
{{- range (default (list) .operators) }}
{{- $_ := set . "secret" (dict "file" (printf "/var/run/signer/operators/%s" .name)) }}
{{- end }}
{{- end }}
{{- if include "signer.usesAuditHmacKey" . }}
{{- $_ := set $cfg.audit "hmac_key" (dict "file" "/var/run/signer/audit-hmac-key") }}
{{- end }}
{{- include "signer.wholeNumbersAsIntegers" $cfg }}
{{- toToml $cfg }}
{{- end }}
