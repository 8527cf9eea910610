#!/usr/bin/env bash
# deploy.sh: turn a Google Cloud project into the running creation pipeline, idempotently.
#
#   ./deploy.sh --project P --region R [--env-file deploy.env] [--dry-run] [--only PART...]
#   ./deploy.sh --destroy --project P --region R [--yes] [--delete-data] [--dry-run]
#
# Every resource is described first and created or updated only when it differs from what this
# script would make, so a second run reports "up to date" for each resource and changes nothing.
# --dry-run prints every gcloud command it would run, in order, one per line, and runs none: it
# needs no credentials and no network, and plans for a project where nothing exists yet.
# docs/deploying.md explains what is created, who may do what (IAM) and why.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"
COMPARE=deploy/compare.py
# fd 3: the plan (dry run) goes to the real stdout even from inside $(...).
exec 3>&1

# --- what gets deployed ---------------------------------------------------------------------

PARTS=(apis registry accounts secrets firestore images queues jobs workflow api reconcile)

APIS=(iam.googleapis.com cloudresourcemanager.googleapis.com workflows.googleapis.com
      workflowexecutions.googleapis.com run.googleapis.com cloudtasks.googleapis.com
      firestore.googleapis.com artifactregistry.googleapis.com cloudbuild.googleapis.com
      secretmanager.googleapis.com cloudscheduler.googleapis.com aiplatform.googleapis.com)

REPOSITORY=phoenix            # Artifact Registry (docker) repository
WORKFLOW=creation             # workflows/creation.yaml
JOB_PREFIX=creation-          # the workflow runs JOB_PREFIX + the job names below
API_SERVICE=creations-api
RECONCILE_JOB=phoenix-reconcile
QUEUE_IMAGE=creations-image   # creations.settings: tasks_queue_image
QUEUE_VIDEO=creations-video   # creations.settings: tasks_queue_video
LABEL=phoenix-config          # hash of everything a resource was deployed with

# Service accounts, one per role (ids need 6-30 characters, hence the prefix).
ACCOUNTS=(api workflow jobs-light jobs-generate jobs-media tasks-invoker scheduler)

# Step jobs: name|module|image|cpu|memory|task timeout|account. The workflow passes each run's own
# timeout (and the --creation-id/--attempt args) as overrides; these task timeouts apply to runs
# without overrides (by hand) and sit well above the work, since a cold task can spend tens of
# seconds starting.
STEP_JOBS=(
  "debit-check|steps.debit_check|steps|1|512Mi|300s|jobs-light"
  "mark-processing|steps.mark_processing|steps|1|512Mi|300s|jobs-light"
  "generate-image|steps.generate|steps|1|1Gi|300s|jobs-generate"
  "generate-video|steps.generate|steps|2|4Gi|600s|jobs-generate"
  "thumbnail|steps.thumbnail|steps-media|1|1Gi|600s|jobs-media"
  "upload|steps.upload|steps|1|512Mi|600s|jobs-media"
  "finalize|steps.finalize|steps|1|512Mi|300s|jobs-light"
  "refund|steps.refund|steps|1|512Mi|300s|jobs-light"
)

# Cloud Tasks queues: name|dispatches per second|concurrent dispatches. A task asks the Executions
# API to start one execution. Retries cover the API refusing or failing the call (429 quota, 5xx):
# up to 20 attempts, 2 s doubling to 60 s, for at most 10 minutes, which ends before the scheduled
# reconcile (creations unchanged for 15 minutes) fails and refunds a creation whose execution never
# started. A retry after a lost response can start a second execution of the same attempt: the steps
# are fenced by attempt and idempotent, so it changes nothing.
QUEUES=("$QUEUE_VIDEO|10|5" "$QUEUE_IMAGE|20|10")
QUEUE_RETRY=(--max-attempts=20 --min-backoff=2s --max-backoff=60s --max-doublings=4 --max-retry-duration=600s)

# --- output ---------------------------------------------------------------------------------

say() { printf '%s\n' "$*" >&2; }
die() { say "deploy.sh: $*"; exit 2; }

# One shell-quoted command line, the way the dry run prints it.
quote_cmd() {
  local out="" arg
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      out+=" $arg"
    else
      out+=" '${arg//\'/\'\\\'\'}'"
    fi
  done
  printf '%s\n' "${out# }"
}

# change CMD...: a command that changes the project (printed, not run, in a dry run).
change() {
  if (( DRY_RUN )); then
    quote_cmd "$@" >&3
    return 0
  fi
  say "  \$ $(quote_cmd "$@")"
  if ! "$@" >&2; then
    say "deploy.sh: this command failed; fix the cause and run deploy.sh again (what is done reports up to date)"
    exit 1
  fi
}

# probe CMD...: a read-only command whose output decides what to change. A dry run prints it and
# answers "absent": the plan is for a project where nothing exists yet.
probe() {
  if (( DRY_RUN )); then
    quote_cmd "$@" >&3
    return 1
  fi
  "$@" 2>/dev/null
}

# check CMD...: a read-only precondition. A dry run prints it and assumes it holds.
check() {
  if (( DRY_RUN )); then
    quote_cmd "$@" >&3
    printf '%s\n' "${CHECK_DRY_ANSWER:-}"
    return 0
  fi
  "$@" 2>/dev/null
}

status() { (( DRY_RUN )) || say "$(printf '  %-11s %-52s %s' "$1" "$2" "$3")"; }

sha() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -c1-16; else shasum -a 256 | cut -c1-16; fi
}

# --- arguments ------------------------------------------------------------------------------

