/*
** tls: OpenSSL contexts, sessions and certificate helpers.
**
** A context holds what every connection made with it shares: mode,
** certificate and key, trust store, verification, ALPN list, protocol
** floor, and for servers the session cache that lets an FTP data
** connection resume its control connection's session (RFC 4217 §10.2).
** The records themselves run in stream.c over the non-blocking socket.
**
** Lua (parley.tls fronts them): core.tls_context(opts),
** core.tls_certinfo(path), core.tls_selfsigned(opts).
*/
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "driver.h"
#include "tls.h"

#define MAX_ALPN 255   /* bytes of the ALPN wire list */

typedef struct tls_ctx {
  SSL_CTX *ctx;
  int server;
  int verify;                     /* client: check the server's certificate */
  char *servername;               /* client: default SNI and host to check */
  unsigned char alpn[MAX_ALPN];   /* wire format: length-prefixed names */
  unsigned alpn_len;
} tls_ctx;

static tls_ctx *check_ctx(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, PARLEY_TLS_CONTEXT);
}

/* the reason of the newest OpenSSL error, lowercase as ours are */
static const char *ssl_reason(void) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  return r ? r : "unknown error";
}

/* ---------------------------------------------------------- contexts */

/* pushes nil, msg; for constructor failures */
static int fail(lua_State *L, const char *fmt, const char *a, const char *b) {
  lua_pushnil(L);
  lua_pushfstring(L, fmt, a, b);
  ERR_clear_error();
  return 2;
}

/* a file the user named must exist and be readable: say which one */
static const char *unreadable(const char *path) {
  if (access(path, R_OK) != 0) return parley_strerror(errno);
  return NULL;
}

static const char *optfield(lua_State *L, int t, const char *k) {
  const char *v;
  lua_getfield(L, t, k);
  v = luaL_optstring(L, -1, NULL);
  lua_pop(L, 1);
  return v;
}

static int boolfield(lua_State *L, int t, const char *k, int dflt) {
  int v;
  lua_getfield(L, t, k);
  v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static int version_of(const char *v) {
  if (strcmp(v, "1.0") == 0) return TLS1_VERSION;
  if (strcmp(v, "1.1") == 0) return TLS1_1_VERSION;
  if (strcmp(v, "1.2") == 0) return TLS1_2_VERSION;
  if (strcmp(v, "1.3") == 0) return TLS1_3_VERSION;
  return -1;
}

/* the ALPN list {"h2", "http/1.1"} in wire format; 0 or -1 (too long) */
static int read_alpn(lua_State *L, int t, tls_ctx *c) {
  lua_Integer i, n;
  lua_getfield(L, t, "alpn");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  luaL_checktype(L, -1, LUA_TTABLE);
  n = luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *p;
    lua_geti(L, -1, i);
    p = luaL_checklstring(L, -1, &len);
    if (len == 0 || len > 255 || c->alpn_len + 1 + len > MAX_ALPN) return -1;
    c->alpn[c->alpn_len++] = (unsigned char)len;
    memcpy(c->alpn + c->alpn_len, p, len);
    c->alpn_len += (unsigned)len;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

/* server: pick the first of the client's protocols that we also speak */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg) {
  tls_ctx *c = arg;
  unsigned char *o;
  (void)ssl;
  if (SSL_select_next_proto(&o, outlen, c->alpn, c->alpn_len, in, inlen)
      != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;   /* no overlap: go on without ALPN */
  }
  *out = o;
  return SSL_TLSEXT_ERR_OK;
}

static int load_ca(lua_State *L, SSL_CTX *ctx, const char *ca, int server) {
  struct stat st;
  const char *e;
  if (!ca) {
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      return fail(L, "cannot load the system certificate store: %s%s", ssl_reason(), "");
    }
    return 0;
  }
  if ((e = unreadable(ca)) != NULL) return fail(L, "cannot read ca %s: %s", ca, e);
  if (stat(ca, &st) == 0 && S_ISDIR(st.st_mode)) {
    if (SSL_CTX_load_verify_locations(ctx, NULL, ca) != 1) {
      return fail(L, "cannot load ca directory %s: %s", ca, ssl_reason());
    }
    return 0;
  }
  if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
    return fail(L, "cannot load ca %s: %s", ca, ssl_reason());
  }
  if (server) {
    /* tell clients which issuers we accept for their certificates */
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
    if (names) SSL_CTX_set_client_CA_list(ctx, names);
  }
  return 0;
}

