{{/* The release's base name. */}}
{{- define "p2c.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "p2c.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one flow's pods; call with (dict "root" $ "flow" $flow). */}}
{{- define "p2c.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .flow }}
{{- end -}}

{{/* Every topic of the chart's copy of Topics/, as a JSON list. */}}
{{- define "p2c.topics" -}}
{{- $topics := list -}}
{{- range $path, $_ := .Files.Glob "topics/*.json" -}}
{{- $file := $.Files.Get $path | fromJson -}}
{{- range $file.topics -}}
{{- $topics = append $topics (merge (dict "stream" $file.stream) .) -}}
{{- end -}}
{{- end -}}
{{- toJson $topics -}}
{{- end -}}

{{/* The largest partition count among a flow's input topics; call with (dict "root" $ "flow" $flow). */}}
{{- define "p2c.maxPartitions" -}}
{{- $side := index (splitList "-" .flow) 0 -}}
{{- $max := 0 -}}
{{- range (include "p2c.topics" .root | fromJsonArray) -}}
{{- if and (eq .side $side) (eq .role "changes") (gt (int .partitions) $max) -}}
{{- $max = int .partitions -}}
{{- end -}}
{{- end -}}
{{- $max -}}
{{- end -}}

{{/* The image reference. */}}
{{- define "p2c.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* librdkafka properties of every member (TLS and SASL from the values), as JSON. */}}
{{- define "p2c.kafkaProperties" -}}
{{- $kafka := deepCopy .Values.kafka.properties -}}
{{- if .Values.kafka.sasl.enabled -}}
{{- $_ := set $kafka "sasl.mechanism" .Values.kafka.sasl.mechanism -}}
{{- $_ := set $kafka "security.protocol" (ternary "SASL_SSL" "SASL_PLAINTEXT" .Values.kafka.tls.enabled) -}}
{{- else if .Values.kafka.tls.enabled -}}
{{- $_ := set $kafka "security.protocol" "SSL" -}}
{{- end -}}
{{- if .Values.kafka.tls.enabled -}}
{{- $_ := set $kafka "ssl.ca.location" (printf "/etc/p2c/tls/%s" .Values.kafka.tls.caKey) -}}
{{- if .Values.kafka.tls.clientCertificate -}}
{{- $_ := set $kafka "ssl.certificate.location" (printf "/etc/p2c/tls/%s" .Values.kafka.tls.certificateKey) -}}
{{- $_ := set $kafka "ssl.key.location" (printf "/etc/p2c/tls/%s" .Values.kafka.tls.privateKeyKey) -}}
{{- end -}}
{{- end -}}
{{- toJson $kafka -}}
{{- end -}}

{{/* The largest partition count among a side's inbound topics (apply's inputs); call with (dict "root" $ "side" $side). */}}
{{- define "p2c.maxInboundPartitions" -}}
{{- $max := 0 -}}
{{- range (include "p2c.topics" .root | fromJsonArray) -}}
{{- if and (eq .side $.side) (eq .role "inbound") (gt (int .partitions) $max) -}}
{{- $max = int .partitions -}}
{{- end -}}
{{- end -}}
{{- $max -}}
{{- end -}}
