// Bindings for JWT keys: the key tuples skyrelay.JWTKey hands over, and skyrelay._core.JWTKeySet,
// the replaceable key set the JWKS refresher (skyrelay/_jwks.py) fills while the server runs.
#include <pybind11/chrono.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "errors.hpp"
#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/auth/jwt_key_set.hpp"

namespace py = pybind11;

namespace skyrelay::bindings {

using key_tuple = std::tuple<std::string, std::string, std::string, std::vector<std::string>>;

// A key from JWTKey's (type, kid, material, algorithms): the key, or why it does not fit.
std::variant<auth::jwt_key, std::string> make_key(const key_tuple& t) {
  const auto& [type, id, material, algorithms] = t;
  if (type == "hmac") return auth::jwt_key::hmac(id, material, algorithms);
  if (type == "public_pem") return auth::jwt_key::public_pem(id, material, algorithms);
  return "unknown key type \"" + type + "\"";
}

namespace {

// The keys of a list of tuples, all or nothing: ValueError naming the first that does not fit.
auth::jwt_key_list make_keys(const std::vector<key_tuple>& tuples) {
  auth::jwt_key_list keys;
  for (const auto& t : tuples) {
    auto key = make_key(t);
    if (auto* error = std::get_if<std::string>(&key))
      raise_value_error("JWT key \"" + std::get<1>(t) + "\": " + *error);
    keys.push_back(std::make_shared<const auth::jwt_key>(std::get<auth::jwt_key>(std::move(key))));
  }
  return keys;
}

}  // namespace

void register_auth(py::module_& m) {
  py::class_<auth::jwt_key_set, std::shared_ptr<auth::jwt_key_set>>(
      m, "JWTKeySet",
      "The JWT verifier's keys, replaceable while the server runs (skyrelay/_jwks.py). "
      "Pass it in the jwt options as key_set; replace() swaps the whole list atomically.")
      .def(py::init([](bool jwks) {
             auto set = std::make_shared<auth::jwt_key_set>();
             set->set_jwks(jwks);
             return set;
           }),
           py::arg("jwks") = true)
      .def(
          "replace",
          [](auth::jwt_key_set& set, const std::vector<key_tuple>& tuples) {
            auto keys = make_keys(tuples);  // ValueError before anything changes
            py::gil_scoped_release release;
            set.replace(std::move(keys));
          },
          py::arg("keys"))
      .def_property_readonly("kids",
                             [](const auth::jwt_key_set& set) {
                               std::vector<std::string> out;
                               for (const auto& k : set.keys()) out.push_back(k->id);
                               return out;
                             })
      .def(
          "wait_unknown_key",
          [](auth::jwt_key_set& set, double timeout_s) {
            const auto timeout = std::chrono::milliseconds(
                static_cast<long long>(std::max(0.0, std::min(timeout_s, 86400.0)) * 1000));
            py::gil_scoped_release release;
            return set.wait_unknown_key(timeout);
          },
          py::arg("timeout"),
          "Blocks (GIL released) up to timeout seconds for a token with an unknown kid or "
          "wake(); answers whether such a token came, and clears that.")
      .def("wake", [](auth::jwt_key_set& set) { set.wake(); })
      .def(
          "count_refresh",
          [](auth::jwt_key_set& set, bool ok) { set.count_refresh(ok, auth::unix_now()); },
          py::arg("ok"))
      .def("count_unknown_kid_refetch", &auth::jwt_key_set::count_unknown_kid_refetch)
      .def_property_readonly("unknown_key_tokens", &auth::jwt_key_set::unknown_key_tokens)
      .def_property_readonly("refreshes", &auth::jwt_key_set::refreshes)
      .def_property_readonly("refresh_failures", &auth::jwt_key_set::refresh_failures)
      .def("metrics_text", [](const auth::jwt_key_set& set) {
        std::string out;
        set.write_metrics(out);
        return out;
      });

  // "" when the key tuple makes a key, else why not (the JWKS refresher skips such keys).
  m.def("check_jwt_key", [](const key_tuple& t) {
    auto key = make_key(t);
    auto* error = std::get_if<std::string>(&key);
    return error ? *error : std::string();
  });
}

}  // namespace skyrelay::bindings
