{{/* The operator's image, which its step Pods run too. */}}
{{- define "abo.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{/* A file of files/ (list $ "files/..."), each `namespace:` of the install's namespace given as
the release's. */}}
{{- define "abo.file" -}}
{{ (index . 0).Files.Get (index . 1) | replace "namespace: apimanager-backup-operator" (printf "namespace: %s" (index . 0).Release.Namespace) }}
{{- end }}

{{/* "true" when the operator's Pods run on OpenShift (`platform`: openshift, or auto and the
cluster serves SecurityContextConstraints), empty otherwise. */}}
{{- define "abo.openshift" -}}
{{- if eq .Values.platform "openshift" -}}
true
{{- else if and (eq .Values.platform "auto") (.Capabilities.APIVersions.Has "security.openshift.io/v1/SecurityContextConstraints") -}}
true
{{- else if not (has .Values.platform (list "auto" "openshift" "kubernetes")) -}}
{{- fail (printf "platform must be auto, openshift or kubernetes, not %q" .Values.platform) -}}
{{- end -}}
{{- end }}
