#!/usr/bin/env bash
# `make validate`: checks the CI wiring with each ecosystem's own validators,
# pinned and installed into .tools/ by scripts/install-validators.sh. After
# that install nothing here uses the network.
#
#   tekton-lint       tasks/ and pipelines/ (.tektonlintrc.yaml)
#   check-jsonschema  action.yml, .github/workflows/, the GitLab component
#                     (each of its two YAML documents) and the GitLab example,
#                     against its vendored GitHub and GitLab CI schemas
#   actionlint        .github/workflows/
#   zizmor            .github/workflows/ and action.yml, offline audits
#   hadolint          Containerfile
#   yamllint          every YAML file of the wiring (.yamllint)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/install-validators.sh"

venv="$root/.tools/venv/bin"
npmbin="$root/.tools/npm/node_modules/.bin"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

tekton=(tasks/*/*/*.yaml pipelines/*.yaml pipelines/samples/*.yaml)
workflows=(.github/workflows/*.yml)
gitlab_example=examples/gitlab/.gitlab-ci.yml
component=templates/ocistep.yml
yaml=("${tekton[@]}" "${workflows[@]}" action.yml "$component" "$gitlab_example" .tektonlintrc.yaml .yamllint)

# A CI/CD component is two YAML documents, the spec: header and the jobs;
# the GitLab CI schema takes one at a time.
awk -v dir="$scratch" 'BEGIN { n = 1 } /^---[[:space:]]*$/ { n++; next } { print > (dir "/component-" n ".yml") }' "$component"
[ -f "$scratch/component-1.yml" ] && [ -f "$scratch/component-2.yml" ] && [ ! -e "$scratch/component-3.yml" ] || {
  echo "$component: expected exactly two YAML documents (spec header, jobs)" >&2
  exit 1
}

failed=()
check() {
  local name="$1"
  shift
  echo "==> $name"
  if "$@"; then
    echo "    ok"
  else
    failed+=("$name")
  fi
}

check "tekton-lint $("$npmbin/tekton-lint" --version)" \
  "$npmbin/tekton-lint" --max-warnings 0 "${tekton[@]}"
check "check-jsonschema (github-workflows)" \
  "$venv/check-jsonschema" --builtin-schema vendor.github-workflows "${workflows[@]}"
check "check-jsonschema (github-actions)" \
  "$venv/check-jsonschema" --builtin-schema vendor.github-actions action.yml
check "check-jsonschema (gitlab-ci: component spec, component jobs, example)" \
  "$venv/check-jsonschema" --builtin-schema vendor.gitlab-ci \
  "$scratch/component-1.yml" "$scratch/component-2.yml" "$gitlab_example"
check "actionlint (WebAssembly build)" \
  node "$root/scripts/validators/actionlint.mjs" "${workflows[@]}"
check "zizmor $("$venv/zizmor" --version | cut -d' ' -f2) (offline)" \
  "$venv/zizmor" --offline --no-progress --quiet "${workflows[@]}" action.yml
check "hadolint $("$venv/hadolint" --version | awk '{print $NF}')" \
  "$venv/hadolint" Containerfile
check "yamllint $("$venv/yamllint" --version | cut -d' ' -f2)" \
  "$venv/yamllint" --strict "${yaml[@]}"

if [ "${#failed[@]}" -ne 0 ]; then
  printf 'validate: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "validate: all checks passed"
