{{/*
Names and labels.
*/}}
{{- define "henvis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "henvis.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "henvis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "henvis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: henvis
{{- end -}}

{{- define "henvis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "henvis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "henvis.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "henvis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "henvis.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The seven long-running components. Each entry: the service it belongs to, whether it is an
HTTP API (Service, /healthz + /readyz probes) or a worker (metrics port, /metrics probe),
its command, and the path of its values below .Values. A worker with stableIdentity joins
its consumer group as a static member named after its pod, so it runs as a StatefulSet:
pod names (henvis-router-worker-0, -1 ...) and so member ids survive a rescheduled pod.
*/}}
{{- define "henvis.components" -}}
consent-api:
  service: consent
  kind: api
  args: [consent, serve, --host, 0.0.0.0, --port, "8080"]
consent-relay:
  service: consent
  kind: worker
  values: relay
  args: [consent, relay]
router-worker:
  service: router
  kind: worker
  stableIdentity: true
  args: [router, worker]
centre-api:
  service: centre
  kind: api
  args: [centre, serve, --host, 0.0.0.0, --port, "8080"]
centre-worker:
  service: centre
  kind: worker
  args: [centre, worker]
stats-api:
  service: stats
  kind: api
  args: [stats, serve, --host, 0.0.0.0, --port, "8080"]
stats-worker:
  service: stats
  kind: worker
  stableIdentity: true
  args: [stats, worker]
{{- range .Values.centre.isolatedWorkers }}
centre-worker-{{ .centre }}:
  service: centre
  kind: worker
  isolatedCentre: {{ .centre }}
  kafkaSaslExistingSecret: {{ .kafkaSaslExistingSecret | quote }}
  args: [centre, worker]
{{- end }}
{{- end -}}

{{/*
The centres the shared centre worker consumes: centre.centres (or every registry centre),
less those that have an isolated worker of their own. Empty when none are left.
*/}}
{{- define "henvis.sharedCentres" -}}
{{- $isolated := list -}}
{{- range .Values.centre.isolatedWorkers }}{{ $isolated = append $isolated .centre }}{{ end -}}
{{- $all := list -}}
{{- if .Values.centre.centres -}}
{{- $all = splitList "," .Values.centre.centres -}}
{{- else -}}
{{- range (include "henvis.registryContent" . | fromYaml).centres }}{{ $all = append $all .slug }}{{ end -}}
{{- end -}}
{{- $shared := list -}}
{{- range $all }}{{ if not (has . $isolated) }}{{ $shared = append $shared . }}{{ end }}{{ end -}}
{{- join "," $shared -}}
{{- end -}}

{{/* Whether a component is rendered: the shared centre worker only while it has centres left. */}}
{{- define "henvis.componentEnabled" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- if and (eq $name "centre-worker") $root.Values.centre.isolatedWorkers (not (include "henvis.sharedCentres" $root)) -}}
{{- else -}}true{{- end -}}
{{- end -}}

{{/* The values block of one component: .Values.<service>.<api|worker|relay>. */}}
{{- define "henvis.componentValues" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $key := default $component.kind $component.values -}}
{{- toYaml (index (index $root.Values $component.service) $key) -}}
{{- end -}}

{{/* The registry file's content: the override when given, else the chart's copy. */}}
{{- define "henvis.registryContent" -}}
{{- if .Values.registry.override -}}
{{- .Values.registry.override -}}
{{- else -}}
{{- .Files.Get "files/centres.v1.yaml" -}}
{{- end -}}
{{- end -}}

{{/* Kafka SASL Secret of a service: its own, else the shared one. */}}
{{- define "henvis.kafkaSaslSecret" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
{{- default $root.Values.kafka.sasl.existingSecret (index $root.Values $service).kafkaSaslExistingSecret -}}
{{- end -}}

{{/*
Environment of a container of one service (list of EnvVar). Args: root, service name,
component kind ("api", "worker" or "migrate"), and for workers the component (metrics
port, isolated centre).
*/}}
{{- define "henvis.env" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
{{- $kind := index . 2 -}}
{{- $component := dict -}}
{{- if gt (len .) 3 }}{{ $component = index . 3 }}{{ end -}}
{{- $values := index $root.Values $service -}}
{{- $prefix := printf "HENVIS_%s_" (upper $service) -}}
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: PYTHONUNBUFFERED
  value: "1"
- name: HOME
  value: /tmp
- name: HENVIS_RUN_DIR
  value: /run/henvis
- name: HENVIS_LOG_LEVEL
  value: {{ $root.Values.logLevel | quote }}
- name: HENVIS_KAFKA_BOOTSTRAP_SERVERS
  value: {{ $root.Values.kafka.bootstrapServers | quote }}
- name: HENVIS_KAFKA_SECURITY_PROTOCOL
  value: {{ $root.Values.kafka.securityProtocol | quote }}
- name: HENVIS_KAFKA_TOPIC_PREFIX
  value: {{ $root.Values.kafka.topicPrefix | quote }}
- name: HENVIS_KAFKA_PARTITIONS
  value: {{ $root.Values.kafka.partitions | quote }}
- name: HENVIS_KAFKA_REPLICATION_FACTOR
  value: {{ $root.Values.kafka.replicationFactor | quote }}
- name: HENVIS_KAFKA_PERSONAL_DATA_RETENTION_DAYS
  value: {{ $root.Values.kafka.personalDataRetentionDays | quote }}
{{- /* Only workers talk to Kafka: APIs and migration Jobs never get its credentials. */}}
{{- if and $root.Values.kafka.sasl.mechanism (eq $kind "worker") }}
{{- $saslSecret := default (include "henvis.kafkaSaslSecret" (list $root $service)) $component.kafkaSaslExistingSecret }}
- name: HENVIS_KAFKA_SASL_MECHANISM
  value: {{ $root.Values.kafka.sasl.mechanism | quote }}
- name: HENVIS_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $saslSecret }}
      key: {{ $root.Values.kafka.sasl.usernameKey }}
- name: HENVIS_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $saslSecret }}
      key: {{ $root.Values.kafka.sasl.passwordKey }}
{{- end }}
{{- if and $root.Values.kafka.tls.caExistingSecret (eq $kind "worker") }}
- name: HENVIS_KAFKA_SSL_CAFILE
  value: /etc/henvis/kafka-ca/{{ $root.Values.kafka.tls.caKey }}
{{- end }}
{{- if ne $kind "migrate" }}
- name: HENVIS_REGISTRY_PATH
  value: /etc/henvis/registry/centres.v1.yaml
{{- end }}
{{- if eq $kind "api" }}
- name: HENVIS_API_CLIENTS_FILE
  value: /etc/henvis/api-clients/{{ $root.Values.apiClients.key }}
{{- end }}
{{- if hasKey $values "database" }}
- name: {{ $prefix }}DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $values.database.existingSecret }}
      key: {{ $values.database.key }}
{{- end }}
{{- if $component.stableIdentity }}
{{- /* Static group membership: a restarted worker takes its partitions back without a
       rebalance, in ~2 s instead of a session timeout (docs/delivery-guarantees.md). The pod
       name is a StatefulSet ordinal, the same after the pod is rescheduled. */}}
