{{/* The operator's image, which its step Pods run too. */}}
{{- define "abo.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}
