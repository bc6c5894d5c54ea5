#!/usr/bin/env bash
# The reference containment as responders script it today, one kubectl call per change:
# mark, isolate (deny-all policy on a quarantine label, the suspect taken out of the other
# policies), detach (relabel out of the ReplicaSet and Service, wait for the replacement),
# revoke (strip the account from its RoleBindings, delete its legacy token Secrets),
# quarantine the node (cordon, taint, label).
# Usage: reference-kubectl.sh NAMESPACE POD NODE ACCOUNT   (KUBECTL and KUBECONFIG set)
set -euo pipefail
NS=$1 POD=$2 NODE=$3 SA=$4
k() { "$KUBECTL" "$@"; }

k -n "$NS" label pod "$POD" contain.dev/suspect=true >/dev/null
k -n "$NS" label pod "$POD" contain.dev/quarantine=manual >/dev/null
k -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: quarantine}
spec:
  podSelector: {matchLabels: {contain.dev/quarantine: manual}}
  policyTypes: [Ingress, Egress]
YAML
for policy in $(k -n "$NS" get networkpolicy -o name | grep -v '/quarantine$'); do
  k -n "$NS" patch "$policy" --type=json \
    -p '[{"op":"add","path":"/spec/podSelector/matchExpressions","value":[{"key":"contain.dev/quarantine","operator":"DoesNotExist"}]}]' >/dev/null
done
k -n "$NS" label pod "$POD" app- contain.dev/detached-from=web >/dev/null
k -n "$NS" annotate pod "$POD" controller.kubernetes.io/pod-deletion-cost=-1000 --overwrite >/dev/null
until [[ $(k -n "$NS" get pods -l app=web --field-selector=status.phase=Running -o name | wc -l) -ge 2 ]]; do sleep 0.5; done
for binding in $(k -n "$NS" get rolebinding -o name); do
  k -n "$NS" delete "$binding" >/dev/null
done
for secret in $(k -n "$NS" get secret --field-selector=type=kubernetes.io/service-account-token -o name); do
  k -n "$NS" delete "$secret" >/dev/null
done
k cordon "$NODE" >/dev/null
k taint node "$NODE" contain.dev/quarantine=true:NoSchedule --overwrite >/dev/null
k label node "$NODE" contain.dev/quarantine=true --overwrite >/dev/null
