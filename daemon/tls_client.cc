#include "daemon/tls_client.h"

#include <Poco/Net/NetSSL.h>
#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <unistd.h>

#include <mutex>

namespace gitopsd::daemon {
namespace {

using Poco::Net::Context;

Status ExpectPeerName(Context& context, const std::string& host) {
  X509_VERIFY_PARAM* param = SSL_CTX_get0_param(context.sslContext());
  unsigned char address[16];
  const bool is_ip = inet_pton(AF_INET, host.c_str(), address) == 1 || inet_pton(AF_INET6, host.c_str(), address) == 1;
  const int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                       : X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
  if (ok != 1) return Fail("cannot check the server's certificate against \"" + host + "\"");
  return Ok();
}

}  // namespace

Result<Context::Ptr> ClientTlsContext(const TlsClientOptions& options, const std::string& host) {
  static std::once_flag once;
  std::call_once(once, [] { Poco::Net::initializeSSL(); });
  Context::Params params;
  params.verificationMode = options.insecure ? Context::VERIFY_NONE : Context::VERIFY_RELAXED;
  if (!options.ca_file.empty()) {
    if (::access(options.ca_file.c_str(), R_OK) != 0) return Fail("CA file " + options.ca_file + ": cannot read it");
    params.caLocation = options.ca_file;
  } else {
    params.loadDefaultCAs = true;
  }
  params.cipherList = "HIGH:!aNULL:!eNULL:!MD5:!RC4:!3DES";
  try {
    Context::Ptr context = new Context(Context::TLS_CLIENT_USE, params);
    context->requireMinimumProtocol(Context::PROTO_TLSV1_2);
    context->enableExtendedCertificateVerification(false);
    if (!options.insecure) {
      if (auto s = ExpectPeerName(*context, host); !s) return std::unexpected(s.error());
    }
    return context;
  } catch (const Poco::Exception& e) {
    return Fail("cannot set up TLS" +
                (options.ca_file.empty() ? std::string() : " with the CA file " + options.ca_file) + ": " +
                e.displayText());
  }
}

}  // namespace gitopsd::daemon
