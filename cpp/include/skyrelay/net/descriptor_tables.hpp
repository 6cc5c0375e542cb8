// One file descriptor table per I/O thread (server_config::descriptor_tables = "per_thread").
//
// RLIMIT_NOFILE bounds the descriptor *numbers* of one table, not the sockets of a process: a
// thread that unshares its table (unshare(CLONE_FILES)) gets a table of its own with the same
// bound. With one table per I/O thread, one process holds up to (limit - floor) connections per
// I/O thread, where a single table would hold (limit - a few) in all. That is how a process
// whose hard limit cannot be raised (no CAP_SYS_RESOURCE) holds 250,000 connections
// (docs/benchmarks.md, issue 18).
//
// The rules this needs, and how they are kept:
//  - A descriptor is used only on the thread whose table holds it. Each I/O thread accepts its
//    connections itself (its own acceptor on the shared listening socket), so every
//    connection's socket is in the table of the thread that runs its io_context, which is the
//    only thread that reads, writes and closes it (each context is run by one thread).
//  - A number never means two things by mistake. Each I/O thread fills the free numbers below
//    `floor` with copies of /dev/null right after it unshares, so everything it opens later
//    (its sockets, its io_uring ring) is numbered at or above the floor, while the process's
//    shared table stays far below it. A socket closed on the wrong thread by a bug then hits
//    a number the shared table does not use (EBADF), never another file.
//  - Nothing of the application's is held open by the copies. unshare copies the whole table,
//    so each I/O thread's copy of the descriptors that were open before the server started
//    (the application's files, pipes and sockets) is replaced by /dev/null at once: a pipe the
//    application closes still reaches end of file. Descriptors the server made while starting
//    (the io_contexts' epoll, eventfd and timerfd, which any thread may post through) stay.
//  - A stream destroyed on a thread that does not hold its socket hands the socket to its own
//    context to close (net::stream's destructor), or forgets the number when that context has
//    stopped: the thread's table, and the socket with it, went when the thread ended.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "skyrelay/net/aliases.hpp"

namespace skyrelay::net::descriptor_tables {

// True once a server runs with per-thread tables in this process (never reset: sockets of a
// stopped server may still be destroyed later, and the check is cheap).
bool per_thread() noexcept;

// The io_context whose thread this is, when the thread has a table of its own; else null
// (the shared table: the application's threads, the dispatcher, a broker's thread).
const asio::io_context* own_context() noexcept;

// What the I/O threads need to know, taken on the starting thread before the server opens
// anything: the descriptors open then (the application's), and the floor.
struct plan {
  std::vector<int> foreign;  // open before the server started, to drop from each copy
  int floor = 0;             // numbers below it are filled in each I/O thread's table
  std::size_t per_table = 0; // connections one table holds: the soft limit less the floor
};

// Marks the process as using per-thread tables and reads the descriptors open now. Throws
// std::runtime_error when the soft limit leaves no room above the floor.
plan prepare();

// What prepare() would give as plan::per_table now (0: no room); for sizing the I/O threads
// before the server starts. Throws as prepare() does.
std::size_t room_per_table();

// On an I/O thread, before its io_context runs: unshares the table, replaces the foreign
// descriptors by /dev/null, fills the free numbers below the floor, takes a copy of
// `listen_fd` at or above the floor for this thread's own acceptor and drops the table's copy
// of the original (so that closing the acceptors closes the port), and records `ctx` as this
// thread's. Returns the listening socket's copy, or -1 with `error` set (errno text).
int enter_own_table(const plan& p, asio::io_context& ctx, int listen_fd, std::string& error);

// For a socket about to be closed or destroyed on this thread: when this thread's table does
// not hold it, closes it on its own context instead (or, that context stopped and its thread
// gone with its table, forgets the number) and returns true, counting the miss when this is
// another I/O thread (a bug: misses() on /metrics). Returns false, doing nothing, when the
// socket is this thread's (or closed).
bool settle(tcp::socket& s) noexcept;

// Sockets handed to their own thread by settle() from another I/O thread.
std::uint64_t misses() noexcept;

}  // namespace skyrelay::net::descriptor_tables