static int load_cert(lua_State *L, SSL_CTX *ctx, const char *cert, const char *key) {
  const char *e;
  if ((e = unreadable(cert)) != NULL) return fail(L, "cannot read cert %s: %s", cert, e);
  if ((e = unreadable(key)) != NULL) return fail(L, "cannot read key %s: %s", key, e);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
    return fail(L, "cannot load cert %s: %s", cert, ssl_reason());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      return fail(L, "key %s does not match cert %s", key, cert);
    }
    return fail(L, "cannot load key %s: %s", key, ssl_reason());
  }
  return 0;
}

/*
** context{mode=, cert=, key=, ca=, verify=, verify_peer=, servername=,
** alpn=, min_version=, ciphers=, ciphersuites=} -> context | nil, err
** (parley.tls.context documents them and checks their types).
*/
static int l_context(lua_State *L) {
  const char *mode, *cert, *key, *ca, *v, *ciphers, *suites, *sn;
  tls_ctx *c;
  int server, minv;
  luaL_checktype(L, 1, LUA_TTABLE);
  mode = optfield(L, 1, "mode");
  if (!mode) mode = "client";
  if (strcmp(mode, "client") != 0 && strcmp(mode, "server") != 0) {
    return luaL_error(L, "tls context: mode must be \"client\" or \"server\"");
  }
  server = mode[0] == 's';
  cert = optfield(L, 1, "cert");
  key = optfield(L, 1, "key");
  ca = optfield(L, 1, "ca");
  ciphers = optfield(L, 1, "ciphers");
  suites = optfield(L, 1, "ciphersuites");
  sn = optfield(L, 1, "servername");
  v = optfield(L, 1, "min_version");
  minv = version_of(v ? v : "1.2");
  if (minv < 0) return luaL_error(L, "tls context: min_version must be \"1.0\" .. \"1.3\"");
  if (server && (!cert || !key)) return luaL_error(L, "tls context: a server needs cert and key");
  if (!cert != !key) return luaL_error(L, "tls context: cert and key go together");

  c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, PARLEY_TLS_CONTEXT);
  c->server = server;
  c->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!c->ctx) return fail(L, "tls context: %s%s", ssl_reason(), "");
  if (read_alpn(L, 1, c) != 0) return luaL_error(L, "tls context: alpn names too long");
  SSL_CTX_set_min_proto_version(c->ctx, minv);
  /*
  ** Partial writes and a moving buffer: stream.c retries a write from
  ** its output buffer, which may have grown (and moved) meanwhile.
  ** Idle connections give their record buffers back.  No renegotiation:
  ** it would make a read write and a write read behind our back.  A
  ** peer that closes without close_notify reads as a plain end.
  */
  SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                   SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (ciphers && SSL_CTX_set_cipher_list(c->ctx, ciphers) != 1) {
    return fail(L, "tls context: bad ciphers %s: %s", ciphers, ssl_reason());
  }
  if (suites && SSL_CTX_set_ciphersuites(c->ctx, suites) != 1) {
    return fail(L, "tls context: bad ciphersuites %s: %s", suites, ssl_reason());
  }
  if (cert && load_cert(L, c->ctx, cert, key)) return 2;
  if (server) {
    int vp = boolfield(L, 1, "verify_peer", 0);
    /* one cache per context; the id context scopes it to this one */
    SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(c->ctx, (const unsigned char *)"parley", 6);
    if (c->alpn_len) SSL_CTX_set_alpn_select_cb(c->ctx, select_alpn, c);
    if (vp) {
      if (!ca) return luaL_error(L, "tls context: verify_peer needs ca");
      if (load_ca(L, c->ctx, ca, 1)) return 2;
      SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
  } else {
    c->verify = boolfield(L, 1, "verify", 1);
    /* loaded even when not verifying, so tlsinfo().verified can tell */
    if (load_ca(L, c->ctx, ca, 0)) return 2;
    SSL_CTX_set_verify(c->ctx, c->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (c->alpn_len) SSL_CTX_set_alpn_protos(c->ctx, c->alpn, c->alpn_len);
    if (sn) {
      c->servername = strdup(sn);
      if (!c->servername) return luaL_error(L, "not enough memory");
    }
  }
  return 1;
}

static int ctx_gc(lua_State *L) {
  tls_ctx *c = check_ctx(L, 1);
  if (c->ctx) SSL_CTX_free(c->ctx);
  free(c->servername);
  c->ctx = NULL;
  c->servername = NULL;
  return 0;
}

static int ctx_tostring(lua_State *L) {
  tls_ctx *c = check_ctx(L, 1);
  return parley_tostring(L, !c->ctx ? "(closed)" : c->server ? "(server)" : "(client)");
}

static int ctx_mode(lua_State *L) {
  lua_pushstring(L, check_ctx(L, 1)->server ? "server" : "client");
  return 1;
}

/* the client's default servername, or nil */
static int ctx_servername(lua_State *L) {
  tls_ctx *c = check_ctx(L, 1);
  if (c->servername) lua_pushstring(L, c->servername);
  else lua_pushnil(L);
  return 1;
}

/* ---------------------------------------------------- per connection */

/* an IP literal is checked as an address and never sent as SNI (RFC 6066 §3) */
static int is_ip(const char *host) {
  unsigned char a[16];
  return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

SSL *parley_tls_new(lua_State *L, int idx, int fd, const char *servername,
                    SSL_SESSION *sess, char *msg, size_t msglen) {
  tls_ctx *c = check_ctx(L, idx);
  SSL *ssl;
  if (!c->ctx) {
    snprintf(msg, msglen, "tls context closed");
    return NULL;
  }
  ssl = SSL_new(c->ctx);
  if (!ssl || SSL_set_fd(ssl, fd) != 1) {
    snprintf(msg, msglen, "tls: %s", ssl_reason());
    if (ssl) SSL_free(ssl);
    ERR_clear_error();
    return NULL;
  }
  if (c->server) {
    SSL_set_accept_state(ssl);
    return ssl;
  }
  SSL_set_connect_state(ssl);
  if (!servername) servername = c->servername;
  if (!servername && c->verify) {
    SSL_free(ssl);
    snprintf(msg, msglen, "no servername to verify the certificate against");
    return NULL;
  }
  if (servername) {
    int ok;
    if (is_ip(servername)) {
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), servername);
    } else {
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = SSL_set1_host(ssl, servername) &&
           SSL_set_tlsext_host_name(ssl, servername);
    }
    if (!ok) {
      SSL_free(ssl);
      ERR_clear_error();
      snprintf(msg, msglen, "bad servername: %s", servername);
      return NULL;
    }
  }
  if (sess) SSL_set_session(ssl, sess);
  return ssl;
}

