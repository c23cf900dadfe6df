/*
** TLS with OpenSSL: contexts, sessions and certificates (tls.c), shared
** with stream.c, which runs the records over its non-blocking socket.
*/
#ifndef PARLEY_TLS_H
#define PARLEY_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

#include "parley.h"

#define PARLEY_TLS_CONTEXT "parley.tls.context"
#define PARLEY_TLS_SESSION "parley.tls.session"

/* room for a failure message ("certificate verify failed: ...") */
#define PARLEY_TLS_ERRLEN 160

/* what an SSL call that did not succeed asks for */
enum { TLS_WANT_READ = -1, TLS_WANT_WRITE = -2, TLS_EOF = -3, TLS_FAIL = -4 };

/*
** A new SSL on fd for the context at `idx` (a client when the context
** is one): servername (or the context's) is sent as SNI and checked
** against the certificate; sess (may be NULL) is offered for
** resumption.  NULL with msg filled on failure.
*/
SSL *parley_tls_new(lua_State *L, int idx, int fd, const char *servername,
                    SSL_SESSION *sess, char *msg, size_t msglen);

/*
** Classifies a failed SSL_read/SSL_write/SSL_do_handshake that returned
** ret (call ERR_clear_error before the SSL call).  TLS_FAIL fills msg.
*/
int parley_tls_result(SSL *ssl, int ret, char *msg, size_t msglen);

/* the session userdata at idx, or NULL when idx holds something else */
SSL_SESSION *parley_tls_tosession(lua_State *L, int idx);

/* pushes a session userdata holding a reference to sess */
void parley_tls_pushsession(lua_State *L, SSL_SESSION *sess);

/* pushes the table stream:tlsinfo() returns */
void parley_tls_pushinfo(lua_State *L, SSL *ssl);

#endif
