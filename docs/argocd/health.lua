-- Argo CD health check for rewardops.dev/RewardModelUpdate.
-- Install it under resource.customizations.health.rewardops.dev_RewardModelUpdate in the
-- argocd-cm ConfigMap (docs/gitops.md). Argo CD sets `obj` and expects {status, message}.

local hs = {}

local function ready_message(status)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" and condition.message ~= nil and condition.message ~= "" then
      return condition.message
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the rewardops operator to pick up the update"
  return hs
end

local phase = status.phase
local message = ready_message(status) or phase

-- A status older than the spec describes the previous spec: wait for the operator to catch up
-- (e.g. after `spec.promotion.approved: true` is merged).
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "The operator has not yet seen generation " .. tostring(generation)
  return hs
end

if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "AwaitingApproval" then
  hs.status = "Suspended"
elseif phase == "Rejected" or phase == "RolledBack" or phase == "Failed" then
  hs.status = "Degraded"
elseif phase == "Pending" or phase == "Training" or phase == "Evaluating"
    or phase == "Promoting" or phase == "Verifying" then
  hs.status = "Progressing"
else
  hs.status = "Unknown"
  message = "Unknown phase " .. tostring(phase)
end
hs.message = message
return hs