- name: {{ $prefix }}INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- if and (eq $service "consent") (eq $kind "api") }}
{{- /* Only the consent API holds the key store's key-encryption keys and the case pseudonym key:
       it makes, releases, destroys and rotates the data keys (docs/operators-guide.md, "Key store"). */}}
- name: HENVIS_CONSENT_KEY_ENCRYPTION_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ $values.dataProtection.existingSecret }}
      key: {{ $values.dataProtection.keyEncryptionKeysKey }}
- name: HENVIS_CONSENT_CASE_PSEUDONYM_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $values.dataProtection.existingSecret }}
      key: {{ $values.dataProtection.casePseudonymKey }}
{{- if $values.dataProtection.currentKeyEncryptionKeyId }}
- name: HENVIS_CONSENT_KEY_ENCRYPTION_KEY_ID
  value: {{ $values.dataProtection.currentKeyEncryptionKeyId | quote }}
{{- end }}
{{- end }}
{{- if and (eq $service "centre") (or (eq $kind "api") (eq $kind "worker")) }}
{{- /* The inbox opens a referral's contact details with the data key the consent service's
       key store releases to each served centre's own credential; the worker's retention purge
       destroys that key with the same credential. */}}
- name: HENVIS_CENTRE_KEY_STORE_URL
  value: {{ default (printf "http://%s-consent-api" (include "henvis.fullname" $root)) $values.keyStore.url | quote }}
