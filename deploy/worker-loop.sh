#!/bin/sh
# An always-on worker where nothing restarts `pgdrain drain` for you (a VM,
# a platform's worker process that runs one command): drains back to back,
# each lingering on its queue until its deadline (a day, unless
# PGDRAIN_DEADLINE_SECONDS / PGDRAIN_LINGER_SECONDS say otherwise). Settings
# come from the environment (DATABASE_URL, PGDRAIN_TASKS, …); arguments go
# to each drain (e.g. --json). README "An always-on worker".
#
#   drain exits 0  its deadline, or a signal: the next drain starts at once
#   drain exits 1  infrastructure (database unreachable, tasks module
#                  missing): the next starts after 10 s, doubling to 300 s
#   drain exits 2  configuration: the loop stops (exit 2): a rerun cannot fix it
#
# SIGTERM or SIGINT goes on to the running drain as SIGTERM (its --grace
# applies; a second one stops its jobs at once) and the loop ends with it.
set -u
: "${PGDRAIN_DEADLINE_SECONDS:=86400}" "${PGDRAIN_LINGER_SECONDS:=86400}"
export PGDRAIN_DEADLINE_SECONDS PGDRAIN_LINGER_SECONDS
delay=10
stop=
pid=
trap 'stop=1; [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null' TERM INT
while [ -z "$stop" ]; do
  pgdrain drain "$@" &
  pid=$!
  # A signal that came between the loop's test and pid=$! had no pid to pass on to.
  [ -z "$stop" ] || kill -TERM "$pid" 2>/dev/null
  wait "$pid"; code=$?
  # A signal interrupts wait (status over 128): wait on for the drain's own end.
  while [ -n "$stop" ] && [ "$code" -gt 128 ] && kill -0 "$pid" 2>/dev/null; do wait "$pid"; code=$?; done
  pid=
  case $code in
    0) delay=10 ;;
    2) exit 2 ;;
    *) [ -n "$stop" ] && break
       echo "worker-loop: drain exited $code; next drain in $delay s" >&2
       sleep "$delay" & pid=$!
       [ -z "$stop" ] || kill -TERM "$pid" 2>/dev/null
       wait "$pid"; pid=
       delay=$((delay * 2)); [ "$delay" -le 300 ] || delay=300 ;;
  esac
done
