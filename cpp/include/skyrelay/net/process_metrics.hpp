// The /metrics families that describe the build and the process rather than the traffic:
// skyrelay_build_info, and process_* under the names prometheus_client's process collector
// uses, so that dashboards made for Python services read a skyrelay server unchanged.
#pragma once

#include <string>
#include <string_view>

namespace skyrelay {

// Appends `skyrelay_build_info{version,boost,openssl,compiler} 1`. `version` is the Python
// package's (server_config::version; "unknown" when empty); OpenSSL's is the library loaded at
// run time (a wheel vendors its own). Any thread.
void append_build_info(std::string& out, std::string_view version);

// Appends process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds and
// process_start_time_seconds, read from /proc/self when called (a scrape), never on a hot path.
// Where /proc cannot be read (not Linux) the families it feeds are left out. Any thread.
void append_process_metrics(std::string& out);

}  // namespace skyrelay