- name: HENVIS_CENTRE_KEY_STORE_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ $values.keyStore.existingSecret }}
      key: {{ $values.keyStore.key }}
{{- end }}
{{- if eq $service "centre" }}
{{- if eq $kind "api" }}
{{- /* Only the web app signs session cookies; the worker and the Job never see the key. */}}
- name: HENVIS_CENTRE_SESSION_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $values.sessionSecret.existingSecret }}
      key: {{ $values.sessionSecret.key }}
{{- with $values.login }}
- name: HENVIS_CENTRE_LOGIN
  value: {{ .mode | quote }}
- name: HENVIS_CENTRE_SESSION_IDLE_SECONDS
  value: {{ .sessionIdleSeconds | quote }}
{{- if eq .mode "oidc" }}
{{- if .publicUrl }}
- name: HENVIS_CENTRE_INBOX_URL
  value: {{ .publicUrl | quote }}
{{- end }}
{{- with .oidc }}
- name: HENVIS_CENTRE_OIDC_ISSUER
  value: {{ .issuer | quote }}
- name: HENVIS_CENTRE_OIDC_CLIENT_ID
  value: {{ .clientId | quote }}
- name: HENVIS_CENTRE_OIDC_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .key }}
- name: HENVIS_CENTRE_OIDC_SCOPES
  value: {{ .scopes | quote }}
- name: HENVIS_CENTRE_OIDC_ROLES_CLAIM
  value: {{ .rolesClaim | quote }}
- name: HENVIS_CENTRE_OIDC_ROLE_MAP
  value: {{ .roleMap | toJson | quote }}
- name: HENVIS_CENTRE_OIDC_CENTRE_CLAIM
  value: {{ .centreClaim | quote }}
- name: HENVIS_CENTRE_OIDC_CENTRE_PREFIX
  value: {{ .centrePrefix | quote }}
- name: HENVIS_CENTRE_OIDC_CENTRE_MAP
  value: {{ .centreMap | toJson | quote }}
- name: HENVIS_CENTRE_OIDC_USERNAME_CLAIM
  value: {{ .usernameClaim | quote }}
- name: HENVIS_CENTRE_OIDC_ACR_CLAIM
  value: {{ .acrClaim | quote }}
{{- if .requiredAcr }}
- name: HENVIS_CENTRE_OIDC_REQUIRED_ACR
  value: {{ .requiredAcr | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if $component.isolatedCentre }}
{{- /* A worker of its own for one centre: its own consumer group and Kafka principal. */}}
- name: HENVIS_CENTRE_CENTRES
  value: {{ $component.isolatedCentre | quote }}
- name: HENVIS_CENTRE_GROUP_ID
  value: {{ printf "henvis-centre-%s" $component.isolatedCentre | quote }}
{{- else if and (eq $kind "worker") $root.Values.centre.isolatedWorkers }}
- name: HENVIS_CENTRE_CENTRES
  value: {{ include "henvis.sharedCentres" $root | quote }}
{{- else if $values.centres }}
- name: HENVIS_CENTRE_CENTRES
  value: {{ $values.centres | quote }}
{{- end }}
- name: HENVIS_CENTRE_RETENTION_DAYS
  value: {{ $values.retentionDays | quote }}
- name: HENVIS_CENTRE_DUE_SOON_WORKING_HOURS
  value: {{ $values.deadlineWarning.workingHours | quote }}
