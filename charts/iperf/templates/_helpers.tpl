{{- define "iperf.server" -}}
{{- printf "%s-server" .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "iperf.client" -}}
{{- printf "%s-client" .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "iperf.labels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}