int parley_tls_result(SSL *ssl, int ret, char *msg, size_t msglen) {
  int e = SSL_get_error(ssl, ret);
  switch (e) {
    case SSL_ERROR_WANT_READ: return TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE: return TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: return TLS_EOF;
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0) {
        if (errno == 0 || errno == EPIPE || ret == 0) return TLS_EOF;
        snprintf(msg, msglen, "%s", parley_strerror(errno));
        return TLS_FAIL;
      }
      break;
    default:
      break;
  }
  {
    long vr = SSL_get_verify_result(ssl);
    unsigned long err = ERR_peek_last_error();
    if (vr != X509_V_OK && ERR_GET_REASON(err) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      snprintf(msg, msglen, "certificate verify failed: %s",
               X509_verify_cert_error_string(vr));
    } else {
      snprintf(msg, msglen, "tls: %s", ssl_reason());
    }
  }
  ERR_clear_error();
  return TLS_FAIL;
}

/* ---------------------------------------------------------- sessions */

SSL_SESSION *parley_tls_tosession(lua_State *L, int idx) {
  SSL_SESSION **p = luaL_testudata(L, idx, PARLEY_TLS_SESSION);
  return p ? *p : NULL;
}

void parley_tls_pushsession(lua_State *L, SSL_SESSION *sess) {
  SSL_SESSION **p = lua_newuserdatauv(L, sizeof *p, 0);
  *p = NULL;
  luaL_setmetatable(L, PARLEY_TLS_SESSION);
  if (SSL_SESSION_up_ref(sess) == 1) *p = sess;
}