usage() {
  cat <<'EOF'
usage: ./deploy.sh --project P --region R [--env-file deploy.env] [--dry-run] [--only PART...]
       ./deploy.sh --destroy --project P --region R [--yes] [--delete-data] [--dry-run]

  --project P       the Google Cloud project id
  --region R        region of every regional resource (e.g. us-central1)
  --env-file F      deployment settings (default deploy.env; see deploy.env.example)
  --dry-run         print every command, in order, one per line; run none (no credentials needed)
  --only PART...    deploy only these parts, in the usual order:
                    apis registry accounts secrets firestore images queues jobs workflow api reconcile
  --destroy         remove what this script created (asks for the project id typed back);
                    keeps the Firestore database, the R2 media bucket, the secrets and the APIs
  --yes             with --destroy: do not ask (automation)
  --delete-data     with --destroy: also delete the Firestore database (all creations and balances)
EOF
}

PROJECT="" REGION="" ENV_FILE="" DRY_RUN=0 DESTROY=0 YES=0 DELETE_DATA=0
ONLY=()
while (( $# )); do
  case $1 in
    --project) PROJECT=${2:-}; shift 2 || die "--project needs a value" ;;
    --project=*) PROJECT=${1#*=}; shift ;;
    --region) REGION=${2:-}; shift 2 || die "--region needs a value" ;;
    --region=*) REGION=${1#*=}; shift ;;
    --env-file) ENV_FILE=${2:-}; shift 2 || die "--env-file needs a value" ;;
    --env-file=*) ENV_FILE=${1#*=}; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --destroy) DESTROY=1; shift ;;
    --yes) YES=1; shift ;;
    --delete-data) DELETE_DATA=1; shift ;;
    --only)
      shift
      while (( $# )) && [[ $1 != --* ]]; do ONLY+=("$1"); shift; done
      (( ${#ONLY[@]} )) || die "--only needs at least one part: ${PARTS[*]}"
      ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done

[[ -n $PROJECT ]] || { usage >&2; die "--project is required"; }
[[ -n $REGION ]] || { usage >&2; die "--region is required"; }
[[ $PROJECT =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] || die "--project '$PROJECT' is not a project id (6-30 lowercase letters, digits, hyphens)"
[[ $REGION =~ ^[a-z]+-[a-z]+[0-9]$ ]] || die "--region '$REGION' is not a region (e.g. us-central1)"
for part in "${ONLY[@]}"; do
  [[ " ${PARTS[*]} " == *" $part "* ]] || die "--only: unknown part '$part' (parts: ${PARTS[*]})"
done
if (( DESTROY )) && (( ${#ONLY[@]} )); then die "--only does not apply to --destroy"; fi
if (( DELETE_DATA )) && ! (( DESTROY )); then die "--delete-data only goes with --destroy"; fi

selected() {
  (( ${#ONLY[@]} == 0 )) && return 0
  [[ " ${ONLY[*]} " == *" $1 "* ]]
}

# --- the env file ---------------------------------------------------------------------------

# Keys the env file may set (deploy.env.example documents each). Secrets never go there.
ENV_KEYS=(R2_ENDPOINT_URL R2_BUCKET PUBLIC_BASE_URL MEDIA_PRESIGN FIREBASE_PROJECT_ID
          R2_ACCESS_KEY_ID_SECRET R2_SECRET_ACCESS_KEY_SECRET FIRESTORE_DATABASE FIRESTORE_LOCATION
          VERTEX_REGION IMAGE_MODEL VIDEO_MODEL COST_IMAGE COST_VIDEO MAX_ACTIVE_PER_USER
          API_MAX_INSTANCES IMAGE_TAG)
declare -A CONF=()
PROBLEMS=()
problem() { PROBLEMS+=("$*"); }

read_env_file() {
  local file=$1 lineno=0 line key value
  if [[ ! -f $file ]]; then
    problem "env file $file not found: cp deploy.env.example $file and fill it in (or pass --env-file)"
    return
  fi
  while IFS= read -r line || [[ -n $line ]]; do
    lineno=$((lineno + 1))
    line=${line%$'\r'}
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    if [[ ! $line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
      problem "$file:$lineno: expected KEY=VALUE"
      continue
    fi
    key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
    if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
    case $key in
      R2_ACCESS_KEY_ID|R2_SECRET_ACCESS_KEY|*SECRET_ACCESS_KEY|*ACCESS_KEY_ID)
        problem "$file:$lineno: $key looks like a credential: secrets never go in the env file; store it in Secret Manager (docs/deploying.md, 'Secrets')"
        continue ;;
    esac
    if [[ " ${ENV_KEYS[*]} " != *" $key "* ]]; then
      problem "$file:$lineno: unknown key $key (known: ${ENV_KEYS[*]})"
      continue
    fi
    if [[ $value =~ [[:space:],] ]]; then
      problem "$file:$lineno: $key must not contain spaces or commas"
      continue
    fi
    CONF[$key]=$value
  done <"$file"
}

conf() { printf '%s' "${CONF[$1]:-${2:-}}"; }

validate_env() {
  local key
  for key in R2_ENDPOINT_URL R2_BUCKET FIREBASE_PROJECT_ID; do
    [[ -n $(conf "$key") ]] || problem "$ENV_FILE: $key is required (see deploy.env.example)"
  done
  [[ -z $(conf R2_ENDPOINT_URL) || $(conf R2_ENDPOINT_URL) =~ ^https://[^/]+ ]] \
    || problem "$ENV_FILE: R2_ENDPOINT_URL must be an https:// URL (https://<account id>.r2.cloudflarestorage.com)"
  case $(conf MEDIA_PRESIGN false) in
    true)
      [[ -z $(conf PUBLIC_BASE_URL) ]] || problem "$ENV_FILE: set either PUBLIC_BASE_URL or MEDIA_PRESIGN=true, not both" ;;
    false)
      [[ -n $(conf PUBLIC_BASE_URL) ]] || problem "$ENV_FILE: PUBLIC_BASE_URL is required (the bucket's public https:// URL), or set MEDIA_PRESIGN=true to serve media through presigned URLs"
      [[ -z $(conf PUBLIC_BASE_URL) || $(conf PUBLIC_BASE_URL) =~ ^https:// ]] || problem "$ENV_FILE: PUBLIC_BASE_URL must start with https://" ;;
    *) problem "$ENV_FILE: MEDIA_PRESIGN must be true or false" ;;
  esac
  for key in COST_IMAGE COST_VIDEO MAX_ACTIVE_PER_USER API_MAX_INSTANCES; do
    [[ -z $(conf "$key") || $(conf "$key") =~ ^[0-9]+$ ]] || problem "$ENV_FILE: $key must be a whole number"
  done
  [[ -z $(conf IMAGE_TAG) || $(conf IMAGE_TAG) =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] \
    || problem "$ENV_FILE: IMAGE_TAG must be a docker tag (letters, digits, _ . -)"
}

# --- derived names --------------------------------------------------------------------------

sa_email() { printf 'phoenix-%s@%s.iam.gserviceaccount.com' "$1" "$PROJECT"; }
sa_member() { printf 'serviceAccount:%s' "$(sa_email "$1")"; }

image_tag() {
  local tag
  tag=$(conf IMAGE_TAG)
  if [[ -z $tag ]]; then
    command -v git >/dev/null 2>&1 && tag=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null) || true
    [[ -n $tag ]] || die "cannot tag the images: not a git checkout; set IMAGE_TAG in $ENV_FILE"
    if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
      die "the working tree has uncommitted changes: images are tagged with the commit ($tag); commit first, or set IMAGE_TAG in $ENV_FILE"
    fi
  fi
  printf '%s' "$tag"
}

# The settings every container reads (creations/settings.py, prefix PHOENIX_).
runtime_env() {
  local region=${1:-$REGION}
  local env=(
    "PHOENIX_STORE=firestore"
    "PHOENIX_FIRESTORE_PROJECT=$PROJECT"
    "PHOENIX_FIRESTORE_DATABASE=$FIRESTORE_DATABASE"
    "PHOENIX_S3_ENDPOINT_URL=$(conf R2_ENDPOINT_URL)"
    "PHOENIX_S3_BUCKET=$(conf R2_BUCKET)"
    "PHOENIX_GCP_PROJECT=$PROJECT"
    "PHOENIX_GCP_REGION=$region"
    "PHOENIX_AUTH_MODE=firebase"
    "PHOENIX_FIREBASE_PROJECT_ID=$(conf FIREBASE_PROJECT_ID)"
    "PHOENIX_TRIGGER=tasks"
    "PHOENIX_WORKFLOW_NAME=$WORKFLOW"
    "PHOENIX_TASKS_QUEUE_IMAGE=$QUEUE_IMAGE"
    "PHOENIX_TASKS_QUEUE_VIDEO=$QUEUE_VIDEO"
    "PHOENIX_TASKS_SERVICE_ACCOUNT=$(sa_email tasks-invoker)"
  )
  [[ -n $(conf PUBLIC_BASE_URL) ]] && env+=("PHOENIX_PUBLIC_BASE_URL=$(conf PUBLIC_BASE_URL)")
  [[ -n $(conf IMAGE_MODEL) ]] && env+=("PHOENIX_IMAGE_MODEL=$(conf IMAGE_MODEL)")
  [[ -n $(conf VIDEO_MODEL) ]] && env+=("PHOENIX_VIDEO_MODEL=$(conf VIDEO_MODEL)")
  [[ -n $(conf COST_IMAGE) ]] && env+=("PHOENIX_COST_IMAGE=$(conf COST_IMAGE)")
  [[ -n $(conf COST_VIDEO) ]] && env+=("PHOENIX_COST_VIDEO=$(conf COST_VIDEO)")
  local IFS=,
  printf '%s' "${env[*]}"
}

# The R2 credentials, from Secret Manager (never in the env file, an image or an argument).
secret_refs() {
  printf 'PHOENIX_S3_ACCESS_KEY_ID=%s:latest,PHOENIX_S3_SECRET_ACCESS_KEY=%s:latest' "$SECRET_KEY_ID" "$SECRET_KEY"
}

# --- IAM ------------------------------------------------------------------------------------

# The project-level grants: account|role|why. Everything that IAM lets us grant on one resource
# is granted there instead (jobs, queues, secrets, the tasks-invoker account).
PROJECT_GRANTS=(
  "api|roles/datastore.user|reads and writes creations, balances and the ledger in Firestore"
  "workflow|roles/datastore.viewer|reads the creation document (retry predicate, failure details)"
  "workflow|roles/logging.logWriter|writes sys.log lines and call logs of executions"
  "jobs-light|roles/datastore.user|debit, mark processing, finalize, refund: Firestore transactions"
  "jobs-light|roles/workflows.viewer|the scheduled reconcile reads executions to find ended ones"
  "jobs-generate|roles/datastore.user|reads the request, records the checkpoint or error"
  "jobs-generate|roles/aiplatform.user|calls Imagen and Veo on Vertex AI"
  "jobs-media|roles/datastore.user|reads checkpoints, records the thumbnail and upload outputs"
  "tasks-invoker|roles/workflows.invoker|the OAuth identity of Cloud Tasks' calls that start executions"
)

# policy_lines KIND NAME: "role<TAB>member" per binding of one resource's IAM policy.
policy_cmd() {
  local fmt=(--flatten=bindings[].members "--format=value(bindings.role,bindings.members)")
  case $1 in
    project) POLICY_CMD=(gcloud projects get-iam-policy "$PROJECT" "${fmt[@]}") ;;
    job) POLICY_CMD=(gcloud run jobs get-iam-policy "$2" "--region=$REGION" "--project=$PROJECT" "${fmt[@]}") ;;
    queue) POLICY_CMD=(gcloud tasks queues get-iam-policy "$2" "--location=$REGION" "--project=$PROJECT" "${fmt[@]}") ;;
    secret) POLICY_CMD=(gcloud secrets get-iam-policy "$2" "--project=$PROJECT" "${fmt[@]}") ;;
    account) POLICY_CMD=(gcloud iam service-accounts get-iam-policy "$2" "--project=$PROJECT" "${fmt[@]}") ;;
  esac
}

binding_cmd() { # binding_cmd add|remove KIND NAME MEMBER ROLE
  local verb=$1-iam-policy-binding
  case $2 in
    project) BINDING_CMD=(gcloud projects "$verb" "$PROJECT" "--member=$4" "--role=$5" --condition=None --quiet) ;;
    job) BINDING_CMD=(gcloud run jobs "$verb" "$3" "--region=$REGION" "--member=$4" "--role=$5" "--project=$PROJECT" --quiet) ;;
    queue) BINDING_CMD=(gcloud tasks queues "$verb" "$3" "--location=$REGION" "--member=$4" "--role=$5" "--project=$PROJECT") ;;
    secret) BINDING_CMD=(gcloud secrets "$verb" "$3" "--member=$4" "--role=$5" "--project=$PROJECT") ;;
    account) BINDING_CMD=(gcloud iam service-accounts "$verb" "$3" "--member=$4" "--role=$5" "--project=$PROJECT") ;;
  esac
}

# grant KIND NAME "MEMBER ROLE"...: add the bindings the resource's policy lacks.
grant() {
  local kind=$1 name=$2 policy="" pair member role
  shift 2
  policy_cmd "$kind" "$name"
  policy=$(probe "${POLICY_CMD[@]}") || policy=""
  for pair in "$@"; do
    member=${pair% *} role=${pair#* }
    if grep -qxF "$role"$'\t'"$member" <<<"$policy"; then
      status "grant" "$role on $kind $name to ${member#serviceAccount:}" "up to date"
    else
      binding_cmd add "$kind" "$name" "$member" "$role"
      change "${BINDING_CMD[@]}" >/dev/null
      status "grant" "$role on $kind $name to ${member#serviceAccount:}" "granted"
    fi
  done
}

# revoke KIND NAME "MEMBER ROLE"...: remove those bindings (and only those) where present.
revoke() {
  local kind=$1 name=$2 policy="" pair member role
  shift 2
  policy_cmd "$kind" "$name"
  if (( DRY_RUN )); then
    quote_cmd "${POLICY_CMD[@]}" >&3
    policy=$(for pair in "$@"; do printf '%s\t%s\n' "${pair#* }" "${pair% *}"; done)
  else
    policy=$("${POLICY_CMD[@]}" 2>/dev/null) || policy=""
  fi
  for pair in "$@"; do
    member=${pair% *} role=${pair#* }
    if grep -qxF "$role"$'\t'"$member" <<<"$policy"; then
      binding_cmd remove "$kind" "$name" "$member" "$role"
      change "${BINDING_CMD[@]}" >/dev/null
      status "revoke" "$role on $kind $name from ${member#serviceAccount:}" "removed"
    fi
  done
}

# --- preflight ------------------------------------------------------------------------------

preflight() {
  if (( ! DRY_RUN )); then
    command -v gcloud >/dev/null 2>&1 || problem "gcloud not found: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install)"
    command -v python3 >/dev/null 2>&1 || problem "python3 not found: install Python 3 (it reads firestore.indexes.json)"
    if (( ${#PROBLEMS[@]} )); then report_problems; fi
  fi
  local account billing
  CHECK_DRY_ANSWER=you@example.com account=$(check gcloud auth list --filter=status:ACTIVE "--format=value(account)") || account=""
  if [[ -z $account ]]; then
    problem "gcloud is not authenticated: run gcloud auth login"
    report_problems
  fi
  if ! check gcloud projects describe "$PROJECT" "--format=value(projectId)" >/dev/null; then
    problem "project $PROJECT not found, or $account cannot see it: check the id (gcloud projects list)"
    report_problems
  fi
  (( DESTROY )) && return 0
  CHECK_DRY_ANSWER=True billing=$(check gcloud billing projects describe "$PROJECT" "--format=value(billingEnabled)") || billing=""
  [[ ${billing,,} == true ]] || problem "billing is not enabled on $PROJECT: gcloud billing projects link $PROJECT --billing-account=ACCOUNT_ID"
  local secret
  for secret in "$SECRET_KEY_ID" "$SECRET_KEY"; do
    check gcloud secrets describe "$secret" "--project=$PROJECT" "--format=value(name)" >/dev/null \
      || problem "secret $secret not found in Secret Manager: printf %s \"\$VALUE\" | gcloud secrets create $secret --data-file=- --project=$PROJECT (enable it first: gcloud services enable secretmanager.googleapis.com --project=$PROJECT)"
  done
  if (( ${#PROBLEMS[@]} )); then report_problems; fi
}

report_problems() {
  local p
  say "deploy.sh: nothing was changed; fix these first:"
  for p in "${PROBLEMS[@]}"; do say "  - $p"; done
  exit 1
}

# --- parts ----------------------------------------------------------------------------------

deploy_apis() {
  local enabled="" missing=() api apis=("${APIS[@]}")
  # Security rules are released through the Firebase Rules API.
  [[ -f firestore.rules ]] && apis+=(firebaserules.googleapis.com)
  enabled=$(probe gcloud services list --enabled "--project=$PROJECT" "--format=value(config.name)") || enabled=""
  for api in "${apis[@]}"; do
    if grep -qxF "$api" <<<"$enabled"; then status "api" "$api" "up to date"; else missing+=("$api"); fi
  done
  if (( ${#missing[@]} )); then
    change gcloud services enable "${missing[@]}" "--project=$PROJECT"
    for api in "${missing[@]}"; do status "api" "$api" "enabled"; done
  fi
}

deploy_registry() {
  if probe gcloud artifacts repositories describe "$REPOSITORY" "--location=$REGION" "--project=$PROJECT" "--format=value(name)" >/dev/null; then
    status "registry" "$REPOSITORY" "up to date"
  else
    change gcloud artifacts repositories create "$REPOSITORY" --repository-format=docker "--location=$REGION" \
      "--description=Container images of the creation pipeline" "--project=$PROJECT"
    status "registry" "$REPOSITORY" "created"
  fi
}

deploy_accounts() {
  local role
  for role in "${ACCOUNTS[@]}"; do
    if probe gcloud iam service-accounts describe "$(sa_email "$role")" "--project=$PROJECT" "--format=value(email)" >/dev/null; then
      status "account" "$(sa_email "$role")" "up to date"
    else
      change gcloud iam service-accounts create "phoenix-$role" "--display-name=phoenix $role" "--project=$PROJECT"
      status "account" "$(sa_email "$role")" "created"
    fi
  done
  local pairs=() grant_line
  for grant_line in "${PROJECT_GRANTS[@]}"; do
    IFS='|' read -r role rest _ <<<"$grant_line"
    pairs+=("$(sa_member "$role") $rest")
  done
  grant project "$PROJECT" "${pairs[@]}"
  # The API creates tasks that carry tasks-invoker's OAuth token: it must be allowed to act as it.
  grant account "$(sa_email tasks-invoker)" "$(sa_member api) roles/iam.serviceAccountUser"
}

deploy_secrets() {
  # Readers of the R2 credentials: the API (presigned URLs, deleting drafts), generation and media jobs.
  local secret
  for secret in "$SECRET_KEY_ID" "$SECRET_KEY"; do
    grant secret "$secret" \
      "$(sa_member api) roles/secretmanager.secretAccessor" \
      "$(sa_member jobs-generate) roles/secretmanager.secretAccessor" \
      "$(sa_member jobs-media) roles/secretmanager.secretAccessor"
  done
}

deploy_firestore() {
  if probe gcloud firestore databases describe "--database=$FIRESTORE_DATABASE" "--project=$PROJECT" "--format=value(name)" >/dev/null; then
    status "firestore" "database $FIRESTORE_DATABASE" "up to date"
  else
    change gcloud firestore databases create "--database=$FIRESTORE_DATABASE" "--location=$FIRESTORE_LOCATION" \
      --type=firestore-native "--project=$PROJECT"
    status "firestore" "database $FIRESTORE_DATABASE" "created"
  fi
  # Composite indexes and single-field exemptions from firestore.indexes.json.
  local existing="" line kind key group args
  existing=$(probe gcloud firestore indexes composite list "--database=$FIRESTORE_DATABASE" "--project=$PROJECT" --format=json) || existing="[]"
  while IFS=$'\t' read -r kind key group args; do
    [[ $kind == index ]] || continue
    if [[ $key == present:* ]]; then
      status "index" "${key#present:}" "up to date"
    else
      # shellcheck disable=SC2086  # args: --field-config=... words without spaces, from the JSON
      change gcloud firestore indexes composite create "--database=$FIRESTORE_DATABASE" "--collection-group=$group" $args "--project=$PROJECT" --async
      status "index" "${key#missing:}" "created"
    fi
  done < <(python3 "$COMPARE" indexes firestore.indexes.json "$existing")
  local field current
  while IFS=$'\t' read -r kind field group; do
    [[ $kind == exemption ]] || continue
    current=$(probe gcloud firestore indexes fields describe "$field" "--collection-group=$group" "--database=$FIRESTORE_DATABASE" "--project=$PROJECT" --format=json) || current="{}"
    if python3 "$COMPARE" exempt "$current"; then
      status "exemption" "$group.$field (not indexed)" "up to date"
    else
      change gcloud firestore indexes fields update "$field" "--collection-group=$group" --disable-indexes \
        "--database=$FIRESTORE_DATABASE" "--project=$PROJECT" --async
      status "exemption" "$group.$field (not indexed)" "created"
    fi
  done < <(python3 "$COMPARE" exemptions firestore.indexes.json)
  if [[ -f firestore.rules ]]; then deploy_rules; fi
}

# Security rules (firestore.rules) through the Firebase Rules API: gcloud has no command for it.
deploy_rules() {
  local api=https://firebaserules.googleapis.com/v1/projects/$PROJECT release=cloud.firestore token current ruleset
  [[ $FIRESTORE_DATABASE == "(default)" ]] || release=cloud.firestore/$FIRESTORE_DATABASE
  if (( DRY_RUN )); then
    quote_cmd gcloud auth print-access-token >&3
    quote_cmd curl -fsS -H 'Authorization: Bearer $TOKEN' "$api/releases/$release" >&3
    quote_cmd curl -fsS -X POST -H 'Authorization: Bearer $TOKEN' -H 'Content-Type: application/json' \
      --data-binary '{"source":{"files":[{"name":"firestore.rules","content":"<firestore.rules>"}]}}' "$api/rulesets" >&3
    quote_cmd curl -fsS -X POST -H 'Authorization: Bearer $TOKEN' -H 'Content-Type: application/json' \
      --data-binary "{\"name\":\"projects/$PROJECT/releases/$release\",\"rulesetName\":\"<new ruleset>\"}" "$api/releases" >&3
    return 0
  fi
  token=$(gcloud auth print-access-token)
  # The token goes to curl through a config on a pipe, never on a command line.
  rules_api() { curl -fsS -K <(printf 'header = "Authorization: Bearer %s"\n' "$token") "$@"; }
  current=$(rules_api "$api/releases/$release" 2>/dev/null) || current=""
  if [[ -n $current ]]; then
    ruleset=$(python3 "$COMPARE" field rulesetName "$current") || ruleset=""
    if [[ -n $ruleset ]] && python3 "$COMPARE" rules-match firestore.rules \
        "$(rules_api "https://firebaserules.googleapis.com/v1/$ruleset" 2>/dev/null || true)"; then
      status "rules" "firestore.rules" "up to date"
      return 0
    fi
  fi
  say "  releasing firestore.rules through the Firebase Rules API ($release)"
  ruleset=$(python3 "$COMPARE" ruleset-body firestore.rules \
    | rules_api -X POST -H 'Content-Type: application/json' --data-binary @- "$api/rulesets")
  ruleset=$(python3 "$COMPARE" field name "$ruleset")
  if [[ -n $current ]]; then
    rules_api -X PATCH -H 'Content-Type: application/json' \
      --data-binary "{\"release\":{\"name\":\"projects/$PROJECT/releases/$release\",\"rulesetName\":\"$ruleset\"}}" "$api/releases/$release" >/dev/null
  else
    rules_api -X POST -H 'Content-Type: application/json' \
      --data-binary "{\"name\":\"projects/$PROJECT/releases/$release\",\"rulesetName\":\"$ruleset\"}" "$api/releases" >/dev/null
  fi
  status "rules" "firestore.rules" "released"
}

deploy_images() {
  local image missing=0
  for image in steps steps-media api ops; do
    if ! probe gcloud artifacts docker images describe "$IMAGES/$image:$TAG" "--project=$PROJECT" "--format=value(image_summary.digest)" >/dev/null; then
      missing=1
      break
    fi
    status "image" "$image:$TAG" "up to date"
  done
  (( missing )) || return 0
  # Cloud Build builds all four from the sources (.gcloudignore decides what is uploaded).
  change gcloud builds submit --config=cloudbuild.yaml "--substitutions=_IMAGES=$IMAGES,_TAG=$TAG" "--project=$PROJECT" .
  for image in steps steps-media api ops; do status "image" "$image:$TAG" "built"; done
}

deploy_queues() {
  local spec name rate concurrent current args
  for spec in "${QUEUES[@]}"; do
    IFS='|' read -r name rate concurrent <<<"$spec"
    args=("--max-dispatches-per-second=$rate" "--max-concurrent-dispatches=$concurrent" "${QUEUE_RETRY[@]}")
    if current=$(probe gcloud tasks queues describe "$name" "--location=$REGION" "--project=$PROJECT" --format=json); then
      if python3 "$COMPARE" queue-matches "$current" "${args[@]}"; then
        status "queue" "$name" "up to date"
        continue
      fi
      change gcloud tasks queues update "$name" "--location=$REGION" "${args[@]}" "--project=$PROJECT"
      status "queue" "$name" "updated"
    else
      change gcloud tasks queues create "$name" "--location=$REGION" "${args[@]}" "--project=$PROJECT"
      status "queue" "$name" "created"
    fi
  done
  # The API enqueues on these two queues only.
  grant queue "$QUEUE_VIDEO" "$(sa_member api) roles/cloudtasks.enqueuer"
  grant queue "$QUEUE_IMAGE" "$(sa_member api) roles/cloudtasks.enqueuer"
}

# deploy_labeled KIND NAME DESCRIBE... -- DEPLOY...: run DEPLOY (plus a label holding the hash of
# its arguments and of EXTRA_HASH_INPUT) unless the resource already carries that hash.
deploy_labeled() {
  local kind=$1 name=$2 describe=() deploy=() hash current
  shift 2
  while [[ $1 != -- ]]; do describe+=("$1"); shift; done
  shift
  deploy=("$@")
  hash=$( { printf '%s\n' "${deploy[@]}"; printf '%s\n' "${EXTRA_HASH_INPUT:-}"; } | sha)
  if current=$(probe "${describe[@]}"); then
    if [[ $current == "$hash" ]]; then
      status "$kind" "$name" "up to date"
      return 0
    fi
    change "${deploy[@]}" "--labels=$LABEL=$hash" >/dev/null
    status "$kind" "$name" "updated"
  else
    change "${deploy[@]}" "--labels=$LABEL=$hash" >/dev/null
    status "$kind" "$name" "created"
  fi
}

job_describe() { printf '%s\n' gcloud run jobs describe "$1" "--region=$REGION" "--project=$PROJECT" "--format=value(metadata.labels.$LABEL)"; }

deploy_jobs() {
  local spec short module image cpu memory timeout account name region describe=()
  for spec in "${STEP_JOBS[@]}"; do
    IFS='|' read -r short module image cpu memory timeout account <<<"$spec"
    name=$JOB_PREFIX$short region=$REGION
    [[ $short == generate-* ]] && region=$VERTEX_REGION
    mapfile -t describe < <(job_describe "$name")
    local secrets=()
    [[ $account != jobs-light ]] && secrets=("--set-secrets=$(secret_refs)")
    deploy_labeled job "$name" "${describe[@]}" -- \
      gcloud run jobs deploy "$name" --image "$IMAGES/$image:$TAG" --region "$REGION" --cpu "$cpu" --memory "$memory" \
      --task-timeout "$timeout" --max-retries 0 --tasks=1 "--service-account=$(sa_email "$account")" \
      "--command=python,-m,$module" "--set-env-vars=$(runtime_env "$region")" "${secrets[@]}" "--project=$PROJECT" --quiet
  done
  # The workflow runs each step job with overrides (--creation-id/--attempt, timeout) and polls
  # the execution it started: granted on each job, not on the project.
  for spec in "${STEP_JOBS[@]}"; do
    name=$JOB_PREFIX${spec%%|*}
    grant job "$name" "$(sa_member workflow) roles/run.jobsExecutorWithOverrides" "$(sa_member workflow) roles/run.viewer"
  done
}

deploy_workflow() {
  EXTRA_HASH_INPUT=$(sha <"workflows/creation.yaml") deploy_labeled workflow "$WORKFLOW" \
    gcloud workflows describe "$WORKFLOW" "--location=$REGION" "--project=$PROJECT" "--format=value(labels.$LABEL)" -- \
    gcloud workflows deploy "$WORKFLOW" --source=workflows/creation.yaml "--location=$REGION" \
    "--service-account=$(sa_email workflow)" \
    "--set-env-vars=JOBS_LOCATION=$REGION,JOB_PREFIX=$JOB_PREFIX,FIRESTORE_DATABASE=$FIRESTORE_DATABASE" \
    --call-log-level=log-errors-only --execution-history-level=execution-history-detailed "--project=$PROJECT"
}

deploy_api() {
  local env
  env=$(runtime_env)
  [[ -n $(conf MAX_ACTIVE_PER_USER) ]] && env+=",PHOENIX_MAX_ACTIVE_PER_USER=$(conf MAX_ACTIVE_PER_USER)"
  # Public: the API checks Firebase ID tokens itself (PHOENIX_AUTH_MODE=firebase).
  deploy_labeled service "$API_SERVICE" \
    gcloud run services describe "$API_SERVICE" "--region=$REGION" "--project=$PROJECT" "--format=value(metadata.labels.$LABEL)" -- \
    gcloud run deploy "$API_SERVICE" "--image=$IMAGES/api:$TAG" "--region=$REGION" --cpu=1 --memory=512Mi \
    --concurrency=40 --min-instances=0 "--max-instances=$(conf API_MAX_INSTANCES 20)" --timeout=300s \
    "--service-account=$(sa_email api)" "--set-env-vars=$env" "--set-secrets=$(secret_refs)" \
    --allow-unauthenticated --platform=managed "--project=$PROJECT" --quiet
  if (( ! DRY_RUN )); then
    say "  API: $(gcloud run services describe "$API_SERVICE" "--region=$REGION" "--project=$PROJECT" "--format=value(status.url)")"
  fi
}

# The scheduled reconcile: a job running `phoenix ops reconcile`, started every 10 minutes by Cloud
# Scheduler. A cancelled or killed execution runs no except block; this finds such creations and
# fails and refunds them, which keeps the no-stuck-creation promise.
deploy_reconcile() {
  local describe=()
  mapfile -t describe < <(job_describe "$RECONCILE_JOB")
  deploy_labeled job "$RECONCILE_JOB" "${describe[@]}" -- \
    gcloud run jobs deploy "$RECONCILE_JOB" --image "$IMAGES/ops:$TAG" --region "$REGION" --cpu 1 --memory 512Mi \
    --task-timeout 540s --max-retries 0 --tasks=1 "--service-account=$(sa_email jobs-light)" \
    --args=ops,reconcile "--set-env-vars=$(runtime_env)" "--project=$PROJECT" --quiet
  grant job "$RECONCILE_JOB" "$(sa_member scheduler) roles/run.invoker"
  local uri="https://run.googleapis.com/v2/projects/$PROJECT/locations/$REGION/jobs/$RECONCILE_JOB:run"
  local args=("--location=$REGION" "--schedule=*/10 * * * *" --time-zone=Etc/UTC "--uri=$uri" --http-method=POST
              "--oauth-service-account-email=$(sa_email scheduler)" --oauth-token-scope=https://www.googleapis.com/auth/cloud-platform
              --attempt-deadline=60s)
  local hash current
  hash=$(printf '%s\n' "${args[@]}" | sha)
  local description="Starts $RECONCILE_JOB (phoenix ops reconcile) [$LABEL $hash]"
  if current=$(probe gcloud scheduler jobs describe "$RECONCILE_JOB" "--location=$REGION" "--project=$PROJECT" "--format=value(description)"); then
    if [[ $current == "$description" ]]; then
      status "scheduler" "$RECONCILE_JOB" "up to date"
      return 0
    fi
    change gcloud scheduler jobs update http "$RECONCILE_JOB" "${args[@]}" "--description=$description" "--project=$PROJECT"
    status "scheduler" "$RECONCILE_JOB" "updated"
  else
    change gcloud scheduler jobs create http "$RECONCILE_JOB" "${args[@]}" "--description=$description" "--project=$PROJECT"
    status "scheduler" "$RECONCILE_JOB" "created"
  fi
}

# --- destroy --------------------------------------------------------------------------------

remove() { # remove KIND NAME DESCRIBE... -- DELETE...
  local kind=$1 name=$2 describe=()
  shift 2
  while [[ $1 != -- ]]; do describe+=("$1"); shift; done
  shift
  if (( DRY_RUN )) || "${describe[@]}" >/dev/null 2>&1; then
    (( DRY_RUN )) && quote_cmd "${describe[@]}" >&3
    change "$@"
    status "$kind" "$name" "deleted"
  else
    status "$kind" "$name" "not there"
  fi
}

destroy() {
  if (( ! YES )) && (( ! DRY_RUN )); then
    say "This deletes the creation pipeline from project $PROJECT ($REGION): jobs, workflow, API,"
    say "queues, scheduler, service accounts and their grants, and the image repository."
    if (( DELETE_DATA )); then say "It ALSO DELETES the Firestore database $FIRESTORE_DATABASE: every creation and balance."; fi
    local typed=""
    read -r -p "Type the project id to confirm: " typed </dev/tty || true
    [[ $typed == "$PROJECT" ]] || die "confirmation did not match; nothing was deleted"
  fi
  remove scheduler "$RECONCILE_JOB" gcloud scheduler jobs describe "$RECONCILE_JOB" "--location=$REGION" "--project=$PROJECT" -- \
    gcloud scheduler jobs delete "$RECONCILE_JOB" "--location=$REGION" "--project=$PROJECT" --quiet
  local spec name jobs=("$RECONCILE_JOB")
  for spec in "${STEP_JOBS[@]}"; do jobs+=("$JOB_PREFIX${spec%%|*}"); done
  for name in "${jobs[@]}"; do
    remove job "$name" gcloud run jobs describe "$name" "--region=$REGION" "--project=$PROJECT" -- \
      gcloud run jobs delete "$name" "--region=$REGION" "--project=$PROJECT" --quiet
  done
  remove service "$API_SERVICE" gcloud run services describe "$API_SERVICE" "--region=$REGION" "--project=$PROJECT" -- \
    gcloud run services delete "$API_SERVICE" "--region=$REGION" "--project=$PROJECT" --quiet
  remove workflow "$WORKFLOW" gcloud workflows describe "$WORKFLOW" "--location=$REGION" "--project=$PROJECT" -- \
    gcloud workflows delete "$WORKFLOW" "--location=$REGION" "--project=$PROJECT" --quiet
  for spec in "${QUEUES[@]}"; do
    name=${spec%%|*}
    remove queue "$name" gcloud tasks queues describe "$name" "--location=$REGION" "--project=$PROJECT" -- \
      gcloud tasks queues delete "$name" "--location=$REGION" "--project=$PROJECT" --quiet
  done
  # The secrets stay (they were created by hand); only the access granted here goes.
  local secret
  for secret in "$SECRET_KEY_ID" "$SECRET_KEY"; do
    revoke secret "$secret" \
      "$(sa_member api) roles/secretmanager.secretAccessor" \
      "$(sa_member jobs-generate) roles/secretmanager.secretAccessor" \
      "$(sa_member jobs-media) roles/secretmanager.secretAccessor"
  done
  local pairs=() grant_line role rest
  for grant_line in "${PROJECT_GRANTS[@]}"; do
    IFS='|' read -r role rest _ <<<"$grant_line"
    pairs+=("$(sa_member "$role") $rest")
  done
  revoke project "$PROJECT" "${pairs[@]}"
  for role in "${ACCOUNTS[@]}"; do
    remove account "$(sa_email "$role")" gcloud iam service-accounts describe "$(sa_email "$role")" "--project=$PROJECT" -- \
      gcloud iam service-accounts delete "$(sa_email "$role")" "--project=$PROJECT" --quiet
  done
  remove registry "$REPOSITORY" gcloud artifacts repositories describe "$REPOSITORY" "--location=$REGION" "--project=$PROJECT" -- \
    gcloud artifacts repositories delete "$REPOSITORY" "--location=$REGION" "--project=$PROJECT" --quiet
  if (( DELETE_DATA )); then
    remove firestore "database $FIRESTORE_DATABASE" gcloud firestore databases describe "--database=$FIRESTORE_DATABASE" "--project=$PROJECT" -- \
      gcloud firestore databases delete "--database=$FIRESTORE_DATABASE" "--project=$PROJECT" --quiet
  else
    status "firestore" "database $FIRESTORE_DATABASE" "kept (--delete-data deletes it)"
  fi
  (( DRY_RUN )) || say "Done. Kept: the Firestore data (unless --delete-data), the R2 bucket, the secrets, the enabled APIs."
}

# --- main -----------------------------------------------------------------------------------

main() {
  if (( DESTROY )); then
    ENV_FILE=${ENV_FILE:-deploy.env}
    [[ -f $ENV_FILE ]] && read_env_file "$ENV_FILE"
  else
    ENV_FILE=${ENV_FILE:-deploy.env}
    read_env_file "$ENV_FILE"
    validate_env
    if (( ${#PROBLEMS[@]} )); then report_problems; fi
  fi
  FIRESTORE_DATABASE=$(conf FIRESTORE_DATABASE "(default)")
  FIRESTORE_LOCATION=$(conf FIRESTORE_LOCATION "$REGION")
  VERTEX_REGION=$(conf VERTEX_REGION "$REGION")
  SECRET_KEY_ID=$(conf R2_ACCESS_KEY_ID_SECRET phoenix-r2-access-key-id)
  SECRET_KEY=$(conf R2_SECRET_ACCESS_KEY_SECRET phoenix-r2-secret-access-key)
  IMAGES=$REGION-docker.pkg.dev/$PROJECT/$REPOSITORY

  preflight
  if (( DESTROY )); then
    destroy
    return 0
  fi
  TAG=$(image_tag)
  (( DRY_RUN )) || say "Deploying to $PROJECT ($REGION), images tagged $TAG"
  local part
  for part in "${PARTS[@]}"; do
    selected "$part" || continue
    "deploy_$part"
  done
  (( DRY_RUN )) || say "Done."
}

main
