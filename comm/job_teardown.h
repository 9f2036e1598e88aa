// What a rank does as it ends the job (MPI_Abort, see abort_world_if_initialized), so that no process
// of the job outlives it when a host is cut off (issue 17).
//
// Open MPI 4.1's mpirun ends a job after MPI_Abort by telling every daemon (orted) to kill its ranks
// and waiting for every daemon to answer. When a host's link is cut, no error reaches either side
// (packets just stop), so mpirun and that host's daemon wait for each other for ever, although every
// rank has ended. Two things close that gap:
//  * The launcher is told. `glmpipe` stays the parent of the mpirun it starts (launcher/supervise.h)
//    and passes its pid and host_identity() to the ranks (GLMPIPE_LAUNCHER_PID/_HOST). A rank on the
//    launcher's host sends it kLauncherSignal carrying (this rank, the silent rank); the launcher
//    gives mpirun a grace period to end the job, then kills it and exits naming the cause. Ranks on
//    other hosts cannot signal it (another host's pids mean nothing), and need not: with a cut link
//    they could not reach it anyway; the ranks on the launcher's host see the same silence.
//  * The daemon of a host other than mpirun's is ended. A rank whose parent is an orted leaves a
//    detached watcher behind that ends that daemon if it is still alive kDaemonGraceSeconds after
//    the abort: a daemon that can reach mpirun has ended by then (mpirun ends the job, or it dies
//    and the daemon loses its lifeline), one on a cut-off host never would. The watcher is /bin/sh,
//    in its own session (the daemon kills its ranks' process groups), holding none of the rank's
//    file descriptors (the daemon waits for the end of the rank's output pipes).
#pragma once

#include <csignal>
#include <string>

namespace glmpipe {

constexpr const char* kLauncherPidEnv = "GLMPIPE_LAUNCHER_PID";
constexpr const char* kLauncherHostEnv = "GLMPIPE_LAUNCHER_HOST";
constexpr int kLauncherSignal = SIGUSR2;
constexpr int kDaemonGraceSeconds = 3;

// "hostname net:[4026531840] pid:[4026531836]": two processes with the same identity can signal
// each other by pid (same machine, same pid namespace) and share a network stack (same "host" of
// tests/hosts/netns.sh, whose namespaces share the hostname).
std::string host_identity();

// The value sent with kLauncherSignal: the reporting rank and the silent one (-1: not a stall).
int encode_abort_report(int reporter, int silent);
void decode_abort_report(int value, int* reporter, int* silent);

// Liveness: the peer whose silence is ending the job (reported to the launcher).
void note_silent_rank(int rank);

// Starts the detached watcher for process `daemon` when its command name is "orted": it sends SIGTERM
// (one second later SIGKILL) to that process if it still runs `grace_seconds` from now, and exits
// as soon as it has ended. Returns whether a watcher was started.
bool watch_daemon(int daemon, int grace_seconds);

// Called once, just before this rank calls MPI_Abort: tells the launcher (when on its host) and
// starts the daemon watcher (when the parent is an orted). Never throws.
void before_job_abort(int rank);

}  // namespace glmpipe