static int sess_gc(lua_State *L) {
  SSL_SESSION **p = luaL_checkudata(L, 1, PARLEY_TLS_SESSION);
  if (*p) SSL_SESSION_free(*p);
  *p = NULL;
  return 0;
}

static int sess_tostring(lua_State *L) {
  SSL_SESSION **p = luaL_checkudata(L, 1, PARLEY_TLS_SESSION);
  return parley_tostring(L, *p && SSL_SESSION_is_resumable(*p) ? "(resumable)" : "(spent)");
}

/* ------------------------------------------------------ certificates */

static void push_name(lua_State *L, X509_NAME *name) {
  BIO *b = BIO_new(BIO_s_mem());
  char *p;
  long n;
  if (!b) {
    lua_pushnil(L);
    return;
  }
  X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
  n = BIO_get_mem_data(b, &p);
  lua_pushlstring(L, p, (size_t)n);
  BIO_free(b);
}

static void push_time(lua_State *L, const ASN1_TIME *t) {
  struct tm tm;
  if (t && ASN1_TIME_to_tm(t, &tm) == 1) lua_pushinteger(L, (lua_Integer)timegm(&tm));
  else lua_pushnil(L);
}

/* subjectAltName DNS names and addresses, in order */
static void push_san(lua_State *L, X509 *x) {
  GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  int i, n = 0;
  lua_newtable(L);
  if (!names) return;
  for (i = 0; i < sk_GENERAL_NAME_num(names); i++) {
    GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type == GEN_DNS) {
      lua_pushlstring(L, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                      (size_t)ASN1_STRING_length(g->d.dNSName));
    } else if (g->type == GEN_IPADD) {
      char text[INET6_ADDRSTRLEN];
      int len = ASN1_STRING_length(g->d.iPAddress);
      const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
      if (!inet_ntop(len == 16 ? AF_INET6 : AF_INET, a, text, sizeof text)) continue;
      lua_pushstring(L, text);
    } else {
      continue;
    }
    lua_rawseti(L, -2, ++n);
  }
  GENERAL_NAMES_free(names);
}

/* {subject, issuer, not_before, not_after, days_left, san} */
static void push_cert(lua_State *L, X509 *x) {
  const ASN1_TIME *na = X509_get0_notAfter(x);
  struct tm tm;
  lua_createtable(L, 0, 6);
  push_name(L, X509_get_subject_name(x));
  lua_setfield(L, -2, "subject");
  push_name(L, X509_get_issuer_name(x));
  lua_setfield(L, -2, "issuer");
  push_time(L, X509_get0_notBefore(x));
  lua_setfield(L, -2, "not_before");
  push_time(L, na);
  lua_setfield(L, -2, "not_after");
  if (na && ASN1_TIME_to_tm(na, &tm) == 1) {
    /* whole days; negative once expired */
    double left = difftime(timegm(&tm), time(NULL)) / 86400.0;
    lua_pushinteger(L, (lua_Integer)(left < 0 ? left - 0.999999 : left));
    lua_setfield(L, -2, "days_left");
  }
  push_san(L, x);
  lua_setfield(L, -2, "san");
}

static void setstr(lua_State *L, const char *k, const char *v) {
  if (v) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
  }
}

void parley_tls_pushinfo(lua_State *L, SSL *ssl) {
  const unsigned char *alpn;
  unsigned alen;
  X509 *peer = SSL_get1_peer_certificate(ssl);
  lua_createtable(L, 0, 8);
  setstr(L, "version", SSL_get_version(ssl));
  setstr(L, "cipher", SSL_get_cipher_name(ssl));
  SSL_get0_alpn_selected(ssl, &alpn, &alen);
  if (alen) {
    lua_pushlstring(L, (const char *)alpn, alen);
    lua_setfield(L, -2, "alpn");
  }
  setstr(L, "servername", SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
  lua_pushboolean(L, SSL_session_reused(ssl));
  lua_setfield(L, -2, "session_reused");
  lua_pushboolean(L, peer && SSL_get_verify_result(ssl) == X509_V_OK);
  lua_setfield(L, -2, "verified");
  if (peer) {
    push_cert(L, peer);
    lua_setfield(L, -2, "peer");
    X509_free(peer);
  }
}

/* certinfo(path) -> the first certificate's info | nil, err */
static int l_certinfo(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  FILE *f = fopen(path, "r");
  X509 *x;
  if (!f) return fail(L, "cannot read cert %s: %s", path, parley_strerror(errno));
  x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  if (!x) return fail(L, "cannot load cert %s: %s", path, ssl_reason());
  push_cert(L, x);
  X509_free(x);
  return 1;
}

/* -------------------------------------------------------- self-signed */

static int add_ext(X509 *x, int nid, const char *value) {
  X509V3_CTX v3;
  X509_EXTENSION *ext;
  int ok;
  X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
  ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
  if (!ext) return 0;
  ok = X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  return ok;
}

static int write_key(const char *path, EVP_PKEY *pk) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  FILE *f;
  int ok;
  if (fd < 0) return 0;
  fchmod(fd, 0600);   /* an existing file keeps its mode otherwise */
  f = fdopen(fd, "w");
  if (!f) {
    close(fd);
    return 0;
  }
  ok = PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
  return fclose(f) == 0 && ok;
}

