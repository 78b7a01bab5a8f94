{{/*
The operator's rules: exactly operator/rewardops_operator/kube/permissions.py (RULES, plus
PEERING_RULES with operator.peering), in the same order; tests/chart/test_chart_rbac.py
compares the two. kopf's CRD and namespace scanning is off, so nothing cluster-scoped is needed.
*/}}
{{- define "rewardops.rules" -}}
- apiGroups: ["rewardops.dev"]
  resources: ["rewardmodelupdates"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["rewardops.dev"]
  resources: ["rewardmodelupdates/status"]
  verbs: ["patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.operator.peering }}
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings", "clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}