- name: HENVIS_CENTRE_WORKING_DAY_OPENS
  value: {{ $values.deadlineWarning.workingDayOpens | quote }}
- name: HENVIS_CENTRE_WORKING_DAY_CLOSES
  value: {{ $values.deadlineWarning.workingDayCloses | quote }}
{{- if eq $kind "digest" }}
{{- with $values.digest }}
- name: HENVIS_CENTRE_INBOX_URL
  value: {{ .inboxUrl | quote }}
- name: HENVIS_CENTRE_SMTP_HOST
  value: {{ .smtp.host | quote }}
- name: HENVIS_CENTRE_SMTP_PORT
  value: {{ .smtp.port | quote }}
- name: HENVIS_CENTRE_SMTP_SECURITY
  value: {{ .smtp.security | quote }}
- name: HENVIS_CENTRE_SMTP_FROM
  value: {{ .smtp.from | quote }}
{{- if .smtp.existingSecret }}
- name: HENVIS_CENTRE_SMTP_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .smtp.existingSecret }}
      key: {{ .smtp.usernameKey }}
- name: HENVIS_CENTRE_SMTP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .smtp.existingSecret }}
      key: {{ .smtp.passwordKey }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq $service "stats" }}
- name: HENVIS_STATS_SUPPRESSION_THRESHOLD
  value: {{ $values.suppressionThreshold | quote }}
- name: HENVIS_STATS_SECURE_COOKIES
  value: {{ $values.secureCookies | quote }}
{{- if eq $kind "api" }}
{{- with $values.login }}
- name: HENVIS_STATS_LOGIN
  value: {{ .mode | quote }}
- name: HENVIS_STATS_SESSION_IDLE_SECONDS
  value: {{ .sessionIdleSeconds | quote }}
{{- if eq .mode "oidc" }}
{{- if .publicUrl }}
- name: HENVIS_STATS_PAGE_URL
  value: {{ .publicUrl | quote }}
{{- end }}
{{- with .oidc }}
- name: HENVIS_STATS_OIDC_ISSUER
  value: {{ .issuer | quote }}
- name: HENVIS_STATS_OIDC_CLIENT_ID
  value: {{ .clientId | quote }}
- name: HENVIS_STATS_OIDC_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .key }}
- name: HENVIS_STATS_OIDC_SCOPES
  value: {{ .scopes | quote }}
- name: HENVIS_STATS_OIDC_ROLES_CLAIM
  value: {{ .rolesClaim | quote }}
- name: HENVIS_STATS_OIDC_ROLE_MAP
  value: {{ .roleMap | toJson | quote }}
- name: HENVIS_STATS_OIDC_CENTRE_CLAIM
  value: {{ .centreClaim | quote }}
- name: HENVIS_STATS_OIDC_CENTRE_PREFIX
  value: {{ .centrePrefix | quote }}
- name: HENVIS_STATS_OIDC_CENTRE_MAP
  value: {{ .centreMap | toJson | quote }}
- name: HENVIS_STATS_OIDC_USERNAME_CLAIM
  value: {{ .usernameClaim | quote }}
- name: HENVIS_STATS_OIDC_ACR_CLAIM
  value: {{ .acrClaim | quote }}
{{- if .requiredAcr }}
- name: HENVIS_STATS_OIDC_REQUIRED_ACR
  value: {{ .requiredAcr | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq $values.login.mode "oidc" }}
- name: HENVIS_STATS_SESSION_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $values.sessionSecret.existingSecret }}
      key: {{ $values.sessionSecret.key }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq $kind "worker" }}
- name: {{ $prefix }}METRICS_PORT
  value: {{ $component.metricsPort | quote }}
{{- end }}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Writable scratch space: the root filesystem is read-only. */}}
{{- define "henvis.scratchVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
- name: run
  emptyDir:
    sizeLimit: {{ .Values.runDirSizeLimit }}
{{- end -}}

{{- define "henvis.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: run
  mountPath: /run/henvis
{{- end -}}
