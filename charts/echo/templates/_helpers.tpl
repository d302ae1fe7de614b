{{/*
The name of every object: nameOverride, else the chart name, cut to a DNS label.
*/}}
{{- define "echo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels: only `app`, so a Service or `kubectl -l app=echo` finds the pods whatever
the release is called.
*/}}
{{- define "echo.selectorLabels" -}}
app: {{ include "echo.name" . }}
{{- end -}}

{{- define "echo.labels" -}}
{{ include "echo.selectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}
