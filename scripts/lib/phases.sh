# Phases of a long script, each announced before it starts and timed when it ends:
#   source scripts/lib/phases.sh; phases_begin NAME; phase "building"; ...; phase "testing"; ...
# On exit the last phase's time and the total are printed, with FAILED and the exit code if it failed,
# and any job the script left running in the background is stopped.
# Everything goes to stderr.

phases_begin() {
  _phases_script="$1"
  _phases_started=$SECONDS
  _phase_name=""
  _phase_start=$SECONDS
  trap _phases_finish EXIT
}

phase() {
  if [[ -n "$_phase_name" ]]; then
    echo "${_phases_script}: ${_phase_name}: $((SECONDS - _phase_start)) s" >&2
  fi
  _phase_name="$1"
  _phase_start=$SECONDS
  if [[ -n "$_phase_name" ]]; then
    echo "${_phases_script}: ${_phase_name}…" >&2
  fi
}

_phases_finish() {
  local rc=$?
  local left
  left=$(jobs -pr)
  if [[ -n "$left" ]]; then
    kill $left 2>/dev/null || true
  fi
  phase ""
  if [[ $rc == 0 ]]; then
    echo "${_phases_script}: all passed in $((SECONDS - _phases_started)) s" >&2
  else
    echo "${_phases_script}: FAILED (exit $rc) after $((SECONDS - _phases_started)) s" >&2
  fi
  return $rc
}
