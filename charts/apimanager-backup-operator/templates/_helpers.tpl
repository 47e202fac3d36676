{{/* The operator's image, which its step Pods run too. */}}
{{- define "abo.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{/* A file of files/ (list $ "files/..."), each `namespace:` of the install's namespace given as
the release's. */}}
{{- define "abo.file" -}}
{{ (index . 0).Files.Get (index . 1) | replace "namespace: apimanager-backup-operator" (printf "namespace: %s" (index . 0).Release.Namespace) }}
{{- end }}
