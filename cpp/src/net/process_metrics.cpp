#include "skyrelay/net/process_metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

#include <boost/version.hpp>
#include <openssl/crypto.h>

namespace skyrelay {

namespace {

void family(std::string& out, const char* name, const char* help, const char* type, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, " %.15g\n", v);
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
         name + buf;
}

// A label value as the text format wants it: backslash, double quote and newline escaped.
std::string label_value(std::string_view v) {
  std::string s;
  for (char c : v) {
    if (c == '\\' || c == '"') s += '\\';
    if (c == '\n') {
      s += "\\n";
      continue;
    }
    s += c;
  }
  return s;
}

std::string compiler() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#else
  return "unknown";
#endif
}

// The fields of /proc/self/stat after the command name (which may hold spaces and parentheses,
// so the split starts after its last ')'): index 0 is field 3 of proc(5), the state.
std::vector<std::string> stat_fields() {
  std::ifstream in("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto paren = text.rfind(')');
  if (paren == std::string::npos) return {};
  std::istringstream rest(text.substr(paren + 1));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(std::move(f));
  return fields;
}

// The boot time (btime of /proc/stat), seconds since the epoch; 0 when unknown.
double boot_time() {
  std::ifstream in("/proc/stat");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("btime ", 0) == 0) return std::stod(line.substr(6));
  return 0;
}

}  // namespace

void append_build_info(std::string& out, std::string_view version) {
  const std::string boost = std::to_string(BOOST_VERSION / 100000) + "." +
                            std::to_string(BOOST_VERSION / 100 % 1000) + "." +
                            std::to_string(BOOST_VERSION % 100);
  out += "# HELP skyrelay_build_info The skyrelay version and the libraries it was built with; "
         "always 1.\n# TYPE skyrelay_build_info gauge\n";
  out += "skyrelay_build_info{version=\"" + label_value(version.empty() ? "unknown" : version) +
         "\",boost=\"" + boost + "\",openssl=\"" +
         label_value(OpenSSL_version(OPENSSL_VERSION_STRING)) + "\",compiler=\"" +
         label_value(compiler()) + "\"} 1\n";
}

void append_process_metrics(std::string& out) {
  const auto f = stat_fields();
  // proc(5) numbers from 1 and f[0] is field 3: utime 14, stime 15, starttime 22, vsize 23,
  // rss 24 (pages).
  if (f.size() > 21) {
    const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
    family(out, "process_cpu_seconds_total", "User and system CPU time of the process, in seconds.",
           "counter", (std::stod(f[11]) + std::stod(f[12])) / ticks);
    family(out, "process_virtual_memory_bytes", "Virtual memory size of the process, in bytes.",
           "gauge", std::stod(f[20]));
    family(out, "process_resident_memory_bytes", "Resident memory size of the process, in bytes.",
           "gauge", std::stod(f[21]) * page);
    if (const double boot = boot_time(); boot > 0)
      family(out, "process_start_time_seconds",
             "Start time of the process, in seconds since the Unix epoch.", "gauge",
             boot + std::stod(f[19]) / ticks);
  }
  std::error_code ec;
  std::size_t fds = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec))
    ++fds;
  // The iterator's own descriptor on /proc/self/fd was open while counting; it is not the
  // process's.
  if (!ec && fds > 0)
    family(out, "process_open_fds", "Open file descriptors of the process.", "gauge",
           static_cast<double>(fds - 1));
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0)
    family(out, "process_max_fds", "The process's limit on open file descriptors (soft).",
           "gauge", static_cast<double>(lim.rlim_cur));
}

}  // namespace skyrelay
