#!/bin/sh
# An always-on worker where nothing restarts `pgdrain drain` for you (a VM,
# a platform's worker process that runs one command, the systemd unit):
# drains back to back, each lingering on its queue until its deadline (a
# day, unless PGDRAIN_DEADLINE_SECONDS / PGDRAIN_LINGER_SECONDS say
# otherwise). Settings come from the environment (DATABASE_URL,
# PGDRAIN_TASKS, …); arguments go to each drain (e.g. --json). docs/fast-pickup.md "An
# always-on worker". Any POSIX sh (dash, bash, busybox ash).
#
#   drain exits 0  its deadline, or a signal: the next drain starts at once
#   drain exits 1  infrastructure (database unreachable, tasks module
#                  missing): the next starts after 10 s, doubling to 300 s
#   drain exits 2  configuration: the loop stops (exit 2): a rerun cannot fix it
#   126, 127       pgdrain (or the node it runs) not found or not executable:
#                  the loop stops (exit 2), saying so
# A failed drain that ran longer than the current back-off was healthy: the
# back-off starts again from 10 s.
#
# Each SIGTERM or SIGINT (or SIGHUP, SIGQUIT: the loop never dies of one,
# leaving its drain unstopped) goes on to the running drain as one SIGTERM (its
# --grace applies; a second one stops its jobs at once), and the loop ends
# with it: its exit status is the last drain's (0 stopped cleanly, 1 it had
# failed, also when the stop came during the back-off after it; 143 it was
# ended by the SIGTERM before it could take it, having claimed nothing).
# A drain still running $limit s after its SIGTERM (its --grace and
# --overrun, as flags, else PGDRAIN_GRACE_SECONDS / PGDRAIN_OVERRUN_SECONDS,
# else 10 and 5, each rounded up, + 5 s) has a hung handler: the loop
# SIGKILLs it, says so, and exits 137 (its jobs come back when their lease
# ends), rather than wait for a supervisor's SIGKILL, which leaves the drain
# orphaned, running on, if it kills the loop alone.
#
# A drain never misses a stop, and gets one SIGTERM per stop. A shell's
# child runs, from its fork to the reset of the traps it inherits, the
# parent's handler, which its exec then forgets: a signal passed on then is
# lost (dash: 1 stop in 10 under stress; bash blocks signals over the fork).
# So a stop first marks $stopped (in a directory of its own), then is passed
# on; a child checks the mark once its traps are reset, before its exec. Traps may interrupt each other:
# each SIGTERM sent is claimed in one arithmetic expansion, which no trap can
# split, so none is sent twice. That expansion has no side effect under &&,
# || or ?: (busybox ash, 1.35 at least, runs the side that is not taken).
set -u
: "${PGDRAIN_DEADLINE_SECONDS:=86400}" "${PGDRAIN_LINGER_SECONDS:=86400}"
export PGDRAIN_DEADLINE_SECONDS PGDRAIN_LINGER_SECONDS
dir=$(mktemp -d) || {
  echo "worker-loop: TMPDIR: must be a writable directory, got ${TMPDIR:-/tmp (unset: the default)} (a read-only root filesystem: mount one there, e.g. a Kubernetes emptyDir)" >&2
  exit 2
}
stopped=$dir/stopped killed=$dir/killed
grace=${PGDRAIN_GRACE_SECONDS:-10} overrun=${PGDRAIN_OVERRUN_SECONDS:-5} flag=
for arg; do # the drain's arguments: a flag wins over its variable, the last one over the others
  case $flag in --grace) grace=$arg ;; --overrun) overrun=$arg ;; esac
  case $arg in --grace=*) grace=${arg#*=} ;; --overrun=*) overrun=${arg#*=} ;; esac
  flag=$arg
done
# up SECONDS: rounded up to a whole number; 3600 (the CLI's most) for what is
# no plain decimal (1e3, or no number at all: the drain refuses it, exit 2).
up() {
  case $1 in ''|.|*[!0-9.]*|*.*.*) echo 3600; return ;; esac
  i=${1%%.*}; i=${i#"${i%%[!0]*}"} # no leading 0: it would read as octal
  case $1 in *.*[1-9]*) echo $((${i:-0} + 1)) ;; *) echo "${i:-0}" ;; esac
}
limit=$(($(up "$grace") + $(up "$overrun") + 5))
delay=10 code=0 stops=0 sent=0 claim=0 pid= woke= watched=0 first=0 watchdog=
pass() {
  [ -n "$pid" ] || return 0
  while [ "$(((sent += (claim = sent < stops)) * 0 + claim))" -gt 0 ]; do kill -TERM "$pid" 2>/dev/null; done
  [ "$sent" -eq 0 ] || watch
}
# watch: once, as the first stop goes on: SIGKILLs the running child if it
# is still there $limit s later, marking $killed first; the loop says so if
# the child died of it (kill -0 also finds one that ended as the kill was due,
# not yet reaped). Deaf to the stops (Ctrl-C reaches the whole group); ended
# by the loop with SIGUSR1 (untrapped: it dies at once).
watch() {
  [ "$(((watched += (first = !watched)) * 0 + first))" -gt 0 ] || return 0
  (trap '' TERM INT HUP QUIT; n=0
   while kill -0 "$pid" 2>/dev/null; do
     if [ "$n" -ge "$limit" ]; then { true > "$killed"; } 2>/dev/null; kill -KILL "$pid" 2>/dev/null; exit 0; fi
     sleep 1 </dev/null >/dev/null 2>&1; n=$((n + 1)) # holds no output pipe open after the loop
   done) &
  watchdog=$!
}
trap '{ true > "$stopped"; } 2>/dev/null; stops=$((stops + 1)) woke=1; pass' TERM INT HUP QUIT
trap 'rm -rf "$dir"' EXIT
# run COMMAND…: runs it as the loop's child, its exit status in $code.
run() {
  touch -c "$dir" # young, for /tmp cleaners (systemd-tmpfiles: 10 days idle)
  ([ ! -e "$stopped" ] || exit 0; exec "$@") &
  pid=$!; pass
  woke=; wait "$pid"; code=$?
  # A trap interrupts wait (status 128 + its signal): wait on for the child's own.
  while [ -n "$woke" ] && [ "$code" -gt 128 ]; do woke=; wait "$pid"; code=$?; done
  # bash answers -1 for a child that ended as the stop interrupted its wait.
  [ "$code" -ge 0 ] || code=143
  pid=
  # Reaped, so that bash does not report it as killed by the signal.
  [ -z "$watchdog" ] || { kill -USR1 "$watchdog"; wait "$watchdog"; } 2>/dev/null
  [ "$code" -ne 137 ] || [ ! -e "$killed" ] ||
    echo "worker-loop: the drain did not end within $limit s of its SIGTERM (--grace $grace, --overrun $overrun, + 5 s): a handler ignores its signal; sent SIGKILL (the jobs it held come back when their lease ends)" >&2
}
while [ "$stops" -eq 0 ]; do
  started=$(date +%s)
  run pgdrain drain "$@"
  case $code in
    0) delay=10 ;;
    2) exit 2 ;;
    126|127) # the shell's exec (or #!/usr/bin/env node) failed: a rerun cannot fix it
       [ "$code" -eq 127 ] && why='not found: put the directory with pgdrain (node_modules/.bin) and node on PATH' ||
         why='found but not executable: chmod +x it, or take the directory named pgdrain off PATH'
       echo "worker-loop: pgdrain drain exited $code, $why (PATH=$PATH); not retried" >&2
       exit 2 ;;
    *) [ "$stops" -eq 0 ] || break
       [ "$(($(date +%s) - started))" -le "$delay" ] || delay=10 # it ran healthy a while: back off anew
       echo "worker-loop: drain exited $code; next drain in $delay s" >&2
       failed=$code; run sleep "$delay"; code=$failed
       delay=$((delay * 2)); [ "$delay" -le 300 ] || delay=300 ;;
  esac
done
exit "$code"
