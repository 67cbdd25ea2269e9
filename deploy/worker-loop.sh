#!/bin/sh
# An always-on worker where nothing restarts `pgdrain drain` for you (a VM,
# a platform's worker process that runs one command, the systemd unit):
# drains back to back, each lingering on its queue until its deadline (a
# day, unless PGDRAIN_DEADLINE_SECONDS / PGDRAIN_LINGER_SECONDS say
# otherwise). Settings come from the environment (DATABASE_URL,
# PGDRAIN_TASKS, …); arguments go to each drain (e.g. --json). docs/fast-pickup.md "An
# always-on worker". Any POSIX sh (dash, bash, busybox ash).
#
#   drain exits 0  its deadline, or a signal: the next drain starts at once,
#                  or, if this one ran under PGDRAIN_LOOP_MIN_SECONDS (default
#                  5; 0: none), that long after this one started (no busy
#                  spin of drains that end at once: PGDRAIN_LINGER_SECONDS=0)
#   drain exits 1  infrastructure (database unreachable, tasks module
#                  missing): the next starts after 10 s, doubling to 300 s
#   drain exits 2  configuration: the loop stops (exit 2): a rerun cannot fix it
#   126, 127       pgdrain (or the node it runs) not found or not executable
#                  (an `npm ci` replacing node_modules under it): retried
#                  after 5, 10, 20, 40 and 80 s, saying so; then the loop
#                  stops (exit 2; a stop during the retries: exit 2 at once)
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
# orphaned, running on, if it kills the loop alone. Ctrl-C in a terminal
# sends SIGINT to the whole process group: the drain takes it as a stop of
# its own (its jobs stopped now), and the loop ends with it (130 if the
# SIGINT ended it before it listened). Started with & from a script, the loop
# inherits SIGINT and SIGQUIT ignored (POSIX), and no trap undoes that (dash,
# bash, busybox ash): stop it with SIGTERM.
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
# Once the traps are set, no $(…): bash (5.2 at least) parses a command
# substitution as it expands it, and a trap run meanwhile is parsed in that
# state ("unexpected EOF while looking for matching `)'"): it does nothing,
# and that stop is lost (1 in ~400 stops under load). Times go through a file.
# All of it is one { } block, read whole before it runs: a shell reads a
# script as it goes (bash, byte by byte), and a copy written over this file
# while the loop runs (cp, an editor) would have it read on mid-line: a
# syntax error (exit 2) or a stray command when it leaves its while loop.
{
set -u
: "${PGDRAIN_DEADLINE_SECONDS:=86400}" "${PGDRAIN_LINGER_SECONDS:=86400}"
export PGDRAIN_DEADLINE_SECONDS PGDRAIN_LINGER_SECONDS
# The drain's --grace and --overrun: a flag wins over its variable, the last
# one over the others; each named as the drain would name it.
grace=10 gname= overrun=5 oname= flag=
[ -z "${PGDRAIN_GRACE_SECONDS+set}" ] || grace=$PGDRAIN_GRACE_SECONDS gname=PGDRAIN_GRACE_SECONDS
[ -z "${PGDRAIN_OVERRUN_SECONDS+set}" ] || overrun=$PGDRAIN_OVERRUN_SECONDS oname=PGDRAIN_OVERRUN_SECONDS
for arg; do
  case $flag in --grace) grace=$arg gname=--grace ;; --overrun) overrun=$arg oname=--overrun ;; esac
  case $arg in --grace=*) grace=${arg#*=} gname=--grace ;; --overrun=*) overrun=${arg#*=} oname=--overrun ;; esac
  flag=$arg
done
ws=$(printf ' \t\n\r\v\fx'); ws=${ws%x}
# up NAME VALUE: VALUE in whole seconds, rounded up, in $up, read by the
# drain's rule (src/cli/flag-parsers.ts seconds(0, 3600)): a decimal number
# from 0 to 3600 (5, 0.5, .5, 5., 1e1, 0.5E+1), blanks around it allowed;
# else the loop exits 2 at once, naming NAME, as the drain would. (The drain
# reads doubles: of values past 15 digits, the loop refuses the few that
# round into the range, as 3600.0000000000000001 and -1e-400.)
up() {
  v=${2#"${2%%[!$ws]*}"}; v=${v%"${v##*[!$ws]}"}
  [ -n "$v" ] || [ "${1#-}" = "$1" ] || v=bad # a blank flag is no number
  [ -n "$v" ] || { echo "worker-loop: $1: is set but empty: give a value or unset it" >&2; exit 2; }
  sign=; case $v in -*) sign=- v=${v#-} ;; esac
  x=0; case $v in *[eE]*) x=${v#*[eE]} v=${v%%[eE]*} ;; esac # NNNeX
  xs=; case $x in [+-]*) xs=${x%"${x#?}"} x=${x#?} ;; esac
  case $v in ''|.|*[!0-9.]*|*.*.*) v=bad ;; esac
  case $x in ''|*[!0-9]*) v=bad ;; esac
  i=${v%%.*} f=; case $v in *.*) f=${v#*.} ;; esac
  d=$i$f; d=${d#"${d%%[!0]*}"} x=${x#"${x%%[!0]*}"} # no leading 0: it would read as octal
  up=0 # the value is d x 10^(xs x - length of f), with n digits before its point:
  if [ "$v" = bad ]; then up=bad
  elif [ -z "$d" ]; then up=0 # 0, -0, 0e9
  elif [ -n "$sign" ]; then up=bad
  elif [ "${#x}" -gt 4 ]; then [ "$xs" = - ] && up=1 || up=bad
  else
    n=$((${#d} + $xs${x:-0} - ${#f}))
    if [ "$n" -gt 4 ]; then up=bad
    elif [ "$n" -le 0 ]; then up=1
    else
      up=$d; while [ "${#up}" -gt "$n" ]; do up=${up%?}; done
      f=${d#"$up"}; while [ "${#up}" -lt "$n" ]; do up=${up}0; done
      case $f in *[1-9]*) up=$((up + 1)) ;; esac
      [ "$up" -le 3600 ] || up=bad
    fi
  fi
  [ "$up" != bad ] || { echo "worker-loop: $1: must be a number of seconds from 0 to 3600, got \"$2\"" >&2; exit 2; }
}
up "${gname:---grace}" "$grace"; limit=$up
up "${oname:---overrun}" "$overrun"; limit=$((limit + up + 5))
case ${PGDRAIN_LOOP_MIN_SECONDS=5} in
  '') echo "worker-loop: PGDRAIN_LOOP_MIN_SECONDS: is set but empty: give a value or unset it" >&2; exit 2 ;;
  *[!0-9]*|?????*)
    echo "worker-loop: PGDRAIN_LOOP_MIN_SECONDS: must be a whole number of seconds from 0 to 9999, got \"$PGDRAIN_LOOP_MIN_SECONDS\"" >&2
    exit 2 ;;
esac
min=${PGDRAIN_LOOP_MIN_SECONDS#"${PGDRAIN_LOOP_MIN_SECONDS%%[!0]*}"} min=${min:-0} # 010 is 10 s, not octal 8
delay=10 tries=0 code=0 stops=0 sent=0 claim=0 pid= woke= watched=0 first=0 watchdog=
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
# The loop's directory: named now, made only once the traps below are set,
# so that it is never left behind (a stop before the traps kills the loop,
# a stop after them is a mark, and every exit then removes it; only a
# SIGKILL leaves it). $dir stays empty (rm -rf "": nothing) until it is
# made: never what mkdir found there. A mark made before it is there fails,
# unseen: the loop sees $stops, and starts no drain. (The EXIT trap is one
# plain command: bash 5.2, with `[ … ] || rm …` there, said "wait_for: No
# record of process" in ~1 of 50 Ctrl-Cs.)
name=$(mktemp -u -d) || exit 2
stopped=$name/stopped killed=$name/killed dir=
trap '{ true > "$stopped"; } 2>/dev/null; stops=$((stops + 1)) woke=1; pass' TERM INT HUP QUIT
trap 'rm -rf "$dir"' EXIT
# mkdir runs deaf to the stops, so that one reaching it too (Ctrl-C, a stop
# of the whole group) cannot kill it before or after it makes the directory
# (reading as TMPDIR unwritable, the directory left); if one kills its
# subshell before the trap, nothing was made: the loop ends as stopped.
(trap '' TERM INT HUP QUIT; exec mkdir -m 700 "$name") || {
  [ "$stops" -eq 0 ] || exit "$code"
  echo "worker-loop: TMPDIR: must be a writable directory, got ${TMPDIR:-/tmp (unset: the default)} (a read-only root filesystem: mount one there, e.g. a Kubernetes emptyDir)" >&2
  exit 2
}
dir=$name
# run COMMAND…: runs it as the loop's child, its exit status in $code. Once
# stopped it runs nothing, and $code stays as it was (the last drain's, or 2
# in the 126/127 retries), not 0: a stop just after a back-off or a retry's
# pause ends the loop with the status it had. No child is forked then: its
# SIGTERM would kill it (143) as it reset its traps.
run() {
  touch -c "$dir" # young, for /tmp cleaners (systemd-tmpfiles: 10 days idle)
  [ "$stops" -eq 0 ] || return 0
  ([ ! -e "$stopped" ] || exit "$code"; exec "$@") &
  pid=$!; pass
  # wait's stderr: dash and busybox sh write "Terminated" there on collecting a drain that died of our SIGTERM.
  woke=; wait "$pid" 2>/dev/null; code=$?
  # A trap interrupts wait (status 128 + its signal): wait on for the child's own.
  # A child that died of the signal itself (Ctrl-C reaches the group) may have
  # been reaped by that first wait: dash answers 127 for it then, not its 130.
  while [ -n "$woke" ] && [ "$code" -gt 128 ]; do
    woke=; wait "$pid" 2>/dev/null; again=$?
    [ "$again" -ne 127 ] || kill -0 "$pid" 2>/dev/null || break
    code=$again
  done
  # bash answers -1 for a child that ended as the stop interrupted its wait.
  [ "$code" -ge 0 ] || code=143
  pid=
  # Reaped, so that bash does not report it as killed by the signal.
  [ -z "$watchdog" ] || { kill -USR1 "$watchdog"; wait "$watchdog"; } 2>/dev/null
  [ "$code" -ne 137 ] || [ ! -e "$killed" ] ||
    echo "worker-loop: the drain did not end within $limit s of its SIGTERM (--grace $grace, --overrun $overrun, + 5 s): a handler ignores its signal; sent SIGKILL (the jobs it held come back when their lease ends)" >&2
}
# clock: the time (epoch seconds) in $now, read from a file, not by $(…) (above).
clock() { now=; date +%s > "$dir/now" && read -r now < "$dir/now"; } 2>/dev/null
# since: the seconds since $started in $since, or none (a Ctrl-C, which
# reaches the whole process group, may end date: no arithmetic error then).
since() {
  clock; since=$now
  case $started in ''|*[!0-9]*) since= ;; *) case $since in ''|*[!0-9]*) since= ;; *) since=$((since - started)) ;; esac ;; esac
}
while [ "$stops" -eq 0 ]; do
  clock; started=$now
  run pgdrain drain "$@"
  case $code in
    0) delay=10 tries=0 since=; [ "$min" -eq 0 ] || since; [ "$stops" -eq 0 ] || break
       [ -z "$since" ] || [ "$since" -ge "$min" ] || { run sleep $((min - since)); code=0; } ;;
    2) exit 2 ;;
    126|127) # the shell's exec (or #!/usr/bin/env node) failed: gone during an npm ci, or never there
       [ "$code" -eq 127 ] && why='not found: put the directory with pgdrain (node_modules/.bin) and node on PATH' ||
         why='found but not executable: chmod +x it, or take the directory named pgdrain off PATH'
       failed=$code code=2 # the loop's own status for it, also when a stop ends the retries (127 reads as the loop not found)
       [ "$stops" -eq 0 ] || break
       [ "$tries" -lt 5 ] || { echo "worker-loop: pgdrain drain exited $failed, $why (PATH=$PATH); retried 5 times, giving up" >&2; exit 2; }
       tries=$((tries + 1)) pause=$((5 << tries >> 1))
       echo "worker-loop: pgdrain drain exited $failed, $why (PATH=$PATH); retry $tries of 5 in $pause s" >&2
       run sleep "$pause"; code=2 ;;
    *) tries=0; since; [ "$stops" -eq 0 ] || break
       [ -z "$since" ] || [ "$since" -le "$delay" ] || delay=10 # it ran healthy a while: back off anew
       echo "worker-loop: drain exited $code; next drain in $delay s" >&2
       failed=$code; run sleep "$delay"; code=$failed
       delay=$((delay * 2)); [ "$delay" -le 300 ] || delay=300 ;;
  esac
done
exit "$code"
}