static int write_cert(const char *path, X509 *x) {
  FILE *f = fopen(path, "w");
  int ok;
  if (!f) return 0;
  ok = PEM_write_X509(f, x);
  return fclose(f) == 0 && ok;
}

/*
** selfsigned(cn, san, days, cert_path, key_path) -> true | nil, err
** An ECDSA P-256 key and a certificate for it, valid from now for `days`
** (days < 0: one that expired |days| days ago, for tests).  san is the
** subjectAltName value ("DNS:localhost,IP:127.0.0.1").
*/
static int l_selfsigned(lua_State *L) {
  const char *cn = luaL_checkstring(L, 1);
  const char *san = luaL_checkstring(L, 2);
  lua_Integer days = luaL_checkinteger(L, 3);
  const char *certp = luaL_checkstring(L, 4);
  const char *keyp = luaL_checkstring(L, 5);
  EVP_PKEY *pk = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  BIGNUM *serial = BN_new();
  const char *err = NULL;
  long from = days < 0 ? (long)(days - 1) * 86400 : 0;
  if (!pk || !x || !serial) {
    err = "cannot make a key";
    goto done;
  }
  X509_set_version(x, 2);
  if (!BN_rand(serial, 64, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
      !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) ||
      !X509_gmtime_adj(X509_getm_notBefore(x), from) ||
      !X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400) ||
      !X509_set_pubkey(x, pk) ||
      !X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                                  (const unsigned char *)cn, -1, -1, 0) ||
      !X509_set_issuer_name(x, X509_get_subject_name(x)) ||
      !add_ext(x, NID_basic_constraints, "critical,CA:TRUE") ||
      !add_ext(x, NID_subject_key_identifier, "hash") ||
      (*san && !add_ext(x, NID_subject_alt_name, san)) ||
      !X509_sign(x, pk, EVP_sha256())) {
    err = ssl_reason();
    goto done;
  }
  if (!write_key(keyp, pk)) {
    lua_pushfstring(L, "cannot write key %s: %s", keyp, parley_strerror(errno));
    err = lua_tostring(L, -1);
  } else if (!write_cert(certp, x)) {
    lua_pushfstring(L, "cannot write cert %s: %s", certp, parley_strerror(errno));
    err = lua_tostring(L, -1);
  }
done:
  EVP_PKEY_free(pk);
  X509_free(x);
  BN_free(serial);
  ERR_clear_error();
  if (err) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

int parley_open_tls(lua_State *L) {
  static const luaL_Reg ctx_methods[] = {
    {"mode", ctx_mode}, {"servername", ctx_servername}, {NULL, NULL}
  };
  static const luaL_Reg ctx_meta[] = {
    {"__gc", ctx_gc}, {"__close", ctx_gc}, {"__tostring", ctx_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg sess_methods[] = {{NULL, NULL}};
  static const luaL_Reg sess_meta[] = {
    {"__gc", sess_gc}, {"__close", sess_gc}, {"__tostring", sess_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"tls_context", l_context}, {"tls_certinfo", l_certinfo},
    {"tls_selfsigned", l_selfsigned}, {NULL, NULL}
  };
  parley_newclass(L, PARLEY_TLS_CONTEXT, ctx_methods, ctx_meta);
  parley_newclass(L, PARLEY_TLS_SESSION, sess_methods, sess_meta);
  luaL_setfuncs(L, funcs, 0);
  return 0;
}
